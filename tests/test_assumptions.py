"""Scenario overrides of catalog assumptions are read in the catalog file's unit, or an explicit one."""

from __future__ import annotations

import pytest

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.errors import ScenarioError


def test_override_in_the_catalog_files_unit(catalog: Catalog) -> None:
    entry = catalog.assumptions["building_max_power"]
    assert entry.given_unit == "mw"
    asm = AssumptionSet.from_scenario(catalog, {"building_max_power": 150})
    assert asm.get("building_max_power") == pytest.approx(150e6)  # watts
    report = {a.name: a for a in asm.report()}
    assert report["building_max_power"].display == "150 mw" and report["building_max_power"].overridden


def test_override_with_explicit_unit_suffix(catalog: Catalog) -> None:
    asm = AssumptionSet.from_scenario(catalog, {"facility_build_cost_usd_per_kw": 11_000})
    assert asm.get("facility_build_cost") == pytest.approx(11.0)  # USD per watt


def test_override_with_a_unit_of_another_quantity_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ScenarioError, match=r"assumptions.facility_build_cost_kw.*does not measure"):
        AssumptionSet.from_scenario(catalog, {"facility_build_cost_kw": 5})


def test_unused_override_is_still_reported_when_read(catalog: Catalog) -> None:
    asm = AssumptionSet.from_scenario(catalog, {"wacc": 0.05})
    assert asm.get("wacc") == 0.05
    assert [a.name for a in asm.report()] == ["wacc"]
    assert asm.report()[0].source.endswith("(override)")


def test_plan_warns_about_an_override_nothing_reads(catalog: Catalog) -> None:
    from factoryplan.plan import build_plan
    from factoryplan.scenario import parse_scenario

    scenario = parse_scenario({
        "name": "t", "region": "kr", "facility": {"deployment": "colocation"},
        "workloads": [{"name": "svc", "kind": "inference", "model": "llama-3.1-8b", "requests_per_s": 5}],
        "assumptions": {"interruptions_per_gpu_year": 0.3, "wacc": 0.05},  # no training workload
    })
    plan = build_plan(scenario, catalog)
    assert "assumption interruptions_per_gpu_year was given but no stage of this plan uses it" in plan.warnings
    assert not any("wacc" in w for w in plan.warnings)
