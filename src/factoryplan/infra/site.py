"""Cooling, racks, floor, halls, buildings and phases of a deployment.

Cooling follows rack density. The reference-architecture layout (``systems_per_rack``) is kept
unless the user asks for air: a rack above the practical air-cooling limit needs liquid cooling
(direct liquid or rear-door heat exchangers), and a system built for liquid always does. Asking for
air with dense systems puts fewer systems in each rack, down to what the air limit allows.

Space: compute racks hold systems only; switches, storage and control-plane servers fill separate
racks by rack units (a deployment that fits one rack altogether is one rack). Floor area is racks
times white space per rack (aisles included); halls hold a stated number of racks; buildings hold a
stated maximum IT power. Phased power: for each step of power available at the meter, the largest
deployment in whole scalable units that the step can energise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from factoryplan.catalog.schema import System
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.infra.fabric import Ints, cdiv

COOLING_CHOICES = ("auto", "air", "liquid")


class Cooling(BaseModel):
    """How the compute racks are cooled, and why."""

    model_config = ConfigDict(frozen=True)

    mode: str  # air | liquid | mixed (several pools)
    systems_per_rack: int
    rack_kw: float  # one full compute rack at maximum power
    air_limit_kw: float
    air_racks: int
    liquid_racks: int
    reason: str


def plan_cooling(system: System, request: str, air_limit_w: float, systems: int | None = None) -> tuple[str, int, str]:
    """(cooling mode, systems per rack, reason) for ``systems`` of ``system`` under the user's ``request``.

    The rack density judged is that of a full rack, or of the one rack when fewer systems than a
    rack holds are deployed (``systems`` None: full racks).
    """
    if request not in COOLING_CHOICES:
        raise FactoryplanError("unknown cooling", field="cooling", value=request, allowed=", ".join(COOLING_CHOICES))
    per_rack = max(1, math.floor(system.systems_per_rack + 1e-9))
    filled = per_rack if systems is None else max(1, min(per_rack, systems))
    rack_kw = filled * system.power_w / 1e3
    limit_kw = air_limit_w / 1e3
    air_fit = math.floor(air_limit_w / system.power_w + 1e-9)
    if system.cooling == "liquid":
        if request == "air":
            raise InfeasibleError(f"{system.id} is built for direct liquid cooling and cannot be air-cooled",
                                  field="cooling", value=request, allowed="auto, liquid")
        return "liquid", per_rack, f"{system.id} is liquid-cooled ({rack_kw:,.0f} kW per rack)"
    if request == "liquid":
        return "liquid", per_rack, f"liquid cooling requested ({filled} systems, {rack_kw:,.1f} kW per rack)"
    if request == "air":
        fit = min(per_rack, air_fit)
        if fit < 1:
            raise InfeasibleError(
                f"one {system.id} draws {system.power_w / 1e3:,.1f} kW, above the practical air limit of "
                f"{limit_kw:g} kW per rack", field="cooling", value=request, allowed="auto, liquid",
            )
        return "air", fit, (f"air cooling requested: {fit} systems per rack ({fit * system.power_w / 1e3:,.1f} kW) "
                            f"within the {limit_kw:g} kW air limit")
    if rack_kw <= limit_kw + 1e-9:
        return "air", per_rack, f"{rack_kw:,.1f} kW per rack is within the {limit_kw:g} kW practical air limit"
    return "liquid", per_rack, (
        f"{filled} systems per rack draw {rack_kw:,.1f} kW, above the {limit_kw:g} kW practical air limit: "
        f"liquid (direct or rear-door) cooling; --cooling air puts {max(1, air_fit)} per rack instead"
    )


def rack_counts(
    systems: Ints, systems_per_rack: int, system_u: float, other_u: npt.NDArray[np.float64], usable_u: float,
) -> tuple[Ints, Ints]:
    """(compute racks, all racks): compute racks by systems; the rest by rack units of other equipment.

    Everything shares one rack when a single compute rack has room for it.
    """
    compute = cdiv(systems, systems_per_rack)
    others = np.ceil(np.asarray(other_u) / usable_u - 1e-9).astype(np.int64)
    fits_one = (compute == 1) & (systems * system_u + other_u <= usable_u + 1e-9)
    return compute, np.where(fits_one, 1, compute + others)


def halls_for(racks: Ints, racks_per_hall: float) -> Ints:
    """Data halls needed for ``racks`` (at least one)."""
    return np.maximum(1, cdiv(racks, max(1, int(racks_per_hall))))


def buildings_for(it_w: npt.NDArray[np.float64], building_max_w: float) -> Ints:
    """Buildings needed at a maximum IT power per building (at least one)."""
    return np.maximum(1, np.ceil(np.asarray(it_w) / building_max_w - 1e-9)).astype(np.int64)


class Phase(BaseModel):
    """What one step of available power energises."""

    model_config = ConfigDict(frozen=True)

    phase: int
    power_mw: float  # available at the meter in this phase (cumulative)
    scalable_units: int
    gpus: int
    facility_mw: float


def largest_within(facility_w: npt.NDArray[np.float64], budget_w: float) -> int:
    """Index of the largest element of a non-decreasing array that is <= ``budget_w``; -1 if none."""
    return int(np.searchsorted(facility_w, budget_w * (1 + 1e-12), side="right")) - 1


def check_phases(phases_mw: Sequence[float]) -> list[float]:
    """Validated cumulative power steps (positive, non-decreasing)."""
    steps = [float(p) for p in phases_mw]
    if not steps or any(not p > 0 for p in steps) or any(b < a for a, b in itertools.pairwise(steps)):
        raise FactoryplanError("power phases are cumulative MW at the meter", field="phases",
                               value=",".join(f"{p:g}" for p in steps), allowed="positive, non-decreasing numbers")
    return steps
