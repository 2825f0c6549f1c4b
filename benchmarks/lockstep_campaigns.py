"""Which measured campaigns ran in lockstep: the closed form against a burst-started simulation, per campaign.

The measured serving points come from harnesses that start every user at once (InferenceMAX's with
lengths drawn around the nominal ones: each simulated at the mean length its client sent). Whether
the users stay in step afterwards decides how the time of a cycle splits between TTFT and TPOT: in
lockstep all prompts of a wave are prefilled together (long TTFT) and then decoded together without
interruption (short TPOT); once the users drift apart, prompts arrive one by one and each decode
iteration carries some prompt work (short TTFT, longer TPOT).
``perf.serving.serve`` predicts, for an engine that mixes prompt chunks into decode iterations, the
drifted state with the first wave blended in by the fitted ``burst_share``, and for one that
prefills apart, ahead of decoding, lockstep throughout; ``perf.serving_sim.simulate(burst=True)``
follows every iteration of a deterministic burst-started run, which stays in lockstep.

For every aggregated measured point this script predicts TTFT and TPOT both ways, the closed form
as drifted (every engine mixing), and prints the MAPE per campaign (model, engine, engine version,
GPU). A campaign that the burst simulation predicts far better ran in lockstep; the others drifted
apart. One campaign did: SGLang 0.5.1 (Qwen3-32B on H100), the only one whose engine prefilled
apart (the harness's launch template for that release never passed ``--enable-mixed-chunk``:
``validation.inference.harness_mixes_prefill``), which is how ``validate`` predicts it; the line
says so. The simulation runs every engine with its catalog scheduling (SGLang prefilling apart).

Run by hand (about 40 s on two cores):

    .venv/bin/python benchmarks/lockstep_campaigns.py [--requests-per-user 8]
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
from dataclasses import replace

from factoryplan.catalog.load import load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.errors import FactoryplanError
from factoryplan.perf.inference import constants_from_catalog, hardware_of, shape_of
from factoryplan.perf.serving_sim import simulate
from factoryplan.validation.inference import load_measured, point_precision, predict


def _ape(pred: float, meas: float) -> float:
    return abs(pred / meas - 1.0) * 100.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests-per-user", type=int, default=8,
                    help="requests each simulated user sends where the row does not say (InferenceMAX's rows: 10)")
    args = ap.parse_args(argv)
    cat = load_catalog()
    points = [p for p in load_measured(cat).points if p.disagg is None]
    # the closed form with every engine mixing prompt chunks into decodes: users drifting apart
    preds = predict(cat, [replace(p, mixes_prefill=True) if p.mixes_prefill is False else p for p in points])
    lockstep_runs = {f"{p.model} {p.backend} {p.version or '?'} {p.accelerator}" for p in points
                     if p.mixes_prefill is False}
    rows: dict[str, list[tuple[float, float, float, float]]] = collections.defaultdict(list)
    skipped = 0
    for p, q in zip(points, preds, strict=True):
        k = constants_from_catalog(cat, p.backend)
        shape = shape_of(resolve_model(cat, p.model))
        hw = hardware_of(cat.accelerators[p.accelerator], cat.systems[p.system])
        prec = point_precision(cat, p, k)
        try:
            sim = simulate(shape, hw, p.par, prec, k, concurrency=int(p.concurrency), isl=round(p.isl_sent),
                           osl=round(p.osl_sent), burst=True,
                           requests_per_user=int(p.requests_per_user) or args.requests_per_user)
        except FactoryplanError:  # pipeline parallelism, or users that do not divide over the DP ranks
            skipped += 1
            continue
        assert p.ttft_ms and p.tpot_ms  # measured points carry both
        errors = (_ape(q.ttft_ms, p.ttft_ms), _ape(q.tpot_ms, p.tpot_ms),
                  _ape(sim.ttft_s * 1e3, p.ttft_ms), _ape(sim.tpot_s * 1e3, p.tpot_ms))
        rows[f"{p.model} {p.backend} {p.version or '?'} {p.accelerator}"].append(errors)
        rows["all"].append(errors)
    print(f"{len(rows['all'])} aggregated measured points ({skipped} the simulation does not run: pp > 1 "
          "or users not dividing over the attention-DP ranks)")
    print(f"{'campaign':56s} {'n':>4s}   drifted (closed) TTFT TPOT lockstep sim TTFT  TPOT   ran in")
    for name, errs in sorted(rows.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        mean = [sum(e[i] for e in errs) / len(errs) for i in range(4)]
        closed, lock = math.hypot(mean[0], mean[1]), math.hypot(mean[2], mean[3])
        verdict = "" if name == "all" else ("lockstep" if lock < 0.5 * closed else "drift" if closed < lock else "?")
        if name in lockstep_runs:
            verdict += " (its engine prefilled apart: serve predicts lockstep)"
        print(f"{name:56s} {len(errs):4d}   {mean[0]:15.1f}% {mean[1]:5.1f}%   {mean[2]:15.1f}% {mean[3]:5.1f}%   "
              f"{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
