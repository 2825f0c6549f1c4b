"""Charts of the physical deployment for the HTML report."""

from __future__ import annotations

from factoryplan.plan import Plan


def figures(plan: Plan) -> dict[str, str]:
    """name -> HTML fragment (plotly div; plotly.js is inlined once by the page)."""
    import plotly.graph_objects as go

    p = plan.power
    steps = [
        ("GPU TDP", p.gpu_mw),
        ("rest of systems", p.systems_mw - p.gpu_mw),
        ("network, storage, mgmt", p.it_mw - p.systems_mw),
        ("cooling and losses (PUE)", p.facility_mw - p.it_mw),
    ]
    power = go.Figure(
        go.Waterfall(
            x=[s[0] for s in steps] + ["facility"],
            y=[s[1] for s in steps] + [p.facility_mw],
            measure=["relative"] * len(steps) + ["total"],
        )
    )
    power.update_layout(title="Power from chip to meter (MW)", height=420)
    return {"power": power.to_html(full_html=False, include_plotlyjs=False)}
