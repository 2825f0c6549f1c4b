"""The vectorised cost model: capex, opex, annualised cost and $/GPU-hour, by hand on a small case."""

from __future__ import annotations

import numpy as np
import pytest

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.economics.tco import (
    CostInputs,
    assumption_values,
    cost_assumptions,
    costs_from,
    evaluate,
    validate_cost_assumptions,
)
from factoryplan.errors import ScenarioError
from factoryplan.units import SECONDS_PER_YEAR

Y = SECONDS_PER_YEAR


def _inputs(deployment: str = "own-build") -> CostInputs:
    return CostInputs(
        deployment=deployment, gpus=8.0, bom_usd={"compute": 300_000.0, "network": 40_000.0, "storage": 10_000.0},
        it_w=12_000.0, liquid_share=0.5, average_facility_w=10_800.0, average_fraction_ref=0.75,
        electricity_usd_per_j=0.10 / 3.6e6, fte_usd_per_s=150_000.0 / Y, facility_cost_factor=0.8, horizon_years=5,
    )


def _values(**over: float) -> dict[str, float]:
    a = {
        "hardware_price_factor": 1.0, "hot_spare_fraction": 0.02, "installation_fraction": 0.05,
        "electricity_price_factor": 1.0, "average_power_fraction": 0.75, "hw_support_maintenance": 0.05,
        "insurance": 0.01, "ops_fte_per_gpu": 0.001, "software_usd_per_gpu_year": 1_000.0 / Y, "wacc": 0.0,
        "it_lifetime": 5 * Y, "residual_value_it": 0.0, "it_refresh": 1.0, "utilization": 0.5,
        "facility_build_cost": 10.0, "liquid_cooling_uplift": 0.2, "facility_om": 0.03, "ops_fte_per_mw": 0.5e-6,
        "facility_lifetime": 15 * Y, "colo_price": 200.0 / (1e3 * Y / 12),
    }
    a.update(over)
    return a


def test_capex_by_hand() -> None:
    r = evaluate(_inputs(), _values())
    assert r.capex["spares"] == pytest.approx(6_000.0)
    assert r.capex["installation"] == pytest.approx(0.05 * 356_000.0)
    assert r.it_capex == pytest.approx(356_000.0 * 1.05)
    # 12 kW x 10 USD/W x regional factor 0.8, plus 20% uplift on the liquid-cooled half
    assert r.capex["facility_build"] == pytest.approx(96_000.0)
    assert r.capex["liquid_cooling"] == pytest.approx(96_000.0 * 0.5 * 0.2)


def test_opex_by_hand() -> None:
    r = evaluate(_inputs(), _values())
    fac = 96_000.0 * 1.1
    assert r.opex["electricity"] == pytest.approx(10_800.0 * Y / 3.6e6 * 0.10)
    assert r.opex["hardware_support"] == pytest.approx(0.05 * 373_800.0)
    assert r.opex["insurance"] == pytest.approx(0.01 * (373_800.0 + fac))
    assert r.opex["staff"] == pytest.approx((8 * 0.001 + 12_000 * 0.5e-6) * 150_000.0)
    assert r.opex["software"] == pytest.approx(8_000.0)
    assert r.opex["facility_om"] == pytest.approx(0.03 * fac)
    assert "colocation" not in r.opex


def test_colocation_pays_rent_and_no_building() -> None:
    r = evaluate(_inputs("colocation"), _values())
    assert r.fac_capex == 0 and "facility_build" not in r.capex
    assert r.opex["colocation"] == pytest.approx(12.0 * 200.0 * 12)  # 12 kW x 200 USD/kW-month
    assert r.opex["staff"] == pytest.approx(8 * 0.001 * 150_000.0)  # the provider staffs its building


def test_annualised_and_gpu_hour() -> None:
    r = evaluate(_inputs(), _values())
    expected = 373_800.0 / 5 + 105_600.0 / 15 + float(r.opex_total)
    assert r.annualized == pytest.approx(expected)
    assert r.usd_per_gpu_hour == pytest.approx(expected / (8 * Y / 3600 * 0.5))
    at_wacc = evaluate(_inputs(), _values(wacc=0.1))
    assert at_wacc.annualized > r.annualized
    assert at_wacc.straight_line == pytest.approx(r.straight_line)


def test_average_draw_scales_with_the_assumption() -> None:
    base = evaluate(_inputs(), _values())
    more = evaluate(_inputs(), _values(average_power_fraction=0.9))
    assert more.opex["electricity"] == pytest.approx(base.opex["electricity"] * 0.9 / 0.75)


def test_arrays_equal_scalars() -> None:
    draws = {"wacc": np.array([0.0, 0.05, 0.12]), "utilization": np.array([0.3, 0.6, 0.9]),
             "hardware_price_factor": np.array([0.8, 1.0, 1.3])}
    vec = evaluate(_inputs(), _values(**draws))  # type: ignore[arg-type]
    for i in range(3):
        one = evaluate(_inputs(), _values(**{k: float(v[i]) for k, v in draws.items()}))
        assert np.asarray(vec.usd_per_gpu_hour)[i] == pytest.approx(one.usd_per_gpu_hour)
        assert np.asarray(vec.flows.npv)[i] == pytest.approx(one.flows.npv)


def test_costs_package_is_consistent() -> None:
    k = costs_from(_inputs(), _values(wacc=0.08))
    assert k.capex_usd == pytest.approx(sum(k.capex_breakdown.values()))
    assert k.opex_usd_per_year == pytest.approx(sum(k.opex_breakdown.values()))
    assert k.tco_usd == pytest.approx(sum(f.total_usd for f in k.cash_flows))
    assert k.npv_usd == pytest.approx(sum(f.discounted_usd for f in k.cash_flows))
    assert k.cash_flows[-1].cumulative_usd == pytest.approx(k.tco_usd)
    assert k.annualized_usd_per_year == pytest.approx(sum(k.annualized_breakdown.values()))


def test_assumption_lists(catalog: Catalog) -> None:
    for dep in ("own-build", "colocation"):
        for name in cost_assumptions(dep):
            assert name in catalog.assumptions, name
    assert "colo_price" in cost_assumptions("colocation") and "colo_price" not in cost_assumptions("own-build")
    values = assumption_values(AssumptionSet(catalog=catalog), "own-build")
    assert values["it_lifetime"] == pytest.approx(catalog.assumptions["it_lifetime"].value)


@pytest.mark.parametrize("name", ["it_lifetime", "facility_lifetime", "utilization", "hardware_price_factor"])
def test_zero_is_rejected_with_the_field_named(catalog: Catalog, name: str) -> None:
    asm = AssumptionSet.from_scenario(catalog, {name: 0}, where="s.yaml")
    with pytest.raises(ScenarioError, match=rf"s\.yaml: assumptions\.{name}: must be greater than 0"):
        validate_cost_assumptions(asm, where="s.yaml")


@pytest.mark.parametrize(("name", "value", "message"), [
    ("utilization", 1.5, "is a fraction"),
    ("colo_price", -10, "must not be negative"),
    ("wacc", -0.02, "must not be negative"),
])
def test_impossible_overrides_are_rejected(catalog: Catalog, name: str, value: float, message: str) -> None:
    with pytest.raises(ScenarioError, match=rf"assumptions\.{name}: {message}"):
        AssumptionSet.from_scenario(catalog, {name: value}, where="s.yaml")
