"""Closed-form disaggregated serving (``perf.serving.closed_loop_disaggregated``) against an
event-by-event simulation of the same prefill and decode workers (``perf.disagg_sim``).

Both use the same pass and step times, KV capacity and KV transfer; they differ only in the
queueing approximations (the closed form's M/D/1 wait per prefill worker scaled by
``pool_queue_factor``, which this script derives: the value whose closed-form TTFT is nearest the
simulated one over all points, zero jitter; its batch per pass, the decode batch by Little's law,
the wait at the bottleneck pool). Prints per regime (the simulated prefill utilisation: light < 0.5, busy 0.5-0.95,
saturated >= 0.95) the mean and spread of ``log(closed/sim)`` for TTFT, TPOT and throughput, and the
points where the two differ most.

Grid: llama-3.1-70b, qwen3-32b and qwen3-235b-a22b at FP8 on h200-sxm, deepseek-r1 with 8-GPU workers;
prefill and decode workers of TP 2/4/8 (the smallest that fits, and twice that), 1-2 prefill and
1-2 decode workers; ISL 1024/4096/8192; OSL 128/1024; C 8/32/128/512. ``--jitter`` draws each
request's latency within ``±jitter`` of its mean.

Then the capacity planner's prefill replica under Poisson arrivals (``capacity.prefill_queue``, the
wait of :func:`factoryplan.perf.serving.batched_prefill_wait`) against an event-by-event simulation
of one replica (``disagg_sim.simulate_prefill_replica``, 20,000 prompts): ``log(formula/sim)`` of a
prompt's wait plus pass, by the replica's load against full passes (0.1-0.9), over five layouts of
three models and ISL 256-8192 (1 to 256 prompts a pass); and the 90th and 99th percentile of the
simulated prompts' wait plus pass against ``prefill_queue(..., percentile)`` (what a percentile TTFT
target of a disaggregated plan is checked on). About three minutes on two cores in all:

    .venv/bin/python benchmarks/disagg_sim.py [--jitter 0.5] [--worst 8] [--open-only]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from serving_sim import fit_grid, rms_grid

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.perf.capacity import prefill_queue
from factoryplan.perf.disagg_sim import prefill_replica_percentiles, simulate_disaggregated, simulate_prefill_replica
from factoryplan.perf.inference import (
    FloatOrArray,
    Parallel,
    Precision,
    constants_from_catalog,
    hardware_of,
    iteration,
    shape_of,
)
from factoryplan.perf.serving import closed_loop_disaggregated, memory

MODELS = ("llama-3.1-70b", "qwen3-32b", "qwen3-235b-a22b", "deepseek-r1")
FACTORS = np.round(np.arange(0.0, 2.0 + 1e-9, 0.01), 2)  # pool_queue_factor values the fit searches
FP8 = Precision("fp8", "fp8", "fp8")


def layouts(model: str, moe: bool) -> list[Parallel]:
    if model == "deepseek-r1":
        return [Parallel(tp=8, moe_tp=1, ep=8), Parallel(tp=1, dp=8, moe_tp=1, ep=8)]
    out = []
    for tp in (2, 4, 8):
        out.append(Parallel(tp=tp, moe_tp=1, ep=tp) if moe else Parallel(tp=tp))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--worst", type=int, default=8)
    ap.add_argument("--open-only", action="store_true", help="only the prefill replica under Poisson arrivals")
    args = ap.parse_args(argv)
    cat = load_catalog()
    open_loop(cat)
    if args.open_only:
        return 0
    hw = hardware_of(cat.accelerators["h200-sxm"], cat.systems["hgx-h200"])
    k = constants_from_catalog(cat, "trtllm")
    rows: list[tuple[str, str, float, float, float, float]] = []
    swept: list[np.ndarray] = []  # the closed form's TTFT at each FACTORS value of pool_queue_factor
    sim_ttft: list[float] = []
    t0 = time.perf_counter()
    for model in MODELS:
        s = shape_of(resolve_model(cat, model))
        fits = [p for p in layouts(model, s.moe_layers > 0)
                if bool(np.asarray(memory(s, hw, p, FP8, k, 8192.0, 1024.0).fits))][:2]
        for pre, dec, n_p, n_d, isl, osl, c in itertools.product(
                fits, fits, (1, 2), (1, 2), (1024, 4096, 8192), (128, 1024), (8, 32, 128, 512)):
            cf = closed_loop_disaggregated(s, hw, pre, dec, FP8, k, concurrency=float(c), isl=float(isl),
                                           osl=float(osl), prefill_workers=float(n_p), decode_workers=float(n_d))
            sim = simulate_disaggregated(s, hw, pre, dec, FP8, k, concurrency=c, isl=isl, osl=osl,
                                         prefill_workers=n_p, decode_workers=n_d, jitter=args.jitter, seed=1)
            swept.append(np.broadcast_to(np.asarray(closed_loop_disaggregated(
                s, hw, pre, dec, FP8, replace(k, pool_queue_factor=FACTORS), concurrency=float(c), isl=float(isl),
                osl=float(osl), prefill_workers=float(n_p), decode_workers=float(n_d)).ttft_s), FACTORS.shape))
            sim_ttft.append(sim.ttft_s)
            util = sim.prefill_utilization
            regime = "light" if util < 0.5 else "busy" if util < 0.95 else "saturated"
            label = (f"{model} p{n_p}x{_lay(pre)} d{n_d}x{_lay(dec)} {isl}/{osl} C{c} "
                     f"util {util:.2f}/{float(np.asarray(cf.prefill_utilization)):.2f}")
            rows.append((regime, label, float(np.log(float(np.asarray(cf.ttft_s)) / sim.ttft_s)),
                         float(np.log(float(np.asarray(cf.tpot_s)) / sim.tpot_s)),
                         float(np.log(float(np.asarray(cf.output_tokens_per_s)) / sim.output_tokens_per_s)),
                         sim.ttft_s))
    print(f"{len(rows)} points, jitter {args.jitter}, {time.perf_counter() - t0:.0f} s")
    print("regime      n   log(closed/sim) mean (sd):  TTFT            TPOT            throughput")
    groups: dict[str, list[tuple[str, str, float, float, float, float]]] = defaultdict(list)
    for r in rows:
        groups[r[0]].append(r)
        groups["all"].append(r)
    for name in ("light", "busy", "saturated", "all"):
        g = np.asarray([r[2:5] for r in groups[name]]) if groups[name] else np.zeros((0, 3))
        if len(g):
            cols = "  ".join(f"{m:+.3f} ({sd:.3f})" for m, sd in zip(g.mean(0), g.std(0), strict=True))
            print(f"{name:10s} {len(g):4d}   {cols}")
    pred, target = np.asarray(swept), np.asarray(sim_ttft)
    best, err = fit_grid(pred, target, FACTORS)
    at = rms_grid(pred, target, k.pool_queue_factor, FACTORS)
    print(f"pool_queue_factor implied by the simulated TTFT (RMS of log(closed/sim) over all points): "
          f"{best:.2f} (RMS {err:.3f}); the catalog's {k.pool_queue_factor:.2f}: RMS {at:.3f}")
    print("largest |log(closed/sim)| in TTFT:")
    for r in sorted(rows, key=lambda r: -abs(r[2]))[:args.worst]:
        print(f"  {r[1]}: TTFT {r[2]:+.2f} TPOT {r[3]:+.2f} throughput {r[4]:+.2f} (sim TTFT {r[5] * 1e3:.0f} ms)")
    return 0


def open_loop(cat: Catalog) -> None:
    """The planner's prefill replica against the simulated one, by load."""
    hw = hardware_of(cat.accelerators["h200-sxm"], cat.systems["hgx-h200"])
    k = constants_from_catalog(cat, "trtllm")
    cases = (("llama-3.1-70b", Parallel(tp=2)), ("llama-3.1-70b", Parallel(tp=8)),
             ("deepseek-r1", Parallel(tp=8, moe_tp=1, ep=8)), ("deepseek-r1", Parallel(tp=1, dp=8, moe_tp=1, ep=8)),
             ("qwen3-32b", Parallel(tp=1)))
    by_load: dict[float, list[float]] = defaultdict(list)
    tails: dict[float, list[tuple[float, float]]] = defaultdict(list)
    varied: dict[tuple[float, float], list[tuple[float, float]]] = defaultdict(list)
    for model, par in cases:
        s = shape_of(resolve_model(cat, model))
        for isl in (256, 1024, 2048, 4096, 8192):
            full = int(max(k.token_budget // isl, 1) * float(np.asarray(par.dp)))
            sizes = np.arange(full + 1, dtype=float)
            table = np.asarray(iteration(s, hw, par, FP8, k, decode_seqs=0.0, ctx=float(isl), prompts=sizes,
                                         prompt_len=float(isl)).total, dtype=float)

            def t_pass(b: FloatOrArray, sizes: np.ndarray = sizes, table: np.ndarray = table) -> np.ndarray:
                return np.asarray(np.interp(b, sizes, table), dtype=np.float64)

            for load in (0.1, 0.3, 0.5, 0.7, 0.8, 0.9):
                rate = load * full / table[full]
                t_p, wait = prefill_queue(t_pass, float(full), rate)
                w_sim, p_sim, _ = simulate_prefill_replica(table.tolist(), full, rate, seed=1)
                by_load[load].append(float(np.log(float(t_p + wait) / (w_sim + p_sim))))
                sim_q = prefill_replica_percentiles(table.tolist(), full, rate, (90.0, 99.0), seed=1)
                tails[load].append(tuple(  # type: ignore[arg-type]
                    float(np.log(sim_q[q] / float(np.sum(prefill_queue(t_pass, float(full), rate, q)))))
                    for q in (90.0, 99.0)))
                for cv in (0.5, 1.0):  # prompt lengths drawn from a gamma distribution of this CV
                    sim_q = prefill_replica_percentiles(table.tolist(), full, rate, (90.0, 99.0), seed=1, isl_cv=cv)
                    varied[(cv, load)].append(tuple(  # type: ignore[arg-type]
                        float(np.log(sim_q[q] / float(np.sum(prefill_queue(t_pass, float(full), rate, q, cv)))))
                        for q in (90.0, 99.0)))
    every = np.concatenate([np.asarray(v) for v in by_load.values()])
    print(f"prefill replica, Poisson arrivals: {len(every)} points, log(formula/sim) of wait + pass "
          f"{every.mean():+.3f} (sd {every.std():.3f}, largest {np.abs(every).max():.2f})")
    print("  " + "  ".join(f"load {u:.1f}: {np.mean(v):+.3f} ({np.std(v):.3f})" for u, v in by_load.items()))
    print("  the 90th and 99th percentile of wait + pass, log(simulated/formula): mean (sd, highest)")
    for u, v in tails.items():
        arr = np.asarray(v)
        print(f"  load {u:.1f}: " + "  ".join(f"P{q:g} {m:+.3f} ({sd:.3f}, {mx:+.2f})" for q, m, sd, mx in
                                              zip((90, 99), arr.mean(0), arr.std(0), arr.max(0), strict=True)))
    print("  the same with prompt lengths varying (gamma, coefficient of variation 0.5 and 1)")
    for (cv, u), v in sorted(varied.items()):
        arr = np.asarray(v)
        print(f"  CV {cv:.1f} load {u:.1f}: " + "  ".join(
            f"P{q:g} {m:+.3f} ({sd:.3f}, {mx:+.2f})" for q, m, sd, mx in
            zip((90, 99), arr.mean(0), arr.std(0), arr.max(0), strict=True)))


def _lay(p: Parallel) -> str:
    dp = float(np.asarray(p.dp))
    return f"dp{dp:g}" if dp > 1 else f"tp{float(np.asarray(p.tp)):g}"


if __name__ == "__main__":
    sys.exit(main())
