"""SLA-driven serving capacity: the fewest GPUs that meet TTFT and TPOT at a demand; the Pareto frontier.

For one model on one GPU type every replica layout is enumerated at once (tensor parallelism up to
the scale-up domain, attention data parallelism and expert parallelism for MoE models, pipeline
stages for models that need more memory than one domain holds) against a geometric grid of
concurrencies, and evaluated in one vectorized pass of :func:`factoryplan.perf.serving.serve`.

* **aggregated**: for each layout, the largest concurrency whose TTFT and TPOT meet the targets
  (and that the KV cache holds without queueing) sets a replica's request rate; replicas are
  ``ceil(peak rate / replica rate)``.
* **disaggregated**: a prefill pool whose replicas batch the prompts that arrive during a pass
  and are busy enough for the wait to keep TTFT within target, and a decode pool whose batch keeps
  TPOT within target (no prefill interference), each pool with its own best layout; the queueing
  is the form :func:`factoryplan.perf.serving.closed_loop_disaggregated` uses (checked against an
  event-by-event simulation, ``benchmarks/disagg_sim.py``), for open-loop (Poisson) arrivals.

A TTFT target holds for the mean by default (aggregated: the closed loop's at the concurrency,
whose request rate each replica then carries). With a percentile (``Demand.ttft_percentile``, e.g.
99) it holds for that share of requests arriving as a Poisson process, as production traffic does:
each aggregated replica carries the largest share of its closed-loop rate (at most
:data:`OPEN_LOOP_MAX_LOAD`) at which :func:`~factoryplan.perf.serving.open_loop_ttft` meets the
target (an M/D/1 tail of the wait behind other prompts); a disaggregated prefill pool is sized so
that :func:`prefill_queue`'s wait at that percentile does. Every plan reports TTFT at the 50th,
90th and 99th percentile at its peak load. TPOT is checked on the closed loop's mean at the
concurrency, which the simulation's 99th-percentile request exceeds by 5% on average at 90% load
(27% at most). Prompts of varying length (``Demand.isl_cv``) wait longer and spread the
percentiles wider (:func:`~factoryplan.perf.serving.open_loop_ttft`, :func:`prefill_queue`); a
replica planned for a percentile is then loaded at most :data:`VARIED_MAX_LOAD`.

The plan with the fewest GPUs wins (ties: fewer systems, then higher tokens/s per GPU). Power is
the systems' maximum power per GPU; tokens/s per MW divides by it.

The Pareto frontier keeps the aggregated points no other point beats on both output tokens/s per
GPU and tokens/s per user (``1/TPOT``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from factoryplan.errors import InfeasibleError
from factoryplan.perf.inference import (
    Array,
    BoolArray,
    Constants,
    FloatOrArray,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    iteration,
    kv_bytes_per_sequence_per_gpu,
    splits_evenly,
)
from factoryplan.perf.inference_constants import ErrorBand
from factoryplan.perf.serving import (
    Serving,
    batched_prefill_wait,
    cached_prompt,
    decode_iteration,
    exponential_wait_quantile,
    iterations_per_token,
    length_sum_quantile,
    memory,
    open_loop_ttft,
    open_loop_ttft_exceeds,
    serve,
    tokens_per_step,
)

CONCURRENCY_GRID = np.unique(np.round(np.geomspace(1, 4096, 49)))
# Poisson arrivals load an aggregated replica planned for a TTFT percentile at most this share of its
# closed-loop request rate: up to 0.9 the simulated percentiles follow open_loop_ttft (P90 at most 17%,
# P99 at most 7% above it) and the 99th-percentile TPOT stays within 27% of the closed loop's mean;
# at the full rate the open-loop queue runs away (benchmarks/serving_open_loop.py).
OPEN_LOOP_MAX_LOAD = 0.9
DISAGG_PREFILL_UTILIZATION = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
# With prompts of varying length a replica planned for a TTFT percentile is loaded at most this share
# of its closed-loop rate (aggregated) or of its full passes (a disaggregated prefill replica): at 0.9
# the simulated queues can run away (at CV 1 the 99th-percentile TTFT up to 2 x open_loop_ttft's, the
# prefill replica's 90th up to 10 x prefill_queue's; long prompts cut passes short), up to 0.8 they
# stay within 1.5 x (benchmarks/serving_open_loop.py, benchmarks/disagg_sim.py).
VARIED_MAX_LOAD = 0.8
# The disaggregated frontier's prefill load against full passes: a prompt then waits about one pass
# (batched_prefill_wait: 1.2 passes with one prompt a pass, 0.7 with four).
FRONTIER_PREFILL_LOAD = 0.7


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


@dataclass(frozen=True)
class Layouts:
    """Candidate replica layouts as parallel arrays."""

    tp: Array
    dp: Array
    moe_tp: Array
    ep: Array
    pp: Array

    def par(self) -> Parallel:
        """The layouts as one vectorized :class:`Parallel`."""
        return Parallel(tp=self.tp, dp=self.dp, moe_tp=self.moe_tp, ep=self.ep, pp=self.pp)

    def select(self, mask: Array | BoolArray) -> Layouts:
        """The layouts where ``mask`` is true."""
        return Layouts(*(getattr(self, f)[mask] for f in ("tp", "dp", "moe_tp", "ep", "pp")))

    def repeat(self, n: int) -> Layouts:
        """Each layout ``n`` times in a row (to pair it with ``n`` concurrencies)."""
        return Layouts(*(np.repeat(getattr(self, f), n) for f in ("tp", "dp", "moe_tp", "ep", "pp")))

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
        return " ".join(parts)


def _powers_of_two(limit: float) -> list[int]:
    out, v = [], 1
    while v <= limit:
        out.append(v)
        v *= 2
    return out


def layouts(s: ModelShape, domain: int, max_pp: int = 8) -> Layouts:
    """Every replica layout worth evaluating on a scale-up domain of ``domain`` GPUs.

    Dense models: ``tp`` in powers of two up to the domain, ``pp`` up to ``max_pp`` stages.
    MoE models: attention ``tp x dp`` over the same GPUs as the experts, experts split by
    expert parallelism (``ep = tp·dp``) or by tensor parallelism (``moe_tp = tp·dp``). Only layouts
    that split the heads, experts and layers as the engines require (:func:`splits_evenly`).
    """
    rows: list[tuple[int, int, int, int, int]] = []
    sizes = _powers_of_two(domain)
    for pp in _powers_of_two(max_pp):
        for g in sizes:
            for tp in _powers_of_two(g):
                dp = g // tp
                if s.moe_layers == 0:
                    if dp == 1:
                        rows.append((tp, 1, 1, 1, pp))
                    continue
                rows.append((tp, dp, 1, g, pp))
                if g > 1:
                    rows.append((tp, dp, g, 1, pp))
    arr = np.asarray(rows, dtype=float)
    lay = Layouts(tp=arr[:, 0], dp=arr[:, 1], moe_tp=arr[:, 2], ep=arr[:, 3], pp=arr[:, 4])
    return lay.select(splits_evenly(s, lay.tp, lay.ep, lay.pp))


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


def _power_per_gpu(hw: Hardware) -> float:
    return float(np.asarray(hw.system_w)) / float(np.asarray(hw.system_gpus))


REPORTED_PERCENTILES = (50.0, 90.0, 99.0)  # of TTFT under Poisson arrivals, in every plan


def _percentiles(d: Demand) -> list[float]:
    return sorted({*REPORTED_PERCENTILES, *([d.ttft_percentile] if d.ttft_percentile is not None else [])})


def _aggregated(grid: Grid, d: Demand, hw: Hardware) -> CapacityPlan | None:
    """The aggregated plan: the mean target on the closed loop at the point's concurrency (a replica
    then runs at its closed-loop rate); a percentile target on Poisson arrivals, each replica loaded
    no more than :meth:`Grid.max_load` allows (at most :data:`OPEN_LOOP_MAX_LOAD` of its closed-loop
    rate, whose TPOT is the one checked)."""
    meets = grid.ok & (grid.tpot_s <= d.tpot_s)
    if d.ttft_percentile is None:
        meets &= grid.ttft_s <= d.ttft_s
        usable = np.ones(len(grid.concurrency))
    else:
        usable = grid.max_load(d.ttft_s, d.ttft_percentile, where=meets)
        meets &= usable > 0.0
    if not meets.any():
        return None
    capacity = grid.requests_per_s * usable
    replicas = np.where(meets, np.ceil(d.requests_per_s / np.maximum(capacity, 1e-12)), np.inf)
    replicas = np.maximum(replicas, 1.0)
    gpus = replicas * grid.gpus
    systems = np.ceil(gpus / float(np.asarray(hw.system_gpus)))
    order = np.lexsort((-grid.tokens_per_s_per_gpu, systems, gpus))
    i = int(order[0])
    total = int(gpus[i])
    load = d.requests_per_s / (replicas[i] * grid.requests_per_s[i])  # share of replica capacity used at peak
    tps_gpu = float(grid.tokens_per_s_per_gpu[i] * load)
    power = total * _power_per_gpu(hw)
    point = grid.subset(np.array([i]))
    tails = {p: float(open_loop_ttft(point, load, p)[0]) for p in _percentiles(d)}
    return CapacityPlan(
        mode="aggregated", config=grid.lay.describe(i), gpus=total, systems=int(systems[i]),
        replicas=int(replicas[i]), gpus_per_replica=int(grid.gpus[i]),
        concurrency_per_replica=float(grid.concurrency[i]),
        ttft_s=float(grid.ttft_s[i]), tpot_s=float(grid.tpot_s[i]), output_tokens_per_s_per_gpu=tps_gpu,
        tokens_per_s_per_user=float(grid.tokens_per_s_per_user[i]), power_w=power,
        output_tokens_per_s_per_mw=d.requests_per_s * d.osl / (power / 1e6), ttft_percentiles_s=tails,
    )


def _decode_grid(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, lay: Layouts, isl: float, osl: float,
    draft_tokens: float = 0.0, acceptance: float = 0.0,
) -> tuple[Parallel, Array, Array, BoolArray]:
    """(parallelism, batch, decode time per output token, fits) of every layout at every batch of the
    grid (layout-major, ``len(CONCURRENCY_GRID)`` batches each), iterations without prompts (with
    speculative decoding an iteration yields :func:`tokens_per_step` tokens)."""
    par = lay.repeat(len(CONCURRENCY_GRID)).par()
    batch = np.tile(CONCURRENCY_GRID, len(lay))
    pp = np.asarray(par.pp, dtype=float)
    t_dec = np.asarray(decode_iteration(s, hw, par, prec, k, seqs=batch / pp, ctx=isl + osl / 2.0,
                                        draft_tokens=draft_tokens)) * pp * iterations_per_token(osl, draft_tokens,
                                                                                                 acceptance)
    mem = memory(s, hw, par, prec, k, isl, osl)
    ok = np.asarray(mem.fits, dtype=bool) & (batch <= np.asarray(mem.max_concurrency))
    return par, batch, t_dec, ok


def _decode_pool(d: Demand, tab: DisaggTables) -> tuple[float, int, float, float]:
    """(GPUs, layout index, batch, TPOT) of the smallest decode pool meeting the TPOT target."""
    par, batch, t_dec, fits = tab.decode
    ok = fits & (t_dec <= d.tpot_s)
    replicas = np.maximum(np.ceil(d.requests_per_s * d.osl * t_dec / batch), 1.0)
    gpus = np.where(ok, replicas * np.asarray(par.gpus(), dtype=float), np.inf)
    i = int(np.argmin(gpus))
    return float(gpus[i]), i // len(CONCURRENCY_GRID), float(batch[i]), float(t_dec[i])


def _prefill_replica(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, lay: Layouts, isl: float, prefix: float = 0.0
) -> tuple[Array, Callable[[FloatOrArray], Array], Array, BoolArray]:
    """(prompts of a full pass, pass time as a function of the prompts, KV transfer time, fits) of
    each layout as a prefill replica: a full pass is the token budget's worth of new (not cached)
    prompt tokens on each attention-DP rank; the whole prompt's KV cache crosses the scale-out
    network to the decode pool."""
    par = lay.par()
    pp = np.asarray(par.pp, dtype=float)
    cached = float(cached_prompt(prefix, isl))
    new = isl - cached
    full = np.maximum(np.floor(k.token_budget / new), 1.0) * np.asarray(par.dp, dtype=float)

    def t_pass(b: FloatOrArray) -> Array:
        t = iteration(s, hw, par, prec, k, decode_seqs=0.0, ctx=isl, prompts=b, prompt_len=new,
                      prompt_prefix=cached).total
        return np.asarray(np.asarray(t, dtype=np.float64) * pp, dtype=np.float64)

    transfer = np.asarray(kv_bytes_per_sequence_per_gpu(s, par, prec.kv, isl)) / np.asarray(hw.nic_bytes_s)
    fits = np.asarray(memory(s, hw, par, prec, k, isl, 1.0).fits, dtype=bool)
    return full, t_pass, np.asarray(transfer, dtype=np.float64), fits


@dataclass(frozen=True)
class DisaggTables:
    """What disaggregated sizing reads that no demand rate or target changes, computed once for the
    plans of one workload (the plan, its error-band edges, the frontier): every layout's decode time
    per output token at every batch of the grid (:func:`_decode_grid`) and every layout as a prefill
    replica (:func:`_prefill_replica`; its pass times remembered by batch)."""

    decode: tuple[Parallel, Array, Array, BoolArray]  # parallelism, batch, time per output token, fits
    full: Array  # prompts of a full prefill pass
    t_pass: Callable[[FloatOrArray], Array]
    transfer: Array  # KV transfer time of one prompt
    prefill_fits: BoolArray


def disagg_tables(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, lay: Layouts, isl: float, osl: float,
    prefix: float = 0.0, draft_tokens: float = 0.0, acceptance: float = 0.0,
) -> DisaggTables:
    """The :class:`DisaggTables` of ``lay`` at these lengths."""
    full, t_pass, transfer, fits = _prefill_replica(s, hw, prec, k, lay, isl, prefix)
    seen: dict[tuple[bytes, tuple[int, ...]], Array] = {}

    def remembered(b: FloatOrArray) -> Array:
        arr = np.asarray(b, dtype=float)
        key = (arr.tobytes(), arr.shape)
        if key not in seen:
            seen[key] = t_pass(arr)
        return seen[key]

    return DisaggTables(decode=_decode_grid(s, hw, prec, k, lay, isl, osl, draft_tokens, acceptance), full=full,
                        t_pass=remembered, transfer=transfer, prefill_fits=fits)


def _prefill_pool(
    k: Constants, lay: Layouts, d: Demand, tab: DisaggTables
) -> tuple[float, int, float, dict[float, float]]:
    """(GPUs, layout index, mean TTFT, TTFT percentiles) of the smallest prefill pool meeting the TTFT
    target (the mean, or at the demand's percentile).

    A pass carries up to ``B`` prompts (the token budget's worth on each attention-DP rank), ``t_p(b)``
    for ``b``; a pool is sized so that its replicas are ``u`` busy against full passes,
    ``n = λ·t_p(B)/(B·u)``, and a prompt's pass and wait are :func:`prefill_queue`'s at ``λ/n``.
    TTFT adds the engine's per-request latency, as aggregated serving does, and the KV cache
    crossing the scale-out network to the decode pool.
    """
    full, t_pass, transfer, fits = tab.full, tab.t_pass, tab.transfer, tab.prefill_fits
    loads = DISAGG_PREFILL_UTILIZATION if d.isl_cv <= 0.0 else DISAGG_PREFILL_UTILIZATION[
        DISAGG_PREFILL_UTILIZATION <= VARIED_MAX_LOAD]
    u = loads[:, None]
    replicas = np.maximum(np.ceil(d.requests_per_s * t_pass(full) / (full * u)), 1.0)
    rate = d.requests_per_s / replicas

    def ttft_at(percentile: float | None, at: Array = rate) -> Array:
        t_p, wait = prefill_queue(t_pass, full, at, percentile, d.isl_cv)
        return np.asarray(k.request_overhead_s + t_p + wait + transfer, dtype=np.float64)

    ttft = ttft_at(None)
    checked = ttft if d.ttft_percentile is None else ttft_at(d.ttft_percentile)
    gpus = np.where(fits & (checked <= d.ttft_s), replicas * np.asarray(lay.par().gpus(), dtype=float), np.inf)
    flat = int(np.argmin(gpus))
    ui, li = divmod(flat, len(lay))
    if not math.isfinite(float(gpus[ui, li])):
        return math.inf, li, float(ttft[ui, li]), {}
    tails = {p: float(ttft_at(p, rate[ui:ui + 1])[0, li]) for p in _percentiles(d)}  # the chosen load's row
    return float(gpus[ui, li]), li, float(ttft[ui, li]), tails


# where the gated batch is looked for: b = 1 + (B - 1)·q (one vectorized call tabulates the passes)
_BATCH_FRACTIONS = np.array([0.0, 1 / 128, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 3 / 8, 1 / 2, 3 / 4, 1.0])


def prefill_queue(
    t_pass: Callable[[FloatOrArray], Array], full: FloatOrArray, rate: FloatOrArray, percentile: float | None = None,
    isl_cv: float = 0.0,
) -> tuple[Array, Array]:
    """(pass time, wait before the pass) of one prefill replica under Poisson arrivals of ``rate``
    prompts/s, each pass taking the prompts that arrived during the last one, up to ``full``: the
    batch is ``b = rate·t_p(b)`` (at least 1, at most ``full``), the replica busy ``ρ = rate·t_p(b)/b``
    of the time, the mean wait :func:`~factoryplan.perf.serving.batched_prefill_wait`; with
    ``percentile`` the wait that share of the prompts does not exceed instead
    (:func:`~factoryplan.perf.serving.exponential_wait_quantile` of that mean and ``ρ``). Prompts whose
    lengths vary (``isl_cv``) make passes vary as the sum of their ``b`` prompts' lengths does
    (coefficient of variation ``CV/√b``): they wait ``1 + CV²/b`` times as long on average
    (Pollaczek-Khinchine), and a percentile is that of the pass (its part beyond a pass without
    prompt tokens) and the wait together, the wait's tail exponential
    (:func:`~factoryplan.perf.serving.length_sum_quantile`); the wait returned is that percentile
    less the mean pass.
    ``t_pass`` is tabulated once at a few batch sizes (its leading axis) and the fixed point solved
    on the table (piecewise linear between them).
    """
    lam = np.asarray(rate, dtype=float)
    big = np.asarray(full, dtype=float)
    q = _BATCH_FRACTIONS.reshape((-1,) + (1,) * big.ndim)
    table = np.asarray(t_pass(1.0 + (big - 1.0) * q), dtype=float)  # (fractions, *shape of full)
    shape = np.broadcast(lam, table[0]).shape
    k = len(_BATCH_FRACTIONS)
    rows = np.broadcast_to(table.reshape(k, *(1,) * (len(shape) - table.ndim + 1), *table.shape[1:]), (k, *shape))
    top = np.broadcast_to(big, shape)
    span = np.maximum(top - 1.0, 1e-9)

    def at(b: Array) -> Array:
        x = np.clip((b - 1.0) / span, 0.0, 1.0)
        i = np.clip(np.searchsorted(_BATCH_FRACTIONS, x, side="right") - 1, 0, len(_BATCH_FRACTIONS) - 2)
        lo, hi = _BATCH_FRACTIONS[i], _BATCH_FRACTIONS[i + 1]
        t_lo = np.take_along_axis(rows, i[None], axis=0)[0]
        t_hi = np.take_along_axis(rows, i[None] + 1, axis=0)[0]
        return np.asarray(t_lo + (t_hi - t_lo) * (x - lo) / (hi - lo), dtype=np.float64)

    lam_b = np.broadcast_to(lam, shape)
    # the gated batch: the smallest b >= 1 with b = rate·t_p(b) (what an iteration from b = 1 reaches),
    # exact on each linear piece; one prompt when fewer than one arrives during a lone pass, full passes
    # when arrivals outrun every batch
    b_k = 1.0 + span * _BATCH_FRACTIONS.reshape((-1,) + (1,) * len(shape))
    slope = np.diff(rows, axis=0) / np.maximum(np.diff(b_k, axis=0), 1e-12)
    denom = 1.0 - lam_b * slope
    with np.errstate(divide="ignore", invalid="ignore"):
        cand = lam_b * (rows[:-1] - slope * b_k[:-1]) / denom
    valid = (denom > 0) & (cand >= b_k[:-1] - 1e-9) & (cand <= b_k[1:] + 1e-9)
    first = np.min(np.where(valid, cand, np.inf), axis=0)
    b = np.where(lam_b * rows[0] <= 1.0, 1.0, np.where(np.isfinite(first), first, top))
    b = np.clip(b, 1.0, top)
    t_p = at(b)
    rho = np.minimum(lam_b * t_p / b, 1.0)
    cv = isl_cv / np.sqrt(b)  # a pass's length: the sum of its b prompts'
    wait = batched_prefill_wait(t_p, rows[-1], rho, lam_b * rows[-1] / top, top) * (1.0 + cv**2)
    if percentile is None:
        return t_p, wait
    if isl_cv <= 0.0:
        return t_p, exponential_wait_quantile(wait, rho, percentile)
    busy = np.clip(rho, 1e-9, 1.0)
    tail = (busy, busy, busy / np.maximum(wait, 1e-12))  # P(W > w) = ρ·e^{-ρw/W}
    fixed = np.minimum(np.asarray(t_pass(np.zeros_like(np.asarray(big, dtype=float))), dtype=float), t_p)
    return t_p, fixed + length_sum_quantile(t_p - fixed, tail, cv, percentile) - t_p


def _disaggregated(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, lay: Layouts, d: Demand,
    tables: DisaggTables | None = None,
) -> CapacityPlan | None:
    """The smallest prefill pool plus the smallest decode pool (the pools are independent)."""
    tab = tables if tables is not None else disagg_tables(s, hw, prec, k, lay, d.isl, d.osl, d.prefix,
                                                          d.draft_tokens, d.acceptance)
    d_gpus, di, batch, tpot = _decode_pool(d, tab)
    p_gpus, pi, ttft, tails = _prefill_pool(k, lay, d, tab)
    if not (math.isfinite(d_gpus) and math.isfinite(p_gpus)):
        return None
    total = int(d_gpus + p_gpus)
    power = total * _power_per_gpu(hw)
    gpr = int(np.asarray(lay.par().gpus())[di])
    return CapacityPlan(
        mode="disaggregated", config=f"prefill {lay.describe(pi)} / decode {lay.describe(di)}", gpus=total,
        systems=math.ceil(total / float(np.asarray(hw.system_gpus))), replicas=int(d_gpus) // gpr,
        gpus_per_replica=gpr, concurrency_per_replica=batch, ttft_s=ttft, tpot_s=tpot,
        output_tokens_per_s_per_gpu=d.requests_per_s * d.osl / total, tokens_per_s_per_user=1.0 / tpot,
        power_w=power, output_tokens_per_s_per_mw=d.requests_per_s * d.osl / (power / 1e6),
        prefill_gpus=int(p_gpus), decode_gpus=int(d_gpus), ttft_percentiles_s=tails,
    )


def min_gpus_to_fit(s: ModelShape, hw: Hardware, prec: Precision, k: Constants) -> int:
    """Fewest GPUs (a power of two, tensor parallel inside the scale-up domain, then pipeline
    stages; a MoE model's experts split over the same GPUs by expert parallelism) whose memory holds
    the weights with room for one sequence of 1,024 tokens."""
    for g in _powers_of_two(4096):
        tp = min(g, float(np.asarray(hw.domain)))
        ep = tp if s.moe_layers else 1.0
        par = Parallel(tp=tp, ep=ep, pp=max(1.0, g / float(np.asarray(hw.domain))))
        if bool(np.asarray(memory(s, hw, par, prec, k, 1024.0, 0.0).fits)):
            return g
    return 8192


def plan_capacity(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, d: Demand, *,
    modes: tuple[str, ...] = ("aggregated", "disaggregated"), lay: Layouts | None = None, max_pp: int = 8,
    grid: Grid | None = None, tables: DisaggTables | None = None,
) -> CapacityPlan:
    """The fewest-GPU deployment of ``s`` on ``hw`` meeting ``d`` among ``modes`` (and the given
    layouts, default all of :func:`layouts`; ``grid`` and ``tables``: their :func:`evaluate_grid` and
    :func:`disagg_tables` at ``d``'s lengths when the caller has them). InfeasibleError names the best
    latencies reachable when nothing meets the targets, or the GPUs the model needs when it fits
    nowhere."""
    lay = lay if lay is not None else layouts(s, int(np.asarray(hw.domain)), max_pp)
    grid = grid if grid is not None else evaluate_grid(s, hw, prec, k, lay, d.isl, d.osl, prefix=d.prefix,
                                                       draft_tokens=d.draft_tokens, acceptance=d.acceptance,
                                                       isl_cv=d.isl_cv)
    if not grid.ok.any():
        need = min_gpus_to_fit(s, hw, prec, k)
        raise InfeasibleError(
            f"{s.name} does not fit these layouts of {hw.name} at {prec.weights}", field="model", value=s.name,
            allowed=f"needs >= {need} x {hw.name.split('/')[0]} at {prec.weights}",
        )
    agg = _aggregated(grid, d, hw) if "aggregated" in modes else None
    dis = _disaggregated(s, hw, prec, k, lay, d, tables) if "disaggregated" in modes else None
    plans = [p for p in (agg, dis) if p is not None]
    if not plans:
        best_ttft = float(np.min(grid.reachable_ttft(d.ttft_percentile)[grid.ok])) * 1e3
        best_tpot = float(np.min(grid.tpot_s[grid.ok])) * 1e3
        which = "" if d.ttft_percentile is None else f" (P{d.ttft_percentile:g})"
        raise InfeasibleError(
            f"no layout of {s.name} on {hw.name} meets TTFT{which} {d.ttft_s * 1e3:g} ms and TPOT "
            f"{d.tpot_s * 1e3:g} ms", field="sla",
            allowed=f"best reachable: TTFT{which} {best_ttft:.0f} ms, TPOT {best_tpot:.1f} ms",
        )
    best = min(plans, key=lambda p: (p.gpus, p.systems, -p.output_tokens_per_s_per_gpu))
    return replace(best, alternatives={p.mode: p.gpus for p in plans})


def band_gpus(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, d: Demand, tpot_ratio: tuple[float, float],
    throughput_ratio: tuple[float, float], *, modes: tuple[str, ...] = ("aggregated", "disaggregated"),
    lay: Layouts | None = None, grid: Grid | None = None, tables: DisaggTables | None = None,
) -> tuple[int | None, int | None]:
    """The GPUs :func:`plan_capacity` needs if the engine runs at the two edges of its error band:
    every layout's TPOT at ``tpot_ratio[0]`` and its throughput at ``throughput_ratio[1]`` of the
    prediction (the fast edge), then at ``tpot_ratio[1]`` and ``throughput_ratio[0]`` (the slow edge).
    A layout whose TPOT is ``r`` times the prediction meets a target ``T`` when its prediction meets
    ``T/r``; one serving ``q`` times the predicted requests/s needs ``1/q`` times the replicas: the
    demand is scaled, not the grid. TTFT keeps its prediction. None where no layout meets the targets
    at that edge."""
    out: list[int | None] = []
    for tpot_r, thr_r in ((tpot_ratio[0], throughput_ratio[1]), (tpot_ratio[1], throughput_ratio[0])):
        edge = replace(d, tpot_s=d.tpot_s / tpot_r, requests_per_s=d.requests_per_s / thr_r)
        try:
            out.append(plan_capacity(s, hw, prec, k, edge, modes=modes, lay=lay, grid=grid, tables=tables).gpus)
        except InfeasibleError as exc:
            if exc.field != "sla":
                raise
            out.append(None)
    return out[0], out[1]


def _non_dominated(x: Array, y: Array) -> Array:
    """Indices of the points no other point beats on both ``x`` and ``y``, by falling ``x``."""
    order = np.lexsort((-y, -x))  # fastest per user first, then highest per GPU
    ys = y[order]
    best_before = np.concatenate([[-np.inf], np.maximum.accumulate(ys)[:-1]])
    return np.asarray(order[ys > best_before])


def _frontier(
    x: Array, y: Array, ok: BoolArray, hw: Hardware, fields: Callable[[int], dict[str, float]]
) -> list[dict[str, float]]:
    """The non-dominated points among ``ok`` of (``x`` tokens/s per user, ``y`` tokens/s per GPU), by
    rising speed, each with tokens/s per MW of system power and ``fields(i)`` of its index."""
    idx = np.flatnonzero(ok)
    per_gpu_w = _power_per_gpu(hw)
    out = []
    for o in _non_dominated(x[ok], y[ok]):
        i = int(idx[o])
        out.append({"tokens_per_s_per_user": float(x[i]), "tokens_per_s_per_gpu": float(y[i]),
                    "tokens_per_s_per_mw": float(y[i] / per_gpu_w * 1e6), **fields(i)})
    return sorted(out, key=lambda p: p["tokens_per_s_per_user"])


def pareto_frontier(grid: Grid, hw: Hardware) -> list[dict[str, float]]:
    """Non-dominated (tokens/s per user, tokens/s per GPU) points of the grid, by rising speed.

    Each point: ``tokens_per_s_per_user``, ``tokens_per_s_per_gpu``, ``tokens_per_s_per_mw``
    (per MW of system power), ``concurrency``, ``gpus``, ``ttft_ms``, ``tpot_ms``.
    """
    return _frontier(grid.tokens_per_s_per_user, grid.tokens_per_s_per_gpu, grid.ok, hw, lambda i: {
        "concurrency": float(grid.concurrency[i]), "gpus": float(grid.gpus[i]),
        "ttft_ms": float(grid.ttft_s[i] * 1e3), "tpot_ms": float(grid.tpot_s[i] * 1e3)})


def disaggregated_frontier(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, lay: Layouts, isl: float, osl: float,
    prefill_load: float = FRONTIER_PREFILL_LOAD, prefix: float = 0.0, draft_tokens: float = 0.0,
    acceptance: float = 0.0, tables: DisaggTables | None = None, isl_cv: float = 0.0,
) -> list[dict[str, float]]:
    """Non-dominated (tokens/s per user, tokens/s per GPU) points of disaggregated serving, by rising
    speed: every decode layout at every batch of the grid, fed by the prefill layout that needs the
    fewest GPUs per request/s with its replicas ``prefill_load`` busy against full passes.

    The pools are sized continuously (GPUs per request/s of each), so a point is the steady rate of
    a deployment large enough for whole replicas not to matter. Each point: as
    :func:`pareto_frontier` (``concurrency`` and ``gpus`` of one decode replica), plus
    ``prefill_gpus`` of one prefill replica and ``prefill_to_decode_gpus``; TTFT is the prefill
    replica's at that load (:func:`prefill_queue`) with the engine's per-request latency and the KV
    transfer, TPOT one decode iteration of the batch.
    """
    tab = tables if tables is not None else disagg_tables(s, hw, prec, k, lay, isl, osl, prefix, draft_tokens,
                                                          acceptance)
    full, t_pass, transfer, fits_p = tab.full, tab.t_pass, tab.transfer, tab.prefill_fits
    t_full = t_pass(full)
    g = np.asarray(lay.par().gpus(), dtype=float)
    per_rate_p = np.where(fits_p, g * t_full / (prefill_load * full), np.inf)  # prefill GPUs per request/s
    j = int(np.argmin(per_rate_p))
    if not math.isfinite(per_rate_p[j]):
        return []
    t_p, wait = prefill_queue(t_pass, full, prefill_load * full / t_full, isl_cv=isl_cv)
    ttft = k.request_overhead_s + float(t_p[j] + wait[j] + transfer[j])
    dpar, batch, t_dec, ok = tab.decode
    gd = np.asarray(dpar.gpus(), dtype=float)
    per_rate_d = gd * osl * t_dec / batch  # decode GPUs per request/s
    return _frontier(1.0 / t_dec, osl / (per_rate_d + per_rate_p[j]), ok, hw, lambda i: {
        "concurrency": float(batch[i]), "gpus": float(gd[i]), "prefill_gpus": float(g[j]),
        "prefill_to_decode_gpus": float(per_rate_p[j] / per_rate_d[i]), "ttft_ms": ttft * 1e3,
        "tpot_ms": float(t_dec[i] * 1e3)})


def ttft_percentile_fields(plan: CapacityPlan) -> dict[str, float]:
    """``ttft_p90_ms`` style figures of a plan's TTFT percentiles under Poisson arrivals at its peak."""
    return {f"ttft_p{p:g}_ms": v * 1e3 for p, v in sorted(plan.ttft_percentiles_s.items())}


@dataclass(frozen=True)
class Sized:
    """An inference workload sized for a plan: figures, the frontier and any warnings."""

    gpus: int
    details: dict[str, float | int | str]
    frontier: list[dict[str, float]]  # aggregated serving
    warnings: list[str]
    frontier_disaggregated: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Planned:
    """A demand planned with everything its reports show: the plan, the targets it was planned for
    (the demand's, or the best reachable), its GPUs at the error band's edges and both frontiers."""

    plan: CapacityPlan
    target: Demand
    gpus_band: tuple[int | None, int | None] | None  # :func:`band_gpus`; None without a band
    frontier: list[dict[str, float]]  # aggregated serving
    frontier_disaggregated: list[dict[str, float]]


def plan_demand(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, d: Demand, *, lay: Layouts | None = None,
    modes: tuple[str, ...] = ("aggregated", "disaggregated"), band: ErrorBand | None = None, relax: bool = False,
) -> Planned:
    """:func:`plan_capacity` over ``lay`` (default all :func:`layouts`) with the grid and tables its
    band edges and frontiers share. ``relax``: when no layout meets both targets, plan for the fastest
    layouts' latencies (the best reachable, 5% slack) instead of raising."""
    lay = lay if lay is not None else layouts(s, int(np.asarray(hw.domain)))
    grid = evaluate_grid(s, hw, prec, k, lay, d.isl, d.osl, prefix=d.prefix, draft_tokens=d.draft_tokens,
                         acceptance=d.acceptance, isl_cv=d.isl_cv)
    tables = disagg_tables(s, hw, prec, k, lay, d.isl, d.osl, d.prefix, d.draft_tokens, d.acceptance)
    target = d
    try:
        plan = plan_capacity(s, hw, prec, k, d, modes=modes, lay=lay, grid=grid, tables=tables)
    except InfeasibleError as exc:
        if not relax or exc.field != "sla":
            raise
        best_tpot = float(np.min(grid.tpot_s[grid.ok]))
        ttft_at = float(np.min(grid.reachable_ttft(d.ttft_percentile)[grid.ok & (grid.tpot_s <= best_tpot * 1.05)]))
        target = replace(d, ttft_s=max(d.ttft_s, ttft_at * 1.05), tpot_s=max(d.tpot_s, best_tpot * 1.05))
        plan = plan_capacity(s, hw, prec, k, target, modes=modes, lay=lay, grid=grid, tables=tables)
    gpus_band = None if band is None else band_gpus(s, hw, prec, k, target, band.tpot, band.throughput,
                                                    modes=modes, lay=lay, grid=grid, tables=tables)
    return Planned(plan=plan, target=target, gpus_band=gpus_band, frontier=pareto_frontier(grid, hw),
                   frontier_disaggregated=disaggregated_frontier(s, hw, prec, k, lay, d.isl, d.osl, tables=tables,
                                                                         isl_cv=d.isl_cv))


def size_inference(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, d: Demand, *, backend: str,
    band: ErrorBand | None = None,
) -> Sized:
    """The fewest GPUs serving ``d`` (the plan's inference sizing).

    When no layout meets both targets the plan keeps the fastest layouts' latencies as targets
    (the best reachable, 5% slack) and says so in a warning; a model that fits nowhere raises.
    ``band``: the engine's error band; the details then give ``gpus_low`` and ``gpus_high``, the
    GPUs at its two edges (:func:`band_gpus`; ``gpus_high`` absent, with a warning, where no layout
    meets the targets at the slow edge).
    """
    warnings: list[str] = []
    planned = plan_demand(s, hw, prec, k, d, band=band, relax=True)
    plan = planned.plan
    if planned.target is not d:
        which = "" if d.ttft_percentile is None else f" (P{d.ttft_percentile:g})"
        reached = plan.ttft_s if d.ttft_percentile is None else plan.ttft_percentiles_s[d.ttft_percentile]
        warnings.append(
            f"TTFT{which} {d.ttft_s * 1e3:g} ms / TPOT {d.tpot_s * 1e3:g} ms unreachable on {hw.name}; "
            f"planned at TTFT{which} {reached * 1e3:.0f} ms, TPOT {plan.tpot_s * 1e3:.1f} ms"
        )
    details: dict[str, float | int | str] = {
        "mode": plan.mode, "config": plan.config, "backend": backend, "replicas": plan.replicas,
        "gpus_per_replica": plan.gpus_per_replica, "concurrency_per_replica": plan.concurrency_per_replica,
        "peak_requests_per_s": d.requests_per_s, "cached_prompt_tokens": int(d.prefix),
        "draft_tokens": int(d.draft_tokens), "tokens_per_step": float(tokens_per_step(d.draft_tokens, d.acceptance)),
        "ttft_ms": plan.ttft_s * 1e3, "tpot_ms": plan.tpot_s * 1e3,
        "tokens_per_s_per_user": plan.tokens_per_s_per_user,
        "output_tokens_per_s_per_gpu": plan.output_tokens_per_s_per_gpu,
        "output_tokens_per_s_per_mw": plan.output_tokens_per_s_per_mw, "kv_precision": prec.kv,
        "activation_precision": prec.activation_format(),
        "method": (
            f"inference engine ({backend} profile): roofline step time with calibrated efficiencies, "
            f"in-flight batching, fewest GPUs meeting TTFT/TPOT at peak ({plan.mode})"
        ),
    }
    if d.ttft_percentile is not None:
        details["ttft_percentile"] = d.ttft_percentile
    if d.isl_cv > 0:
        details["input_tokens_cv"] = d.isl_cv
    details |= ttft_percentile_fields(plan)
    if plan.mode == "disaggregated":
        details["prefill_gpus"] = plan.prefill_gpus
        details["decode_gpus"] = plan.decode_gpus
    if band is not None and planned.gpus_band is not None:
        lo, hi = planned.gpus_band
        if lo is not None:
            details["gpus_low"] = lo
        if hi is not None:
            details["gpus_high"] = hi
        else:
            warnings.append(f"if TPOT runs x{band.tpot[1]:.2f} of the prediction (the slow edge of the {backend} "
                            f"error band) no layout on {hw.name} meets the targets")
    return Sized(gpus=plan.gpus, details=details, frontier=planned.frontier, warnings=warnings,
                 frontier_disaggregated=planned.frontier_disaggregated)
