"""Capex, opex and lifetime cost of an owned deployment, as one vectorised cost model.

The physical design (bill of materials, GPUs, IT and facility power, region) is fixed in a
``CostInputs``; the modelling assumptions (prices, lifetimes, WACC, ratios) are a mapping of
name -> float or numpy array in internal units. ``evaluate`` runs the same formulas on one value
per assumption (the plan) or on arrays of draws (sensitivity, Monte Carlo), so uncertainty never
re-runs the plan.

Definitions (all in USD):
- capex: the bill of materials by category (compute, network, optics, storage, other) at catalog
  prices x ``hardware_price_factor``; hot spares (a share of compute); installation (a share of
  all IT); and, for an own build, the facility: IT power x build cost per W x the region's
  construction-cost factor, plus a liquid-cooling uplift on the liquid-cooled share.
- opex per year: electricity (average facility draw x hours x region price x
  ``electricity_price_factor``), hardware support (share of IT capex), facility O&M (share of
  facility capex, own build), insurance (share of capex owned), staff (FTE per GPU, plus FTE per
  MW of IT for an own build: a colocation provider staffs its building), software per GPU, and
  for colocation the rent per kW-month of IT capacity.
- annualised cost: IT capex levelised over its life at the WACC net of its residual value,
  facility capex levelised over its life, plus opex (steady state, see ``finance``).
- tco over the horizon: the undiscounted sum of the yearly cash flows (capex in year 0, opex,
  IT refresh, residual value credited at the end); npv: the same flows discounted at the WACC.
- usd_per_gpu_hour: annualised cost / (GPUs x hours per year x utilisation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.schema import Region
from factoryplan.economics.finance import CashFlowArrays, FloatOrArray, cash_flows, levelised_capex, straight_line
from factoryplan.economics.unitcost import RunCost, ServiceCost, usd_per_gpu_hour
from factoryplan.errors import ScenarioError
from factoryplan.infra.bom import BomItem
from factoryplan.infra.cluster import Pool, Power
from factoryplan.units import SECONDS_PER_YEAR

_COMMON = (
    "hardware_price_factor", "hot_spare_fraction", "installation_fraction", "electricity_price_factor",
    "average_power_fraction", "hw_support_maintenance", "insurance", "ops_fte_per_gpu", "software_usd_per_gpu_year",
    "wacc", "it_lifetime", "residual_value_it", "it_refresh", "utilization",
)
_OWN_BUILD = ("facility_build_cost", "liquid_cooling_uplift", "facility_om", "ops_fte_per_mw", "facility_lifetime")
_COLOCATION = ("colo_price",)


def cost_assumptions(deployment: str) -> tuple[str, ...]:
    """The assumptions the cost model of ``deployment`` reads (own-build or colocation)."""
    return _COMMON + (_OWN_BUILD if deployment == "own-build" else _COLOCATION)


class CashFlow(BaseModel):
    """One year of the owner's cash flows (costs positive)."""

    model_config = ConfigDict(frozen=True)

    year: int
    capex_usd: float
    opex_usd: float
    residual_usd: float
    total_usd: float
    cumulative_usd: float
    discounted_usd: float


class Costs(BaseModel):
    """What the owned deployment costs."""

    model_config = ConfigDict(frozen=True)

    deployment: str
    capex_usd: float
    capex_breakdown: dict[str, float]
    opex_usd_per_year: float
    opex_breakdown: dict[str, float]
    annualized_usd_per_year: float
    annualized_breakdown: dict[str, float]
    annualized_straight_line_usd_per_year: float
    horizon_years: float
    tco_usd: float
    npv_usd: float
    utilization: float
    usd_per_gpu_hour: float
    usd_per_gpu_hour_straight_line: float
    usd_per_million_tokens: dict[str, float] = {}
    services: list[ServiceCost] = []
    training_runs: list[RunCost] = []
    cash_flows: list[CashFlow]
    finance: dict[str, float]
    method: str


@dataclass(frozen=True)
class CostInputs:
    """The physical quantities the cost model prices; fixed while assumptions are sampled."""

    deployment: str  # own-build | colocation
    gpus: float
    bom_usd: Mapping[str, float]  # bill of materials by category, at catalog prices
    it_w: float
    liquid_share: float  # share of IT power in liquid-cooled pools
    average_facility_w: float  # average draw at the meter, as the power stage computed it
    average_fraction_ref: float  # the average_power_fraction that draw was computed with
    electricity_usd_per_j: float
    fte_usd_per_s: float
    facility_cost_factor: float
    horizon_years: float


