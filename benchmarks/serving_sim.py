"""Closed-form serving (``perf.serving.serve``) against an iteration-by-iteration simulation of the same engine.

``serve`` predicts TTFT and TPOT of closed-loop users with queueing approximations (prompt
iterations per cycle for arrivals spread uniformly, an M/D/1 wait scaled by each engine's
``prefill_queue_factor`` (derived here: the zero-jitter fit over loads <= 1), the first wave of
burst-started runs blended in with the fitted ``burst_share``).
``factoryplan.perf.serving_sim.simulate`` runs the same engine (the same step time, constants and KV
capacity) one iteration at a time, so the two differ only in those approximations. This script runs
both over a grid covering the calibration set's range and prints, per point, closed vs simulated
TTFT and TPOT; per regime (backend x steady/burst x concurrency) the mean and spread of
``log(closed/sim)``; the ``prefill_queue_factor`` and ``burst_share`` the simulations imply, against
the catalog's fitted values; and the points where the two differ most.

TTFT as compared (see ``serving_sim``'s docstring): both carry serve()'s ``t_req + f·t_dec``; the
``engine`` columns leave it out (serve()'s ``ttft - base`` against the simulated wait, queue and
own prompt iterations), which is where the queueing approximations live. ``n_p``: serve()'s
iterations per cycle carrying prompt chunks (steady state) against the simulation's. ``load``:
``c·ISL / (free·(OSL - 1))``, the prompt iterations a cycle needs per decode iteration (above 1 the
engine is prefill-bound). The implied ``prefill_queue_factor`` is fitted (least squares on
``log(closed/sim)`` over a grid of values: serve() waits at the busy share the loop reaches, so its
TTFT is not linear in it) to the simulated steady-state TTFT; the implied
``burst_share`` to the simulated burst TTFT and TPOT (linear in it) and, inside the simulation,
as ``(burst - steady)/(first wave - steady)`` (``1/requests_per_user`` if only the first wave queued).
``--jitter`` draws each request's latency within ``±jitter`` of its mean (0: deterministic);
``--warmup`` sets the steady-state cycles discarded.

Grid: llama-3.1-8b, llama-3.1-70b, qwen3-32b, qwen3-235b-a22b (MoE) at FP8 on h100-sxm and h200-sxm;
trtllm, vllm, sglang; TP 1, 2, 4, 8 where the weights fit; ISL 1024/4096/8192; OSL 128/1024;
C 4/16/64/256; steady state and burst (``--requests-per-user`` each). ``--points N`` draws N grid
points (stratified over backend x concurrency, fixed seed); ``--points 0`` runs the whole grid.

Run by hand (the whole grid, 2,072 points x steady and burst, about 80 s on two cores per jitter level):

    .venv/bin/python benchmarks/serving_sim.py [--points 240] [--jitter 0 0.5 1] [--warmup 10]
                                               [--csv out.csv] [--no-points]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.perf.inference import (
    Constants,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    constants_from_catalog,
    hardware_of,
    shape_of,
)
from factoryplan.perf.serving import _prefill_passes, memory, serve
from factoryplan.perf.serving_sim import StepTable, simulate

MODELS = ("llama-3.1-8b", "llama-3.1-70b", "qwen3-32b", "qwen3-235b-a22b")
ACCELERATORS = ("h100-sxm", "h200-sxm")
BACKENDS = ("trtllm", "vllm", "sglang")
TPS = (1, 2, 4, 8)
ISLS = (1024, 4096, 8192)
OSLS = (128, 1024)
CONCURRENCIES = (4, 16, 64, 256)


@dataclass(frozen=True)
class Case:
    model: str
    accelerator: str
    backend: str
    tp: int
    isl: int
    osl: int
    concurrency: int


# prefill_queue_factor values the steady-state fit searches
FACTORS = np.round(np.arange(0.0, 10.0 + 1e-9, 0.01), 2)


@dataclass(frozen=True)
class Row:
    """One grid point, one mode: closed form, the linear dependence on the fitted factors, the simulation."""

    case: Case
    burst: bool
    jitter: float
    closed_ttft: float
    closed_tpot: float
    closed_tps: float
    base: float  # t_req + f·t_dec (both sides)
    ttft_a0: float  # closed TTFT with prefill_queue_factor 0 (steady) / burst_share 0 (burst)
    ttft_a1: float  # ... with the factor 1 (burst: TTFT is linear in the share)
    ttft_grid: tuple[float, ...]  # steady: closed TTFT at each FACTORS value of prefill_queue_factor
    tpot_s0: float  # burst: closed TPOT with burst_share 0 and 1
    tpot_s1: float
    sim_ttft: float
    sim_tpot: float
    sim_tps: float
    sim_residual: float
    sim_first_wave: float
    sim_prompt_iters: float
    sim_decoding: float
    running: float
    load: float  # prompt iterations a cycle needs per decode iteration: c·ISL / (free·(OSL - 1))
    closed_prompt_iters: float  # serve()'s n_p: iterations per cycle carrying prompt chunks


def grid(catalog: Catalog) -> list[Case]:
    """Every grid point whose weights fit with room for one sequence at that ISL/OSL."""
    out: list[Case] = []
    for model, acc, backend, tp, isl, osl in itertools.product(MODELS, ACCELERATORS, BACKENDS, TPS, ISLS, OSLS):
        shape, hw, par, prec, k = setup(catalog, Case(model, acc, backend, tp, isl, osl, 1))
        if bool(np.asarray(memory(shape, hw, par, prec, k, float(isl), float(osl)).fits)):
            out.extend(Case(model, acc, backend, tp, isl, osl, c) for c in CONCURRENCIES)
    return out


def setup(catalog: Catalog, case: Case) -> tuple[ModelShape, Hardware, Parallel, Precision, Constants]:
    """Shape, hardware, parallelism, precision and constants of a case, as validation builds them."""
    k = constants_from_catalog(catalog, case.backend)
    shape = shape_of(resolve_model(catalog, case.model))
    acc = catalog.accelerators[case.accelerator]
    hw = hardware_of(acc, catalog.systems[acc.default_system])
    if shape.moe_layers:  # as the measured runs: TensorRT-LLM expert-parallel, the others expert-TP
        par = Parallel(tp=case.tp, ep=case.tp) if case.backend == "trtllm" else Parallel(tp=case.tp, moe_tp=case.tp)
    else:
        par = Parallel(tp=case.tp)
    prec = Precision(weights="fp8", experts="fp8", kv="fp8" if k.kv_fp8_default else "bf16")
    return shape, hw, par, prec, k


def sample(cases: list[Case], n: int, seed: int) -> list[Case]:
    """``n`` cases drawn evenly over backend x concurrency (all when ``n`` is 0 or more than there are)."""
    if n <= 0 or n >= len(cases):
        return cases
    rng, strata = random.Random(seed), defaultdict[tuple[str, int], list[Case]](list)
    for c in cases:
        strata[(c.backend, c.concurrency)].append(c)
    per = math.ceil(n / len(strata))
    return [c for key in sorted(strata) for c in rng.sample(strata[key], min(per, len(strata[key])))]


def run_case(catalog: Catalog, case: Case, jitters: Sequence[float], per_user: int, warmup: float,
             cycles: float) -> list[Row]:
    """Closed form and simulation of one case, steady and burst, for each latency jitter."""
    shape, hw, par, prec, k = setup(catalog, case)

    def closed(kk: Constants, burst: bool) -> tuple[float, float, float, float]:
        r = serve(shape, hw, par, prec, kk, concurrency=float(case.concurrency), isl=float(case.isl),
                  osl=float(case.osl), burst=burst)
        return float(r.ttft_s), float(r.tpot_s), float(r.output_tokens_per_s), float(r.running)

    steady, burst = closed(k, False), closed(k, True)
    # the factor enters serve() as an array: one call gives the closed TTFT at every grid value (0 and 1 among them)
    swept = serve(shape, hw, par, prec, replace(k, prefill_queue_factor=FACTORS), concurrency=float(case.concurrency),
                  isl=float(case.isl), osl=float(case.osl))
    by_factor = tuple(float(v) for v in np.broadcast_to(np.asarray(swept.ttft_s), FACTORS.shape))
    a0, a1 = (by_factor[int(np.searchsorted(FACTORS, x))] for x in (0.0, 1.0))
    s1 = closed(replace(k, burst_share=1.0), True)
    table = StepTable(shape, hw, par, prec, k, case.isl)
    run_c = steady[3] / float(np.asarray(par.dp))
    free = max(k.token_budget - (run_c if k.mixes_prefill else 0.0), k.token_budget / 4.0)
    load = run_c * case.isl / (free * max(case.osl - 1, 1))
    chunks = max(math.ceil(case.isl / free - 1e-9), 1)
    n_p = float(np.asarray(_prefill_passes(run_c, float(chunks), float(max(case.osl - 1, 1)), float(case.isl),
                                           free)))
    rows: list[Row] = []
    for jitter, is_burst in itertools.product(jitters, (False, True)):
        sim = simulate(shape, hw, par, prec, k, concurrency=case.concurrency, isl=case.isl, osl=case.osl,
                       burst=is_burst, requests_per_user=per_user, warmup_cycles=warmup, cycles=cycles,
                       jitter=jitter, seed=1, table=table)
        ref = burst if is_burst else steady
        lo, hi = (steady[0], s1[0]) if is_burst else (a0, a1)
        rows.append(Row(
            case=case, burst=is_burst, jitter=jitter, closed_ttft=ref[0], closed_tpot=ref[1], closed_tps=ref[2],
            base=sim.base_s, ttft_a0=lo, ttft_a1=hi, ttft_grid=() if is_burst else by_factor,
            tpot_s0=steady[1], tpot_s1=s1[1],
            sim_ttft=sim.ttft_s, sim_tpot=sim.tpot_s, sim_tps=sim.output_tokens_per_s, sim_residual=sim.residual_s,
            sim_first_wave=sim.first_wave_ttft_s, sim_prompt_iters=sim.prompt_iterations_per_cycle,
            sim_decoding=sim.mean_decoding, running=ref[3], load=load,
            closed_prompt_iters=n_p,
        ))
    return rows


def log_ratios(rows: Sequence[Row]) -> dict[str, np.ndarray]:
    """log(closed/sim) of TTFT, its engine part (TTFT - base), TPOT and throughput."""
    def arr(f: Callable[[Row], float]) -> np.ndarray:
        return np.array([f(r) for r in rows], dtype=float)
    eng_c, eng_s = arr(lambda r: r.closed_ttft - r.base), arr(lambda r: r.sim_ttft - r.base)
    return {
        "ttft": np.log(arr(lambda r: r.closed_ttft) / arr(lambda r: r.sim_ttft)),
        "engine": np.log(np.maximum(eng_c, 1e-6) / np.maximum(eng_s, 1e-6)),
        "tpot": np.log(arr(lambda r: r.closed_tpot) / arr(lambda r: r.sim_tpot)),
        "tput": np.log(arr(lambda r: r.closed_tps) / arr(lambda r: r.sim_tps)),
        "n_p": np.log(arr(lambda r: r.closed_prompt_iters) / np.maximum(arr(lambda r: r.sim_prompt_iters), 1e-9)),
    }


def print_points(rows: Sequence[Row]) -> None:
    print(f"{'model':16} {'gpu':8} {'be':6} tp {'isl':>5} {'osl':>5} {'C':>4} mode   jit | "
          f"{'TTFT cf':>8} {'sim':>8} {'ratio':>6} | {'TPOT cf':>8} {'sim':>8} {'ratio':>6} (ms)")
    for r in rows:
        c = r.case
        print(f"{c.model:16} {c.accelerator:8} {c.backend:6} {c.tp:2} {c.isl:5} {c.osl:5} {c.concurrency:4} "
              f"{'burst' if r.burst else 'steady':6} {r.jitter:3.1f} | {r.closed_ttft * 1e3:8.1f} "
              f"{r.sim_ttft * 1e3:8.1f} {r.closed_ttft / r.sim_ttft:6.2f} | {r.closed_tpot * 1e3:8.2f} "
              f"{r.sim_tpot * 1e3:8.2f} {r.closed_tpot / r.sim_tpot:6.2f}")


LOAD_BANDS = ((0.0, 0.25, "<0.25"), (0.25, 1.0, "0.25-1"), (1.0, math.inf, ">1"))


def print_regimes(rows: Sequence[Row], by: str) -> None:
    """Mean and standard deviation of log(closed/sim) per backend x mode x (concurrency or prompt load)
    x jitter."""
    groups: dict[tuple[str, str, str, float], list[Row]] = defaultdict(list)
    for r in rows:
        if by == "C":
            band = f"{r.case.concurrency:>6}"
        else:
            band = next(name for lo, hi, name in LOAD_BANDS if lo <= r.load < hi)
        groups[(r.case.backend, "burst" if r.burst else "steady", band, r.jitter)].append(r)
    what = "concurrency C" if by == "C" else "prompt load c·ISL/(free·(OSL-1)) (>1: prefill-bound)"
    print(f"\nlog(closed/sim) per backend x mode x {what}: mean (sd); engine = TTFT less serve()'s t_req + f·t_dec")
    print(f"{'backend':7} {'mode':6} {by:>6} {'jit':>4} {'n':>4} | {'TTFT':>14} | {'engine':>14} | "
          f"{'TPOT':>14} | {'throughput':>14} | {'n_p':>14}")
    for key in sorted(groups):
        lr = log_ratios(groups[key])
        cells = " | ".join(f"{v.mean():+6.3f} ({v.std():5.3f})" for v in lr.values())
        print(f"{key[0]:7} {key[1]:6} {key[2]:>6} {key[3]:4.1f} {len(groups[key]):4} | {cells}")


def fit_linear(lo: np.ndarray, hi: np.ndarray, target: np.ndarray, top: float) -> tuple[float, float]:
    """The x in [0, top] minimising the RMS of log((lo + x·(hi - lo))/target), and that RMS."""
    xs = np.linspace(0.0, top, int(top * 1000) + 1)
    pred = lo[None, :] + xs[:, None] * (hi - lo)[None, :]
    rms = np.sqrt(np.mean(np.log(np.maximum(pred, 1e-9) / target[None, :]) ** 2, axis=1))
    i = int(np.argmin(rms))
    return float(xs[i]), float(rms[i])


def rms_at(lo: np.ndarray, hi: np.ndarray, target: np.ndarray, x: float) -> float:
    return float(np.sqrt(np.mean(np.log((lo + x * (hi - lo)) / target) ** 2)))


def fit_grid(pred: np.ndarray, target: np.ndarray, factors: np.ndarray = FACTORS) -> tuple[float, float]:
    """The ``factors`` value minimising the RMS of log(pred/target) (``pred``: points x factors), and that RMS."""
    rms = np.sqrt(np.mean(np.log(np.maximum(pred, 1e-9) / target[:, None]) ** 2, axis=0))
    i = int(np.argmin(rms))
    return float(factors[i]), float(rms[i])


def rms_grid(pred: np.ndarray, target: np.ndarray, x: float, factors: np.ndarray = FACTORS) -> float:
    """The RMS of log(pred/target) at factor ``x``, each point's value interpolated over ``factors``."""
    at = np.array([np.interp(x, factors, row) for row in pred])
    return float(np.sqrt(np.mean(np.log(at / target) ** 2)))


