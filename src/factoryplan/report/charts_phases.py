"""Charts of a phased build-out for the HTML report."""

from __future__ import annotations

from factoryplan.plan import Plan


def figures(plan: Plan) -> dict[str, str]:
    """Installed GPUs by system and power against budget per phase; yearly and cumulative cash flow."""
    if plan.phasing is None:
        return {}
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ph = plan.phasing
    labels = [f"{p.name} ({p.year})" for p in ph.phases]
    systems = sorted({s for p in ph.phases for s in p.active_gpus_by_system})
    build = make_subplots(specs=[[{"secondary_y": True}]])
    for s in systems:
        build.add_bar(name=f"GPUs in {s}", x=labels, y=[p.active_gpus_by_system.get(s, 0) for p in ph.phases])
    build.add_scatter(name="facility MW", x=labels, y=[p.facility_mw for p in ph.phases], mode="lines+markers",
                      secondary_y=True)
    build.add_scatter(name="power budget MW", x=labels, y=[p.power_budget_mw for p in ph.phases],
                      mode="lines", line={"dash": "dash"}, secondary_y=True)
    build.update_layout(barmode="stack", title="Build-out: GPUs running and power at the meter per phase", height=440)
    build.update_yaxes(title_text="GPUs", secondary_y=False)
    build.update_yaxes(title_text="MW", secondary_y=True)

    years = [t.year for t in ph.timeline]
    money = go.Figure()
    money.add_bar(name="capex", x=years, y=[t.capex_usd for t in ph.timeline])
    money.add_bar(name="opex", x=years, y=[t.opex_usd for t in ph.timeline])
    money.add_bar(name="residual value", x=years, y=[-t.residual_usd for t in ph.timeline])
    money.add_scatter(name="cumulative", x=years, y=[t.cumulative_usd for t in ph.timeline], mode="lines+markers")
    money.update_layout(barmode="relative", title="Programme cash flow by year (USD)", height=420)
    return {
        "phases_build": build.to_html(full_html=False, include_plotlyjs=False),
        "phases_cash": money.to_html(full_html=False, include_plotlyjs=False),
    }
