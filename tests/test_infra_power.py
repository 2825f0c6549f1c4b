"""The power chain (factoryplan.infra.power) and power-constrained sizing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.errors import InfeasibleError
from factoryplan.infra.cluster import design_cluster
from factoryplan.infra.power import PowerLoad, annual_energy_mwh, power_chain, pue_for

GIGAWATT = Path(__file__).resolve().parent / "data" / "gigawatt_scale.csv"


def test_chain_adds_parts_and_applies_pue_by_cooling(catalog: Catalog) -> None:
    region = catalog.regions["us"]
    asm = AssumptionSet(catalog)
    air = PowerLoad(gpu_w=5e6, systems_w=8e6, network_w=1e6, storage_w=0.5e6, management_w=0.5e6, cooling="air")
    liquid = PowerLoad(gpu_w=5e6, systems_w=8e6, network_w=1e6, storage_w=0.5e6, management_w=0.5e6,
                       cooling="liquid")
    p = power_chain([air, liquid], region, asm, budget_mw=40)
    assert p.it_mw == pytest.approx(20.0)
    assert p.facility_mw == pytest.approx(10 * region.pue_air + 10 * region.pue_liquid)
    assert p.pue == pytest.approx(p.facility_mw / p.it_mw)
    assert (p.network_mw, p.storage_mw, p.management_mw) == pytest.approx((2.0, 1.0, 1.0))
    assert p.average_facility_mw == pytest.approx(p.facility_mw * asm.get("average_power_fraction"))
    assert p.annual_energy_mwh == pytest.approx(p.average_facility_mw * 8766)
    assert p.within_budget and p.it_kw == pytest.approx(20_000) and p.facility_kw == pytest.approx(p.facility_mw * 1e3)
    assert not power_chain([air], region, asm, budget_mw=10).within_budget
    assert pue_for(region, "liquid") < pue_for(region, "air")
    assert annual_energy_mwh(1e6) == pytest.approx(8766.0)


def test_design_power_parts(catalog: Catalog) -> None:
    """One SU of DGX H100: chip 256 x 700 W, systems 32 x 10.2 kW, and IT above systems by 5-20%."""
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "dgx-h100", gpus=256)
    p = d.power
    assert p.gpu_mw == pytest.approx(256 * 700e-6)
    assert p.systems_mw == pytest.approx(32 * 10.2e-3)
    assert 1.05 < p.it_mw / p.systems_mw < 1.20  # Epoch: IT = 1.14 x server power (it_overhead_fraction)
    assert p.it_mw == pytest.approx(p.systems_mw + p.network_mw + p.storage_mw + p.management_mw)
    assert d.per_gpu_w["it"] == pytest.approx(p.it_mw * 1e6 / 256)


def test_power_budget_gives_the_largest_whole_su_deployment(catalog: Catalog) -> None:
    asm, region = AssumptionSet(catalog), catalog.regions["kr"]
    d = design_cluster(catalog, asm, region, "gb200-nvl72", power_mw=55)
    assert d.gpus % 576 == 0 and d.power.facility_mw <= 55
    bigger = design_cluster(catalog, asm, region, "gb200-nvl72", gpus=d.gpus + 576)
    assert bigger.power.facility_mw > 55  # one more SU would not fit
    assert d.power.budget_mw == 55 and d.power.within_budget


def test_budget_below_one_scalable_unit_is_a_clear_error(catalog: Catalog) -> None:
    with pytest.raises(InfeasibleError, match="below one scalable unit") as exc:
        design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "gb200-nvl72", power_mw=1.0)
    assert "576 GPUs" in exc.value.render() and "MW at the meter" in exc.value.render()


def _ranges() -> dict[str, tuple[float, float]]:
    with GIGAWATT.open(encoding="utf-8") as fh:
        return {r["system"]: (float(r["gpus_per_gw_low"]), float(r["gpus_per_gw_high"])) for r in csv.DictReader(fh)}


@pytest.mark.parametrize("system", ["gb200-nvl72", "dgx-h100"])
def test_gpus_per_gigawatt_within_published_ranges(system: str, catalog: Catalog) -> None:
    """shared reference gigawatt_scale.csv: ~350-420k GB200 and ~530-670k H100 per GW at the meter.

    Measured (region kr, PUE 1.2 liquid): GB200 NVL72 412,992 GPUs (2.42 kW per GPU at the meter),
    DGX H100 570,624 (1.75 kW): a GB200 GPU draws 1.2 kW against 0.7 kW and brings half a Grace CPU.
    """
    low, high = _ranges()[system]
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["kr"], system, power_mw=1000)
    assert low <= d.gpus <= high
    assert low <= d.gpus_per_gw <= high
    one_su_mw = d.per_gpu_w["facility"] * d.scalable_unit_gpus / 1e6
    assert 1000 - 1.05 * one_su_mw <= d.power.facility_mw <= 1000  # the next SU would not fit
