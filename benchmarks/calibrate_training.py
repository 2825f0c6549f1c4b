"""Fit the training engine's efficiency constants on the calibration rows of published_runs.csv.

The constants are shared by every accelerator: the GEMM efficiency per precision family
(16-bit, FP8), the fused-attention efficiency, the memory-bound (HBM) efficiency, the share of
communication that overlaps compute, and the GEMM half-efficiency dimension. The fit minimises
the mean absolute percentage error of tokens/s per GPU over the calibration rows as a whole plus
a penalty on the largest error (Nelder-Mead on the logit of each constant, from several starts);
no constant is set per row. It prints the fitted values in the form of
``catalog/data/calibrations.training.yaml`` and the spread (MAPE, largest error, per row).

    python benchmarks/calibrate_training.py            # fit and print
    python benchmarks/calibrate_training.py --check    # only evaluate the catalog's constants
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np

from factoryplan.catalog.load import load_catalog
from factoryplan.perf.training import Efficiencies
from factoryplan.validation.training import Prediction, TrainingCase, load_cases, predict, summary

# name -> (lower bound, upper bound); "gemm_efficiency@bf16" applies to 16-bit rows only
FITTED = {
    "gemm_efficiency@bf16": (0.4, 0.95),
    "gemm_efficiency@fp8": (0.3, 0.95),
    "attention_efficiency": (0.2, 0.9),
    "memory_bound_efficiency": (0.3, 0.95),
    "overlap_efficiency": (0.0, 1.0),
    "gemm_half_dim": (8.0, 512.0),
}
MAX_ERROR_WEIGHT = 0.5


def _tuner(values: dict[str, float]):  # type: ignore[no-untyped-def]
    def tune(eff: Efficiencies, case: TrainingCase) -> Efficiencies:
        changes = {}
        for key, value in values.items():
            name, _, precision = key.partition("@")
            family = "bf16" if case.precision == "bf16" else "fp8"
            if not precision or precision == family:
                changes[name] = value
        return dataclasses.replace(eff, **changes)

    return tune


def evaluate(cases: list[TrainingCase], values: dict[str, float] | None) -> list[Prediction]:
    catalog = load_catalog()
    tune = _tuner(values) if values is not None else None
    return [predict(c, catalog, tune) for c in cases]


def loss(cases: list[TrainingCase], values: dict[str, float]) -> float:
    errs = np.array([abs(p.error) for p in evaluate(cases, values)])
    return float(errs.mean() + MAX_ERROR_WEIGHT * errs.max())


def _to_values(x: np.ndarray) -> dict[str, float]:
    out = {}
    for xi, (name, (lo, hi)) in zip(x, FITTED.items(), strict=True):
        out[name] = lo + (hi - lo) / (1.0 + math.exp(-xi))
    return out


def _from_values(values: dict[str, float]) -> np.ndarray:
    out = []
    for name, (lo, hi) in FITTED.items():
        f = min(max((values[name] - lo) / (hi - lo), 1e-4), 1 - 1e-4)
        out.append(math.log(f / (1 - f)))
    return np.array(out)


def nelder_mead(f, x0: np.ndarray, step: float = 0.6, iters: int = 300) -> tuple[np.ndarray, float]:  # type: ignore[no-untyped-def]
    """Plain Nelder-Mead (numpy only)."""
    n = x0.size
    simplex = [x0] + [x0 + step * np.eye(n)[i] for i in range(n)]
    scores = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(scores)
        simplex = [simplex[i] for i in order]
        scores = [scores[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        worst = simplex[-1]
        xr = centroid + (centroid - worst)
        fr = f(xr)
        if fr < scores[0]:
            xe = centroid + 2.0 * (centroid - worst)
            fe = f(xe)
            simplex[-1], scores[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < scores[-2]:
            simplex[-1], scores[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (worst - centroid)
            fc = f(xc)
            if fc < scores[-1]:
                simplex[-1], scores[-1] = xc, fc
            else:
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex[1:]]
                scores = [scores[0]] + [f(x) for x in simplex[1:]]
        if max(scores) - min(scores) < 1e-5:
            break
    best = int(np.argmin(scores))
    return simplex[best], scores[best]


def report(preds: list[Prediction]) -> None:
    for p in preds:
        cfg = p.config
        shown = (f"tp{cfg['tp']} pp{cfg['pp']} vpp{cfg['vpp']} cp{cfg['cp']} ep{cfg['ep']} dp{cfg['dp']} "
                 f"mb{cfg['micro_batch']} {cfg['recompute']} z{cfg['zero']}")
        mark = "C" if p.case.calibration else "-"
        print(f"{p.case.row_id:3d} {mark} {p.case.model[:30]:30s} {p.case.accelerator:13s} {p.case.gpus:5d} "
              f"{p.case.precision:4s} {shown:44s} published {p.case.published_tokens_per_s_per_gpu:9.1f} "
              f"predicted {p.tokens_per_s_per_gpu:9.1f} {100 * p.error:+6.1f}%")
    s = summary(preds)
    print(f"calibration rows {s['calibration_rows']:.0f}: MAPE {100 * s['calibration_mape']:.1f}%, "
          f"largest {100 * s['calibration_max_error']:.1f}%; other rows {s['other_rows']:.0f}: "
          f"MAPE {100 * s['other_mape']:.1f}%, largest {100 * s['other_max_error']:.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="evaluate the catalog's constants only")
    parser.add_argument("--iters", type=int, default=250)
    args = parser.parse_args()
    catalog = load_catalog()
    cases = load_cases(catalog)
    calib = [c for c in cases if c.calibration]
    if args.check:
        report(evaluate(cases, None))
        return
    start = {"gemm_efficiency@bf16": 0.8, "gemm_efficiency@fp8": 0.6, "attention_efficiency": 0.5,
             "memory_bound_efficiency": 0.7, "overlap_efficiency": 0.8, "gemm_half_dim": 64.0}
    t0 = time.perf_counter()
    best_x, best_f = _from_values(start), math.inf
    for restart in range(3):
        x, fx = nelder_mead(lambda z: loss(calib, _to_values(z)), best_x, step=0.6 / (restart + 1), iters=args.iters)
        if fx < best_f:
            best_x, best_f = x, fx
        print(f"start {restart}: loss {fx:.4f} ({time.perf_counter() - t0:.0f} s)")
    values = _to_values(best_x)
    print("fitted constants:")
    for k, v in values.items():
        print(f"  {k}: {v:.4g}")
    report(evaluate(cases, values))


if __name__ == "__main__":
    main()
