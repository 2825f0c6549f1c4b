"""The shared pieces of serving capacity planning: the demand and its targets, the candidate replica
layouts, the aggregated grid (every layout at every concurrency, one vectorized pass of
:func:`factoryplan.perf.serving.serve`), the plan record and the Pareto-frontier selection.

:mod:`factoryplan.perf.capacity` plans with them (aggregated serving, and the choice between modes);
:mod:`factoryplan.perf.capacity_disagg` sizes disaggregated prefill and decode pools.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from factoryplan.perf.inference import (
    Array,
    BoolArray,
    Constants,
    FloatOrArray,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    splits_evenly,
)
from factoryplan.perf.serving import Serving, open_loop_ttft, open_loop_ttft_exceeds, serve

CONCURRENCY_GRID = np.unique(np.round(np.geomspace(1, 4096, 49)))
# Poisson arrivals load an aggregated replica planned for a TTFT percentile at most this share of its
# closed-loop request rate: up to 0.9 the simulated percentiles follow open_loop_ttft (P90 at most 16%,
# P99 at most 8% above it) and the 99th-percentile TPOT stays within 28% of the closed loop's mean;
# at the full rate the open-loop queue runs away (benchmarks/serving_open_loop.py).
OPEN_LOOP_MAX_LOAD = 0.9
# With prompts of varying length a replica planned for a TTFT percentile is loaded at most this share
# of its closed-loop rate (aggregated) or of its full passes (a disaggregated prefill replica): at 0.9
# the simulated queues can run away (at CV 1 the 99th-percentile TTFT up to 1.9 x open_loop_ttft's, the
# prefill replica's 90th up to 4.5 x prefill_queue's, 10 x with earlier constants; long prompts cut passes
# short), up to 0.8 they stay within 1.6 x (benchmarks/serving_open_loop.py, benchmarks/disagg_sim.py).
VARIED_MAX_LOAD = 0.8


@dataclass(frozen=True)
class Demand:
    """Peak demand and the latency targets (seconds); ``prefix``: leading prompt tokens the prefix
    cache already holds (not prefilled); ``draft_tokens`` and ``acceptance``: speculative decoding
    (see :func:`~factoryplan.perf.serving.serve`); ``ttft_percentile``: the TTFT target holds for
    that share (per cent) of the requests arriving as a Poisson process at peak
    (:func:`~factoryplan.perf.serving.open_loop_ttft`), None: for the mean of the closed loop;
    ``isl_cv``: the prompts' lengths vary, a gamma distribution of this coefficient of variation."""

    requests_per_s: float
    isl: float
    osl: float
    ttft_s: float
    tpot_s: float
    prefix: float = 0.0
    draft_tokens: float = 0.0
    acceptance: float = 0.0
    ttft_percentile: float | None = None
    isl_cv: float = 0.0  # the prompts' lengths' coefficient of variation (0: all isl long)


_LAYOUT_FIELDS = ("tp", "dp", "moe_tp", "ep", "pp", "redundant")


@dataclass(frozen=True)
class Layouts:
    """Candidate replica layouts as parallel arrays (``redundant``: expert slots beyond the
    model's experts, an expert-parallel load balancer's copies; 0: none)."""

    tp: Array
    dp: Array
    moe_tp: Array
    ep: Array
    pp: Array
    redundant: Array

    def par(self) -> Parallel:
        """The layouts as one vectorized :class:`Parallel`."""
        return Parallel(tp=self.tp, dp=self.dp, moe_tp=self.moe_tp, ep=self.ep, pp=self.pp, redundant=self.redundant)

    def select(self, mask: Array | BoolArray) -> Layouts:
        """The layouts where ``mask`` is true."""
        return Layouts(*(getattr(self, f)[mask] for f in _LAYOUT_FIELDS))

    def repeat(self, n: int) -> Layouts:
        """Each layout ``n`` times in a row (to pair it with ``n`` concurrencies)."""
        return Layouts(*(np.repeat(getattr(self, f), n) for f in _LAYOUT_FIELDS))

    def __len__(self) -> int:
        return len(self.tp)

    def describe(self, i: int) -> str:
        """``tp4 dp2 ep8 pp1`` style text of layout ``i``."""
        parts = [f"tp{int(self.tp[i])}"]
        if self.dp[i] > 1:
            parts.append(f"dp{int(self.dp[i])}")
        if self.ep[i] > 1:
            parts.append(f"ep{int(self.ep[i])}")
        if self.moe_tp[i] > 1 and (self.moe_tp[i] != self.tp[i] * self.dp[i] or self.dp[i] > 1):
            parts.append(f"moe_tp{int(self.moe_tp[i])}")
        if self.pp[i] > 1:
            parts.append(f"pp{int(self.pp[i])}")
        if self.redundant[i] > 0:
            parts.append(f"redundant{int(self.redundant[i])}")
        return " ".join(parts)


