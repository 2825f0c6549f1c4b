"""The plan as Markdown, for pasting into documents."""

from __future__ import annotations

from pathlib import Path

from factoryplan.plan import Plan
from factoryplan.report import summary
from factoryplan.report.fmt import mw, num, usd


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return [*out, ""]


def render_markdown(plan: Plan) -> str:
    """The whole plan in Markdown."""
    p = plan.power
    lines = [f"# {plan.scenario}", "", f"Region {plan.region}. {plan.description}".strip(), ""]
    lines += ["## Summary", ""]
    lines += _table(["figure", "value", "context"], [[k.label, k.value, k.detail] for k in summary.headline(plan)])
    lines += [f"> Warning: {w}" for w in plan.warnings] + ([""] if plan.warnings else [])
    lines += _phases(plan)
    lines += ["## Workloads", ""]
    lines += _table(
        ["workload", "kind", "model", "hardware", "GPUs", "key figures", "method"],
        [[w.name, w.kind, w.model, w.accelerator, num(w.gpus), summary.key_figures(w), w.method]
         for w in plan.workloads],
    )
    lines += ["## Power", ""]
    lines += _table(
        ["GPU TDP", "systems", "IT", "PUE", "facility", "energy per year"],
        [[mw(p.gpu_mw), mw(p.systems_mw), mw(p.it_mw), f"{p.pue:.2f}", mw(p.facility_mw),
          f"{num(p.annual_energy_mwh)} MWh"]],
    )
    lines += _costs(plan)
    lines += _alternatives(plan)
    lines += _sovereignty(plan)
    lines += ["## Assumptions", ""]
    lines += _table(["name", "value", "source"], [[a.name, a.display, a.source] for a in plan.assumptions])
    return "\n".join(lines)


def _costs(plan: Plan) -> list[str]:
    k = plan.costs
    f = k.finance
    lines = ["## Costs", "", f"{k.deployment}, {k.horizon_years:g}-year horizon, WACC {f['wacc']:.1%}, IT life "
             f"{f['it_lifetime_years']:g} y, utilisation {k.utilization:.0%}. {k.method}.", ""]
    lines += _table(["figure", "USD"], [
        ["capex", usd(k.capex_usd)], ["opex per year", usd(k.opex_usd_per_year)],
        ["annualised", usd(k.annualized_usd_per_year)],
        ["annualised, straight-line", usd(k.annualized_straight_line_usd_per_year)],
        ["TCO / NPV", f"{usd(k.tco_usd)} / {usd(k.npv_usd)}"], ["per GPU-hour", usd(k.usd_per_gpu_hour)],
    ])
    lines += _table(["capex item", "USD"], [[n, usd(v)] for n, v in k.capex_breakdown.items()])
    lines += _table(["opex item (per year)", "USD"], [[n, usd(v)] for n, v in k.opex_breakdown.items()])
    if k.services:
        lines += _table(["service", "$/Mtok", "input", "output", "output tok/s per MW"], [
            [s.name, usd(s.usd_per_million_tokens), usd(s.usd_per_million_input_tokens),
             usd(s.usd_per_million_output_tokens), num(s.output_tokens_per_s_per_mw)] for s in k.services])
    if k.training_runs:
        lines += _table(["training run", "GPU-hours", "$/GPU-hour", "cost"], [
            [r.name, num(r.gpu_hours), usd(r.usd_per_gpu_hour), usd(r.usd)] for r in k.training_runs])
    lines += _table(["year", "capex", "opex", "residual", "cumulative"], [
        [str(c.year), usd(c.capex_usd), usd(c.opex_usd), usd(c.residual_usd), usd(c.cumulative_usd)]
        for c in k.cash_flows])
    if plan.sensitivity:
        lines += ["### Sensitivity (one at a time)", ""]
        lines += _table(["assumption", "range", "$/GPU-h low..high", "TCO low..high"], [
            [s.assumption, f"{num(s.low)} – {num(s.high)} {s.unit}",
             f"{usd(s.at_low['usd_per_gpu_hour'])}..{usd(s.at_high['usd_per_gpu_hour'])}",
             f"{usd(s.at_low['tco_usd'])}..{usd(s.at_high['tco_usd'])}"] for s in plan.sensitivity])
    if plan.uncertainty is not None:
        u = plan.uncertainty
        lines += [f"### Uncertainty ({u.draws:,} Monte Carlo draws)", ""]
        lines += _table(["figure", "P10", "P50", "P90"], [
            [n, usd(p.p10), usd(p.p50), usd(p.p90)] for n, p in u.figures.items()])
    return lines


