"""The cost and alternatives sections of the HTML, Markdown and terminal reports."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console

from factoryplan.catalog.load import Catalog
from factoryplan.plan import Plan, build_plan
from factoryplan.report import charts_costs
from factoryplan.report.html import render_html
from factoryplan.report.markdown import render_markdown
from factoryplan.report.terminal import render
from factoryplan.scenario import load_scenario

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def plan(catalog: Catalog) -> Plan:
    return build_plan(load_scenario(EXAMPLES / "sovereign-ai-factory-1gw.yaml"), catalog, monte_carlo=2_000, sobol=32)


def test_every_cost_chart_is_drawn(plan: Plan) -> None:
    figs = charts_costs.figures(plan)
    for name in ("cost", "gpu_hour", "mtok", "break_even", "cash_flow", "tornado", "distribution", "compare"):
        assert "plotly-graph-div" in figs[name], name


def test_break_even_curve_crosses_offers_at_their_break_even(plan: Plan) -> None:
    fig = charts_costs.break_even_curve(plan)
    own = fig.data[0]
    xs = list(own.x)
    assert xs[0] == pytest.approx(0.05) and xs[-1] == pytest.approx(1.0)
    offers = {a.option: a for a in plan.alternatives if a.pricing == "on-demand"}
    crossed = 0
    for line in fig.data[1:]:
        offer = offers[line.name.split(" (break-even")[0]]
        u = offer.break_even_utilization
        assert u is not None
        if 0.05 <= u <= 1.0:  # the owned curve, interpolated at u, meets the offer's price line
            assert float(np.interp(u, xs, list(own.y))) == pytest.approx(line.y[0], rel=0.02)
            crossed += 1
    assert crossed > 0


def test_html_has_cost_sections(plan: Plan) -> None:
    html = render_html(plan)
    for heading in ("Unit costs", "Yearly cash flow", "Sensitivity", "Uncertainty", "On-prem vs cloud vs API",
                    "break-even utilisation"):
        assert heading in html, heading
    assert "S1 ($/GPU-h)" in html  # Sobol columns when indices were computed


def test_markdown_and_terminal_cost_parts(plan: Plan) -> None:
    md = render_markdown(plan)
    assert "### Uncertainty (2,000 Monte Carlo draws)" in md
    assert "break-even util." in md
    out = io.StringIO()
    render(plan, Console(file=out, width=200))
    text = out.getvalue()
    assert "P10/P50/P90 usd_per_gpu_hour" in text
    assert "biggest levers" in text


def test_markdown_and_terminal_give_the_same_key_figures(plan: Plan) -> None:
    """Each workload's key figures (a service's replicas, TTFT, TPOT and $/Mtok; a training run's days
    and MFU) read the same in the Markdown report as in the terminal table."""
    from factoryplan.report.summary import key_figures

    md = render_markdown(plan)
    assert "| key figures |" in md
    for w in plan.workloads:
        line = key_figures(w)
        assert line in md
        assert ("TTFT" in line and "/Mtok" in line) if w.kind == "inference" else ("days, MFU" in line)
        assert f", {w.precision}" in line  # the weights' format the figures assume