def powers_of_two(limit: float) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def layouts(s: ModelShape, domain: int, max_pp: int = 8) -> Layouts:
    """Every replica layout worth evaluating on a scale-up domain of ``domain`` GPUs.

    Dense models: ``tp`` in powers of two up to the domain, ``pp`` up to ``max_pp`` stages.
    MoE models: attention ``tp x dp`` over the same GPUs as the experts, experts split by
    expert parallelism (``ep = tp·dp``), by it with a load balancer's redundant copies (one slot
    more per rank, as TensorRT-LLM's wide-EP configurations run DeepSeek-R1: 288 slots on 32
    ranks), or by tensor parallelism (``moe_tp = tp·dp``). Only layouts that split the heads,
    experts and layers as the engines require (:func:`splits_evenly`).
    """
    rows: list[tuple[int, int, int, int, int, int]] = []
    sizes = powers_of_two(domain)
    for pp in powers_of_two(max_pp):
        for g in sizes:
            for tp in powers_of_two(g):
                dp = g // tp
                if s.moe_layers == 0:
                    if dp == 1:
                        rows.append((tp, 1, 1, 1, pp, 0))
                    continue
                rows.append((tp, dp, 1, g, pp, 0))
                if g > 1:
                    rows.append((tp, dp, 1, g, pp, g))
                    rows.append((tp, dp, g, 1, pp, 0))
    arr = np.asarray(rows, dtype=float)
    lay = Layouts(*(arr[:, i] for i in range(len(_LAYOUT_FIELDS))))
    return lay.select(splits_evenly(s, lay.tp, lay.ep, lay.pp, lay.redundant))


@dataclass(frozen=True)
class Grid:
    """The aggregated serving figures of every (layout, concurrency) pair."""

    lay: Layouts
    concurrency: Array
    ttft_s: Array
    tpot_s: Array
    tokens_per_s_per_gpu: Array
    tokens_per_s_per_user: Array
    requests_per_s: Array  # one replica
    gpus: Array
    ok: BoolArray  # fits and runs without queueing
    serving: Serving  # the steady state of every point (its prefill queue: open-loop TTFT percentiles)

    def open_loop_ttft(self, load: FloatOrArray, percentile: float) -> Array:
        """TTFT at ``percentile`` of every point under Poisson arrivals at ``load`` times its request rate."""
        return open_loop_ttft(self.serving, load, percentile)

    def reachable_ttft(self, percentile: float | None) -> Array:
        """The TTFT each point can reach: its closed-loop mean (None), or at ``percentile`` as its load
        goes to zero (no wait behind other prompts)."""
        return self.ttft_s if percentile is None else self.open_loop_ttft(0.0, percentile)

    def max_load(self, ttft_s: float, percentile: float, where: BoolArray | None = None) -> Array:
        """The largest share (at most :data:`OPEN_LOOP_MAX_LOAD`; :data:`VARIED_MAX_LOAD` when prompt
        lengths vary) of each point's closed-loop request rate at which ``percentile`` of the
        requests, arriving as a Poisson process, see a TTFT within ``ttft_s``; 0 where none do (the
        latency outside the queue alone exceeds it) and outside ``where`` (the points worth the
        search). Bisection: the TTFT rises with the load."""
        out = np.zeros(len(self.concurrency))
        idx = np.flatnonzero(where) if where is not None else np.arange(len(self.concurrency))
        top = OPEN_LOOP_MAX_LOAD if self.serving.isl_cv <= 0.0 else VARIED_MAX_LOAD
        # those that meet the target at the highest load are done; those that miss it with no load at
        # all never meet it; the rest are searched
        for load, keep in ((top, True), (0.0, False)):
            if len(idx) == 0:
                return out
            miss = open_loop_ttft_exceeds(self.subset(idx), load, percentile, ttft_s)
            if keep:
                out[idx[~miss]] = top
                idx = idx[miss]
            else:
                idx = idx[~miss]
        if len(idx) == 0:
            return out
        res = self.subset(idx)
        lo, hi = np.zeros(len(idx)), np.full(len(idx), top)
        for _ in range(16):  # to 1/2^16 of the highest load
            mid = (lo + hi) / 2.0
            good = ~open_loop_ttft_exceeds(res, mid, percentile, ttft_s)
            lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
        out[idx] = lo
        return out

    def subset(self, idx: np.ndarray) -> Serving:
        """The steady state of the points ``idx`` (what :func:`open_loop_ttft` reads)."""
        res = self.serving
        shape = np.shape(res.ttft_s)

        def pick(x: FloatOrArray) -> Array:
            return np.asarray(np.broadcast_to(np.asarray(x, dtype=float), shape)[idx], dtype=np.float64)

        return replace(res, ttft_s=pick(res.ttft_s), queue_s=pick(res.queue_s), prefill_busy=pick(res.prefill_busy),
                       prefill_service_s=pick(res.prefill_service_s), balance_s=pick(res.balance_s),
                       prompt_variable_s=pick(res.prompt_variable_s))


