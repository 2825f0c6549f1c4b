"""Speed of the training configuration search: a 405B dense model on 16,384 GPUs.

Measures, on one core (BLAS and OpenMP threads pinned to 1):

* configurations evaluated per second by the vectorized engine (structurally valid configurations
  through :func:`factoryplan.perf.training.evaluate`), and the whole search per second (grid built,
  checked, evaluated, ranked); target >= 1,000,000 configurations/s;
* the same engine called through the public API one configuration at a time (arrays of length 1),
  for comparison;
* the wall time of ``factoryplan train --search`` for the same case, start-up included; target < 1 s.

Run: python benchmarks/train_search.py [--runs 5]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from factoryplan.catalog.load import load_catalog  # noqa: E402
from factoryplan.perf.flops import model_shape  # noqa: E402
from factoryplan.perf.search import search  # noqa: E402
from factoryplan.perf.training import Job, efficiencies, evaluate, hardware  # noqa: E402

MODEL, GPU, GPUS, SEQ, BATCH, PRECISION = "llama-3.1-405b", "h100-sxm", 16_384, 8192, 2048, "fp8"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--singles", type=int, default=300, help="configurations evaluated one at a time")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cat = load_catalog()
    acc = cat.accelerators[GPU]
    hw = hardware(acc, cat.systems[acc.default_system])
    eff = efficiencies(cat, acc, PRECISION)
    shape = model_shape(cat.models[MODEL])
    job = Job(seq_len=SEQ, global_batch=BATCH, gpus=GPUS, precision=PRECISION)

    search(shape, hw, eff, job)  # warm-up
    runs = [search(shape, hw, eff, job) for _ in range(args.runs)]
    valid = len(runs[0].evaluation.configs)
    eval_rate = statistics.median(valid / r.evaluate_s for r in runs)
    grid_rate = statistics.median(r.grid_size / r.total_s for r in runs)
    total = statistics.median(r.total_s for r in runs)
    print(f"{MODEL} on {GPUS:,} x {GPU} ({PRECISION}, {SEQ} tokens, batch {BATCH}): grid {runs[0].grid_size:,}, "
          f"{valid:,} valid configurations evaluated, {int(runs[0].evaluation.fits.sum()):,} fit")
    print(f"vectorized: {eval_rate:,.0f} configurations/s evaluated (target >= 1,000,000); "
          f"whole search {total * 1e3:.1f} ms, {grid_rate:,.0f} grid configurations/s")

    cfgs = runs[0].evaluation.configs
    step = max(1, valid // args.singles)
    picks = list(range(0, valid, step))[: args.singles]
    t0 = time.perf_counter()
    for i in picks:
        evaluate(shape, hw, eff, job, cfgs.take([i]))
    single = len(picks) / (time.perf_counter() - t0)
    print(f"one at a time through the public API: {single:,.0f} configurations/s "
          f"(vectorized is {eval_rate / single:,.0f}x faster)")

    cmd = [sys.executable, "-m", "factoryplan.cli", "train", "--model", MODEL, "--gpu", GPU, "--gpus", str(GPUS),
           "--seq-len", str(SEQ), "--global-batch", str(BATCH), "--precision", PRECISION, "--search",
           "--format", "json"]
    walls = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    print(f"factoryplan train --search: median {statistics.median(walls):.2f} s wall, start-up included "
          f"(min {min(walls):.2f}, max {max(walls):.2f}; target < 1 s)")


if __name__ == "__main__":
    main()