def print_implied(rows: Sequence[Row], ks: dict[str, Constants]) -> None:
    """prefill_queue_factor fitted to simulated steady TTFT, burst_share to simulated burst TTFT and TPOT,
    per backend and jitter, over the points that are not prefill-bound (load <= 1) and over all. The
    catalog's prefill_queue_factor of each engine is the zero-jitter, load <= 1 fit of this script."""
    s_cat = next(iter(ks.values())).burst_share
    by: dict[tuple[bool, str, str, float], list[Row]] = defaultdict(list)
    for r in rows:
        for backend, subset in itertools.product((r.case.backend, "all"), ("load<=1", "all")):
            if subset == "all" or r.load <= 1.0:
                by[(r.burst, backend, subset, r.jitter)].append(r)
    cats = ", ".join(f"{b} {k.prefill_queue_factor:.3f}" for b, k in ks.items())
    print(f"\nprefill_queue_factor implied by simulated steady-state TTFT (catalog {cats}): "
          "fit | RMS log error at fit, at catalog | per-point median where the wait is >= 5% of TTFT")
    for key in sorted(k for k in by if not k[0]):
        v = by[key]
        lo, hi = np.array([r.ttft_a0 for r in v]), np.array([r.ttft_a1 for r in v])
        sim = np.array([r.sim_ttft for r in v])
        swept = np.array([r.ttft_grid for r in v])
        a, err = fit_grid(swept, sim)
        sens = (hi - lo) > 0.05 * lo
        # each point's own factor: where its TTFT over the grid crosses the simulated one
        per = np.median([np.interp(t, row, FACTORS) for t, row in zip(sim[sens], swept[sens], strict=True)]) \
            if sens.any() else math.nan
        at_cat = f"{rms_grid(swept, sim, ks[key[1]].prefill_queue_factor):.3f}" if key[1] in ks else "-"
        print(f"  {key[1]:7} {key[2]:8} jitter {key[3]:.1f} n={len(v):4}: a = {a:.3f} | {err:.3f}, "
              f"{at_cat} | median {per:.3f} (n={int(sens.sum())})")
    print(f"\nburst_share implied by simulated burst runs (catalog {s_cat:.3f}): TTFT fit | TPOT fit | "
          "in-sim share (burst - steady)/(first wave - steady), median")
    steady_sim = {(r.case, r.jitter): r.sim_ttft for r in rows if not r.burst}
    for key in sorted(k for k in by if k[0]):
        v = by[key]
        lo, hi = np.array([r.ttft_a0 for r in v]), np.array([r.ttft_a1 for r in v])
        sim = np.array([r.sim_ttft for r in v])
        s_t, e_t = fit_linear(lo, hi, sim, 1.0)
        p_lo, p_hi = np.array([r.tpot_s0 for r in v]), np.array([r.tpot_s1 for r in v])
        s_p, e_p = fit_linear(p_lo, p_hi, np.array([r.sim_tpot for r in v]), 1.0)
        ref = [steady_sim[(r.case, r.jitter)] for r in v]
        share = [(r.sim_ttft - s) / (r.sim_first_wave - s) for r, s in zip(v, ref, strict=True)
                 if r.sim_first_wave - s > 0.05 * s]
        print(f"  {key[1]:7} {key[2]:8} jitter {key[3]:.1f} n={len(v):4}: TTFT s = {s_t:.3f} (RMS {e_t:.3f}; "
              f"at catalog {rms_at(lo, hi, sim, s_cat):.3f}) | TPOT s = {s_p:.3f} (RMS {e_p:.3f})"
              f" | in-sim {np.median(share) if share else math.nan:.3f} (n={len(share)})")


