"""Charts of serving performance for the HTML report: the throughput/interactivity Pareto frontier.

For each inference workload the plan keeps the Pareto frontiers of its chosen GPU type, aggregated
and disaggregated serving: output tokens/s per GPU (and per MW of system power) against tokens/s
per user, the trade-off batching makes. The planned operating point is marked.
"""

from __future__ import annotations

from typing import Any

from factoryplan.plan import Plan


def frontier_figure(plan: Plan) -> Any:
    """One line per inference workload: tokens/s per GPU against tokens/s per user; None when the
    plan has no frontier."""
    import plotly.graph_objects as go

    rows = [w for w in plan.workloads if w.frontier or w.frontier_disaggregated]
    if not rows:
        return None
    fig = go.Figure()
    for w in rows:
        for points, mode, dash in ((w.frontier, "aggregated", "solid"), (w.frontier_disaggregated, "disaggregated",
                                                                           "dash")):
            if not points:
                continue
            where = "on" if mode == "aggregated" else "decode batch on"
            fig.add_scatter(
                x=[p["tokens_per_s_per_user"] for p in points], y=[p["tokens_per_s_per_gpu"] for p in points],
                mode="lines+markers", line={"dash": dash},
                name=f"{w.name} ({w.model} on {w.accelerator}), {mode}",
                customdata=[[p["tokens_per_s_per_mw"] / 1e6, p["concurrency"], p["gpus"], p["ttft_ms"], p["tpot_ms"]]
                            for p in points],
                hovertemplate=("%{x:.1f} tok/s/user, %{y:,.0f} tok/s/GPU<br>%{customdata[0]:.2f} M tok/s per MW"
                               f"<br>concurrency %{{customdata[1]:.0f}} {where} %{{customdata[2]:.0f}} GPUs"
                               "<br>TTFT %{customdata[3]:.0f} ms, TPOT %{customdata[4]:.1f} ms<extra></extra>"),
            )
        user, gpu = w.details.get("tokens_per_s_per_user"), w.details.get("output_tokens_per_s_per_gpu")
        if isinstance(user, int | float) and isinstance(gpu, int | float):
            fig.add_scatter(x=[user], y=[gpu], mode="markers", marker={"size": 12, "symbol": "star"},
                            name=f"{w.name}: planned (peak)", showlegend=True)
    fig.update_layout(
        title="Serving Pareto frontier: throughput per GPU vs speed per user", height=480,
        xaxis_title="output tokens/s per user (1/TPOT)", yaxis_title="output tokens/s per GPU",
    )
    return fig


def figures(plan: Plan) -> dict[str, str]:
    """name -> HTML fragment (plotly div; plotly.js is inlined once by the page)."""
    fig = frontier_figure(plan)
    if fig is None:
        return {}
    return {"serving_frontier": fig.to_html(full_html=False, include_plotlyjs=False)}
