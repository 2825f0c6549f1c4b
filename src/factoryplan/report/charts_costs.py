"""Charts of costs, alternatives, sensitivity and uncertainty for the HTML report.

Each function returns a plotly figure (or None when the plan has nothing to show); ``figures``
renders them as HTML fragments (plotly.js is inlined once by the page).
"""

from __future__ import annotations

from typing import Any

from factoryplan.plan import Plan
from factoryplan.units import SECONDS_PER_YEAR

HOURS_PER_YEAR = SECONDS_PER_YEAR / 3600.0
FEASIBLE, EXCLUDED, OWN = "#2a9d8f", "#bbbbbb", "#e76f51"


def _go() -> Any:
    import plotly.graph_objects as go

    return go


def cost_breakdown(plan: Plan) -> Any:
    """Stacked bars: capex by item; the annualised cost by block and opex line."""
    go = _go()
    k = plan.costs
    fig = go.Figure()
    for name, value in k.capex_breakdown.items():
        fig.add_bar(name=f"capex: {name}", x=["capex (once)"], y=[value])
    fig.add_bar(name="IT capex, levelised", x=["annualised cost (per year)"], y=[k.annualized_breakdown["it_capex"]])
    if k.annualized_breakdown.get("facility_capex"):
        fig.add_bar(name="facility capex, levelised", x=["annualised cost (per year)"],
                    y=[k.annualized_breakdown["facility_capex"]])
    for name, value in k.opex_breakdown.items():
        fig.add_bar(name=f"opex: {name}", x=["annualised cost (per year)"], y=[value])
    fig.update_layout(barmode="stack", title="Cost breakdown (USD)", height=460, yaxis_title="USD")
    return fig


def gpu_hour_by_option(plan: Plan, limit: int = 25) -> Any:
    """$/GPU-hour of the owned deployment, colocation and each cloud offer (cheapest first)."""
    go = _go()
    alts = sorted((a for a in plan.alternatives if a.usd_per_gpu_hour is not None),
                  key=lambda a: a.usd_per_gpu_hour or 0.0)[:limit]
    colours = [OWN if a.kind in ("own", "colo") else FEASIBLE if a.feasible else EXCLUDED for a in alts]
    fig = go.Figure(go.Bar(
        x=[a.usd_per_gpu_hour for a in alts], y=[a.option for a in alts], orientation="h", marker_color=colours,
        hovertext=["; ".join(a.reasons) or "feasible" for a in alts],
    ))
    fig.update_layout(title=f"$ per GPU-hour by option (owned: levelised at {plan.costs.utilization:.0%} utilisation; "
                      "grey: excluded by a sovereignty rule)", height=max(420, 24 * len(alts)),
                      yaxis={"autorange": "reversed"}, xaxis_title="USD per GPU-hour")
    return fig


def mtok_by_option(plan: Plan) -> Any | None:
    """$/Mtok of each service on the owned deployment against each API option."""
    go = _go()
    rows = [(f"own: {s.name}", s.usd_per_million_tokens, OWN) for s in plan.costs.services]
    rows += [(a.option, a.usd_per_million_tokens or 0.0, FEASIBLE if a.feasible else EXCLUDED)
             for a in plan.alternatives if a.kind == "api"]
    if not rows:
        return None
    fig = go.Figure(go.Bar(x=[r[1] for r in rows], y=[r[0] for r in rows], orientation="h",
                           marker_color=[r[2] for r in rows]))
    fig.update_layout(title="$ per million tokens (blended input and output): own services vs LLM APIs",
                      height=max(360, 28 * len(rows)), yaxis={"autorange": "reversed"}, xaxis_title="USD per Mtok")
    return fig


def break_even_curve(plan: Plan, offers: int = 5) -> Any:
    """Owned $/used GPU-hour against utilisation, with the cheapest on-demand cloud prices as lines."""
    go = _go()
    k = plan.costs
    us = [i / 100 for i in range(5, 101)]
    fig = go.Figure(go.Scatter(
        x=us, y=[k.annualized_usd_per_year / (plan.cluster.gpus * HOURS_PER_YEAR * u) for u in us],
        name=f"owned ({plan.cluster.accelerator})", line={"color": OWN, "width": 3},
    ))
    on_demand = sorted((a for a in plan.alternatives if a.pricing == "on-demand" and a.usd_per_gpu_hour),
                       key=lambda a: a.tco_usd)[:offers]
    for a in on_demand:
        # the cloud re-sizes the work on its own GPUs: express its price per owned-GPU-hour of work
        ratio = (a.gpus or plan.cluster.gpus) / plan.cluster.gpus
        price = (a.usd_per_gpu_hour or 0.0) * ratio
        label = f"{a.option}" + (f" (break-even {a.break_even_utilization:.0%})" if a.break_even_utilization else "")
        fig.add_scatter(x=[us[0], us[-1]], y=[price, price], name=label, mode="lines", line={"dash": "dash"})
    fig.add_vline(x=k.utilization, line={"color": "#666", "dash": "dot"}, annotation_text="plan")
    fig.update_layout(title="Break-even against on-demand cloud: owned cost per used GPU-hour vs utilisation",
                      height=460, xaxis={"title": "utilisation of the owned GPUs", "tickformat": ".0%"},
                      yaxis={"title": "USD per used GPU-hour of work", "type": "log"})
    return fig


