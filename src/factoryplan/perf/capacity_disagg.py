"""Disaggregated serving capacity: a prefill pool and a decode pool, each with its own best layout.

A prefill pool's replicas batch the prompts that arrive during a pass and are busy enough for the
wait to keep TTFT within target (:func:`prefill_queue`, for open-loop Poisson arrivals, the form
:func:`factoryplan.perf.serving.closed_loop_disaggregated` uses, checked against an event-by-event
simulation, ``benchmarks/disagg_sim.py``); a decode pool's batch keeps TPOT within target (no
prefill interference). The pools are independent: the plan is the smallest of each.
:func:`disaggregated_frontier` gives the Pareto frontier of such deployments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from factoryplan.perf.capacity_grid import (
    CONCURRENCY_GRID,
    VARIED_MAX_LOAD,
    CapacityPlan,
    Demand,
    Layouts,
    frontier_points,
    plan_percentiles,
    power_per_gpu,
)
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
)
from factoryplan.perf.queueing import batched_prefill_wait, exponential_wait_quantile, length_sum_quantile
from factoryplan.perf.serving import cached_prompt, decode_iteration, iterations_per_token, memory

DISAGG_PREFILL_UTILIZATION = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
# The disaggregated frontier's prefill load against full passes: a prompt then waits about one pass
# (batched_prefill_wait: 1.2 passes with one prompt a pass, 0.7 with four).
FRONTIER_PREFILL_LOAD = 0.7


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
    tails = {p: float(ttft_at(p, rate[ui:ui + 1])[0, li]) for p in plan_percentiles(d)}  # the chosen load's row
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


def disaggregated(
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
    power = total * power_per_gpu(hw)
    gpr = int(np.asarray(lay.par().gpus())[di])
    return CapacityPlan(
        mode="disaggregated", config=f"prefill {lay.describe(pi)} / decode {lay.describe(di)}", gpus=total,
        systems=math.ceil(total / float(np.asarray(hw.system_gpus))), replicas=int(d_gpus) // gpr,
        gpus_per_replica=gpr, concurrency_per_replica=batch, ttft_s=ttft, tpot_s=tpot,
        output_tokens_per_s_per_gpu=d.requests_per_s * d.osl / total, tokens_per_s_per_user=1.0 / tpot,
        power_w=power, output_tokens_per_s_per_mw=d.requests_per_s * d.osl / (power / 1e6),
        prefill_gpus=int(p_gpus), decode_gpus=int(d_gpus), ttft_percentiles_s=tails,
    )


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
    return frontier_points(1.0 / t_dec, osl / (per_rate_d + per_rate_p[j]), ok, hw, lambda i: {
        "concurrency": float(batch[i]), "gpus": float(gd[i]), "prefill_gpus": float(g[j]),
        "prefill_to_decode_gpus": float(per_rate_p[j] / per_rate_d[i]), "ttft_ms": ttft * 1e3,
        "tpot_ms": float(t_dec[i] * 1e3)})