def evaluate_grid(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, lay: Layouts, isl: float, osl: float,
    concurrency: Array = CONCURRENCY_GRID, prefix: float = 0.0, draft_tokens: float = 0.0, acceptance: float = 0.0,
    isl_cv: float = 0.0,
) -> Grid:
    """Serve every layout at every concurrency of the grid (one vectorized pass); ``prefix`` cached
    prompt tokens, ``draft_tokens``/``acceptance`` speculative decoding, ``isl_cv`` prompt lengths'
    coefficient of variation."""
    n = len(concurrency)
    rep = lay.repeat(n)
    conc = np.tile(concurrency, len(lay))
    res = serve(s, hw, rep.par(), prec, k, concurrency=conc, isl=isl, osl=osl, prefix=prefix,
                draft_tokens=draft_tokens, acceptance=acceptance, isl_cv=isl_cv)
    gpus = np.asarray(rep.par().gpus(), dtype=float)
    ok = np.asarray(res.mem.fits, dtype=bool) & (conc <= np.asarray(res.mem.max_concurrency))
    return Grid(
        lay=rep, concurrency=conc, ttft_s=np.asarray(res.ttft_s), tpot_s=np.asarray(res.tpot_s),
        tokens_per_s_per_gpu=np.asarray(res.output_tokens_per_s_per_gpu),
        tokens_per_s_per_user=np.asarray(res.tokens_per_s_per_user), requests_per_s=np.asarray(res.requests_per_s),
        gpus=gpus, ok=ok, serving=res,
    )


@dataclass(frozen=True)
class CapacityPlan:
    """The chosen deployment for a demand."""

    mode: str  # "aggregated" or "disaggregated"
    config: str
    gpus: int
    systems: int
    replicas: int
    gpus_per_replica: int
    concurrency_per_replica: float
    ttft_s: float
    tpot_s: float
    output_tokens_per_s_per_gpu: float  # at the planned peak load
    tokens_per_s_per_user: float
    power_w: float
    output_tokens_per_s_per_mw: float
    prefill_gpus: int = 0
    decode_gpus: int = 0
    alternatives: dict[str, int] = field(default_factory=dict)  # mode -> GPUs of its best plan
    # percentile -> TTFT of the requests arriving as a Poisson process at the planned peak load
    ttft_percentiles_s: dict[float, float] = field(default_factory=dict)


def power_per_gpu(hw: Hardware) -> float:
    return float(np.asarray(hw.system_w)) / float(np.asarray(hw.system_gpus))


REPORTED_PERCENTILES = (50.0, 90.0, 99.0)  # of TTFT under Poisson arrivals, in every plan


def plan_percentiles(d: Demand) -> list[float]:
    return sorted({*REPORTED_PERCENTILES, *([d.ttft_percentile] if d.ttft_percentile is not None else [])})


def _non_dominated(x: Array, y: Array) -> Array:
    """Indices of the points no other point beats on both ``x`` and ``y``, by falling ``x``."""
    order = np.lexsort((-y, -x))  # fastest per user first, then highest per GPU
    ys = y[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(ys)[:-1]])
    return np.asarray(order[ys > best_before])


def frontier_points(
    x: Array, y: Array, ok: BoolArray, hw: Hardware, fields: Callable[[int], dict[str, float]]
) -> list[dict[str, float]]:
    """The non-dominated points among ``ok`` of (``x`` tokens/s per user, ``y`` tokens/s per GPU), by
    rising speed, each with tokens/s per MW of system power and ``fields(i)`` of its index."""
    idx = np.flatnonzero(ok)
    per_gpu_w = power_per_gpu(hw)
    out = []
    for o in _non_dominated(x[ok], y[ok]):
        i = int(idx[o])
        out.append({"tokens_per_s_per_user": float(x[i]), "tokens_per_s_per_gpu": float(y[i]),
                    "tokens_per_s_per_mw": float(y[i] / per_gpu_w * 1e6), **fields(i)})
    return sorted(out, key=lambda p: p["tokens_per_s_per_user"])
