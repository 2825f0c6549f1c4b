"""The power chain: chip -> system -> IT -> facility (PUE) -> average draw -> annual energy.

- chip: GPU TDP times GPUs;
- systems: the systems' maximum power (GPUs, CPUs, NICs, fans; NVL72 racks include their NVLink
  switch trays);
- IT: systems plus the networks (switches with their own modules, host-side modules, active cables),
  storage nodes and management (out-of-band switches, control-plane servers), all at maximum power;
- facility (at the meter): IT times the power usage effectiveness (PUE) of the hall's cooling type in
  the region (The Green Grid: PUE = facility power / IT power);
- average draw: facility power times the stated average fraction of nameplate (utilisation);
- annual energy: average draw times 8,766 hours.

The figures are maxima (nameplate) except the average draw and energy; PUE is taken as constant
over load, a first-order simplification (real PUE rises at low load).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, computed_field

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.schema import Region
from factoryplan.units import J_PER_MWH, SECONDS_PER_YEAR


class Power(BaseModel):
    """The power chain of a deployment, in MW (kW views for the cluster command)."""

    model_config = ConfigDict(frozen=True)

    gpu_mw: float
    systems_mw: float
    it_mw: float
    pue: float
    facility_mw: float
    average_facility_mw: float
    annual_energy_mwh: float
    budget_mw: float | None
    within_budget: bool
    network_mw: float = 0.0
    storage_mw: float = 0.0
    management_mw: float = 0.0
    average_fraction: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def it_kw(self) -> float:
        return self.it_mw * 1e3

    @computed_field  # type: ignore[prop-decorator]
    @property
    def facility_kw(self) -> float:
        return self.facility_mw * 1e3


@dataclass(frozen=True)
class PowerLoad:
    """Maximum power of one pool's parts, in W, and the cooling of its hall."""

    gpu_w: float
    systems_w: float
    network_w: float
    storage_w: float
    management_w: float
    cooling: str

    @property
    def it_w(self) -> float:
        """Compute systems + networks + storage + management."""
        return self.systems_w + self.network_w + self.storage_w + self.management_w


def pue_for(region: Region, cooling: str) -> float:
    """The region's PUE for an air- or liquid-cooled hall."""
    return region.pue_liquid if cooling == "liquid" else region.pue_air


def annual_energy_mwh(average_w: float) -> float:
    """MWh in a year (365.25 days) at a constant ``average_w``."""
    return average_w * SECONDS_PER_YEAR / J_PER_MWH


def power_chain(loads: Sequence[PowerLoad], region: Region, asm: AssumptionSet, budget_mw: float | None) -> Power:
    """Chip -> systems -> IT -> facility -> average draw and energy for pools in one region."""
    avg_fraction = asm.get("average_power_fraction")
    it_w = sum(p.it_w for p in loads)
    facility_w = sum(p.it_w * pue_for(region, p.cooling) for p in loads)
    average_w = facility_w * avg_fraction
    return Power(
        gpu_mw=sum(p.gpu_w for p in loads) / 1e6,
        systems_mw=sum(p.systems_w for p in loads) / 1e6,
        it_mw=it_w / 1e6,
        pue=facility_w / it_w if it_w > 0 else region.pue_liquid,
        facility_mw=facility_w / 1e6,
        average_facility_mw=average_w / 1e6,
        annual_energy_mwh=annual_energy_mwh(average_w),
        budget_mw=budget_mw,
        within_budget=budget_mw is None or facility_w / 1e6 <= budget_mw * (1 + 1e-12),
        network_mw=sum(p.network_w for p in loads) / 1e6,
        storage_mw=sum(p.storage_w for p in loads) / 1e6,
        management_mw=sum(p.management_w for p in loads) / 1e6,
        average_fraction=avg_fraction,
    )
