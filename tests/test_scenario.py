"""Scenario validation: every error names the file, the field path, the value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.errors import ScenarioError
from factoryplan.plan import build_plan
from factoryplan.scenario import load_scenario, parse_scenario

BASE = {
    "name": "t",
    "region": "kr",
    "workloads": [
        {"name": "svc", "kind": "inference", "model": "llama-3.1-8b", "requests_per_s": 5},
    ],
}


def _with(**changes: object) -> dict[str, object]:
    data = {**BASE, **changes}
    return data


def test_valid_minimal_scenario() -> None:
    s = parse_scenario(BASE)
    assert s.workloads[0].kind == "inference"
    assert s.facility.deployment == "own-build"


def test_unknown_top_level_key_suggests() -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(_with(power_budget_mww=100), where="s.yaml")
    text = str(exc.value)
    assert "s.yaml" in text and "power_budget_mww" in text
    assert 'did you mean "power_budget_mw"' in text


def test_unknown_workload_key_names_path() -> None:
    data = _with(workloads=[{**BASE["workloads"][0], "tpot_msec": 30}])  # type: ignore[index]
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, where="s.yaml")
    text = str(exc.value)
    assert "workloads[0].tpot_msec" in text and 'did you mean "tpot_ms"' in text


def test_wrong_type() -> None:
    data = _with(workloads=[{**BASE["workloads"][0], "input_tokens": "lots"}])  # type: ignore[index]
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data, where="s.yaml")
    assert "workloads[0].input_tokens" in str(exc.value) and "'lots'" in str(exc.value)


def test_negative_value_says_allowed() -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(_with(power_budget_mw=-5), where="s.yaml")
    text = str(exc.value)
    assert "power_budget_mw" in text and "-5" in text and "> 0" in text


def test_unknown_workload_kind() -> None:
    data = _with(workloads=[{**BASE["workloads"][0], "kind": "finetune"}])  # type: ignore[index]
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(data)
    assert "finetune" in str(exc.value) and "training, inference" in str(exc.value)


def test_demand_needs_exactly_one_form() -> None:
    w = {**BASE["workloads"][0], "tokens_per_day": 1e9}  # type: ignore[index]
    with pytest.raises(ScenarioError, match="exactly one of requests_per_s or tokens_per_day"):
        parse_scenario(_with(workloads=[w]))


def test_numbers_with_suffixes() -> None:
    w = {"name": "t", "kind": "training", "model": "llama-3.1-8b", "tokens": "15T", "deadline_days": "1,000"}
    s = parse_scenario(_with(workloads=[w]))
    assert s.workloads[0].tokens == 15e12  # type: ignore[union-attr]
    assert s.workloads[0].deadline_days == 1000  # type: ignore[union-attr]


def test_duplicate_workload_names() -> None:
    with pytest.raises(ScenarioError, match="repeated: svc"):
        parse_scenario(_with(workloads=[BASE["workloads"][0], BASE["workloads"][0]]))  # type: ignore[index]


def test_unknown_model_is_named(catalog: Catalog) -> None:
    w = {**BASE["workloads"][0], "model": "llama-3.1-70"}  # type: ignore[index]
    with pytest.raises(ScenarioError) as exc:
        build_plan(parse_scenario(_with(workloads=[w])), catalog, where="s.yaml")
    text = str(exc.value)
    assert "workloads[0].model" in text and "llama-3.1-70" in text and "did you mean" in text


def test_inference_requests_must_fit_the_context_window(catalog: Catalog) -> None:
    w = {**BASE["workloads"][0], "input_tokens": 200_000}  # type: ignore[index]
    with pytest.raises(ScenarioError) as exc:
        build_plan(parse_scenario(_with(workloads=[w])), catalog, where="s.yaml")
    assert exc.value.field == "workloads[0].input_tokens" and "context of" in exc.value.message


def test_unknown_region_and_hardware(catalog: Catalog) -> None:
    with pytest.raises(ScenarioError, match=r"region.*unknown region 'korea'"):
        build_plan(parse_scenario(_with(region="korea")), catalog)
    with pytest.raises(ScenarioError, match=r"hardware\[0\].*h1000"):
        build_plan(parse_scenario(_with(hardware=["h1000"])), catalog)
    # an alias names the part it stands for; the plan speaks of the part's own ids
    plan = build_plan(parse_scenario(_with(hardware=["h100"])), catalog)
    assert [(o.accelerator, o.system) for o in plan.hardware_options] == [("h100-sxm", "dgx-h100")]


def test_unknown_assumption_and_bad_fraction(catalog: Catalog) -> None:
    with pytest.raises(ScenarioError, match=r"assumptions.wac.*did you mean \"wacc\""):
        build_plan(parse_scenario(_with(assumptions={"wac": 0.1})), catalog)
    with pytest.raises(ScenarioError, match=r"assumptions.utilization.*0 to 1"):
        build_plan(parse_scenario(_with(assumptions={"utilization": 1.5})), catalog)
    with pytest.raises(ScenarioError, match=r"assumptions.wacc.*negative"):
        build_plan(parse_scenario(_with(assumptions={"wacc": -0.1})), catalog)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nregion: [kr\n")
    with pytest.raises(Exception) as exc:
        load_scenario(p)
    assert "bad.yaml" in str(exc.value) and "line" in str(exc.value)


PHASES = [
    {"name": "p1", "year": 2027, "power_mw": 55, "demand_scale": 0.2},
    {"name": "p2", "year": 2028, "power_mw": 200, "hardware": ["gb300"], "demand_scale": {"svc": 0.6}},
]


def test_phases_parse() -> None:
    s = parse_scenario(_with(phases=PHASES))
    assert [p.year for p in s.phases] == [2027, 2028]
    assert s.phases[0].scale_for("svc") == 0.2 and s.phases[1].scale_for("svc") == 0.6


def test_phases_out_of_order_are_named() -> None:
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(_with(phases=list(reversed(PHASES))), where="s.yaml")
    assert "s.yaml: phases" in str(exc.value) and "in order of year" in str(exc.value)
    assert "p2 2028, p1 2027" in str(exc.value)


def test_phase_demand_names_unknown_workload() -> None:
    bad = [{**PHASES[0], "demand_scale": {"svx": 1.0}}]
    with pytest.raises(ScenarioError, match=r"phase p1: demand_scale names unknown workloads svx; workloads are svc"):
        parse_scenario(_with(phases=bad))


def test_phase_above_scenario_budget() -> None:
    with pytest.raises(ScenarioError, match=r"phase p2 has power_mw 200 above the scenario's power_budget_mw 100"):
        parse_scenario(_with(phases=PHASES, power_budget_mw=100))


def test_phase_unknown_hardware(catalog: Catalog) -> None:
    bad = [{**PHASES[0], "hardware": ["gb400"]}]
    with pytest.raises(ScenarioError, match=r"phases\[0\].hardware\[0\].*gb400"):
        build_plan(parse_scenario(_with(phases=bad)), catalog)
