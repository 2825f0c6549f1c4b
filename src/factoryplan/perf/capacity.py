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

This module plans (aggregated serving, the choice between modes, a workload's sizing); the demand,
layouts, grid and plan record are in :mod:`factoryplan.perf.capacity_grid`, the disaggregated pools
in :mod:`factoryplan.perf.capacity_disagg` (both re-exported here).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from factoryplan.errors import InfeasibleError
from factoryplan.perf.capacity_disagg import (
    DisaggTables,
    disagg_tables,
    disaggregated,
    disaggregated_frontier,
    prefill_queue,
)
from factoryplan.perf.capacity_grid import (
    CONCURRENCY_GRID,
    OPEN_LOOP_MAX_LOAD,
    VARIED_MAX_LOAD,
    CapacityPlan,
    Demand,
    Grid,
    Layouts,
    evaluate_grid,
    frontier_points,
    layouts,
    plan_percentiles,
    power_per_gpu,
    powers_of_two,
)
from factoryplan.perf.inference import Constants, Hardware, ModelShape, Parallel, Precision
from factoryplan.perf.inference_constants import ErrorBand
from factoryplan.perf.serving import memory, open_loop_ttft, tokens_per_step

__all__ = [
    "CONCURRENCY_GRID", "OPEN_LOOP_MAX_LOAD", "VARIED_MAX_LOAD", "CapacityPlan", "Demand", "DisaggTables", "Grid",
    "Layouts", "Planned", "Sized", "band_gpus", "disagg_tables", "disaggregated_frontier", "evaluate_grid",
    "layouts", "min_gpus_to_fit", "pareto_frontier", "plan_capacity", "plan_demand", "prefill_queue",
    "size_inference", "ttft_percentile_fields",
]


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
    power = total * power_per_gpu(hw)
    point = grid.subset(np.array([i]))
    tails = {p: float(open_loop_ttft(point, load, p)[0]) for p in plan_percentiles(d)}
    return CapacityPlan(
        mode="aggregated", config=grid.lay.describe(i), gpus=total, systems=int(systems[i]),
        replicas=int(replicas[i]), gpus_per_replica=int(grid.gpus[i]),
        concurrency_per_replica=float(grid.concurrency[i]),
        ttft_s=float(grid.ttft_s[i]), tpot_s=float(grid.tpot_s[i]), output_tokens_per_s_per_gpu=tps_gpu,
        tokens_per_s_per_user=float(grid.tokens_per_s_per_user[i]), power_w=power,
        output_tokens_per_s_per_mw=d.requests_per_s * d.osl / (power / 1e6), ttft_percentiles_s=tails,
    )


def min_gpus_to_fit(
    s: ModelShape, hw: Hardware, prec: Precision, k: Constants, isl: float = 1024.0, osl: float = 0.0
) -> int:
    """Fewest GPUs (a power of two, tensor parallel inside the scale-up domain, then pipeline
    stages; a MoE model's experts split over the same GPUs by expert parallelism) whose memory holds
    the weights with room for one sequence (``isl`` prompt and ``osl`` output tokens; default 1,024
    tokens)."""
    for g in powers_of_two(4096):
        tp = min(g, float(np.asarray(hw.domain)))
        ep = tp if s.moe_layers else 1.0
        par = Parallel(tp=tp, ep=ep, pp=max(1.0, g / float(np.asarray(hw.domain))))
        if bool(np.asarray(memory(s, hw, par, prec, k, isl, osl).fits)):
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
        need = min_gpus_to_fit(s, hw, prec, k, float(d.isl), float(d.osl))
        raise InfeasibleError(
            f"{s.name} does not fit these layouts of {hw.name} at {prec.label()}", field="model", value=s.name,
            allowed=f"needs >= {need} x {hw.name.split('/')[0]} at {prec.label()}",
        )
    agg = _aggregated(grid, d, hw) if "aggregated" in modes else None
    dis = disaggregated(s, hw, prec, k, lay, d, tables) if "disaggregated" in modes else None
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


def pareto_frontier(grid: Grid, hw: Hardware) -> list[dict[str, float]]:
    """Non-dominated (tokens/s per user, tokens/s per GPU) points of the grid, by rising speed.

    Each point: ``tokens_per_s_per_user``, ``tokens_per_s_per_gpu``, ``tokens_per_s_per_mw``
    (per MW of system power), ``concurrency``, ``gpus``, ``ttft_ms``, ``tpot_ms``.
    """
    return frontier_points(grid.tokens_per_s_per_user, grid.tokens_per_s_per_gpu, grid.ok, hw, lambda i: {
        "concurrency": float(grid.concurrency[i]), "gpus": float(grid.gpus[i]),
        "ttft_ms": float(grid.ttft_s[i] * 1e3), "tpot_ms": float(grid.tpot_s[i] * 1e3)})


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