@dataclass(frozen=True)
class CostArrays:
    """The cost model's results; every value is a float or an array shaped like the draws."""

    capex: dict[str, FloatOrArray]
    opex: dict[str, FloatOrArray]
    it_capex: FloatOrArray
    fac_capex: FloatOrArray
    opex_total: FloatOrArray
    annual_it: FloatOrArray
    annual_fac: FloatOrArray
    annualized: FloatOrArray
    straight_line: FloatOrArray
    usd_per_gpu_hour: FloatOrArray
    usd_per_gpu_hour_straight_line: FloatOrArray
    flows: CashFlowArrays

def cost_inputs(
    bom: Sequence[BomItem], pools: Sequence[Pool], power: Power, region: Region, deployment: str,
    asm: AssumptionSet, horizon_years: float | None,
) -> CostInputs:
    """Collect the fixed quantities of a deployment from the infra stage's outputs."""
    by_category: dict[str, float] = {}
    for item in bom:
        by_category[item.category] = by_category.get(item.category, 0.0) + item.total_usd
    system_w = sum(p.system_power_kw for p in pools) * 1e3
    liquid_w = sum(p.system_power_kw for p in pools if p.cooling == "liquid") * 1e3
    horizon = horizon_years or asm.get("it_lifetime") / SECONDS_PER_YEAR
    return CostInputs(
        deployment=deployment, gpus=float(sum(p.gpus for p in pools)), bom_usd=by_category, it_w=power.it_mw * 1e6,
        liquid_share=liquid_w / system_w if system_w > 0 else 0.0,
        average_facility_w=power.average_facility_mw * 1e6, average_fraction_ref=asm.get("average_power_fraction"),
        electricity_usd_per_j=region.electricity_usd_per_j, fte_usd_per_s=region.fte_cost_usd_per_s,
        facility_cost_factor=region.facility_cost_factor, horizon_years=horizon,
    )


def _capex(q: CostInputs, a: Mapping[str, FloatOrArray]) -> tuple[dict[str, FloatOrArray], dict[str, FloatOrArray]]:
    """(IT capex items, facility capex items)."""
    hw = np.asarray(a["hardware_price_factor"])
    it: dict[str, FloatOrArray] = {cat: v * hw for cat, v in q.bom_usd.items()}
    it["spares"] = q.bom_usd.get("compute", 0.0) * hw * a["hot_spare_fraction"]
    it["installation"] = sum(np.asarray(v) for v in it.values()) * np.asarray(a["installation_fraction"])
    facility: dict[str, FloatOrArray] = {}
    if q.deployment == "own-build":
        build = q.it_w * np.asarray(a["facility_build_cost"]) * q.facility_cost_factor
        facility["facility_build"] = build
        facility["liquid_cooling"] = build * q.liquid_share * np.asarray(a["liquid_cooling_uplift"])
    return it, facility


def _opex(
    q: CostInputs, a: Mapping[str, FloatOrArray], it_capex: FloatOrArray, fac_capex: FloatOrArray
) -> dict[str, FloatOrArray]:
    y = SECONDS_PER_YEAR
    own = q.deployment == "own-build"
    avg_w = q.average_facility_w * np.asarray(a["average_power_fraction"]) / q.average_fraction_ref
    fte = q.gpus * np.asarray(a["ops_fte_per_gpu"]) + (q.it_w * np.asarray(a["ops_fte_per_mw"]) if own else 0.0)
    opex: dict[str, FloatOrArray] = {
        "electricity": avg_w * y * q.electricity_usd_per_j * np.asarray(a["electricity_price_factor"]),
        "hardware_support": np.asarray(it_capex) * a["hw_support_maintenance"],
        "insurance": (np.asarray(it_capex) + fac_capex) * np.asarray(a["insurance"]),
        "staff": fte * q.fte_usd_per_s * y,
        "software": q.gpus * np.asarray(a["software_usd_per_gpu_year"]) * y,
    }
    if own:
        opex["facility_om"] = np.asarray(fac_capex) * a["facility_om"]
    else:
        opex["colocation"] = q.it_w * np.asarray(a["colo_price"]) * y
    return opex


def evaluate(q: CostInputs, a: Mapping[str, FloatOrArray]) -> CostArrays:
    """The whole cost model for one set of assumption values (floats) or arrays of draws."""
    it, facility = _capex(q, a)
    it_capex = sum(np.asarray(v) for v in it.values())
    fac_capex = sum(np.asarray(v) for v in facility.values()) if facility else np.zeros_like(np.asarray(it_capex))
    opex = _opex(q, a, it_capex, fac_capex)
    opex_total = sum(np.asarray(v) for v in opex.values())
    it_life = np.asarray(a["it_lifetime"]) / SECONDS_PER_YEAR
    fac_life = np.asarray(a.get("facility_lifetime", 15 * SECONDS_PER_YEAR)) / SECONDS_PER_YEAR
    wacc, residual = a["wacc"], a["residual_value_it"]
    annual_it = levelised_capex(it_capex, wacc, it_life, residual)
    annual_fac = levelised_capex(fac_capex, wacc, fac_life, 0.0)
    annualized = np.asarray(annual_it) + annual_fac + opex_total
    straight = np.asarray(straight_line(it_capex, it_life, residual)) + straight_line(fac_capex, fac_life) + opex_total
    flows = cash_flows(
        it_capex, fac_capex, opex_total, residual=residual, it_life=it_life, fac_life=fac_life,
        horizon_years=round(q.horizon_years), wacc=wacc, refresh=a["it_refresh"],
    )
    u = a["utilization"]
    return CostArrays(
        capex={**it, **facility}, opex=opex, it_capex=_f(it_capex), fac_capex=_f(fac_capex), opex_total=_f(opex_total),
        annual_it=annual_it, annual_fac=annual_fac, annualized=_f(annualized), straight_line=_f(straight),
        usd_per_gpu_hour=usd_per_gpu_hour(annualized, q.gpus, u),
        usd_per_gpu_hour_straight_line=usd_per_gpu_hour(straight, q.gpus, u), flows=flows,
    )


