"""Capex, opex and lifetime cost of an owned deployment; unit costs per GPU-hour and per token.

Definitions (all in USD):
- capex: the bill of materials (compute systems, network, optics, storage) by category,
  installation, hot spares, and the facility (build cost per MW of IT, with a liquid-cooling
  uplift) unless the facility is colocated.
- opex per year: electricity (average facility draw x price), hardware support, facility O&M,
  insurance, operations staff, software, and colocation rent when colocated.
- annualised cost: each capex block levelised over its life at the WACC (capital recovery
  factor, net of IT residual value) plus opex.
- tco over the horizon: capex + opex x years - residual value at the end (undiscounted);
  npv: the same cash flows discounted at the WACC (a cost, so positive).
- usd_per_gpu_hour: annualised cost / (GPUs x hours per year x utilisation).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.schema import Region
from factoryplan.economics.finance import discount, levelised_capex
from factoryplan.infra.bom import BomItem
from factoryplan.infra.cluster import Pool, Power
from factoryplan.units import SECONDS_PER_YEAR


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
    horizon_years: float
    tco_usd: float
    npv_usd: float
    usd_per_gpu_hour: float
    usd_per_gpu_hour_straight_line: float
    cash_flows: list[CashFlow]
    method: str


def capex_breakdown(
    bom: Sequence[BomItem], pools: Sequence[Pool], power: Power, deployment: str, asm: AssumptionSet
) -> tuple[dict[str, float], dict[str, float]]:
    """(IT capex by category, facility capex items) in USD, from the bill of materials."""
    it: dict[str, float] = {}
    for item in bom:
        it[item.category] = it.get(item.category, 0.0) + item.total_usd
    compute = it.get("compute", 0.0)
    it["spares"] = compute * asm.get("hot_spare_fraction")
    it["installation"] = sum(it.values()) * asm.get("installation_fraction")
    facility: dict[str, float] = {}
    if deployment == "own-build":
        it_w = power.it_mw * 1e6
        liquid_w = sum(p.system_power_kw for p in pools if p.cooling == "liquid") * 1e3
        liquid_share = liquid_w / max(sum(p.system_power_kw for p in pools) * 1e3, 1.0)
        build = it_w * asm.get("facility_build_cost")
        facility["facility_build"] = build
        facility["liquid_cooling"] = build * liquid_share * asm.get("liquid_cooling_uplift")
    return it, facility


def opex_breakdown(
    pools: Sequence[Pool], power: Power, region: Region, it_capex: float, facility_capex: float, deployment: str,
    asm: AssumptionSet,
) -> dict[str, float]:
    """Yearly operating costs in USD."""
    gpus = sum(p.gpus for p in pools)
    avg_facility_w = power.average_facility_mw * 1e6
    staff_fte = gpus * asm.get("ops_fte_per_gpu") + power.it_mw * 1e6 * asm.get("ops_fte_per_mw")
    opex = {
        "electricity": avg_facility_w * SECONDS_PER_YEAR * region.electricity_usd_per_j,
        "hardware_support": it_capex * asm.get("hw_support_maintenance"),
        "insurance": (it_capex + facility_capex) * asm.get("insurance"),
        "staff": staff_fte * region.fte_cost_usd_per_s * SECONDS_PER_YEAR,
        "software": gpus * asm.get("software_usd_per_gpu_year") * SECONDS_PER_YEAR,
    }
    if deployment == "own-build":
        opex["facility_om"] = facility_capex * asm.get("facility_om")
    else:
        opex["colocation"] = power.it_mw * 1e6 * asm.get("colo_price") * SECONDS_PER_YEAR
    return opex


def owned_costs(
    bom: Sequence[BomItem], pools: Sequence[Pool], power: Power, region: Region, deployment: str,
    asm: AssumptionSet, horizon_years: float | None = None,
) -> Costs:
    """Lifetime costs of owning ``pools`` in ``region``."""
    wacc = asm.get("wacc")
    it_life = asm.get("it_lifetime") / SECONDS_PER_YEAR
    fac_life = asm.get("facility_lifetime") / SECONDS_PER_YEAR
    residual = asm.get("residual_value_it")
    utilization = asm.get("utilization")
    horizon = horizon_years or it_life
    it, facility = capex_breakdown(bom, pools, power, deployment, asm)
    it_capex, fac_capex = sum(it.values()), sum(facility.values())
    opex = opex_breakdown(pools, power, region, it_capex, fac_capex, deployment, asm)
    opex_total = sum(opex.values())
    annual_it = levelised_capex(it_capex, wacc, it_life, residual)
    annual_fac = levelised_capex(fac_capex, wacc, fac_life, 0.0)
    annualized = float(annual_it) + float(annual_fac) + opex_total
    gpus = sum(p.gpus for p in pools)
    gpu_hours_per_year = gpus * SECONDS_PER_YEAR / 3600.0 * utilization
    straight = it_capex * (1 - residual) / it_life + fac_capex / fac_life + opex_total
    flows = cash_flows(it_capex, fac_capex, opex_total, residual, it_life, fac_life, horizon, wacc)
    return Costs(
        deployment=deployment,
        capex_usd=it_capex + fac_capex,
        capex_breakdown={**it, **facility},
        opex_usd_per_year=opex_total,
        opex_breakdown=opex,
        annualized_usd_per_year=annualized,
        horizon_years=horizon,
        tco_usd=sum(f.total_usd for f in flows),
        npv_usd=sum(f.discounted_usd for f in flows),
        usd_per_gpu_hour=annualized / gpu_hours_per_year,
        usd_per_gpu_hour_straight_line=straight / gpu_hours_per_year,
        cash_flows=flows,
        method="capex from the bill of materials; annuity at the WACC; straight-line shown beside",
    )


def cash_flows(
    it_capex: float, fac_capex: float, opex: float, residual: float, it_life: float, fac_life: float,
    horizon: float, wacc: float,
) -> list[CashFlow]:
    """Year 0 capex, yearly opex, IT refresh at end of life, residual value credited in the last year.

    The facility's remaining book value (straight line) is credited at the horizon, as is the IT
    residual value (its stated fraction, times the remaining straight-line share if mid-life).
    """
    years = max(1, round(horizon))
    flows: list[CashFlow] = []
    cumulative = 0.0
    last_it_purchase = 0
    for year in range(years + 1):
        capex = (it_capex + fac_capex) if year == 0 else 0.0
        if 0 < year < years and year % max(1, round(it_life)) == 0:
            capex += it_capex  # refresh
            last_it_purchase = year
        op = opex if year > 0 else 0.0
        res = 0.0
        if year == years:
            it_age = year - last_it_purchase
            it_book = max(0.0, 1 - it_age / it_life) * (1 - residual) + residual
            res = it_capex * it_book + fac_capex * max(0.0, 1 - year / fac_life)
        total = capex + op - res
        cumulative += total
        flows.append(
            CashFlow(
                year=year, capex_usd=capex, opex_usd=op, residual_usd=res, total_usd=total,
                cumulative_usd=cumulative, discounted_usd=total * float(discount(wacc, year)),
            )
        )
    return flows
