"""Phased build-out: each phase buys only what the installed cohorts do not serve, within its power."""

from __future__ import annotations

from typing import Any

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.errors import InfeasibleError
from factoryplan.plan import Plan, build_plan
from factoryplan.scenario import parse_scenario

BASE: dict[str, Any] = {
    "name": "phased",
    "region": "kr",
    "hardware": ["gb200"],
    "workloads": [
        {"name": "svc", "kind": "inference", "model": "llama-3.3-70b", "requests_per_s": 3000},
        {"name": "train", "kind": "training", "model": "llama-3.1-70b", "tokens": "10T", "deadline_days": 30,
         "precision": "fp8"},
    ],
    "phases": [
        {"name": "p1", "year": 2027, "power_mw": 55, "demand_scale": 0.3},
        {"name": "p2", "year": 2028, "power_mw": 100, "hardware": ["gb300"], "demand_scale": 0.6},
        {"name": "p3", "year": 2030, "power_mw": 300, "hardware": ["gb300"], "demand_scale": 1.0},
    ],
}


@pytest.fixture(scope="module")
def plan(catalog: Catalog) -> Plan:
    return build_plan(parse_scenario(BASE), catalog, sensitivity=False)


def test_phase_totals_add_up(plan: Plan) -> None:
    assert plan.phasing is not None
    phases = plan.phasing.phases
    running = 0
    for p in phases:
        running += p.new_gpus
        assert p.active_gpus == running == sum(p.active_gpus_by_system.values())
        assert p.new_gpus == sum(i.gpus for i in p.installed)
    assert phases[1].installed[0].system == "gb300-nvl72"  # each phase buys its own hardware
    assert phases[0].active_gpus_by_system == {"gb200-nvl72": phases[0].new_gpus}


def test_power_within_each_phase_budget(plan: Plan) -> None:
    assert plan.phasing is not None
    for p in plan.phasing.phases:
        assert 0 < p.facility_mw <= p.power_budget_mw
    mws = [p.facility_mw for p in plan.phasing.phases]
    assert mws == sorted(mws)


def test_cash_flows_sum_to_the_tco(plan: Plan) -> None:
    assert plan.phasing is not None
    t = plan.phasing.timeline
    assert plan.phasing.tco_usd == pytest.approx(sum(y.total_usd for y in t))
    assert t[-1].cumulative_usd == pytest.approx(plan.phasing.tco_usd)
    assert plan.phasing.capex_usd == pytest.approx(sum(y.capex_usd for y in t))
    assert [y.year for y in t] == list(range(2027, 2030 + 5 + 1))  # until the last cohort lived one IT life
    # capex in each phase's year is what that phase bought; the first cohort is refreshed five years on
    by_year = {y.year: y for y in t}
    for p in plan.phasing.phases:
        assert by_year[p.year].capex_usd >= p.capex_usd * (1 - 1e-9)
    assert by_year[2032].capex_usd > 0 and by_year[2029].capex_usd == 0


def test_capacity_grows_with_demand(plan: Plan) -> None:
    assert plan.phasing is not None
    tokens = [p.serving_output_tokens_per_s for p in plan.phasing.phases]
    flops = [p.training_model_pflops for p in plan.phasing.phases]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert flops == sorted(flops) and flops[0] > 0


def test_phase_over_its_power_budget_is_named(catalog: Catalog) -> None:
    data = {**BASE, "phases": [{"name": "tiny", "year": 2027, "power_mw": 0.5, "demand_scale": 1.0}]}
    with pytest.raises(InfeasibleError, match=r"phase tiny \(2027\): the demand it adds cannot be met within the "
                                              r"0\.5 MW left of its 0\.5 MW budget"):
        build_plan(parse_scenario(data), catalog, sensitivity=False)


def test_no_phases_no_phasing(catalog: Catalog) -> None:
    data = {k: v for k, v in BASE.items() if k != "phases"}
    assert build_plan(parse_scenario(data), catalog, sensitivity=False).phasing is None