def _f(x: FloatOrArray) -> FloatOrArray:
    arr = np.asarray(x, dtype=float)
    return float(arr) if arr.ndim == 0 else arr


def assumption_values(asm: AssumptionSet, deployment: str) -> dict[str, float]:
    """The cost model's assumptions for ``deployment`` (records their use in the plan)."""
    return {name: asm.get(name) for name in cost_assumptions(deployment)}


_POSITIVE = ("it_lifetime", "facility_lifetime", "utilization", "hardware_price_factor", "electricity_price_factor",
             "average_power_fraction")


def validate_cost_assumptions(asm: AssumptionSet, *, where: str = "scenario") -> None:
    """Reject values the cost model cannot use: a lifetime or utilisation of 0, a zero price factor.

    Negative values and fractions above 1 are already refused when the overrides are read.
    """
    for name in _POSITIVE:
        if name not in asm.catalog.assumptions:
            continue
        value = asm.overrides.get(name, asm.catalog.assumptions[name].value)
        if value <= 0:
            source = f"assumptions.{name}" if name in asm.overrides else f"catalog assumption {name}"
            raise ScenarioError("must be greater than 0", where=where, field=source, value=value, allowed="> 0")


def _cash_flow_rows(flows: CashFlowArrays) -> list[CashFlow]:
    rows, cumulative = [], 0.0
    for i, year in enumerate(flows.year):
        total = float(flows.total[i])
        cumulative += total
        rows.append(CashFlow(
            year=int(year), capex_usd=float(flows.capex[i]), opex_usd=float(flows.opex[i]),
            residual_usd=float(flows.residual[i]), total_usd=total, cumulative_usd=cumulative,
            discounted_usd=float(flows.discounted[i]),
        ))
    return rows


def costs_from(q: CostInputs, a: Mapping[str, float]) -> Costs:
    """Evaluate the model on single values and package the result for the plan."""
    r = evaluate(q, a)
    capex = {k: float(v) for k, v in r.capex.items()}
    return Costs(
        deployment=q.deployment, capex_usd=sum(capex.values()), capex_breakdown=capex,
        opex_usd_per_year=float(r.opex_total), opex_breakdown={k: float(v) for k, v in r.opex.items()},
        annualized_usd_per_year=float(r.annualized),
        annualized_breakdown={"it_capex": float(r.annual_it), "facility_capex": float(r.annual_fac),
                              "opex": float(r.opex_total)},
        annualized_straight_line_usd_per_year=float(r.straight_line), horizon_years=q.horizon_years,
        tco_usd=float(r.flows.tco), npv_usd=float(r.flows.npv), utilization=float(a["utilization"]),
        usd_per_gpu_hour=float(r.usd_per_gpu_hour),
        usd_per_gpu_hour_straight_line=float(r.usd_per_gpu_hour_straight_line),
        cash_flows=_cash_flow_rows(r.flows),
        finance={"wacc": float(a["wacc"]), "it_lifetime_years": float(a["it_lifetime"]) / SECONDS_PER_YEAR,
                 "facility_lifetime_years": float(a.get("facility_lifetime", 0.0)) / SECONDS_PER_YEAR,
                 "residual_value_it": float(a["residual_value_it"]), "it_refresh": float(a["it_refresh"])},
        method=("capex from the bill of materials; capex levelised at the WACC (annuity) plus opex; "
                "straight-line depreciation without cost of capital shown beside"),
    )


def owned_costs(
    bom: Sequence[BomItem], pools: Sequence[Pool], power: Power, region: Region, deployment: str,
    asm: AssumptionSet, horizon_years: float | None = None,
) -> Costs:
    """Lifetime costs of owning ``pools`` in ``region`` (own build or colocation)."""
    q = cost_inputs(bom, pools, power, region, deployment, asm, horizon_years)
    return costs_from(q, assumption_values(asm, deployment))
