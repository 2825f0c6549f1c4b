"""A phased build-out: what each phase installs, what it delivers, what it costs, year by year.

Each phase (year, power available at the meter, hardware that can be bought, share of the
workloads' demand to serve) installs a cohort: the single-phase planner sizes only the demand
that the cohorts already installed do not serve, on that phase's hardware, within the power left
under that phase's budget. Cohorts keep serving the demand they were bought for. At the end of
the IT life a cohort is refreshed like for like (``it_refresh`` = 1) or runs on past its life
(``it_refresh`` = 0), as in the single-phase cash flows.

The timeline runs from the first phase's year until the last cohort has lived one IT life; each
cohort's cash flows (capex when installed, opex each year, refreshes, residual value at the end)
are those of the economics stage, placed at their calendar years and discounted to the first
year. The phased TCO is the sum of the timeline's cash flows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.schema import ModelArch
from factoryplan.economics.finance import cash_flows, discount
from factoryplan.economics.tco import CashFlow
from factoryplan.errors import InfeasibleError
from factoryplan.scenario import InferenceWorkload, Phase, Scenario, TrainingWorkload, Workload
from factoryplan.units import SECONDS_PER_YEAR

if TYPE_CHECKING:
    from factoryplan.plan import Candidate

ChooseFn = Callable[[Scenario, Sequence[ModelArch]], "Candidate"]
_EPS = 1e-9


class Installed(BaseModel):
    """A pool of systems bought in one phase."""

    model_config = ConfigDict(frozen=True)

    phase: str
    year: int
    system: str
    accelerator: str
    gpus: int
    systems: int
    workloads: list[str]


class PhaseResult(BaseModel):
    """One phase: what it adds, what is running, what it delivers and costs."""

    model_config = ConfigDict(frozen=True)

    name: str
    year: int
    power_budget_mw: float
    demand_share: dict[str, float]  # share of each workload's demand served from this phase on
    installed: list[Installed]  # bought in this phase
    refreshed_gpus: int  # GPUs replaced like for like since the previous phase (end of IT life)
    new_gpus: int
    active_gpus: int
    active_gpus_by_system: dict[str, int]
    it_mw: float
    facility_mw: float
    training_model_pflops: float  # achieved model FLOP/s of the GPUs bought for training
    serving_output_tokens_per_s: float  # output tokens/s the serving GPUs sustain at their latency targets
    output_tokens_per_s_per_mw: float  # per MW at the meter, whole site
    capex_usd: float  # spent in this phase (new cohort)
    opex_usd_per_year: float  # of everything running


class TimelineYear(CashFlow):
    """One calendar year of the programme: its cash flows (costs positive) and what is running."""

    active_gpus: int
    facility_mw: float


class Phasing(BaseModel):
    """The phased build-out of a scenario."""

    model_config = ConfigDict(frozen=True)

    phases: list[PhaseResult]
    timeline: list[TimelineYear]
    capex_usd: float  # every purchase in the timeline, refreshes included
    tco_usd: float  # sum of the timeline's cash flows
    npv_usd: float  # discounted to the first phase's year at the WACC
    method: str = (
        "each phase sizes the demand the installed cohorts do not serve, on its hardware, within the power "
        "left under its budget; cohorts are refreshed like for like at end of life (it_refresh)"
    )


@dataclass(frozen=True)
class _Cohort:
    phase: Phase
    candidate: Candidate
    served: dict[str, float]  # workload -> demand share bought for


def scaled_workload(w: Workload, share: float) -> Workload:
    """The workload at ``share`` of its demand (inference rate or tokens per day; training tokens)."""
    if isinstance(w, InferenceWorkload):
        if w.requests_per_s is not None:
            return w.model_copy(update={"requests_per_s": w.requests_per_s * share})
        assert w.tokens_per_day is not None  # a validated workload has one of the two
        return w.model_copy(update={"tokens_per_day": w.tokens_per_day * share})
    assert isinstance(w, TrainingWorkload)
    return w.model_copy(update={"tokens": w.tokens * share})


def _increment(
    scenario: Scenario, archs: Sequence[ModelArch], phase: Phase, served: dict[str, float]
) -> tuple[list[Workload], list[ModelArch], dict[str, float]]:
    """The workloads (scaled to the unserved share) this phase must buy for."""
    workloads, sub_archs, need = [], [], {}
    for w, arch in zip(scenario.workloads, archs, strict=True):
        share = phase.scale_for(w.name) - served.get(w.name, 0.0)
        if share > _EPS:
            workloads.append(scaled_workload(w, share))
            sub_archs.append(arch)
            need[w.name] = share
    return workloads, sub_archs, need


def _install(
    scenario: Scenario, archs: Sequence[ModelArch], phase: Phase, active: Sequence[_Cohort], choose: ChooseFn,
    where: str,
) -> _Cohort | None:
    served: dict[str, float] = {}
    for c in active:
        for name, share in c.served.items():
            served[name] = served.get(name, 0.0) + share
    workloads, sub_archs, need = _increment(scenario, archs, phase, served)
    if not workloads:
        return None
    used_mw = sum(c.candidate.power.facility_mw for c in active)
    left = phase.power_mw - used_mw
    name = f"phase {phase.name} ({phase.year})"
    if left <= 0:
        raise InfeasibleError(
            f"{name}: the cohorts already installed draw {used_mw:,.1f} MW, the whole budget of "
            f"{phase.power_mw:g} MW, and the phase adds demand", where=where, field="phases",
        )
    sub = scenario.model_copy(update={
        "workloads": workloads, "power_budget_mw": left, "phases": [],
        "hardware": phase.hardware or scenario.hardware,
    })
    try:
        candidate = choose(sub, sub_archs)
    except InfeasibleError as exc:
        raise InfeasibleError(
            f"{name}: the demand it adds cannot be met within the {left:,.3g} MW left of its {phase.power_mw:,g} MW "
            f"budget ({exc.message})", where=where, field="phases",
        ) from None
    return _Cohort(phase=phase, candidate=candidate, served=need)


def _capacity(cohorts: Sequence[_Cohort]) -> tuple[float, float]:
    """(training model PFLOP/s, serving output tokens/s) of the cohorts."""
    pflops = tokens = 0.0
    for c in cohorts:
        for r in c.candidate.workloads:
            if r.kind == "training":
                per_gpu = r.details.get("model_tflops_per_gpu")
                used = r.details.get("gpus_used", r.gpus)
                if isinstance(per_gpu, int | float) and isinstance(used, int | float):
                    pflops += float(per_gpu) * float(used) / 1e3
            else:
                per_gpu = r.details.get("output_tokens_per_s_per_gpu")
                if isinstance(per_gpu, int | float):
                    tokens += float(per_gpu) * r.gpus
    return pflops, tokens


def _life_years(asm: AssumptionSet) -> int:
    return max(1, round(asm.get("it_lifetime") / SECONDS_PER_YEAR))


def _refreshed(cohorts: Sequence[_Cohort], after: int, upto: int, life: int, refresh: bool) -> int:
    """GPUs replaced at end of life in years (after, upto]."""
    if not refresh:
        return 0
    out = 0
    for c in cohorts:
        for year in range(c.phase.year + life, upto + 1, life):
            if year > after:
                out += sum(p.gpus for p in c.candidate.pools)
    return out


def _phase_result(
    phase: Phase, scenario: Scenario, cohorts: Sequence[_Cohort], new: _Cohort | None, refreshed: int
) -> PhaseResult:
    by_system: dict[str, int] = {}
    for c in cohorts:
        for p in c.candidate.pools:
            by_system[p.system] = by_system.get(p.system, 0) + p.gpus
    facility = sum(c.candidate.power.facility_mw for c in cohorts)
    pflops, tokens = _capacity(cohorts)
    installed = [] if new is None else [
        Installed(phase=phase.name, year=phase.year, system=p.system, accelerator=p.accelerator, gpus=p.gpus,
                  systems=p.systems, workloads=list(p.workloads))
        for p in new.candidate.pools
    ]
    return PhaseResult(
        name=phase.name, year=phase.year, power_budget_mw=phase.power_mw,
        demand_share={w.name: phase.scale_for(w.name) for w in scenario.workloads}, installed=installed,
        refreshed_gpus=refreshed, new_gpus=sum(i.gpus for i in installed), active_gpus=sum(by_system.values()),
        active_gpus_by_system=by_system, it_mw=sum(c.candidate.power.it_mw for c in cohorts), facility_mw=facility,
        training_model_pflops=pflops, serving_output_tokens_per_s=tokens,
        output_tokens_per_s_per_mw=tokens / facility if facility > 0 else 0.0,
        capex_usd=new.candidate.costs.capex_usd if new is not None else 0.0,
        opex_usd_per_year=sum(c.candidate.costs.opex_usd_per_year for c in cohorts),
    )


def _timeline(cohorts: Sequence[_Cohort], asm: AssumptionSet) -> list[TimelineYear]:
    """Every cohort's cash flows at their calendar years, summed, discounted to the first year."""
    life = _life_years(asm)
    first = min(c.phase.year for c in cohorts)
    last = max(c.phase.year for c in cohorts) + life
    years = np.arange(first, last + 1)
    capex, opex, residual = (np.zeros(len(years)) for _ in range(3))
    gpus = np.zeros(len(years))
    mw = np.zeros(len(years))
    wacc = asm.get("wacc")
    for c in cohorts:
        k = c.candidate.costs
        fac = sum(v for n, v in k.capex_breakdown.items() if n in ("facility_build", "liquid_cooling"))
        flows = cash_flows(
            k.capex_usd - fac, fac, k.opex_usd_per_year, residual=asm.get("residual_value_it"),
            it_life=asm.get("it_lifetime") / SECONDS_PER_YEAR,
            fac_life=asm.get("facility_lifetime") / SECONDS_PER_YEAR, horizon_years=last - c.phase.year, wacc=wacc,
            refresh=asm.get("it_refresh"),
        )
        i0 = c.phase.year - first
        capex[i0:] += np.asarray(flows.capex, dtype=float)
        opex[i0:] += np.asarray(flows.opex, dtype=float)
        residual[i0:] += np.asarray(flows.residual, dtype=float)
        gpus[i0:] += sum(p.gpus for p in c.candidate.pools)
        mw[i0:] += c.candidate.power.facility_mw
    total = capex + opex - residual
    disc = total * np.asarray(discount(wacc, (years - first).astype(float)), dtype=float)
    cumulative = np.cumsum(total)
    return [
        TimelineYear(
            year=int(y), capex_usd=float(capex[i]), opex_usd=float(opex[i]), residual_usd=float(residual[i]),
            total_usd=float(total[i]), cumulative_usd=float(cumulative[i]), discounted_usd=float(disc[i]),
            active_gpus=int(gpus[i]), facility_mw=float(mw[i]),
        )
        for i, y in enumerate(years)
    ]


