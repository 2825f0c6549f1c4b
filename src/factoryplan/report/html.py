"""A self-contained HTML report: tables and plotly charts, with plotly.js inlined (no CDN).

The page template includes one section template per stage (``templates/_*.html.j2``); each
stage's charts come from its own module (``charts_*.py``).
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from factoryplan.plan import Plan
from factoryplan.report import charts_costs, charts_infra, charts_phases, charts_serving, fmt, summary

TEMPLATES = Path(__file__).parent / "templates"
CHART_MODULES = (charts_phases, charts_infra, charts_costs, charts_serving)


def render_html(plan: Plan) -> str:
    """The report as one HTML string that works offline."""
    from plotly.offline import get_plotlyjs

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    env.filters["usd"] = fmt.usd
    env.filters["num"] = fmt.num
    env.filters["mw"] = fmt.mw
    figures: dict[str, str] = {}
    for module in CHART_MODULES:
        figures.update(module.figures(plan))
    template = env.get_template("report.html.j2")
    names, rows = summary.feasibility(plan)
    return template.render(plan=plan, figures=figures, plotlyjs=get_plotlyjs(), kpis=summary.headline(plan),
                           sov_names=names, sov_rows=rows)


def write_html(plan: Plan, path: Path) -> None:
    """Write the HTML report."""
    path.write_text(render_html(plan), encoding="utf-8")
