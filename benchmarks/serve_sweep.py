"""Speed of the inference engine: configurations per second, a capacity plan, one `serve` call.

* sweep: one vectorized call of ``perf.serving.serve`` over N configurations (layout x concurrency
  x input/output lengths) of one model on one GPU; reports configurations/s (target >= 1,000,000/s).
* plan: ``perf.capacity.plan_capacity`` over every layout and concurrency of one model and GPU,
  aggregated and disaggregated (target < 1 s).
* cli: wall time of ``factoryplan serve`` for one point, start-up included (target < 0.3 s), the
  best and the median of several runs (the machine's other load only adds). The runs use compiled
  bytecode, as an installed package has: ``PYTHONDONTWRITEBYTECODE`` is dropped and the bytecode
  goes to a temporary ``PYTHONPYCACHEPREFIX`` (one warm-up run writes it); without it every run
  compiles the project's modules again (about 0.1 s more).

Run by hand: .venv/bin/python benchmarks/serve_sweep.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from factoryplan.catalog.load import load_catalog
from factoryplan.perf.capacity import Demand, plan_capacity
from factoryplan.perf.inference import Parallel, Precision, constants_from_catalog, hardware_of, shape_of
from factoryplan.perf.serving import serve

CASES = (
    ("llama-3.1-70b", "h200-sxm"), ("deepseek-r1", "gb200"), ("qwen3-235b-a22b", "b200"), ("gpt-oss-120b", "h100-sxm"),
)


def sweep(n: int, model: str, acc_id: str) -> float:
    """Configurations per second of one vectorized ``serve`` call over ``n`` configurations."""
    cat = load_catalog()
    acc = cat.accelerators[acc_id]
    s, hw = shape_of(cat.models[model]), hardware_of(acc, cat.systems[acc.default_system])
    k = constants_from_catalog(cat, "trtllm")
    rng = np.random.default_rng(0)
    tp = 2.0 ** rng.integers(0, 4, n)
    dp = 2.0 ** rng.integers(0, 2, n) if s.moe_layers else np.ones(n)
    par = Parallel(tp=tp, dp=dp, moe_tp=np.ones(n), ep=tp * dp if s.moe_layers else np.ones(n))
    conc = np.round(2.0 ** rng.uniform(0, 9, n))
    isl = np.round(2.0 ** rng.uniform(7, 14, n))
    osl = np.round(2.0 ** rng.uniform(6, 12, n))
    prec = Precision("fp8", "fp8", "fp8")
    best = float("inf")
    for _ in range(2):  # the first call also pays for first-use costs
        t0 = time.perf_counter()
        r = serve(s, hw, par, prec, k, concurrency=conc, isl=isl, osl=osl)
        best = min(best, time.perf_counter() - t0)
    assert np.all(np.isfinite(np.asarray(r.tpot_s)))
    return n / best


def plan_time(model: str, acc_id: str) -> tuple[float, str]:
    cat = load_catalog()
    acc = cat.accelerators[acc_id]
    s, hw = shape_of(cat.models[model]), hardware_of(acc, cat.systems[acc.default_system])
    k = constants_from_catalog(cat, "trtllm")
    t0 = time.perf_counter()
    p = plan_capacity(s, hw, Precision("fp8", "fp8", "fp8"), k, Demand(50, 2000, 500, 2.0, 0.05))
    return time.perf_counter() - t0, f"{p.mode} {p.config}: {p.gpus} GPUs"


def cli_time(runs: int = 9) -> tuple[float, float]:
    """(best, median) wall seconds of one ``factoryplan serve`` point, compiled bytecode cached."""
    exe = Path(sys.executable).with_name("factoryplan")
    cmd = [str(exe), "serve", "--model", "llama-3.3-70b", "--gpu", "h200-sxm", "--tp", "2", "--isl", "2000",
           "--osl", "500", "--concurrency", "32", "--format", "json"]
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        subprocess.run(cmd, check=True, capture_output=True, env=env)  # writes the bytecode
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    for model, acc in CASES:
        print(f"sweep {model} on {acc}: {sweep(args.n, model, acc):,.0f} configurations/s (n={args.n:,})")
    for model, acc in CASES:
        dt, what = plan_time(model, acc)
        print(f"plan  {model} on {acc}: {dt * 1e3:.0f} ms ({what})")
    best, median = cli_time()
    print(f"cli   factoryplan serve (one point, 9 runs): best {best * 1e3:.0f} ms, median {median * 1e3:.0f} ms wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
