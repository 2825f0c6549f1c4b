"""Costs, alternatives, sensitivity and uncertainty in the plan and its JSON contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factoryplan.catalog.load import Catalog, read_yaml
from factoryplan.cli import main
from factoryplan.plan import Plan, build_plan
from factoryplan.scenario import load_scenario, parse_scenario
from factoryplan.units import SECONDS_PER_YEAR

from .conftest import EXAMPLES

GW = EXAMPLES / "sovereign-ai-factory-1gw.yaml"
BANK = EXAMPLES / "enterprise-private-llm.yaml"
COST_KEYS = {"capex_usd", "capex_breakdown", "opex_usd_per_year", "opex_breakdown", "tco_usd", "npv_usd",
             "usd_per_gpu_hour", "usd_per_million_tokens", "cash_flows"}
ALT_KEYS = {"option", "kind", "tco_usd", "usd_per_gpu_hour", "usd_per_million_tokens", "break_even_utilization",
            "feasible", "reasons"}


@pytest.fixture(scope="module")
def gw(catalog: Catalog) -> Plan:
    return build_plan(load_scenario(GW), catalog, where=str(GW))


def test_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(GW), "--format", "json", "--monte-carlo", "500", "--seed", "1"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["costs"]) >= COST_KEYS
    assert plan["costs"]["cash_flows"][0]["year"] == 0
    for alt in plan["alternatives"]:
        assert set(alt) >= ALT_KEYS
        assert alt["kind"] in ("own", "colo", "cloud", "api")
        assert (alt["usd_per_gpu_hour"] is None) != (alt["usd_per_million_tokens"] is None)
    assert plan["sensitivity"] and {"assumption", "at_low", "at_high"} <= set(plan["sensitivity"][0])
    unc = plan["uncertainty"]
    assert unc["draws"] == 500
    for figure in ("tco_usd", "usd_per_gpu_hour"):
        p = unc["figures"][figure]
        assert p["p10"] <= p["p50"] <= p["p90"]
    services = [w["name"] for w in plan["workloads"] if w["kind"] == "inference"]
    assert set(plan["costs"]["usd_per_million_tokens"]) == set(services)
    assert all(f"usd_per_million_tokens.{s}" in unc["figures"] for s in services)


def test_no_uncertainty_unless_asked(gw: Plan) -> None:
    assert gw.uncertainty is None
    assert gw.sensitivity


def test_unit_costs_are_consistent(gw: Plan) -> None:
    k = gw.costs
    hours = gw.cluster.gpus * SECONDS_PER_YEAR / 3600 * k.utilization
    assert k.usd_per_gpu_hour == pytest.approx(k.annualized_usd_per_year / hours)
    assert sum(s.cost_share for s in k.services) < 1  # training takes the rest
    for svc in k.services:
        w = next(x for x in gw.workloads if x.name == svc.name)
        assert w.usd_per_million_tokens == pytest.approx(svc.usd_per_million_tokens)
        if svc.usd_per_million_input_tokens is not None and svc.usd_per_million_output_tokens is not None:
            recombined = (svc.usd_per_million_input_tokens * svc.input_tokens_per_year
                          + svc.usd_per_million_output_tokens * svc.output_tokens_per_year) / 1e6
            assert recombined == pytest.approx(svc.annual_usd)
    for run in k.training_runs:
        assert run.usd == pytest.approx(run.gpu_hours * run.usd_per_gpu_hour)
        assert next(w for w in gw.workloads if w.name == run.name).usd_per_run == pytest.approx(run.usd)


def test_own_build_and_colocation_both_priced(gw: Plan) -> None:
    own = [a for a in gw.alternatives if a.kind == "own"]
    colo = [a for a in gw.alternatives if a.kind == "colo"]
    assert len(own) == 1 and len(colo) == 1
    assert own[0].tco_usd == pytest.approx(gw.costs.tco_usd)
    assert colo[0].note.startswith("own build pays back against colocation")


def test_cloud_break_even_against_the_own_deployment(gw: Plan) -> None:
    on_demand = [a for a in gw.alternatives if a.kind == "cloud" and a.pricing == "on-demand"]
    assert on_demand
    for a in on_demand:
        assert a.break_even_utilization is not None and a.gpus is not None and a.usd_per_gpu_hour is not None
        rent_at_u = a.gpus * SECONDS_PER_YEAR / 3600 * a.break_even_utilization * a.usd_per_gpu_hour
        assert rent_at_u == pytest.approx(gw.costs.annualized_usd_per_year)


def test_sensitivity_ranks_utilisation_first_for_gpu_hour(gw: Plan) -> None:
    top = gw.sensitivity[0]
    assert top.assumption == "utilization"
    assert top.at_low["usd_per_gpu_hour"] > gw.costs.usd_per_gpu_hour > top.at_high["usd_per_gpu_hour"]
    assert top.at_low["tco_usd"] == pytest.approx(top.at_high["tco_usd"])  # utilisation does not change spending


def test_sobol_on_the_plan(catalog: Catalog) -> None:
    plan = build_plan(load_scenario(BANK), catalog, sobol=64, seed=2)
    first = {s.assumption: s.sobol_first.get("usd_per_gpu_hour") for s in plan.sensitivity}
    total = {s.assumption: s.sobol_total.get("usd_per_gpu_hour") for s in plan.sensitivity}
    assert all(v is not None for v in first.values())
    # the scenario overrides utilization, so it is held fixed and not in the indices
    assert "utilization" not in first
    assert max(total, key=lambda k: total[k] or 0.0) in {"it_lifetime", "hardware_price_factor"}


def _scenario_with(tmp_path: Path, **assumptions: float) -> Path:
    data = read_yaml(BANK)
    data["assumptions"] = {**data.get("assumptions", {}), **assumptions}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "value", "message"), [
    ("utilization", 1.2, "assumptions.utilization: is a fraction"),
    ("it_lifetime", 0, "assumptions.it_lifetime: must be greater than 0"),
    ("colo_price", -5, "assumptions.colo_price: must not be negative"),
])
def test_cli_rejects_impossible_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, value: float, message: str
) -> None:
    assert main(["plan", str(_scenario_with(tmp_path, **{name: value}))]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_negative_draws(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(BANK), "--monte-carlo", "-3"]) == 2
    assert "--monte-carlo" in capsys.readouterr().err


def test_longer_horizon_refreshes_it(catalog: Catalog) -> None:
    data = read_yaml(BANK)
    plan = build_plan(parse_scenario({**data, "horizon_years": 10}), catalog)
    capex_years = [f.year for f in plan.costs.cash_flows if f.capex_usd > 0]
    assert capex_years == [0, 5]
    no_refresh = build_plan(parse_scenario({**data, "horizon_years": 10,
                                            "assumptions": {**data["assumptions"], "it_refresh": 0}}), catalog)
    assert [f.year for f in no_refresh.costs.cash_flows if f.capex_usd > 0] == [0]
    assert no_refresh.costs.tco_usd < plan.costs.tco_usd
