"""Which measured campaigns look as if their prompts hit the engine's prefix cache.

Every engine of the calibration set keeps a prefix cache by default (vLLM's automatic prefix caching,
SGLang's radix cache, TensorRT-LLM's KV-cache block reuse), so a harness that sends a prompt the
server has seen before (a fixed random seed across the runs of a sweep, a warm-up with the same
prompts) gets that prompt's cached tokens without prefilling them. The measured points do not say
whether that happened. This script looks for it two ways, per campaign (model, engine, engine
release, GPU; :func:`campaign_floor.campaign`):

* the prefill work a point's measurement implies: its request rate (the throughput its TTFT and TPOT
  imply, over the output length) times the prompt's forward FLOPs (2 x active parameters a token),
  as a share of its GPUs' dense FP8 peak (an upper bound on their tensor rate on Hopper, so the
  share is a lower bound). A closed loop that also decodes cannot prefill every prompt at a share
  near 1; the campaign's highest share is printed;
* the prefix-cache share of each prompt that fits the campaign best (the engine's ``--prefix-hit``
  on every point: 0 to 0.95), and the campaign's TTFT / TPOT / throughput MAPE with it.

What it shows with the shipped constants: one campaign of 35, vLLM 0.12 Llama-3.1-8B FP8 on one to
eight H200s (21 points), implies prefill at up to 0.96 of the FP8 peak while decoding (no other
campaign above 0.36), and as if 80% of every prompt were cached its MAPE goes from TTFT 124% / TPOT
81% / throughput 38% to 40 / 13 / 17%: its runs must have reused prompts. Its sibling on the same
harness and release (Qwen3-235B on one or two H200s, a KV cache too small to keep earlier prompts)
fits best at 0. Two campaigns gain on every figure at a 25% share (DeepSeek-R1/V3 on SGLang 0.5.9,
Llama-3.1-70B on TensorRT-LLM), but far inside what their GPUs can prefill, where a shorter prefill
and a smaller per-request latency look alike; three gain on some figures and lose on others. Each
campaign at its best share gives 28.1 / 14.9 / 16.0% over the 1,593 points against 29.9 / 17.4 /
16.1%: a floor that needs the measurements, not a model. The engine is therefore not given a
default prefix share: the data cannot tell which harness reused prompts, and a planner's workload
states its own (``prefix_hit`` in a scenario, ``--prefix-hit`` in ``serve``).

Run by hand (a few seconds):

    .venv/bin/python benchmarks/prefix_reuse.py [--data FILE]
"""

from __future__ import annotations

import argparse
import collections
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from campaign_floor import campaign

from factoryplan.catalog.load import load_catalog
from factoryplan.catalog.models import params_active, resolve_model
from factoryplan.validation.inference import MEASURED, Point, implied_output_tokens_per_s, load_measured, predict

SHARES = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95)  # prefix-cache shares of each prompt tried per campaign


def _errors(p: Point, ttft_ms: float, tpot_ms: float, tokens_per_s: float) -> tuple[float, float, float]:
    assert p.ttft_ms and p.tpot_ms  # measured points carry both
    implied = implied_output_tokens_per_s(p) or float("nan")
    return abs(ttft_ms / p.ttft_ms - 1.0), abs(tpot_ms / p.tpot_ms - 1.0), abs(tokens_per_s / implied - 1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=MEASURED, help="a file in the measured-points layout")
    args = ap.parse_args(argv)
    cat = load_catalog()
    points = [p for p in load_measured(cat, args.data).points if p.disagg is None and p.ttft_ms and p.tpot_ms]
    by_share = {s: predict(cat, [replace(p, prefix=float(int(s * p.isl_sent))) for p in points]) for s in SHARES}
    groups: dict[str, list[int]] = collections.defaultdict(list)
    for i, p in enumerate(points):
        groups[campaign(p)].append(i)
    active = {m: float(params_active(resolve_model(cat, m))) for m in {p.model for p in points}}
    print(f"{len(points)} aggregated measured points in {len(groups)} campaigns")
    print(f"{'campaign':52s} {'n':>4s} {'prefill/peak':>12s}  {'MAPE as predicted':>19s}  {'best share':>10s}  "
          f"{'MAPE with it':>16s}")
    totals = np.zeros((2, 3))
    for name, idx in sorted(groups.items()):
        mape = {s: np.mean([_errors(points[i], q[i].ttft_ms, q[i].tpot_ms, q[i].output_tokens_per_s) for i in idx],
                           axis=0) * 100.0 for s, q in by_share.items()}
        best = min(SHARES, key=lambda s: float(mape[s].sum()))
        peak = 0.0
        for i in idx:
            p = points[i]
            gpus = float(np.asarray(p.par.tp * p.par.dp * p.par.pp))
            flops = (implied_output_tokens_per_s(p) or 0.0) / p.osl_sent * p.isl_sent * 2.0 * active[p.model]
            peak = max(peak, flops / (gpus * (cat.accelerators[p.accelerator].fp8_dense_flops or float("inf"))))
        totals += np.array([mape[0.0], mape[best]]) * len(idx)
        print(f"{name:52s} {len(idx):4d} {peak:12.2f}  {'/'.join(f'{e:5.1f}' for e in mape[0.0]):>19s}  {best:10.2f}  "
              f"{'/'.join(f'{e:4.1f}' for e in mape[best]):>16s}")
    as_is, with_best = totals / len(points)
    print(f"all points, TTFT/TPOT/throughput MAPE: {'/'.join(f'{e:.1f}' for e in as_is)}% as predicted, "
          f"{'/'.join(f'{e:.1f}' for e in with_best)}% with each campaign's best share (a floor, not a model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
