"""Charts of the physical deployment for the HTML report: the power waterfall and a fabric schematic."""

from __future__ import annotations

from typing import Any

from factoryplan.infra.fabric import Fabric
from factoryplan.infra.power import Power
from factoryplan.plan import Plan

MAX_BOXES = 10  # boxes drawn per tier; the label gives the full count


def power_figure(p: Power) -> Any:
    """Waterfall from GPU TDP to facility power at the meter (MW)."""
    import plotly.graph_objects as go

    steps = [
        ("GPU TDP", p.gpu_mw),
        ("rest of systems", p.systems_mw - p.gpu_mw),
        ("network", p.network_mw),
        ("storage", p.storage_mw),
        ("management", p.management_mw),
        (f"cooling and losses (PUE {p.pue:.2f})", p.facility_mw - p.it_mw),
    ]
    fig = go.Figure(go.Waterfall(
        x=[s[0] for s in steps[:5]] + ["IT", steps[5][0], "facility"],
        y=[s[1] for s in steps[:5]] + [p.it_mw, steps[5][1], p.facility_mw],
        measure=["relative"] * 5 + ["total", "relative", "total"],
        text=[f"{v:,.3g}" for v in [s[1] for s in steps[:5]] + [p.it_mw, steps[5][1], p.facility_mw]],
    ))
    fig.update_layout(title="Power from chip to meter (MW, maximum)", height=420, showlegend=False)
    return fig


def _tier(fig: Any, y: float, count: int, label: str, color: str) -> list[float]:
    """Draw up to MAX_BOXES boxes at height y; return their x centres."""
    shown = min(count, MAX_BOXES)
    xs = [(i + 0.5) / shown for i in range(shown)]
    for x in xs:
        fig.add_shape(type="rect", x0=x - 0.3 / shown, x1=x + 0.3 / shown, y0=y - 0.12, y1=y + 0.12,
                      fillcolor=color, line={"color": "#333", "width": 1})
    more = "" if count <= shown else f" (showing {shown})"
    fig.add_annotation(x=1.02, y=y, text=f"<b>{label}</b> x {count:,}{more}", showarrow=False, xanchor="left")
    return xs


def _links(fig: Any, xs_low: list[float], y_low: float, xs_high: list[float], y_high: float) -> None:
    for a in xs_low:
        for b in xs_high:
            fig.add_shape(type="line", x0=a, x1=b, y0=y_low + 0.12, y1=y_high - 0.12,
                          line={"color": "rgba(80,80,80,0.25)", "width": 1})


def fabric_figure(f: Fabric, scalable_units: int, su_gpus: int) -> Any:
    """Schematic of the compute fabric: scalable units, leaf, spine and core tiers with their counts."""
    import plotly.graph_objects as go

    fig = go.Figure()
    rows: list[tuple[int, str, str]] = [(scalable_units, f"scalable units ({su_gpus:,} GPUs each)", "#cfe3f7")]
    if f.tiers >= 1:
        rows.append((f.leaf_switches, "leaf switches", "#f7d9a8"))
    if f.tiers >= 2:
        rows.append((f.spine_switches, "spine switches", "#f4b183"))
    if f.tiers >= 3:
        rows.append((f.core_switches, "core switches", "#e07b7b"))
    previous: list[float] = []
    for level, (count, label, color) in enumerate(rows):
        xs = _tier(fig, float(level), max(count, 1), label, color)
        if previous:
            _links(fig, previous, float(level - 1), xs, float(level))
        previous = xs
    title = f"Compute fabric: {f.topology}, {f.switch} ({f.radix} x {f.link_gbit_s:g}G)"
    if f.pods > 1:
        title += f"; counts over {f.pods} pods"
    s, m = f.storage_network, f.management_network
    ns_switches = s.leaf_switches + s.spine_switches + s.core_switches
    fig.add_annotation(x=0.0, y=-0.55, xanchor="left", showarrow=False,
                       text=(f"storage and in-band: {ns_switches:,} x {s.switch}; "
                             f"management: {m.leaf_switches:,} x {m.switch}"))
    fig.update_xaxes(visible=False, range=[-0.02, 1.45])
    fig.update_yaxes(visible=False, range=[-0.8, len(rows) - 0.5])
    fig.update_layout(title=title, height=120 + 90 * len(rows), plot_bgcolor="white",
                      margin={"l": 20, "r": 20, "t": 60, "b": 20})
    return fig


def figures(plan: Plan) -> dict[str, str]:
    """name -> HTML fragment (plotly div; plotly.js is inlined once by the page)."""
    c = plan.cluster
    main = max(c.pools, key=lambda p: p.gpus)
    su_gpus = round(main.gpus / main.scalable_units) if main.scalable_units > 0 else main.gpus
    fabric = fabric_figure(c.fabric, sum(p.whole_scalable_units for p in c.pools), su_gpus)
    return {
        "power": power_figure(plan.power).to_html(full_html=False, include_plotlyjs=False),
        "fabric": fabric.to_html(full_html=False, include_plotlyjs=False),
    }
