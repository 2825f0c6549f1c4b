"""The plan as Markdown, for pasting into documents."""

from __future__ import annotations

from pathlib import Path

from factoryplan.plan import Plan
from factoryplan.report.fmt import mw, num, usd


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows]
    return [*out, ""]


def render_markdown(plan: Plan) -> str:
    """The whole plan in Markdown."""
    c, p, k = plan.cluster, plan.power, plan.costs
    lines = [f"# {plan.scenario}", "", f"Region {plan.region}. {plan.description}".strip(), ""]
    lines += ["## Summary", ""]
    lines += _table(
        ["GPUs", "facility power", "capex", f"TCO ({k.horizon_years:g} y)", "per GPU-hour"],
        [[f"{num(c.gpus)} {c.accelerator}", mw(p.facility_mw), usd(k.capex_usd), usd(k.tco_usd),
          usd(k.usd_per_gpu_hour)]],
    )
    lines += [f"> Warning: {w}" for w in plan.warnings] + ([""] if plan.warnings else [])
    lines += ["## Workloads", ""]
    lines += _table(
        ["workload", "kind", "model", "hardware", "GPUs", "$/Mtok", "method"],
        [[w.name, w.kind, w.model, w.accelerator, num(w.gpus), usd(w.usd_per_million_tokens), w.method]
         for w in plan.workloads],
    )
    lines += ["## Power", ""]
    lines += _table(
        ["GPU TDP", "systems", "IT", "PUE", "facility", "energy per year"],
        [[mw(p.gpu_mw), mw(p.systems_mw), mw(p.it_mw), f"{p.pue:.2f}", mw(p.facility_mw),
          f"{num(p.annual_energy_mwh)} MWh"]],
    )
    lines += ["## Costs", ""]
    lines += _table(["capex item", "USD"], [[n, usd(v)] for n, v in k.capex_breakdown.items()])
    lines += _table(["opex item (per year)", "USD"], [[n, usd(v)] for n, v in k.opex_breakdown.items()])
    lines += ["## Alternatives", ""]
    lines += _table(
        ["option", "kind", "scope", "TCO", "feasible", "reasons"],
        [[a.option, a.kind, a.scope, usd(a.tco_usd), "yes" if a.feasible else "no", "; ".join(a.reasons)]
         for a in sorted(plan.alternatives, key=lambda a: a.tco_usd)],
    )
    lines += ["## Assumptions", ""]
    lines += _table(["name", "value", "source"], [[a.name, a.display, a.source] for a in plan.assumptions])
    return "\n".join(lines)


def write_markdown(plan: Plan, path: Path) -> None:
    """Write the Markdown report."""
    path.write_text(render_markdown(plan), encoding="utf-8")