def print_worst(rows: Sequence[Row], n: int) -> None:
    lr = log_ratios(rows)
    for name in ("ttft", "tpot"):
        for mode in (False, True):
            idx = [i for i, r in enumerate(rows) if r.burst == mode and r.jitter == rows[0].jitter]
            order = sorted(idx, key=lambda i: -abs(lr[name][i]))[:n]
            print(f"\nlargest |log(closed/sim)| of {name.upper()}, {'burst' if mode else 'steady'}:")
            for i in order:
                r, c = rows[i], rows[i].case
                print(f"  {c.model} {c.accelerator} {c.backend} tp{c.tp} isl {c.isl} osl {c.osl} C {c.concurrency}: "
                      f"TTFT {r.closed_ttft * 1e3:.0f}/{r.sim_ttft * 1e3:.0f} ms, TPOT {r.closed_tpot * 1e3:.1f}/"
                      f"{r.sim_tpot * 1e3:.1f} ms (closed/sim); running {r.running:.0f}, sim decoding "
                      f"{r.sim_decoding:.1f}, prompt iterations/cycle {r.closed_prompt_iters:.1f}/"
                      f"{r.sim_prompt_iters:.1f}, load {r.load:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--points", type=int, default=0, help="grid points to draw (0: the whole grid)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jitter", type=float, nargs="+", default=[0.0], help="latency jitter levels (each a run)")
    ap.add_argument("--requests-per-user", type=int, default=8)
    ap.add_argument("--warmup", type=float, default=3.0, help="steady state: cycles discarded")
    ap.add_argument("--cycles", type=float, default=5.0, help="steady state: cycles measured")
    ap.add_argument("--worst", type=int, default=5)
    ap.add_argument("--no-points", action="store_true", help="leave out the per-point table")
    ap.add_argument("--csv", help="write every row to this CSV file")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    catalog = load_catalog()
    cases = sample(grid(catalog), args.points, args.seed)
    rows = [r for c in cases for r in run_case(catalog, c, args.jitter, args.requests_per_user, args.warmup,
                                                 args.cycles)]
    if not args.no_points:
        print_points(rows)
    print_regimes(rows, "C")
    print_regimes(rows, "load")
    print_implied(rows, {b: constants_from_catalog(catalog, b) for b in ("trtllm", "vllm", "sglang")})
    print_worst(rows, args.worst)
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*Case.__dataclass_fields__, *list(Row.__dataclass_fields__)[1:]])
            for r in rows:
                d = asdict(r)
                w.writerow([*asdict(r.case).values(), *(v for key, v in d.items() if key != "case")])
    print(f"\n{len(cases)} grid points, {len(rows)} simulations, {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
