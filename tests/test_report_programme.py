"""The report a programme director reads: five numbers on top, the phases, sovereignty with reasons."""

from __future__ import annotations

import re

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.plan import Plan, build_plan
from factoryplan.report.html import render_html
from factoryplan.report.markdown import render_markdown
from factoryplan.report.summary import feasibility, headline
from factoryplan.scenario import load_scenario

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def gw(catalog: Catalog) -> Plan:
    return build_plan(load_scenario(EXAMPLES / "sovereign-ai-factory-1gw.yaml"), catalog, sensitivity=False)


def test_the_flagship_example_is_phased_mixed_and_korean(gw: Plan) -> None:
    assert gw.region == "kr" and gw.phasing is not None and len(gw.phasing.phases) >= 3
    assert len({w.data_class for w in gw.workloads}) >= 4
    last = gw.phasing.phases[-1]
    assert 500 < last.facility_mw <= last.power_budget_mw == 1000


def test_headline_has_five_numbers_from_the_phasing(gw: Plan) -> None:
    kpis = headline(gw)
    assert len(kpis) == 5
    assert gw.phasing is not None
    assert kpis[0].value == f"{gw.phasing.phases[-1].active_gpus:,}"
    assert kpis[4].label == "Sovereignty premium"


def test_feasibility_marks_match_verdicts(gw: Plan) -> None:
    names, rows = feasibility(gw)
    assert names == [w.name for w in gw.workloads]
    by = {(v.option, v.workload): v for v in gw.sovereignty}
    for r in rows:
        for n, mark in zip(names, r.marks, strict=True):
            assert (mark == "no") == (not by[(r.option, n)].feasible)
    api = next(r for r in rows if r.option == "llm-api-foreign")
    assert api.marks[names.index("citizen-assistant")] == "no"  # personal data: PIPA
    assert any("PIPA" in why for why in api.reasons)


def test_html_has_summary_phases_sovereignty_and_sources(gw: Plan) -> None:
    html = render_html(gw)
    top = html.index('<div class="kpis" id="summary">')
    assert top < html.index("<h2>Phased build-out</h2>") < html.index("<h2>Sovereignty")
    assert html.index("<h2>Sovereignty") < html.index("<h2>Assumptions and sources</h2>")
    summary = html[top:html.index("<h2>", top)]
    assert len(re.findall(r'<div class="kpi">', summary)) == 5
    assert "excluded" in html and "PIPA Art. 28-8" in html and "Sovereignty premium" in html
    assert "Programme cash flow by year" in html


def test_markdown_export_has_the_same_story(gw: Plan) -> None:
    md = render_markdown(gw)
    for heading in ("## Summary", "## Phased build-out", "## Sovereignty", "### Sovereignty premium",
                    "## Assumptions"):
        assert f"\n{heading}" in md
    assert "| sejong-1 | 2027 |" in md