def _alternatives(plan: Plan) -> list[str]:
    lines = ["## Alternatives", ""]
    lines += _table(
        ["option", "kind", "scope", "TCO", "$/GPU-h", "$/Mtok", "break-even util.", "break-even month", "feasible",
         "reasons"],
        [[a.option, a.kind, a.scope, usd(a.tco_usd), usd(a.usd_per_gpu_hour), usd(a.usd_per_million_tokens),
          f"{a.break_even_utilization:.0%}" if a.break_even_utilization is not None else "-",
          f"{a.break_even_month:.0f}" if a.break_even_month is not None else "-",
          "yes" if a.feasible else "no", "; ".join([a.note] * bool(a.note) + a.reasons)]
         for a in sorted(plan.alternatives, key=lambda a: a.tco_usd)],
    )
    return lines


def _phases(plan: Plan) -> list[str]:
    if plan.phasing is None:
        return []
    ph = plan.phasing
    lines = ["## Phased build-out", "", f"{ph.method}.", ""]
    lines += _table(
        ["phase", "year", "power budget", "bought", "GPUs running", "facility", "output tok/s", "capex", "opex/yr"],
        [[p.name, str(p.year), mw(p.power_budget_mw), ", ".join(f"{num(i.gpus)} in {i.system}" for i in p.installed)
          or "-", num(p.active_gpus), mw(p.facility_mw), num(p.serving_output_tokens_per_s), usd(p.capex_usd),
          usd(p.opex_usd_per_year)] for p in ph.phases],
    )
    lines += _table(
        ["year", "capex", "opex", "residual", "cumulative", "GPUs"],
        [[str(t.year), usd(t.capex_usd), usd(t.opex_usd), usd(t.residual_usd), usd(t.cumulative_usd),
          num(t.active_gpus)] for t in ph.timeline],
    )
    lines += [f"Programme lifetime cost {usd(ph.tco_usd)} (NPV {usd(ph.npv_usd)}). The sections below describe the "
              "target design: all of the scenario's demand on its candidate hardware.", ""]
    return lines


def _sovereignty(plan: Plan) -> list[str]:
    names, rows = summary.feasibility(plan)
    lines = ["## Sovereignty", ""]
    lines += _table(["option", "level", *names], [[r.option, r.level, *r.marks] for r in rows])
    reasons = [f"- **{r.option}** for {why}" for r in rows for why in r.reasons]
    if reasons:
        lines += ["Why options are excluded:", "", *reasons, ""]
    prem = plan.sovereignty_premium
    lines += [f"### Sovereignty premium: {usd(prem.total_usd)}", "", f"{prem.method}.", ""]
    lines += _table(
        ["workload", "cheapest option", "cheapest the rules admit", "premium", "binding rules"],
        [[w.workload, f"{w.cheapest_option} {usd(w.cheapest_usd)}",
          f"{w.cheapest_feasible_option or 'none'} {usd(w.cheapest_feasible_usd)}", usd(w.premium_usd),
          ", ".join(w.binding_rules)] for w in prem.workloads],
    )
    return lines


def write_markdown(plan: Plan, path: Path) -> None:
    """Write the Markdown report."""
    path.write_text(render_markdown(plan), encoding="utf-8")
