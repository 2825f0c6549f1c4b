"""Sensitivity and uncertainty of the cost figures over the catalog's assumption ranges.

Every catalog assumption carries ``low``, ``high`` and a ``distribution`` (fixed, uniform,
triangular or lognormal). The physical design of the plan is held fixed; the cost model
(``economics.tco.evaluate``) is evaluated once on arrays of draws, so 10,000 draws cost one
vectorised call, not 10,000 plans.

- One-at-a-time: each sampled assumption at its low and at its high end, every other at its
  value (tornado-chart data).
- Sobol indices: first-order and total-effect indices (Sobol 2001; Saltelli et al. 2010,
  "Variance based sensitivity analysis of model output", CPC 181) with SALib's Saltelli/Sobol
  sampling and estimators; uniform [0, 1] draws are mapped through each assumption's inverse
  CDF, so the indices refer to the declared distributions.
- Monte Carlo: independent draws of every sampled assumption; P10/P50/P90 of each figure.

Distributions: triangular(low, value, high); uniform(low, high); lognormal with median = value
and low/high as its 5th/95th percentiles (sigma = ln(high/low) / (2 x 1.645)). Assumptions
the scenario overrides, or declared fixed, or without a range, are held at their value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from factoryplan import units
from factoryplan.assumptions import AssumptionSet, assumption_unit
from factoryplan.economics.finance import Array
from factoryplan.economics.tco import CostInputs, evaluate
from factoryplan.economics.unitcost import HOURS_PER_YEAR
from factoryplan.errors import FactoryplanError

Figures = Callable[[Mapping[str, Array]], dict[str, Array]]
Progress = Callable[[int, int], None]
OAT_METRICS = ("usd_per_gpu_hour", "tco_usd", "npv_usd", "annualized_usd_per_year")
Z95 = 1.6448536269514722


@dataclass(frozen=True)
class Dist:
    """One sampled assumption, in internal units."""

    name: str
    kind: str  # uniform | triangular | lognormal
    value: float
    low: float
    high: float
    unit: str
    shown_unit: str = ""  # the catalog file's unit, used in reports ("" : the internal unit)


class SensitivityItem(BaseModel):
    """How the cost figures move when one assumption spans its range (others at their values)."""

    model_config = ConfigDict(frozen=True)

    assumption: str
    unit: str  # friendly unit of base/low/high
    distribution: str
    base: float
    low: float
    high: float
    at_low: dict[str, float]
    at_high: dict[str, float]
    swing: dict[str, float]  # |at_high - at_low| per figure
    sobol_first: dict[str, float] = {}
    sobol_total: dict[str, float] = {}


class Percentiles(BaseModel):
    """Distribution summary of one figure over the draws."""

    model_config = ConfigDict(frozen=True)

    p10: float
    p50: float
    p90: float
    mean: float


class Histogram(BaseModel):
    """Counts of draws per bin (for the report's distribution chart)."""

    model_config = ConfigDict(frozen=True)

    edges: list[float]
    counts: list[int]


class Uncertainty(BaseModel):
    """Monte Carlo results over the assumption ranges."""

    model_config = ConfigDict(frozen=True)

    draws: int
    seed: int
    seconds: float
    sampled: list[str]
    held_fixed: list[str]
    figures: dict[str, Percentiles]
    histograms: dict[str, Histogram]


@dataclass(frozen=True)
class UnitSpec:
    """Fixed per-workload quantities for the unit-cost figures under sampling."""

    services: Mapping[str, tuple[float, float]]  # service -> (cost share, tokens per year)
    runs: Mapping[str, tuple[float, float, float]]  # run -> (pool cost share, pool GPUs, run GPU-hours)


def cost_figures(q: CostInputs, spec: UnitSpec) -> Figures:
    """The figures sampled: capex, opex, annualised, TCO, NPV, $/GPU-hour, $/Mtok per service, $ per run."""

    def figures(a: Mapping[str, Array]) -> dict[str, Array]:
        r = evaluate(q, a)
        annual = np.asarray(r.annualized)
        out = {
            "capex_usd": np.asarray(r.it_capex) + r.fac_capex, "opex_usd_per_year": np.asarray(r.opex_total),
            "annualized_usd_per_year": annual, "tco_usd": np.asarray(r.flows.tco), "npv_usd": np.asarray(r.flows.npv),
            "usd_per_gpu_hour": np.asarray(r.usd_per_gpu_hour),
        }
        for name, (share, tokens) in spec.services.items():
            out[f"usd_per_million_tokens.{name}"] = annual * share / tokens * 1e6
        u = np.asarray(a["utilization"])
        for name, (share, pool_gpus, gpu_hours) in spec.runs.items():
            out[f"usd_per_run.{name}"] = annual * share / (pool_gpus * HOURS_PER_YEAR * u) * gpu_hours
        return out

    return figures


def distributions(asm: AssumptionSet, names: Sequence[str]) -> tuple[list[Dist], list[str]]:
    """(sampled assumptions, held fixed) among ``names``: overrides and fixed entries are held."""
    sampled, fixed = [], []
    for name in names:
        entry = asm.entry(name)
        if (name in asm.overrides or entry.distribution == "fixed" or entry.low is None or entry.high is None
                or entry.high <= entry.low):
            fixed.append(name)
            continue
        if not entry.low <= entry.value <= entry.high:
            raise FactoryplanError(
                f"catalog assumption {name}: value {entry.value:g} lies outside its range", field=name,
                allowed=f"{entry.low:g} to {entry.high:g}",
            )
        if entry.distribution == "lognormal" and entry.low <= 0:
            raise FactoryplanError(f"catalog assumption {name}: a lognormal range must be positive", field=name)
        sampled.append(
            Dist(name, entry.distribution, entry.value, entry.low, entry.high, entry.unit, assumption_unit(entry))
        )
    return sampled, fixed


def norm_ppf(p: Array) -> Array:
    """Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).

    P. J. Acklam, "An algorithm for computing the inverse normal cumulative distribution
    function" (2003). p must lie in (0, 1); 0 and 1 map to -inf and +inf.
    """
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    p = np.clip(np.asarray(p, dtype=float), 1e-300, 1 - 1e-16)
    q = np.where(p < 0.5, p, 1 - p)
    r = np.sqrt(-2 * np.log(q))
    tail = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
        (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1)
    s = p - 0.5
    t = s * s
    mid = (((((a[0] * t + a[1]) * t + a[2]) * t + a[3]) * t + a[4]) * t + a[5]) * s / (
        ((((b[0] * t + b[1]) * t + b[2]) * t + b[3]) * t + b[4]) * t + 1)
    out: Array = np.where(np.abs(s) <= 0.5 - 0.02425, mid, np.where(p < 0.5, tail, -tail))
    return out


def ppf(d: Dist, u: Array) -> Array:
    """Map uniform [0, 1] draws to the assumption's distribution (inverse CDF)."""
    lo, hi, mode = d.low, d.high, d.value
    if d.kind == "uniform":
        return lo + u * (hi - lo)
    if d.kind == "lognormal":
        sigma = math.log(hi / lo) / (2 * Z95)
        return np.asarray(mode * np.exp(sigma * norm_ppf(u)))
    fc = (mode - lo) / (hi - lo)  # triangular
    left = lo + np.sqrt(u * (hi - lo) * (mode - lo))
    right = hi - np.sqrt((1 - u) * (hi - lo) * (hi - mode))
    return np.where(u < fc, left, right)


def _with(base: Mapping[str, float], columns: Mapping[str, Array], n: int) -> dict[str, Array]:
    out = {k: np.full(n, v) for k, v in base.items()}
    out.update(columns)
    return out


def _friendly(value: float, unit: str) -> float:
    try:
        return units.from_si(value, unit)
    except (KeyError, ValueError):
        return value


def one_at_a_time(base: Mapping[str, float], dists: Sequence[Dist], figures: Figures) -> list[SensitivityItem]:
    """Tornado data: each assumption at its low and high end; sorted by the swing of $/GPU-hour."""
    if not dists:
        return []
    n = 2 * len(dists)
    columns: dict[str, Array] = {}
    for i, d in enumerate(dists):
        col = np.full(n, d.value)
        col[2 * i], col[2 * i + 1] = d.low, d.high
        columns[d.name] = col
    out = figures(_with(base, columns, n))
    items = []
    for i, d in enumerate(dists):
        shown = d.shown_unit or d.unit
        lo = {m: float(out[m][2 * i]) for m in OAT_METRICS if m in out}
        hi = {m: float(out[m][2 * i + 1]) for m in OAT_METRICS if m in out}
        items.append(SensitivityItem(
            assumption=d.name, unit=shown, distribution=d.kind, base=_friendly(d.value, shown),
            low=_friendly(d.low, shown), high=_friendly(d.high, shown), at_low=lo, at_high=hi,
            swing={m: abs(hi[m] - lo[m]) for m in lo},
        ))
    return sorted(items, key=lambda it: -it.swing.get("usd_per_gpu_hour", 0.0))


def sobol_indices(
    base: Mapping[str, float], dists: Sequence[Dist], figures: Figures, n: int, *, seed: int = 0,
    metrics: Sequence[str] = ("usd_per_gpu_hour", "tco_usd"),
) -> dict[str, dict[str, tuple[float, float]]]:
    """{assumption: {figure: (first-order S1, total ST)}} from SALib with n base samples.

    n is rounded up to a power of two (Sobol sequences balance only then); the model runs
    n x (D + 2) times in one vectorised call. A figure that no sampled assumption moves gets
    no indices.
    """
    from SALib.analyze import sobol as sobol_analyze
    from SALib.sample import sobol as sobol_sample

    if not dists:
        return {}
    n2 = 1 << max(1, math.ceil(math.log2(max(n, 2))))
    problem = {"num_vars": len(dists), "names": [d.name for d in dists], "bounds": [[0.0, 1.0]] * len(dists)}
    u = sobol_sample.sample(problem, n2, calc_second_order=False, seed=seed)
    u = np.clip(u, 1e-12, 1 - 1e-12)
    columns = {d.name: ppf(d, u[:, i]) for i, d in enumerate(dists)}
    out = figures(_with(base, columns, u.shape[0]))
    result: dict[str, dict[str, tuple[float, float]]] = {d.name: {} for d in dists}
    for m in metrics:
        if m not in out:
            continue
        y = np.asarray(out[m], dtype=float)
        if not np.all(np.isfinite(y)) or np.ptp(y) <= 1e-12 * max(1.0, float(np.abs(y).max())):
            continue
        si = sobol_analyze.analyze(problem, y, calc_second_order=False, num_resamples=50, seed=seed)
        for i, d in enumerate(dists):
            result[d.name][m] = (float(si["S1"][i]), float(si["ST"][i]))
    return result


def monte_carlo(
    base: Mapping[str, float], dists: Sequence[Dist], held_fixed: Sequence[str], figures: Figures, n: int, *,
    seed: int = 0, chunk: int = 100_000, progress: Progress | None = None, bins: int = 40,
) -> Uncertainty:
    """P10/P50/P90 of every figure over ``n`` independent draws (chunked for memory and progress)."""
    if n < 1:
        raise FactoryplanError("the number of Monte Carlo draws must be at least 1", field="--monte-carlo", value=n,
                               allowed=">= 1")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Array]] = {}
    done = 0
    while done < n:
        size = min(chunk, n - done)
        u = rng.random((size, len(dists)))
        columns = {d.name: ppf(d, u[:, i]) for i, d in enumerate(dists)}
        for k, v in figures(_with(base, columns, size)).items():
            parts.setdefault(k, []).append(np.broadcast_to(np.asarray(v, dtype=float), (size,)))
        done += size
        if progress is not None:
            progress(done, n)
    summary, hists = {}, {}
    for k, chunks in parts.items():
        y = np.concatenate(chunks)
        p10, p50, p90 = np.percentile(y, [10, 50, 90])
        summary[k] = Percentiles(p10=float(p10), p50=float(p50), p90=float(p90), mean=float(y.mean()))
        if k in ("usd_per_gpu_hour", "tco_usd") or k.startswith("usd_per_million_tokens."):
            counts, edges = np.histogram(y, bins=bins)
            hists[k] = Histogram(edges=[float(e) for e in edges], counts=[int(c) for c in counts])
    return Uncertainty(
        draws=n, seed=seed, seconds=time.perf_counter() - t0, sampled=[d.name for d in dists],
        held_fixed=list(held_fixed), figures=summary, histograms=hists,
    )


def attach_sobol(
    items: Sequence[SensitivityItem], indices: Mapping[str, Mapping[str, tuple[float, float]]]
) -> list[SensitivityItem]:
    """Copy Sobol indices onto the one-at-a-time items."""
    out = []
    for it in items:
        idx = indices.get(it.assumption, {})
        out.append(it.model_copy(update={
            "sobol_first": {m: v[0] for m, v in idx.items()}, "sobol_total": {m: v[1] for m, v in idx.items()},
        }))
    return out
