"""The capacity planner's aggregated sizing under Poisson arrivals (production traffic).

The planner sizes an aggregated replica by closed-loop concurrency (``perf.serving.serve``: the
largest concurrency ``C`` whose TTFT and TPOT meet the targets sets the replica's request rate
``r(C)``) and keeps a headroom (``serving_headroom``, 20%) at peak. Production traffic is an open
loop: requests arrive whether or not earlier ones are done. This script feeds the iteration-by-
iteration simulation of the same engine (``perf.serving_sim.simulate(requests_per_s=...)``) with
Poisson arrivals at ``u·r(C)`` and compares, per load ``u`` (0.8: the planner's headroom; 0.9: its
low end; 1.0: the closed-loop rate), as ``log(simulated/closed form)``: mean, spread and the highest
(where open-loop traffic is slower than the formula says):

* the simulated mean TTFT and TPOT with the closed form's at ``C`` (what a mean target is checked on);
* the simulated 90th and 99th percentile of the requests' TTFT with
  ``perf.serving.open_loop_ttft`` at ``u`` (what a percentile target is checked on);
* the simulated 99th percentile of the requests' TPOT with the closed form's mean at ``C`` (the TPOT
  every target is checked on: above 0 where one request in a hundred decodes slower than that).

Then prompts of varying length (``--isl-cv``: gamma-distributed, coefficient of variation 0.5 and 1,
drawn per request in the simulation): the simulated 90th and 99th percentile TTFT against
``open_loop_ttft`` of ``serve(..., isl_cv=...)`` at loads 0.8 and 0.9.

Grid: llama-3.1-8b (H100, TP1), llama-3.1-70b (H200, TP4), qwen3-32b (H100, TP2), qwen3-235b-a22b
(H200, TP8 EP8) at FP8; trtllm, vllm, sglang; ISL/OSL 1000/200 and 4000/500; C 8/32/128/256 (those the
KV cache holds). Seconds on two cores:

    .venv/bin/python benchmarks/serving_open_loop.py [--cycles 20]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.perf.inference import Parallel, Precision, constants_from_catalog, hardware_of, shape_of
from factoryplan.perf.serving import open_loop_ttft, serve
from factoryplan.perf.serving_sim import StepTable, simulate

FP8 = Precision("fp8", "fp8", "fp8")
CASES = (("llama-3.1-8b", "h100-sxm", Parallel(tp=1)), ("llama-3.1-70b", "h200-sxm", Parallel(tp=4)),
         ("qwen3-32b", "h100-sxm", Parallel(tp=2)), ("qwen3-235b-a22b", "h200-sxm", Parallel(tp=8, moe_tp=1, ep=8)))
LOADS = (0.8, 0.9, 1.0)
COLUMNS = ("TTFT mean", "TPOT mean", "TTFT P90", "TTFT P99", "TPOT P99")


def _cases(cat: Catalog) -> Iterator[tuple[Any, ...]]:
    """(engine, model shape, hardware, layout, constants, step table, ISL, OSL) of every case of the grid."""
    for (model, acc, par), backend, (isl, osl) in itertools.product(CASES, ("trtllm", "vllm", "sglang"),
                                                                   ((1000, 200), (4000, 500))):
        s = shape_of(resolve_model(cat, model))
        a = cat.accelerators[acc]
        hw = hardware_of(a, cat.systems[a.default_system])
        k = constants_from_catalog(cat, backend)
        yield backend, s, hw, par, k, StepTable(s, hw, par, FP8, k, isl), isl, osl


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--cycles", type=float, default=20.0, help="closed-loop cycles of arrivals measured")
    args = ap.parse_args(argv)
    cat = load_catalog()
    t0 = time.perf_counter()
    ratios: dict[tuple[str, float], list[tuple[float, ...]]] = defaultdict(list)
    for backend, s, hw, par, k, table, isl, osl in _cases(cat):
        for c in (8, 32, 128, 256):
            ref = serve(s, hw, par, FP8, k, concurrency=float(c), isl=float(isl), osl=float(osl))
            if c > float(np.asarray(ref.mem.max_concurrency)):
                continue
            rate = float(np.asarray(ref.requests_per_s))
            ttft, tpot = float(np.asarray(ref.ttft_s)), float(np.asarray(ref.tpot_s))
            for u in LOADS:
                sim = simulate(s, hw, par, FP8, k, concurrency=c, isl=isl, osl=osl, table=table,
                               requests_per_s=u * rate, cycles=args.cycles, seed=1)
                ratios[(backend, u)].append((
                    float(np.log(sim.ttft_s / ttft)), float(np.log(sim.tpot_s / tpot)),
                    float(np.log(sim.ttft_percentiles_s[90.0] / float(open_loop_ttft(ref, u, 90.0)))),
                    float(np.log(sim.ttft_percentiles_s[99.0] / float(open_loop_ttft(ref, u, 99.0)))),
                    float(np.log(sim.tpot_percentiles_s[99.0] / tpot)),
                ))
    varied: dict[tuple[float, float, str], list[tuple[float, float]]] = defaultdict(list)
    for backend, s, hw, par, k, table, isl, osl in _cases(cat):
        for c, cv in itertools.product((32, 128), (0.5, 1.0)):
            ref = serve(s, hw, par, FP8, k, concurrency=float(c), isl=float(isl), osl=float(osl), isl_cv=cv)
            if c > float(np.asarray(ref.mem.max_concurrency)):
                continue
            for u in LOADS[:2]:
                sim = simulate(s, hw, par, FP8, k, concurrency=c, isl=isl, osl=osl, table=table, isl_cv=cv,
                               requests_per_s=u * float(np.asarray(ref.requests_per_s)), cycles=args.cycles, seed=1)
                varied[(cv, u, backend)].append(tuple(  # type: ignore[arg-type]
                    float(np.log(sim.ttft_percentiles_s[p] / float(open_loop_ttft(ref, u, p)))) for p in (90.0, 99.0)))
    print(f"{sum(len(v) for v in ratios.values()) + sum(len(v) for v in varied.values())} runs, "
          f"{time.perf_counter() - t0:.0f} s")
    print("log(simulated/closed form): mean (sd, highest)")
    print("engine  load   n   " + "  ".join(f"{c:22s}" for c in COLUMNS))
    for u in LOADS:
        rows = [(b, ratios[(b, u)]) for b in ("trtllm", "vllm", "sglang")] + [
            ("all", [r for b in ("trtllm", "vllm", "sglang") for r in ratios[(b, u)]])]
        for name, vals in rows:
            arr = np.asarray(vals)
            cols = "  ".join(f"{m:+.3f} ({sd:.3f}, {mx:+.2f})  " for m, sd, mx in
                             zip(arr.mean(0), arr.std(0), arr.max(0), strict=True))
            print(f"{name:7s} {u:.1f} {len(arr):4d}   {cols}")
    print("prompt lengths varying: log(simulated/closed form) of TTFT P90 and P99, mean (sd, highest)")
    for (cv, u, backend), vals in sorted(varied.items()):
        arr = np.asarray(vals)
        cols = "  ".join(f"{m:+.3f} ({sd:.3f}, {mx:+.2f})" for m, sd, mx in
                         zip(arr.mean(0), arr.std(0), arr.max(0), strict=True))
        print(f"CV {cv:.1f} load {u:.1f} {backend:7s} {len(arr):3d}   {cols}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
