"""What every report puts first: the five numbers that matter, and the sovereignty picture.

Shared by the terminal, HTML and Markdown reports so that they say the same thing. For a phased
scenario the numbers describe the build-out (GPUs and power at its last phase, every purchase,
the programme's lifetime cost); otherwise the single design.
"""

from __future__ import annotations

from dataclasses import dataclass

from factoryplan.perf.inference_inputs import Precision
from factoryplan.plan import Plan, WorkloadResult
from factoryplan.report.fmt import mw, num, usd
from factoryplan.sovereignty.policy import LEVEL_NAMES


@dataclass(frozen=True)
class Kpi:
    """One headline figure: what it is, its value, and a line of context."""

    label: str
    value: str
    detail: str


def _n(value: float | int | str | None) -> str:
    return value if isinstance(value, str) else num(value)


def _formats(w: WorkloadResult) -> str:
    """A service's weight formats as the engine names them (:meth:`Precision.label`)."""
    return Precision(weights=w.precision, experts=str(w.details.get("moe_precision", w.precision))).label()


def key_figures(w: WorkloadResult) -> str:
    """A workload's figures in one line: days, MFU and precision of a training run; a service's
    replicas, weight formats, latencies (the TTFT percentile it was planned for, at the rate it is
    sized for), $/Mtok, its GPUs across the engine's error band and the prefix cache and speculative
    decoding it uses."""
    d = w.details
    if w.kind == "training":
        return f"{_n(d.get('wall_clock_days'))} days, MFU {_n(d.get('mfu'))}, {w.precision}"
    figures = (
        f"{_n(d.get('replicas'))} x TP{_n(d.get('gpus_per_replica'))}, {_formats(w)}, TPOT {_n(d.get('tpot_ms'))} ms, "
        f"TTFT {_n(d.get('ttft_ms'))} ms, {usd(w.usd_per_million_tokens)}/Mtok"
    )
    if d.get("ttft_percentile") is not None:
        pct = f"{float(d['ttft_percentile']):g}"
        figures += f", TTFT P{pct} {_n(d.get(f'ttft_p{pct}_ms'))} ms at peak plus headroom"
    if d.get("gpus_low") is not None:
        high = _n(d.get("gpus_high")) if d.get("gpus_high") is not None else "none"
        figures += f", {_n(d.get('gpus_low'))}-{high} GPUs across the engine's error band"
    if d.get("cached_prompt_tokens"):
        figures += f", {_n(d.get('cached_prompt_tokens'))} prompt tokens cached"
    if d.get("draft_tokens"):
        figures += f", {_n(d.get('draft_tokens'))} draft tokens ({_n(d.get('tokens_per_step'))} a step)"
    return figures


def _mix(by_system: dict[str, int]) -> str:
    return ", ".join(f"{num(n)} in {s}" for s, n in sorted(by_system.items(), key=lambda kv: -kv[1]))


def headline(plan: Plan) -> list[Kpi]:
    """GPUs, power at the meter, capex, lifetime cost, sovereignty premium."""
    k, p, c = plan.costs, plan.power, plan.cluster
    premium = plan.sovereignty_premium
    binding = sorted({r for w in premium.workloads for r in w.binding_rules})
    premium_kpi = Kpi(
        "Sovereignty premium", usd(premium.total_usd),
        f"binding: {', '.join(binding)}" if binding else "no rule raises the cost",
    )
    if plan.phasing is not None:
        ph = plan.phasing
        last = ph.phases[-1]
        first_year, last_year = ph.timeline[0].year, ph.timeline[-1].year
        return [
            Kpi(f"GPUs by {last.year}", num(last.active_gpus), _mix(last.active_gpus_by_system)),
            Kpi(f"Power at the meter, {last.year}", mw(last.facility_mw),
                f"budget {mw(last.power_budget_mw)}; {num(last.output_tokens_per_s_per_mw)} output tok/s per MW"),
            Kpi("Capex over the programme", usd(ph.capex_usd), f"{len(ph.phases)} phases and refreshes, "
                f"{first_year}-{last_year}"),
            Kpi(f"Lifetime cost {first_year}-{last_year}", usd(ph.tco_usd),
                f"NPV {usd(ph.npv_usd)}; {usd(k.usd_per_gpu_hour)} per GPU-hour (target design)"),
            premium_kpi,
        ]
    return [
        Kpi("GPUs", num(c.gpus), f"{c.accelerator} in {num(c.systems)} x {c.system}"),
        Kpi("Power at the meter", mw(p.facility_mw), f"IT {mw(p.it_mw)}, PUE {p.pue:.2f}"
            + (f", budget {mw(p.budget_mw)}" if p.budget_mw else "")),
        Kpi("Capex", usd(k.capex_usd), f"opex {usd(k.opex_usd_per_year)} per year"),
        Kpi(f"Lifetime cost ({k.horizon_years:g} y)", usd(k.tco_usd),
            f"NPV {usd(k.npv_usd)}; {usd(k.usd_per_gpu_hour)} per GPU-hour"),
        premium_kpi,
    ]


@dataclass(frozen=True)
class OptionRow:
    """One deployment option against every workload: a mark per workload and the reasons."""

    option: str
    level: str
    marks: list[str]  # "yes", "no" or "yes*" (admitted, with flags) per workload, in plan order
    reasons: list[str]


def feasibility(plan: Plan) -> tuple[list[str], list[OptionRow]]:
    """(workload names, one row per option) from the plan's verdicts."""
    names = [w.name for w in plan.workloads]
    rows: dict[str, OptionRow] = {}
    for v in plan.sovereignty:
        row = rows.setdefault(v.option, OptionRow(v.option, LEVEL_NAMES[v.level], [""] * len(names), []))
        i = names.index(v.workload)
        row.marks[i] = "no" if not v.feasible else "yes*" if v.flags else "yes"
        row.reasons.extend(f"{v.workload}: {r}" for r in v.reasons)
    return names, list(rows.values())
