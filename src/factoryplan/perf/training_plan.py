"""Size a training run for a deadline: the fewest GPUs, in whole systems or scalable units, whose
best parallel configuration finishes ``tokens`` within ``deadline_days`` (goodput included).

Whole systems are bought until a workload needs a scalable unit; beyond that, whole scalable units
(as the reference architectures are built). The job may run on fewer GPUs than are bought when no
parallel configuration divides the bought count (72-GPU NVL72 racks, 35 scalable units): the
largest counts below it that a configuration can use are tried (:func:`usable_counts`); ``gpus``
is what is bought, ``gpus_used`` what the job runs on.

The count is found by fixed-point iteration on the engine's throughput (``N' = N * days / deadline``,
rounded up to the granularity) and a bisection between the last count that misses the deadline and
the first that meets it; each step is one vectorized configuration search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.errors import InfeasibleError
from factoryplan.perf import goodput
from factoryplan.perf.flops import ModelShape, model_flops_per_token, model_shape
from factoryplan.perf.search import candidates, search
from factoryplan.perf.training import Efficiencies, Hardware, Job, hardware
from factoryplan.units import GIB, SECONDS_PER_DAY

FIRST_GUESS_MFU = 0.35  # starting point of the iteration only
MAX_SEARCHES = 24
# A plan searches a narrower space than `factoryplan train --search`: the distributed optimizer
# (ZeRO-1) or FSDP (ZeRO-3) and micro-batches up to 4, which is where the best configurations of
# the full search lie for the models in the catalog.
PLAN_SPACE = {"zero": (1, 3), "mb": (1, 2, 4)}


@dataclass(frozen=True)
class Sized:
    """The result for one GPU count: the best configuration and the run it gives."""

    gpus: int
    gpus_used: int
    details: dict[str, float | int | str]
    days: float


def usable_counts(shape: ModelShape, hw: Hardware, seq_len: int, batch: int, gpus: int, keep: int = 3) -> list[int]:
    """The largest GPU counts up to ``gpus`` that some configuration can use exactly: products of a
    tensor degree (dividing the heads and the scale-up domain), a pipeline degree (dividing the layers
    or layers + 2), a context degree and a data degree dividing the global batch; at most ``keep``,
    none below 80% of ``gpus``."""
    c = candidates(shape, hw, Job(seq_len=seq_len, global_batch=batch, gpus=gpus, precision="bf16"), {})
    tps = [t for t in c["tp"] if shape.heads % t == 0 and shape.kv_heads % t == 0]
    dps = [d for d in range(1, min(batch, gpus) + 1) if batch % d == 0]
    prod = np.multiply.outer(np.multiply.outer(np.multiply.outer(tps, c["pp"]), c["cp"]), dps).ravel()
    ok = np.unique(prod[(prod <= gpus) & (prod >= 0.8 * gpus)])
    return [int(n) for n in ok[::-1][:keep]]


def _evaluate(
    arch: ModelArch, acc: Accelerator, system: System, eff: Efficiencies, seq_len: int, batch: int, precision: str,
    tokens: float, gpus: int, run_asm: goodput.RunAssumptions,
) -> Sized | None:
    """The best run on ``gpus`` bought GPUs, using all of them or the few largest counts below that a
    configuration can use exactly; None when no configuration fits."""
    shape = model_shape(arch)
    hw = hardware(acc, system)
    best: Sized | None = None
    for used in usable_counts(shape, hw, seq_len, batch, gpus, keep=2):
        job = Job(seq_len=seq_len, global_batch=batch, gpus=used, precision=precision)
        result = search(shape, hw, eff, job, choices=PLAN_SPACE)
        if result.ranking.size == 0:
            continue
        ev, i = result.evaluation, result.best
        run = goodput.run(tokens, float(batch * seq_len), float(ev.step_time_s[i]), used, float(shape.params_total),
                          system.power_w / system.gpus, run_asm)
        if best is not None and run.wall_clock_days >= best.days:
            continue
        cfg = ev.configs.row(i)
        details: dict[str, float | int | str] = {
            **{k: cfg[k] for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch", "recompute", "zero")},
            "gpus_used": used, "seq_len": seq_len, "global_batch": batch,
            "step_time_s": float(ev.step_time_s[i]), "tokens_per_s_per_gpu": float(ev.tokens_per_s_per_gpu[i]),
            "model_tflops_per_gpu": float(ev.model_tflops_per_gpu[i]), "mfu": float(ev.mfu[i]),
            "memory_per_gpu_gib": float(ev.memory["total"][i]) / GIB, "goodput": run.goodput,
            "wall_clock_days": run.wall_clock_days, "gpu_hours": run.gpu_hours, "energy_mwh": run.energy_mwh,
            "flops": tokens * float(model_flops_per_token(shape, float(seq_len))),
        }
        best = Sized(gpus=gpus, gpus_used=used, details=details, days=run.wall_clock_days)
    return best


def size_for_deadline(
    arch: ModelArch, acc: Accelerator, system: System, eff: Efficiencies, *, tokens: float, deadline_days: float,
    precision: str, seq_len: int, global_batch_tokens: float, run_asm: goodput.RunAssumptions,
) -> Sized:
    """The smallest GPU count (see the module docstring) that meets the deadline."""
    batch = max(1, round(global_batch_tokens / seq_len))
    su = system.gpus * system.scalable_unit_systems
    shape = model_shape(arch)
    peak = hardware(acc, system).peak(precision)
    need = tokens * float(model_flops_per_token(shape, float(seq_len))) / (
        peak * FIRST_GUESS_MFU * deadline_days * SECONDS_PER_DAY)

    def granular(n: float) -> int:
        step = su if n > su else system.gpus
        return max(system.gpus, math.ceil(n / step) * step)

    def lower(n: int) -> int:
        return n - (su if n > su else system.gpus)

    def attempt(n: int) -> Sized | None:
        return _evaluate(arch, acc, system, eff, seq_len, batch, precision, tokens, n, run_asm)

    # grow until the deadline is met, remembering the largest count that misses it; give up once
    # twice the GPUs of the best run so far no longer shorten it (the batch caps data parallelism)
    n, lo, hi, searches = granular(need), 0, None, 0
    best_days, n_at_best = math.inf, 0
    while hi is None and searches < MAX_SEARCHES and n <= 64 * granular(need):
        sized, searches = attempt(n), searches + 1
        if sized is not None and sized.days <= deadline_days:
            hi = sized
        else:
            lo = n
            if sized is not None and sized.days < 0.98 * best_days:
                best_days, n_at_best = sized.days, n
            elif n_at_best and n >= 2 * n_at_best:
                break
            # a run that never ends (goodput 0 at this scale) or none that fits: double
            grow = 2.0 if sized is None or not math.isfinite(sized.days) else max(1.05, sized.days / deadline_days)
            n = granular(n * min(grow, 2.0))
    # shrink: jump to the count the throughput suggests, else bisect, until adjacent to a miss
    while hi is not None and searches < MAX_SEARCHES:
        guess = granular(hi.gpus * hi.days / deadline_days)
        n = guess if lo < guess < hi.gpus else granular((lo + hi.gpus) / 2)
        if n >= hi.gpus:
            n = lower(hi.gpus)
        if n <= lo or n < system.gpus:
            break
        sized, searches = attempt(n), searches + 1
        if sized is not None and sized.days <= deadline_days:
            hi = sized
        else:
            lo = n
    meets, misses = hi, lo
    if meets is None:
        raise InfeasibleError(
            f"{arch.id} on {acc.id} cannot train {tokens:.3g} tokens in {deadline_days:g} days",
            field="deadline_days", value=deadline_days,
            allowed=f"no GPU count up to {misses:,} meets it with a global batch of {batch:,} x {seq_len:,} tokens "
            "(more GPUs stop helping when the batch limits data parallelism)",
        )
    return meets


__all__ = ["Sized", "size_for_deadline", "usable_counts"]
