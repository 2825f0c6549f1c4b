"""Charts of costs and alternatives for the HTML report."""

from __future__ import annotations

from factoryplan.plan import Plan


def figures(plan: Plan) -> dict[str, str]:
    """name -> HTML fragment (plotly div; plotly.js is inlined once by the page)."""
    import plotly.graph_objects as go

    k = plan.costs
    cost = go.Figure()
    for name, value in k.capex_breakdown.items():
        cost.add_bar(name=name, x=["capex"], y=[value])
    for name, value in k.opex_breakdown.items():
        cost.add_bar(name=name, x=[f"opex x {k.horizon_years:g} years"], y=[value * k.horizon_years])
    cost.update_layout(barmode="stack", title="Cost breakdown (USD)", height=420)

    alts = sorted(plan.alternatives, key=lambda a: a.tco_usd)[:20]
    compare = go.Figure(
        go.Bar(
            x=[a.tco_usd for a in alts],
            y=[f"{a.option} [{a.scope}]" for a in alts],
            orientation="h",
            marker_color=["#2a9d8f" if a.feasible else "#bbbbbb" for a in alts],
            hovertext=["; ".join(a.reasons) or "feasible" for a in alts],
        )
    )
    compare.update_layout(
        title="Own vs cloud vs API: cost over the horizon (grey: excluded by a sovereignty rule)",
        height=max(420, 28 * len(alts)),
        yaxis={"autorange": "reversed"},
    )
    return {
        "cost": cost.to_html(full_html=False, include_plotlyjs=False),
        "compare": compare.to_html(full_html=False, include_plotlyjs=False),
    }
