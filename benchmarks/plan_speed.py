"""Wall time of `factoryplan plan examples/sovereign-ai-factory-1gw.yaml --format json`, start-up included.

Target (issue: walking skeleton): under 2 s on the 2-core development machine.
Run: python benchmarks/plan_speed.py [--runs 5] [SCENARIO]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", nargs="?", default=str(ROOT / "examples" / "sovereign-ai-factory-1gw.yaml"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "factoryplan.cli", "plan", args.scenario, "--format", "json"]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    print(f"plan {Path(args.scenario).name}: median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s over {args.runs} runs (target < 2 s)")


if __name__ == "__main__":
    main()
