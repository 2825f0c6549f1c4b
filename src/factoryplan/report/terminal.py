"""The plan as rich tables in the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from factoryplan.plan import Plan
from factoryplan.report import summary
from factoryplan.report.fmt import mw, num, usd


def _workloads(plan: Plan) -> Table:
    t = Table(title="Workloads", title_justify="left")
    for col in ("workload", "kind", "model", "hardware", "GPUs", "key figures", "method"):
        t.add_column(col, overflow="fold")
    for w in plan.workloads:
        t.add_row(w.name, w.kind, w.model, f"{w.accelerator} ({w.system})", num(w.gpus), summary.key_figures(w),
                  w.method)
    return t


def _infra(plan: Plan) -> Table:
    from factoryplan.report import infra_text

    c, p = plan.cluster, plan.power
    rows = [
        ("hardware", f"{c.accelerator} in {c.system}"),
        ("GPUs / systems / racks", f"{num(c.gpus)} / {num(c.systems)} / {num(c.racks)}"),
        ("scalable units", num(c.scalable_units)),
        *infra_text.fabric_rows(c.fabric),
        *infra_text.power_rows(p),
        *infra_text.site_rows(c.cooling, c.racks, c.floor_m2, c.halls, c.buildings),
    ]
    return infra_text.table("Deployment and power", rows)


def _costs(plan: Plan) -> Table:
    k = plan.costs
    f = k.finance
    title = (f"Costs ({k.deployment}, {k.horizon_years:g}-year horizon, WACC {f['wacc']:.1%}, "
             f"IT life {f['it_lifetime_years']:g} y, utilisation {k.utilization:.0%})")
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column("item")
    t.add_column("value", overflow="fold")
    t.add_row("capex", usd(k.capex_usd) + "  " + ", ".join(f"{n} {usd(v)}" for n, v in k.capex_breakdown.items()))
    t.add_row("opex per year", usd(k.opex_usd_per_year) + "  " +
              ", ".join(f"{n} {usd(v)}" for n, v in k.opex_breakdown.items()))
    t.add_row("annualised", f"{usd(k.annualized_usd_per_year)} (straight-line "
              f"{usd(k.annualized_straight_line_usd_per_year)})")
    t.add_row("TCO / NPV", f"{usd(k.tco_usd)} / {usd(k.npv_usd)}")
    t.add_row("per GPU-hour", f"{usd(k.usd_per_gpu_hour)} (straight-line {usd(k.usd_per_gpu_hour_straight_line)})")
    for s in k.services:
        split = (f"; input {usd(s.usd_per_million_input_tokens)}, output {usd(s.usd_per_million_output_tokens)}"
                 if s.usd_per_million_input_tokens is not None else "")
        per_mw = f"; {num(s.output_tokens_per_s_per_mw)} output tok/s per MW" if s.output_tokens_per_s_per_mw else ""
        t.add_row(f"$/Mtok {s.name}", f"{usd(s.usd_per_million_tokens)}{split}{per_mw}")
    for r in k.training_runs:
        t.add_row(f"run {r.name}", f"{usd(r.usd)} ({num(r.gpu_hours)} GPU-hours at {usd(r.usd_per_gpu_hour)})")
    if plan.sensitivity:
        top = plan.sensitivity[:4]
        t.add_row("biggest levers ($/GPU-h)", ", ".join(
            f"{s.assumption} {usd(s.at_low['usd_per_gpu_hour'])}..{usd(s.at_high['usd_per_gpu_hour'])}" for s in top))
    if plan.uncertainty is not None:
        u = plan.uncertainty
        for key in ("tco_usd", "usd_per_gpu_hour", *[k for k in u.figures if k.startswith("usd_per_million")]):
            p = u.figures[key]
            t.add_row(f"P10/P50/P90 {key}", f"{usd(p.p10)} / {usd(p.p50)} / {usd(p.p90)}  ({u.draws:,} draws)")
    return t


def _alternatives(plan: Plan, limit: int = 12) -> Table:
    t = Table(title="Alternatives (cheapest first)", title_justify="left")
    for col in ("option", "kind", "scope", "TCO", "$/GPU-h", "$/Mtok", "break-even", "feasible", "why not"):
        t.add_column(col, overflow="fold")
    for a in sorted(plan.alternatives, key=lambda a: a.tco_usd)[:limit]:
        why = "; ".join(a.reasons)[:160]
        even = []
        if a.break_even_utilization is not None:
            even.append(f"{a.break_even_utilization:.0%} util.")
        if a.break_even_month is not None:
            even.append(f"month {a.break_even_month:.0f}")
        t.add_row(a.option, a.kind, a.scope, usd(a.tco_usd), usd(a.usd_per_gpu_hour), usd(a.usd_per_million_tokens),
                  ", ".join(even), "yes" if a.feasible else "[red]no[/red]", why)
    return t


def _headline(plan: Plan) -> Table:
    t = Table(title="The five numbers", title_justify="left", show_header=False)
    t.add_column("figure", style="bold")
    t.add_column("value", style="bold")
    t.add_column("context", overflow="fold")
    for k in summary.headline(plan):
        t.add_row(k.label, k.value, k.detail)
    return t


def _phases(plan: Plan) -> Table | None:
    if plan.phasing is None:
        return None
    ph = plan.phasing
    t = Table(title=f"Phased build-out (lifetime cost {usd(ph.tco_usd)}, NPV {usd(ph.npv_usd)})", title_justify="left")
    for col in ("phase", "year", "budget", "bought", "GPUs running", "facility", "output tok/s", "capex", "opex/yr"):
        t.add_column(col, overflow="fold")
    for p in ph.phases:
        bought = ", ".join(f"{num(i.gpus)} in {i.system}" for i in p.installed) or "-"
        t.add_row(p.name, str(p.year), mw(p.power_budget_mw), bought, num(p.active_gpus), mw(p.facility_mw),
                  num(p.serving_output_tokens_per_s), usd(p.capex_usd), usd(p.opex_usd_per_year))
    return t


def _sovereignty(plan: Plan) -> Table:
    names, rows = summary.feasibility(plan)
    t = Table(title=f"Sovereignty (premium {usd(plan.sovereignty_premium.total_usd)})", title_justify="left")
    t.add_column("option", overflow="fold")
    t.add_column("level", overflow="fold")
    for n in names:
        t.add_column(n, overflow="fold")
    for r in rows:
        t.add_row(r.option, r.level, *[("[red]no[/red]" if m == "no" else m) for m in r.marks])
    return t


def _assumptions(plan: Plan) -> Table:
    t = Table(title="Assumptions used", title_justify="left")
    for col in ("name", "value", "source"):
        t.add_column(col, overflow="fold")
    for a in plan.assumptions:
        t.add_row(a.name, a.display + (" (override)" if a.overridden else ""), a.source)
    return t


def render(plan: Plan, console: Console) -> None:
    """Print the plan summary."""
    console.print(f"[bold]{plan.scenario}[/bold]  region {plan.region}")
    if plan.description:
        console.print(plan.description)
    tables = (_headline(plan), _phases(plan), _workloads(plan), _infra(plan), _costs(plan), _alternatives(plan),
              _sovereignty(plan), _assumptions(plan))
    for table in tables:
        if table is not None:
            console.print(table)
    for p in plan.sovereignty_premium.workloads:
        if p.binding_rules:
            console.print(f"premium {usd(p.premium_usd)} on {p.workload}: cheapest {p.cheapest_option}, "
                          f"admitted {p.cheapest_feasible_option} ({', '.join(p.binding_rules)})")
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
