"""The sovereignty premium: cheapest admitted option minus cheapest option with the rules off."""

from __future__ import annotations

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.plan import build_plan
from factoryplan.scenario import parse_scenario
from factoryplan.sovereignty.policy import Verdict
from factoryplan.sovereignty.premium import OptionCost, premium


def _v(workload: str, option: str, ok: bool, rules: list[str] | None = None) -> Verdict:
    return Verdict(option=option, workload=workload, feasible=ok, level=0, reasons=[] if ok else ["r"], flags=[],
                   excluded_by=rules or [])


def test_premium_is_difference_of_cheapest_admitted_and_cheapest() -> None:
    costs = [
        OptionCost(workload="a", option_id="api", option="API", kind="api", tco_usd=10.0),
        OptionCost(workload="a", option_id="own", option="own", kind="own", tco_usd=25.0),
        OptionCost(workload="a", option_id="cloud", option="cloud", kind="cloud", tco_usd=18.0),
        OptionCost(workload="b", option_id="own", option="own", kind="own", tco_usd=7.0),
        OptionCost(workload="b", option_id="api", option="API", kind="api", tco_usd=9.0),
    ]
    verdicts = [_v("a", "api", False, ["kr-pipa-28-8"]), _v("a", "own", True), _v("a", "cloud", False, ["x"]),
                _v("b", "own", True), _v("b", "api", False, ["kr-pipa-28-8"])]
    p = premium(costs, verdicts)
    a, b = p.workloads
    assert a.premium_usd == pytest.approx(15.0) and a.cheapest_feasible_option == "own"
    assert a.binding_rules == ["kr-pipa-28-8"]
    assert b.premium_usd == 0.0 and b.binding_rules == []  # the cheapest is admitted: nothing binds
    assert p.total_usd == pytest.approx(15.0)


def test_no_feasible_option_is_reported_not_hidden() -> None:
    costs = [OptionCost(workload="a", option_id="api", option="API", kind="api", tco_usd=1.0)]
    p = premium(costs, [_v("a", "api", False, ["r1"])])
    assert p.workloads[0].premium_usd is None and p.workloads[0].cheapest_feasible_option is None


def _scenario(data_class: str, sector: str = "private") -> dict[str, object]:
    return {
        "name": "t", "region": "kr",
        "workloads": [{"name": "svc", "kind": "inference", "model": "llama-3.1-8b", "requests_per_s": 20,
                       "data_class": data_class, "sector": sector}],
    }


def test_premium_zero_when_no_rule_binds(catalog: Catalog) -> None:
    plan = build_plan(parse_scenario(_scenario("public")), catalog)
    assert plan.sovereignty_premium.total_usd == 0.0
    assert all(w.premium_usd == 0.0 for w in plan.sovereignty_premium.workloads)


def test_personal_data_pays_a_premium_named_by_its_rule(catalog: Catalog) -> None:
    plan = build_plan(parse_scenario(_scenario("personal")), catalog)
    row = plan.sovereignty_premium.workloads[0]
    assert row.premium_usd is not None and row.premium_usd > 0
    assert "kr-pipa-28-8" in row.binding_rules
    assert plan.sovereignty_premium.total_usd == pytest.approx(row.premium_usd)