def build_phasing(
    scenario: Scenario, archs: Sequence[ModelArch], asm: AssumptionSet, choose: ChooseFn, *, where: str = "scenario",
) -> Phasing | None:
    """The phased build-out of ``scenario``, or None when it declares no phases.

    ``choose(sub_scenario, archs)`` is the single-phase planner: it picks the hardware for a
    scenario's workloads within its power budget and returns the chosen candidate.
    """
    if not scenario.phases:
        return None
    life = _life_years(asm)
    refresh = asm.get("it_refresh") > 0.5
    cohorts: list[_Cohort] = []
    results = []
    previous_year = scenario.phases[0].year - 1
    for phase in scenario.phases:
        new = _install(scenario, list(archs), phase, cohorts, choose, where)
        if new is not None:
            cohorts.append(new)
        refreshed = _refreshed(cohorts, previous_year, phase.year, life, refresh)
        results.append(_phase_result(phase, scenario, cohorts, new, refreshed))
        previous_year = phase.year
    if not cohorts:
        raise InfeasibleError("no phase adds any demand: every demand_scale is 0", where=where, field="phases")
    timeline = _timeline(cohorts, asm)
    return Phasing(
        phases=results, timeline=timeline, capex_usd=sum(t.capex_usd for t in timeline),
        tco_usd=sum(t.total_usd for t in timeline), npv_usd=sum(t.discounted_usd for t in timeline),
    )
