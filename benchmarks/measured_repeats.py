"""What the measured set says about itself: repeat runs of one configuration, and users that were not running.

Two checks on ``serving_measured_hopper.csv`` (or a file in its layout) that use the measurements and
the engine's predictions only to count, never to fit:

* **Repeats.** Points with the same configuration (architecture, GPU, engine release, precisions,
  parallelism, lengths, users) measured in different runs. Pairs that are identical copies are
  counted apart. For the others: how far apart the runs are (mean |a/b - 1|), and the MAPE a model
  that hit each configuration's mean exactly would still have on them (|a - b| / (a + b)), the noise
  floor of the data. A group whose median ratio is above 1.2 differs in a setting the data do not
  record. With the shipped file: 146 identical pairs and 189 repeats. The 156 repeats of one setting
  are 8.7% apart in TTFT and 5.4% in TPOT on average (floor 3.1% and 1.5%). The 31 TensorRT-LLM 1.1
  DeepSeek-R1 / -V3 pairs (one architecture, release, parallelism, lengths and users) are not: the
  R1 runs decode 1.49x faster (median, 1.00-1.92x), most at few users, as speculative decoding
  (DeepSeek's MTP) would; the two TensorRT-LLM gpt-oss-dev pairs differ in TTFT (x1.39).
* **Users in flight.** By Little's law a closed loop of ``C`` users has
  ``n = C·(OSL-1)·TPOT / (TTFT + (OSL-1)·TPOT)`` of them decoding on average; a run whose ``n`` sits
  far below ``C`` at every parallelism and length kept the others waiting outside the engine. With
  the shipped file one campaign does: vLLM gpt-oss-120b on H100 at 512 users (9 points, vLLM 0.11.2
  and the same runs without a release) has 88-98 decoding at TP 2, 4 and 8 and every length pair (at
  the mean output length InferenceMAX's client sent), where the engine model runs 256. Not a client
  connection limit (InferenceMAX's client opens a session per request): their TPOT at 512 users is
  below the same configuration's at 64 (3.6 against 7.1 ms at TP 8), which no server running more
  sequences shows, as if the client read its streams late. Its measured TPOT is 1.9-7.9x below the
  prediction, and a 100-request limit alone (``serve --max-batch 100``) leaves it 1.3-4.2x below
  (before the last refit); the 9 points add 1.8 points to the set's 14.7% TPOT MAPE. The other
  campaigns above 100 users keep 37-100% of their users in flight (the lowest where the KV cache is
  full).

Run by hand (a few seconds):

    .venv/bin/python benchmarks/measured_repeats.py [--data FILE]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from factoryplan.catalog.load import load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.perf.inference import shape_of
from factoryplan.validation.inference import Point, load_measured, predict

LIMITED = 0.5  # a campaign's points above 100 users with fewer than this share of them in flight
SAME_SETTING = 1.2  # repeats whose median ratio exceeds this differ in a setting the data do not record


def configuration(p: Point, arch: object) -> tuple[object, ...]:
    """What a run measures: the architecture (not the checkpoint's name), GPU, engine release,
    precisions, parallelism, lengths, users and cached prefix."""
    return (arch, p.accelerator, p.backend, p.version, p.weights, p.experts, p.activations, p.kv, p.par, p.isl,
            p.osl, p.concurrency, p.prefix)


def in_flight(p: Point) -> float:
    """Users decoding on average by Little's law: requests per second times the decode time of one."""
    assert p.ttft_ms and p.tpot_ms
    decode = (p.osl_sent - 1.0) * p.tpot_ms  # the mean output length the client asked for
    return p.concurrency * decode / (p.ttft_ms + decode)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="a file in the measured-points layout (default: the set)")
    args = ap.parse_args(argv)
    cat = load_catalog()
    points = [p for p in (load_measured(cat, args.data, source="data") if args.data else load_measured(cat)).points
              if p.disagg is None and p.ttft_ms and p.tpot_ms]
    shapes = {m: replace(shape_of(resolve_model(cat, m)), name="") for m in {p.model for p in points}}
    groups: dict[tuple[object, ...], list[Point]] = collections.defaultdict(list)
    for p in points:
        groups[configuration(p, shapes[p.model])].append(p)
    identical = 0
    pairs: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for members in groups.values():
        for a, b in itertools.combinations(members, 2):
            if (a.ttft_ms, a.tpot_ms) == (b.ttft_ms, b.tpot_ms):
                identical += 1
                continue
            assert a.ttft_ms and b.ttft_ms and a.tpot_ms and b.tpot_ms
            label = f"{a.backend} {a.version or '?'} {' / '.join(sorted({a.model, b.model}))} {a.accelerator}"
            pairs[label].append((a.ttft_ms / b.ttft_ms, a.tpot_ms / b.tpot_ms))
    print(f"{len(points)} aggregated points; {identical} pairs are identical copies; "
          f"{sum(map(len, pairs.values()))} repeats of one configuration")
    print(f"{'runs':56s} {'pairs':>5s}  {'TTFT a/b median (range)':>24s}  {'TPOT a/b median (range)':>24s}")
    differ = set()
    for label, rs in sorted(pairs.items(), key=lambda item: -len(item[1])):
        cols = []
        for i in (0, 1):
            v = [max(r[i], 1.0 / r[i]) for r in rs]  # the slower run over the faster
            cols.append(f"x{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})")
            if statistics.median(v) > SAME_SETTING:
                differ.add(label)
        mark = "  <- not one setting" if label in differ else ""
        print(f"{label:56s} {len(rs):5d}  {cols[0]:>24s}  {cols[1]:>24s}{mark}")
    for title, chosen in (("all repeats", pairs), ("repeats of one setting", {k: v for k, v in pairs.items()
                                                                              if k not in differ})):
        for name, i in (("TTFT", 0), ("TPOT", 1)):
            v = [r[i] for rs in chosen.values() for r in rs]
            if v:
                apart = statistics.fmean(abs(x - 1.0) for x in v)
                floor = statistics.fmean(abs(x - 1.0) / (x + 1.0) for x in v)
                print(f"  {title} ({len(v)}), {name}: runs {100 * apart:.1f}% apart on average; a model at each "
                      f"configuration's mean: {100 * floor:.1f}% MAPE")

    preds = predict(cat, points)
    campaigns: dict[str, list[tuple[Point, float]]] = collections.defaultdict(list)
    for p, q in zip(points, preds, strict=True):
        if p.concurrency > 100:
            campaigns[f"{p.model} {p.backend} {p.version or '?'} {p.accelerator}"].append((p, q.tpot_ms))
    print(f"\nusers in flight (Little's law) in the {sum(map(len, campaigns.values()))} points above 100 users")
    print(f"{'campaign':52s} {'n':>4s}  {'in flight':>11s}  {'share of users':>14s}  {'TPOT MAPE points':>16s}")
    for label, rows in sorted(campaigns.items()):
        flying = [in_flight(p) for p, _ in rows]
        shares = [f / p.concurrency for f, (p, _) in zip(flying, rows, strict=True)]
        part = sum(abs(t / p.tpot_ms - 1.0) for p, t in rows if p.tpot_ms) / len(points)  # of the set's MAPE
        mark = "  <- limited" if max(shares) < LIMITED else ""
        print(f"{label:52s} {len(rows):4d}  {min(flying):4.0f}-{max(flying):<6.0f}  "
              f"{min(shares):5.2f}-{max(shares):<8.2f}  {100 * part:15.2f}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
