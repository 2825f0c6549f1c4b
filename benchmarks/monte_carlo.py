"""Time Monte Carlo and Sobol runs over the assumption ranges of a 1 GW plan.

Target (issue: economics): 10,000 draws of a 1 GW plan in under 2 s. Measures, for each scenario:
- the Monte Carlo alone (draws -> P10/P50/P90), as the plan reports it in ``uncertainty.seconds``;
- the whole ``build_plan`` with and without ``monte_carlo=N`` (the plan is built once; the draws
  evaluate the vectorised cost model, they do not re-run the plan);
- ``factoryplan plan SCENARIO --monte-carlo N --format json`` wall time, Python start-up included;
- Sobol indices (SALib, first-order and total) with 1,024 base samples.
Run: python benchmarks/monte_carlo.py [--draws 10000] [--runs 5] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from factoryplan.catalog.load import load_catalog
from factoryplan.plan import build_plan
from factoryplan.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [ROOT / "examples" / "sovereign-ai-factory-1gw.yaml", ROOT / "tests" / "data" / "epoch_gw_gb200.yaml"]


def _median_time(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenarios", nargs="*", type=Path, default=DEFAULT)
    ap.add_argument("--draws", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    catalog = load_catalog()
    for path in args.scenarios:
        scen = load_scenario(path)
        plan = build_plan(scen, catalog, monte_carlo=args.draws)
        assert plan.uncertainty is not None
        mc = statistics.median(
            build_plan(scen, catalog, monte_carlo=args.draws, seed=i).uncertainty.seconds  # type: ignore[union-attr]
            for i in range(args.runs)
        )
        plain = _median_time(lambda s=scen: build_plan(s, catalog), args.runs)
        with_mc = _median_time(lambda s=scen: build_plan(s, catalog, monte_carlo=args.draws), args.runs)
        sobol = _median_time(lambda s=scen: build_plan(s, catalog, sobol=1024), max(1, args.runs // 2))
        cmd = [sys.executable, "-m", "factoryplan.cli", "plan", str(path), "--monte-carlo", str(args.draws),
               "--format", "json"]
        cli = _median_time(lambda c=cmd: subprocess.run(c, check=True, stdout=subprocess.DEVNULL), args.runs)
        p = plan.uncertainty.figures["usd_per_gpu_hour"]
        print(f"{path.name}: {plan.cluster.gpus:,} GPUs, {plan.power.it_mw:,.0f} MW IT, "
              f"{len(plan.uncertainty.sampled)} sampled assumptions")
        print(f"  Monte Carlo {args.draws:,} draws: {mc * 1e3:.1f} ms (target < 2 s); "
              f"$/GPU-h P10/P50/P90 {p.p10:.2f}/{p.p50:.2f}/{p.p90:.2f}")
        print(f"  build_plan: {plain * 1e3:.0f} ms alone, {with_mc * 1e3:.0f} ms with the draws; "
              f"with Sobol (1,024 base samples) {sobol * 1e3:.0f} ms")
        print(f"  CLI 'plan --monte-carlo {args.draws}' incl. start-up: {cli:.2f} s")


if __name__ == "__main__":
    main()
