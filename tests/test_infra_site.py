"""Cooling, racks, halls, buildings and phases (factoryplan.infra.site)."""

from __future__ import annotations

import numpy as np
import pytest

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.infra.cluster import ClusterOptions, design_cluster
from factoryplan.infra.site import buildings_for, check_phases, halls_for, largest_within, plan_cooling, rack_counts

AIR_LIMIT_W = 30e3


def test_cooling_by_rack_density(catalog: Catalog) -> None:
    h100, a100, nvl72 = catalog.systems["dgx-h100"], catalog.systems["hgx-a100-40gb"], catalog.systems["gb200-nvl72"]
    assert plan_cooling(a100, "auto", AIR_LIMIT_W)[:2] == ("air", 4)  # 26 kW racks
    mode, per_rack, reason = plan_cooling(h100, "auto", AIR_LIMIT_W)
    assert (mode, per_rack) == ("liquid", 4) and "40.8 kW" in reason  # the RA's 40.8 kW rack is above 30 kW
    assert plan_cooling(h100, "auto", AIR_LIMIT_W, systems=2)[0] == "air"  # one part-filled rack, 20.4 kW
    assert plan_cooling(h100, "air", AIR_LIMIT_W)[:2] == ("air", 2)  # two per rack fit the air limit
    assert plan_cooling(h100, "liquid", AIR_LIMIT_W)[:2] == ("liquid", 4)
    assert plan_cooling(nvl72, "auto", AIR_LIMIT_W)[0] == "liquid"
    with pytest.raises(InfeasibleError, match="cannot be air-cooled"):
        plan_cooling(nvl72, "air", AIR_LIMIT_W)
    with pytest.raises(InfeasibleError, match="above the practical air limit"):
        plan_cooling(h100, "air", 8e3)
    with pytest.raises(FactoryplanError, match="unknown cooling"):
        plan_cooling(h100, "immersion", AIR_LIMIT_W)


def test_air_cooling_takes_more_racks_and_a_higher_pue(catalog: Catalog) -> None:
    asm, region = AssumptionSet(catalog), catalog.regions["us"]
    auto = design_cluster(catalog, asm, region, "dgx-b200", gpus=1024)
    air = design_cluster(catalog, asm, region, "dgx-b200", gpus=1024, opts=ClusterOptions(cooling="air"))
    assert (auto.cooling.mode, air.cooling.mode) == ("liquid", "air")
    assert air.compute_racks == 2 * auto.compute_racks  # 2 x 14.3 kW per rack instead of 4
    assert air.power.pue == region.pue_air and auto.power.pue == region.pue_liquid
    assert air.floor_m2 > auto.floor_m2


def test_rack_counts() -> None:
    compute, total = rack_counts(np.array([1, 4, 5]), 4, 8.0, np.array([4.0, 12.0, 50.0]), 42.0)
    assert list(compute) == [1, 1, 2]
    assert list(total) == [1, 2, 4]  # 8U + 4U share one rack; 32U + 12U do not; 50U take two more racks


def test_halls_buildings_and_the_budget_search() -> None:
    assert list(halls_for(np.array([1, 200, 201]), 200)) == [1, 1, 2]
    assert list(buildings_for(np.array([1e6, 100e6, 100.1e6]), 100e6)) == [1, 1, 2]
    facility = np.array([1.0, 2.0, 3.0, np.inf])
    assert [largest_within(facility, b) for b in (0.5, 1.0, 2.5, 1e9)] == [-1, 0, 1, 2]


def test_gigawatt_site(catalog: Catalog) -> None:
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["kr"], "gb200-nvl72", power_mw=1000)
    assert d.buildings == 9  # 833 MW of IT at 100 MW per building
    assert d.halls == -(-d.racks // 200)
    assert d.floor_m2 == pytest.approx(d.racks * 3.0)
    assert d.racks > d.compute_racks == d.systems


def test_phases(catalog: Catalog) -> None:
    """Naver GAK Sejong roadmap (shared gigawatt_scale.csv): 55 -> 100 -> 200 MW at the meter."""
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["kr"], "gb200-nvl72", power_mw=200,
                       phases_mw=[55, 100, 200])
    sus = [p.scalable_units for p in d.phases]
    assert sus == sorted(sus) and sus[-1] == d.scalable_units
    assert all(p.facility_mw <= p.power_mw for p in d.phases)
    small = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["kr"], "gb200-nvl72", gpus=576 * 10,
                           phases_mw=[55, 100])
    assert [p.scalable_units for p in small.phases] == [10, 10]  # never more than the deployment
    with pytest.raises(FactoryplanError, match="cumulative"):
        check_phases([100, 55])