def cash_flow_chart(plan: Plan) -> Any:
    """Yearly capex, opex and residual value (negative) with the cumulative cost."""
    go = _go()
    flows = plan.costs.cash_flows
    years = [f.year for f in flows]
    fig = go.Figure()
    fig.add_bar(name="capex", x=years, y=[f.capex_usd for f in flows])
    fig.add_bar(name="opex", x=years, y=[f.opex_usd for f in flows])
    fig.add_bar(name="residual value", x=years, y=[-f.residual_usd for f in flows])
    fig.add_scatter(name="cumulative", x=years, y=[f.cumulative_usd for f in flows], mode="lines+markers")
    fig.add_scatter(name="cumulative, discounted", x=years, mode="lines",
                    y=[sum(g.discounted_usd for g in flows[: i + 1]) for i in range(len(flows))])
    fig.update_layout(barmode="relative", title="Yearly cash flow of the owned deployment (USD)", height=440,
                      xaxis_title="year")
    return fig


def tornado(plan: Plan, metric: str = "usd_per_gpu_hour", limit: int = 14) -> Any | None:
    """One-at-a-time sensitivity: each assumption at its low and high end."""
    go = _go()
    items = [s for s in plan.sensitivity if s.swing.get(metric, 0.0) > 0][:limit]
    if not items:
        return None
    base = plan.costs.usd_per_gpu_hour if metric == "usd_per_gpu_hour" else plan.costs.tco_usd
    names = [f"{s.assumption} ({s.low:g} – {s.high:g} {s.unit})" for s in items]
    fig = go.Figure()
    fig.add_bar(name="at low end", y=names, x=[s.at_low[metric] - base for s in items], base=base, orientation="h")
    fig.add_bar(name="at high end", y=names, x=[s.at_high[metric] - base for s in items], base=base, orientation="h")
    fig.update_layout(barmode="overlay", title=f"Sensitivity of {metric} (one at a time; base {base:,.4g})",
                      height=max(380, 30 * len(items)), yaxis={"autorange": "reversed"})
    return fig


def distribution(plan: Plan) -> Any | None:
    """Monte Carlo histograms of $/GPU-hour and TCO with P10/P50/P90 marks."""
    if plan.uncertainty is None:
        return None
    from plotly.subplots import make_subplots

    u = plan.uncertainty
    shown = [k for k in ("usd_per_gpu_hour", "tco_usd") if k in u.histograms]
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=shown)
    for i, key in enumerate(shown, start=1):
        h = u.histograms[key]
        mids = [(a + b) / 2 for a, b in zip(h.edges[:-1], h.edges[1:], strict=True)]
        fig.add_bar(x=mids, y=h.counts, name=key, row=1, col=i, showlegend=False)
        p = u.figures[key]
        for label, value in (("P10", p.p10), ("P50", p.p50), ("P90", p.p90)):
            fig.add_vline(x=value, line={"dash": "dash"}, annotation_text=label, row=1, col=i)
    fig.update_layout(title=f"Monte Carlo over the assumption ranges ({u.draws:,} draws)", height=400)
    return fig


def figures(plan: Plan) -> dict[str, str]:
    """name -> HTML fragment for the cost and alternatives sections."""
    makers = {
        "cost": cost_breakdown, "gpu_hour": gpu_hour_by_option, "mtok": mtok_by_option,
        "break_even": break_even_curve, "cash_flow": cash_flow_chart, "tornado": tornado,
        "distribution": distribution, "compare": compare_tco,
    }
    out = {}
    for name, make in makers.items():
        fig = make(plan)
        out[name] = fig.to_html(full_html=False, include_plotlyjs=False) if fig is not None else ""
    return out


def compare_tco(plan: Plan, limit: int = 20) -> Any:
    """Cost over the horizon of every option, cheapest first."""
    go = _go()
    alts = sorted(plan.alternatives, key=lambda a: a.tco_usd)[:limit]
    fig = go.Figure(go.Bar(
        x=[a.tco_usd for a in alts], y=[f"{a.option} [{a.scope}]" for a in alts], orientation="h",
        marker_color=[OWN if a.kind in ("own", "colo") else FEASIBLE if a.feasible else EXCLUDED for a in alts],
        hovertext=["; ".join(a.reasons) or "feasible" for a in alts],
    ))
    fig.update_layout(title="Own vs cloud vs API: cost over the horizon (grey: excluded by a sovereignty rule)",
                      height=max(420, 28 * len(alts)), yaxis={"autorange": "reversed"})
    return fig
