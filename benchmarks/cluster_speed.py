"""Time 1 GW physical designs: GB200 NVL72 and DGX H100 within 1,000 MW at the meter.

Target (issue 5): under 1 s each. Two measurements per system:
- in-process: ``design_cluster(..., power_mw=1000)`` with the catalog loaded (the vectorised search over
  every whole-SU count up to the budget, then the full design of the chosen one);
- command: ``factoryplan cluster --system S --power-mw 1000 --format json`` wall time, start-up included.
Run: python benchmarks/cluster_speed.py [--runs 5] [--region kr]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import load_catalog
from factoryplan.infra.cluster import design_cluster

SYSTEMS = ("gb200-nvl72", "dgx-h100")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--region", default="kr")
    ap.add_argument("--power-mw", type=float, default=1000.0)
    args = ap.parse_args()
    cat = load_catalog()
    region = cat.regions[args.region]
    for system in SYSTEMS:
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            d = design_cluster(cat, AssumptionSet(cat), region, system, power_mw=args.power_mw)
            times.append(time.perf_counter() - t0)
        cmd = [sys.executable, "-m", "factoryplan.cli", "cluster", "--system", system, "--power-mw",
               str(args.power_mw), "--region", args.region, "--format", "json"]
        wall = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            wall.append(time.perf_counter() - t0)
        print(f"{system}: {d.gpus:,} GPUs in {d.scalable_units} SUs, {d.power.facility_mw:,.1f} MW at the meter, "
              f"{d.gpus_per_gw:,.0f} GPUs per GW; in-process median {statistics.median(times) * 1e3:.0f} ms "
              f"(max {max(times) * 1e3:.0f}); command median {statistics.median(wall):.2f} s "
              f"(max {max(wall):.2f}) over {args.runs} runs (target < 1 s)")


if __name__ == "__main__":
    main()
