"""Search the parallel configurations of a training job: enumerate, reject with a reason, evaluate.

The space is the cartesian product of tensor (``tp``, divisors of the scale-up domain), pipeline
(``pp``, divisors of the layers or of layers + 2), virtual stages (``vpp``), context (``cp``,
powers of two), expert (``ep``, divisors of the routed experts) parallelism, micro-batch size,
recomputation (none, selective, full) and ZeRO stage (0-3); data parallelism is what is left,
``dp = gpus / (tp * pp * cp)``. Any dimension can be fixed. The grid is built and checked with
numpy; every structurally valid configuration is evaluated in one vectorized call of
:func:`factoryplan.perf.training.evaluate` (no Python loop over configurations), and the fastest
that fits in memory wins. Rejected configurations are counted by their first failing rule.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.perf.flops import ModelShape
from factoryplan.perf.training import Configs, Efficiencies, Evaluation, Hardware, Job, evaluate

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

CP_CHOICES = (1, 2, 4, 8, 16, 32)
MB_CHOICES = (1, 2, 4, 8, 16)
FIRST_STAGE_RULES = 5  # rules 1-5 depend on tp, pp, vpp and cp only
REASONS: dict[int, tuple[str, str]] = {
    1: ("tp", "tensor parallelism must divide the attention heads and key/value heads"),
    2: ("tp", "tensor parallelism must divide the scale-up (NVLink) domain"),
    3: ("pp", "pipeline stages x virtual stages must divide the layers (or layers + 2)"),
    4: ("gpus", "the GPUs must divide by tp x pp x cp (and give the data parallelism asked for)"),
    5: ("cp", "context parallelism needs the sequence length divisible by 2 x cp"),
    6: ("ep", "expert parallelism must divide the experts and tp x cp x dp (1 for a dense model)"),
    7: ("global_batch", "the global batch must divide by dp x micro-batch"),
    8: ("vpp", "interleaving needs pp > 1 and at least pp micro-batches"),
    9: ("memory", "does not fit in GPU memory"),
}


@dataclass(frozen=True)
class SearchResult:
    """The evaluated valid configurations, ranked, and what was rejected and why."""

    evaluation: Evaluation  # every structurally valid configuration
    ranking: IntArray  # indices into ``evaluation`` of fitting configurations, fastest first
    grid_size: int
    rejected: dict[str, int]  # reason text -> count (memory included)
    evaluate_s: float  # seconds spent in the vectorized evaluation
    total_s: float  # enumeration, checks, evaluation and ranking

    @property
    def best(self) -> int:
        """Index of the fastest configuration that fits; InfeasibleError when none does."""
        if self.ranking.size == 0:
            ev = self.evaluation
            need = float(ev.memory["total"].min()) / 2**30 if len(ev.configs) else float("nan")
            counts = "; ".join(f"{r}: {n}" for r, n in self.rejected.items())
            raise InfeasibleError(
                "no parallel configuration fits",
                field="configuration",
                allowed=f"the smallest needs {need:,.1f} GiB per GPU, {ev.memory_available / 2**30:,.1f} GiB "
                f"usable; rejected: {counts}",
            )
        return int(self.ranking[0])


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidates(
    shape: ModelShape, hw: Hardware, job: Job, fixed: Mapping[str, int],
    choices: Mapping[str, Sequence[int]] | None = None, uneven: bool = False,
) -> dict[str, list[int]]:
    """Values tried in each dimension: a fixed dimension has its one value; ``choices`` narrows
    a dimension to the values it lists; ``uneven`` adds powers of two to the pipeline degrees."""
    pp = sorted(set(_divisors(shape.layers)) | {d for d in _divisors(shape.layers + 2) if d <= shape.layers}
                | ({2**i for i in range(8) if 2**i <= shape.layers} if uneven else set()))
    out = {
        "tp": _divisors(hw.domain_gpus),
        "pp": pp,
        "cp": [c for c in CP_CHOICES if c == 1 or job.seq_len % (2 * c) == 0],
        "ep": _divisors(shape.experts) if shape.is_moe else [1],
        "mb": [b for b in MB_CHOICES if b <= job.global_batch],
        "recompute": [0, 1, 2],
        "zero": [0, 1, 2, 3],
    }
    for name, allowed in (choices or {}).items():
        if name in out:
            out[name] = [v for v in out[name] if v in allowed]
    for name, value in fixed.items():
        if name in out:
            out[name] = [int(value)]
    return out


def _pp_vpp_pairs(layers: int, pps: Sequence[int], vpp_fixed: int | None) -> tuple[IntArray, IntArray]:
    """(pp, vpp) pairs: vpp 1, and for pp > 1 every vpp >= 2 that keeps layers divisible."""
    pairs = []
    for p in pps:
        vs = [1] + [v for v in range(2, layers // p + 1) if layers % (p * v) == 0 or (layers + 2) % (p * v) == 0]
        if p == 1:
            vs = [1]
        if vpp_fixed is not None:
            vs = [vpp_fixed]
        pairs += [(p, v) for v in vs]
    arr = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _product(axes: Sequence[npt.ArrayLike]) -> list[IntArray]:
    return [a.ravel().astype(np.int64) for a in np.meshgrid(*[np.asarray(x) for x in axes], indexing="ij")]


def grid(
    shape: ModelShape, hw: Hardware, job: Job, fixed: Mapping[str, int],
    choices: Mapping[str, Sequence[int]] | None = None, uneven: bool = False,
) -> tuple[Configs, IntArray, int]:
    """The cartesian product of :func:`candidates` with the first rule each configuration breaks
    (0: none), and the size of the full product. Built in two stages: the (tp, pp, vpp, cp)
    combinations that break a rule of their own are counted and dropped before the product with
    ep, micro-batch, recomputation and ZeRO stage; ``dp = gpus // (tp*pp*cp)``."""
    c = candidates(shape, hw, job, fixed, choices, uneven)
    pp_all, vpp_all = _pp_vpp_pairs(shape.layers, c["pp"], fixed.get("vpp"))
    tp, pv, cp = _product([c["tp"], np.arange(pp_all.size), c["cp"]])
    one = np.ones_like(tp)
    dp = np.maximum(job.gpus // (tp * pp_all[pv] * cp), 1)
    base = Configs(tp=tp, pp=pp_all[pv], vpp=vpp_all[pv], cp=cp, ep=one, dp=dp, mb=one, recompute=0 * one, zero=one)
    inner = [c["ep"], c["mb"], c["recompute"], c["zero"]]
    per_base = int(np.prod([len(x) for x in inner]))
    code1 = reasons(shape, hw, job, base, fixed.get("dp"), uneven)
    code1 = np.where(code1 <= FIRST_STAGE_RULES, code1, 0)
    dropped = code1[code1 > 0]
    base = base.take(code1 == 0)
    idx, ep, mb, rc, zero = _product([np.arange(len(base)), *inner])
    cfg = Configs(tp=base.tp[idx], pp=base.pp[idx], vpp=base.vpp[idx], cp=base.cp[idx], ep=ep, dp=base.dp[idx],
                  mb=mb, recompute=rc, zero=zero)
    # the base rows pass the first-stage rules, which do not depend on the inner dimensions
    second = reasons(shape, hw, job, cfg, fixed.get("dp"), uneven, start=FIRST_STAGE_RULES + 1)
    code = np.concatenate([second, np.repeat(dropped, per_base)])
    return cfg, code, len(tp) * per_base


def reasons(
    shape: ModelShape, hw: Hardware, job: Job, cfg: Configs, dp_fixed: int | None = None, uneven: bool = False,
    start: int = 1,
) -> IntArray:
    """The first structural rule each configuration breaks (0: none); codes in :data:`REASONS`.
    ``uneven`` accepts any pipeline split with at least one layer per virtual stage (Megatron's
    uneven first and last stages), as published runs of models like DeepSeek-V3 use. Rules below
    ``start`` are not checked (the caller knows every configuration passes them)."""
    t, p, v, c, e, d = cfg.tp, cfg.pp, cfg.vpp, cfg.cp, cfg.ep, cfg.dp
    experts = max(shape.experts, 1)

    def gpus_bad() -> BoolArray:
        ok: BoolArray = (job.gpus % (t * p * c) == 0) & (d * t * p * c == job.gpus)
        if dp_fixed is not None:
            ok = ok & (d == dp_fixed)
        return ~ok

    def stages_bad() -> BoolArray:
        pv = p * v
        return (pv > shape.layers) if uneven else (shape.layers % pv != 0) & ((shape.layers + 2) % pv != 0)

    checks: list[Callable[[], BoolArray]] = [
        lambda: (shape.heads % t != 0) | (shape.kv_heads % t != 0),
        lambda: (t > hw.domain_gpus) | (hw.domain_gpus % t != 0),
        stages_bad,
        gpus_bad,
        lambda: (c > 1) & (job.seq_len % (2 * c) != 0),
        lambda: (experts % e != 0) | ((t * c * d) % e != 0) | ((not shape.is_moe) & (e != 1)),
        lambda: job.global_batch % (d * cfg.mb) != 0,
        lambda: (v > 1) & ((p == 1) | (job.global_batch // np.maximum(d * cfg.mb, 1) < p)),
    ]
    code = np.zeros(len(cfg), dtype=np.int64)
    for i in range(len(checks), start - 1, -1):
        code = np.where(checks[i - 1](), i, code)
    return code


def check_one(shape: ModelShape, hw: Hardware, job: Job, cfg: Configs) -> None:
    """Raise a FactoryplanError naming the rule a single configuration breaks."""
    code = int(reasons(shape, hw, job, cfg)[0])
    if code:
        field, text = REASONS[code]
        row = cfg.row(0)
        shown = {k: row[k] for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch")}
        raise FactoryplanError(
            text, field=f"--{field.replace('_', '-')}", value=shown,
            allowed=f"heads {shape.heads}, kv heads {shape.kv_heads}, layers {shape.layers}, experts "
            f"{shape.experts}, GPUs {job.gpus}, scale-up domain {hw.domain_gpus}, global batch {job.global_batch}",
        )


def search(
    shape: ModelShape, hw: Hardware, eff: Efficiencies, job: Job, fixed: Mapping[str, int] | None = None,
    keep: int = 6, choices: Mapping[str, Sequence[int]] | None = None, uneven: bool = False,
) -> SearchResult:
    """Enumerate, check and evaluate every configuration; rank those that fit (fastest first,
    then least memory). ``fixed`` pins dimensions (``dp`` included); ``choices`` narrows them;
    ``uneven`` allows uneven pipeline stages (see :func:`reasons`)."""
    start = time.perf_counter()
    fixed = dict(fixed or {})
    cfg, code, size = grid(shape, hw, job, fixed, choices, uneven)
    valid = cfg.take(code[: len(cfg)] == 0)
    t0 = time.perf_counter()
    ev = evaluate(shape, hw, eff, job, valid)
    evaluate_s = time.perf_counter() - t0
    fit = np.flatnonzero(ev.fits)
    order = fit[np.lexsort((ev.memory["total"][fit], -ev.tokens_per_s[fit]))]
    rejected: dict[str, int] = {}
    for c in range(1, 9):
        n = int(np.count_nonzero(code == c))
        if n:
            rejected[REASONS[c][1]] = n
    if (n_mem := int(len(valid) - fit.size)) > 0:
        rejected[REASONS[9][1]] = n_mem
    return SearchResult(
        evaluation=ev, ranking=order[: max(keep, 1)], grid_size=size, rejected=rejected,
        evaluate_s=evaluate_s, total_s=time.perf_counter() - start,
    )


__all__ = ["REASONS", "SearchResult", "candidates", "check_one", "grid", "reasons", "search"]
