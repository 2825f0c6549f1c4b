"""GPUs -> systems -> racks -> scalable units, and the power chain from chip to meter (first-order).

Systems are whole servers or rack-scale systems; racks hold ``systems_per_rack`` systems;
scalable units follow the system's reference architecture. IT power is the systems' maximum
power plus a stated overhead for network, storage and management; facility power applies the
region's PUE for the cooling type.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.schema import Accelerator, Region, System
from factoryplan.units import J_PER_MWH, SECONDS_PER_YEAR


class Pool(BaseModel):
    """One homogeneous group of systems serving some workloads."""

    model_config = ConfigDict(frozen=True)

    accelerator: str
    system: str
    gpus: int
    systems: int
    racks: int
    scalable_units: float
    cooling: str
    rack_power_kw: float
    gpu_tdp_kw: float
    system_power_kw: float
    workloads: list[str]


class Power(BaseModel):
    """The power chain of the whole deployment, in MW."""

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


def build_pool(system: System, acc: Accelerator, gpus_needed: int, workloads: Sequence[str], cooling: str) -> Pool:
    """Whole systems and racks for ``gpus_needed`` GPUs of ``system``."""
    systems = max(1, math.ceil(gpus_needed / system.gpus))
    racks = math.ceil(systems / system.systems_per_rack)
    used_cooling = system.cooling if cooling == "auto" else cooling
    return Pool(
        accelerator=acc.id,
        system=system.id,
        gpus=systems * system.gpus,
        systems=systems,
        racks=racks,
        scalable_units=systems / system.scalable_unit_systems,
        cooling=used_cooling,
        rack_power_kw=system.power_w * min(system.systems_per_rack, systems) / 1e3,
        gpu_tdp_kw=systems * system.gpus * acc.tdp_w / 1e3,
        system_power_kw=systems * system.power_w / 1e3,
        workloads=list(workloads),
    )


def power_chain(pools: Sequence[Pool], region: Region, asm: AssumptionSet, budget_mw: float | None) -> Power:
    """Chip -> systems -> IT -> facility (PUE by cooling type) -> average draw and annual energy."""
    overhead = asm.get("it_overhead_fraction")
    avg_fraction = asm.get("average_power_fraction")
    gpu_w = sum(p.gpu_tdp_kw for p in pools) * 1e3
    systems_w = sum(p.system_power_kw for p in pools) * 1e3
    it_w = systems_w * (1 + overhead)
    facility_w = 0.0
    for p in pools:
        pue = region.pue_liquid if p.cooling == "liquid" else region.pue_air
        facility_w += p.system_power_kw * 1e3 * (1 + overhead) * pue
    pue_all = facility_w / it_w if it_w > 0 else region.pue_liquid
    average_w = facility_w * avg_fraction
    return Power(
        gpu_mw=gpu_w / 1e6,
        systems_mw=systems_w / 1e6,
        it_mw=it_w / 1e6,
        pue=pue_all,
        facility_mw=facility_w / 1e6,
        average_facility_mw=average_w / 1e6,
        annual_energy_mwh=average_w * SECONDS_PER_YEAR / J_PER_MWH,
        budget_mw=budget_mw,
        within_budget=budget_mw is None or facility_w / 1e6 <= budget_mw,
    )
