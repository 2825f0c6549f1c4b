"""The sovereignty premium: what the rules cost.

For each workload, the cheapest option the rules admit minus the cheapest option of all (rules
switched off), over the plan's horizon. The total is the sum over workloads, each choosing its
own cheapest option; it is zero when no rule binds. The rules that exclude the cheapest option
are named, so a reader sees which law costs how much.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from factoryplan.sovereignty.policy import Verdict


class OptionCost(BaseModel):
    """What serving one workload through one deployment option costs over the horizon."""

    model_config = ConfigDict(frozen=True)

    workload: str
    option_id: str
    option: str  # in words, with the offer
    kind: str  # own | colo | cloud | api
    tco_usd: float


class WorkloadPremium(BaseModel):
    """The premium of one workload."""

    model_config = ConfigDict(frozen=True)

    workload: str
    cheapest_option: str
    cheapest_usd: float
    cheapest_feasible_option: str | None
    cheapest_feasible_usd: float | None
    premium_usd: float | None  # None when no option is feasible
    binding_rules: list[str]  # ids of the rules that exclude the cheapest option


class Premium(BaseModel):
    """The sovereignty premium of a plan."""

    model_config = ConfigDict(frozen=True)

    total_usd: float
    workloads: list[WorkloadPremium]
    method: str = (
        "per workload: cheapest option the rules admit minus cheapest option with the rules off, over the horizon; "
        "own-build and colocation costs are the workload's share of the planned deployment"
    )


def premium(costs: Sequence[OptionCost], verdicts: Sequence[Verdict]) -> Premium:
    """The premium per workload and in total from option costs and rule verdicts."""
    by_key = {(v.workload, v.option): v for v in verdicts}

    def admitted(c: OptionCost) -> bool:
        v = by_key.get((c.workload, c.option_id))
        return v is None or v.feasible

    rows = []
    for workload in dict.fromkeys(c.workload for c in costs):
        mine = sorted((c for c in costs if c.workload == workload), key=lambda c: c.tco_usd)
        best = mine[0]
        ok = [c for c in mine if admitted(c)]
        best_ok = ok[0] if ok else None
        verdict = by_key.get((workload, best.option_id))
        rows.append(WorkloadPremium(
            workload=workload, cheapest_option=best.option, cheapest_usd=best.tco_usd,
            cheapest_feasible_option=best_ok.option if best_ok else None,
            cheapest_feasible_usd=best_ok.tco_usd if best_ok else None,
            premium_usd=best_ok.tco_usd - best.tco_usd if best_ok else None,
            binding_rules=list(verdict.excluded_by) if verdict is not None and best_ok is not best else [],
        ))
    return Premium(total_usd=sum(r.premium_usd or 0.0 for r in rows), workloads=rows)
