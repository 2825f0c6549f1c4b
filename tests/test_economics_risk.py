"""Sampling, one-at-a-time sensitivity, Sobol indices and Monte Carlo over the assumption ranges."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

import numpy as np
import pytest

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.economics.finance import Array
from factoryplan.economics.risk import (
    Dist,
    distributions,
    monte_carlo,
    norm_ppf,
    one_at_a_time,
    ppf,
    sobol_indices,
)
from factoryplan.economics.tco import cost_assumptions
from factoryplan.errors import FactoryplanError


def test_norm_ppf_matches_the_standard_library() -> None:
    ps = np.array([1e-6, 0.001, 0.02425, 0.05, 0.3, 0.5, 0.7, 0.95, 0.999, 1 - 1e-6])
    ours = norm_ppf(ps)
    for p, z in zip(ps, ours, strict=True):
        assert z == pytest.approx(statistics.NormalDist().inv_cdf(float(p)), abs=1e-7)


@pytest.mark.parametrize("kind", ["uniform", "triangular", "lognormal"])
def test_ppf_moments(kind: str) -> None:
    d = Dist("x", kind, 2.0, 1.0, 5.0, "ratio")
    u = (np.arange(200_000) + 0.5) / 200_000
    x = ppf(d, u)
    if kind == "uniform":
        assert x.mean() == pytest.approx(3.0, rel=1e-3)
    elif kind == "triangular":
        assert x.min() >= 1.0 and x.max() <= 5.0
        assert x.mean() == pytest.approx((1 + 2 + 5) / 3, rel=1e-3)
        assert np.median(x) < 3.0  # skewed towards the mode
    else:  # median at the value, low/high at the 5th/95th percentiles (geometric mean of both tails)
        assert np.median(x) == pytest.approx(2.0, rel=1e-3)
        assert np.percentile(x, 95) / np.percentile(x, 5) == pytest.approx(5.0, rel=1e-2)


def test_catalog_ranges_contain_their_values(catalog: Catalog) -> None:
    for a in catalog.assumptions.values():
        if a.low is not None and a.high is not None:
            assert a.low <= a.value <= a.high, a.id
        if a.distribution == "lognormal":
            assert a.low is not None and a.low > 0, a.id


def test_overrides_and_fixed_entries_are_held(catalog: Catalog) -> None:
    asm = AssumptionSet.from_scenario(catalog, {"wacc": 0.05})
    sampled, fixed = distributions(asm, cost_assumptions("own-build"))
    names = {d.name for d in sampled}
    assert "wacc" in fixed and "it_refresh" in fixed
    assert {"utilization", "it_lifetime", "hardware_price_factor"} <= names


def test_value_outside_its_range_is_refused(catalog: Catalog) -> None:
    entry = catalog.assumptions["insurance"].model_copy(update={"value": 0.5})
    cat = Catalog(assumptions={**catalog.assumptions, "insurance": entry}, fx=catalog.fx)
    with pytest.raises(FactoryplanError, match="outside its range"):
        distributions(AssumptionSet(catalog=cat), ["insurance"])


def _linear(a: Mapping[str, Array]) -> dict[str, Array]:
    x, y = np.asarray(a["x"]), np.asarray(a["y"])
    out = x + 2.0 * y + 0 * np.asarray(a["c"])
    return {"usd_per_gpu_hour": out, "tco_usd": out * 10}


DISTS = [Dist("x", "uniform", 0.5, 0.0, 1.0, "ratio"), Dist("y", "uniform", 0.5, 0.0, 1.0, "ratio")]


def test_one_at_a_time_tornado() -> None:
    items = one_at_a_time({"x": 0.5, "y": 0.5, "c": 1.0}, DISTS, _linear)
    assert [i.assumption for i in items] == ["y", "x"]  # sorted by swing
    assert items[0].at_low["usd_per_gpu_hour"] == pytest.approx(0.5)
    assert items[0].at_high["usd_per_gpu_hour"] == pytest.approx(2.5)
    assert items[0].swing["usd_per_gpu_hour"] == pytest.approx(2.0)
    assert items[1].swing["tco_usd"] == pytest.approx(10.0)


def test_sobol_indices_of_an_additive_model() -> None:
    """Y = X + 2Y with independent uniforms: S1 = ST = 1/5 and 4/5 (variance shares)."""
    idx = sobol_indices({"x": 0.5, "y": 0.5, "c": 1.0}, DISTS, _linear, 1000, seed=3)
    s1x, stx = idx["x"]["usd_per_gpu_hour"]
    s1y, sty = idx["y"]["usd_per_gpu_hour"]
    assert s1x == pytest.approx(0.2, abs=0.04) and stx == pytest.approx(0.2, abs=0.04)
    assert s1y == pytest.approx(0.8, abs=0.04) and sty == pytest.approx(0.8, abs=0.04)


def test_monte_carlo_percentiles_and_seed() -> None:
    calls: list[tuple[int, int]] = []
    mc = monte_carlo({"x": 0.5, "y": 0.5, "c": 1.0}, DISTS, ["c"], _linear, 20_000, seed=7, chunk=8_000,
                     progress=lambda done, total: calls.append((done, total)))
    p = mc.figures["usd_per_gpu_hour"]
    assert p.p10 < p.p50 < p.p90
    assert p.mean == pytest.approx(1.5, abs=0.02)
    assert p.p50 == pytest.approx(1.5, abs=0.03)
    assert calls == [(8_000, 20_000), (16_000, 20_000), (20_000, 20_000)]
    assert sum(mc.histograms["usd_per_gpu_hour"].counts) == 20_000
    again = monte_carlo({"x": 0.5, "y": 0.5, "c": 1.0}, DISTS, ["c"], _linear, 20_000, seed=7)
    assert again.figures["tco_usd"] == mc.figures["tco_usd"]
    with pytest.raises(FactoryplanError, match="at least 1"):
        monte_carlo({"x": 0.5, "y": 0.5, "c": 1.0}, DISTS, [], _linear, 0)
