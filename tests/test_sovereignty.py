"""Sovereignty rules: each rule of the reference file excludes and admits the options it should.

Rules: shared/reference/sovereignty_rules.csv as encoded in catalog/data/rules.yaml (KR PIPA Art. 28-8,
KR CSAP tiers, KR AI Basic Act, EU GDPR Ch. V, EU AI Act, US CLOUD Act), plus the Korean financial
cloud rule and the planning floor for national-security data.
"""

from __future__ import annotations

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import DATA_CLASSES, SECTORS, TRANSFER_BASES
from factoryplan.scenario import InferenceWorkload, TrainingWorkload
from factoryplan.sovereignty.policy import Verdict, WorkloadData, assess

FOREIGN_DATA = {"neocloud-foreign", "llm-api-foreign", "llm-api-foreign-cn", "llm-api-foreign-eu"}
US_PARENT = {"neocloud-foreign", "hyperscaler-local-region", "hyperscaler-sovereign", "llm-api-foreign"}
ALL = {"own-build", "colocation-domestic", "sovereign-cloud-domestic", "hyperscaler-local-region",
       "hyperscaler-sovereign", "llm-api-domestic"} | FOREIGN_DATA


def verdicts(catalog: Catalog, w: WorkloadData, plan_jur: str | None = None, **kw: object) -> dict[str, Verdict]:
    rules = list(catalog.rules.values())
    return {
        o.id: assess(o, w, rules, plan_jurisdiction=plan_jur or w.jurisdiction, **kw)  # type: ignore[arg-type]
        for o in catalog.options.values()
    }


def excluded_by(catalog: Catalog, rule_id: str, w: WorkloadData, plan_jur: str | None = None) -> set[str]:
    return {o for o, v in verdicts(catalog, w, plan_jur).items() if rule_id in v.excluded_by}


CASES = [
    # rule, workload (jurisdiction, data class, sector), options it must exclude
    ("kr-pipa-28-8", ("KR", "personal", "private"), FOREIGN_DATA),
    ("kr-pipa-28-8", ("KR", "sensitive", "health"), FOREIGN_DATA),
    ("kr-csap-low", ("KR", "public", "public"), FOREIGN_DATA),
    ("kr-csap-mid-high", ("KR", "personal", "public"),
     FOREIGN_DATA | {"hyperscaler-local-region", "hyperscaler-sovereign", "llm-api-domestic"}),
    ("kr-efsr-cloud-finance", ("KR", "personal", "finance"), FOREIGN_DATA),
    ("eu-gdpr-ch5", ("EU", "personal", "private"), {"neocloud-foreign", "llm-api-foreign", "llm-api-foreign-cn"}),
    ("us-cloud-act-national-security", ("KR", "national-security", "defense"), US_PARENT),
    ("planner-national-security-level", ("KR", "national-security", "defense"),
     US_PARENT | {"llm-api-foreign-cn", "llm-api-foreign-eu"}),
]


@pytest.mark.parametrize(("rule_id", "attrs", "expected"), CASES, ids=[f"{c[0]}-{c[1][1]}" for c in CASES])
def test_rule_excludes_exactly_the_options_it_should(
    catalog: Catalog, rule_id: str, attrs: tuple[str, str, str], expected: set[str]
) -> None:
    jur, dc, sector = attrs
    w = WorkloadData(name="w", jurisdiction=jur, data_class=dc, sector=sector)
    assert excluded_by(catalog, rule_id, w) == expected
    rule = catalog.rules[rule_id]
    for option in expected:
        v = verdicts(catalog, w)[option]
        assert not v.feasible
        text = " ".join(v.reasons)
        assert (rule.instrument in text and "needs" in text) or "does not allow" in text


@pytest.mark.parametrize(
    ("rule_id", "attrs"),
    [
        ("kr-pipa-28-8", ("KR", "internal", "private")),  # not personal data
        ("kr-csap-low", ("KR", "public", "private")),  # not the public sector
        ("kr-csap-mid-high", ("KR", "personal", "private")),
        ("kr-efsr-cloud-finance", ("KR", "personal", "health")),
        ("eu-gdpr-ch5", ("KR", "personal", "private")),  # Korean data subjects
        ("us-cloud-act-national-security", ("US", "national-security", "defense")),  # US plan: US is domestic
    ],
)
def test_rule_admits_workloads_it_does_not_cover(catalog: Catalog, rule_id: str, attrs: tuple[str, str, str]) -> None:
    jur, dc, sector = attrs
    w = WorkloadData(name="w", jurisdiction=jur, data_class=dc, sector=sector)
    assert excluded_by(catalog, rule_id, w) == set()


@pytest.mark.parametrize("rule_id", ["kr-ai-basic-act", "eu-ai-act", "us-cloud-act-sensitive"])
def test_flag_rules_never_exclude(catalog: Catalog, rule_id: str) -> None:
    rule = catalog.rules[rule_id]
    assert rule.effect == "flag"
    jur = rule.jurisdiction if rule.jurisdiction != "US" else "KR"
    w = WorkloadData(name="w", jurisdiction=jur, data_class="sensitive", sector="private")
    vs = verdicts(catalog, w)
    assert all(rule_id not in v.excluded_by for v in vs.values())
    flagged = [o for o, v in vs.items() if any(rule.instrument in f for f in v.flags)]
    assert flagged, f"{rule_id} should flag some option"
    if rule_id == "us-cloud-act-sensitive":
        assert set(flagged) == US_PARENT


def test_data_class_changes_feasibility(catalog: Catalog) -> None:
    internal = verdicts(catalog, WorkloadData(name="w", jurisdiction="KR", data_class="internal", sector="private"))
    personal = verdicts(catalog, WorkloadData(name="w", jurisdiction="KR", data_class="personal", sector="private"))
    assert internal["llm-api-foreign"].feasible
    assert not personal["llm-api-foreign"].feasible
    assert "PIPA" in personal["llm-api-foreign"].reasons[0]


def test_transfer_basis_lifts_pipa_with_a_reported_reliance(catalog: Catalog) -> None:
    w = WorkloadData(name="w", jurisdiction="KR", data_class="personal", sector="private", transfer_basis=["consent"])
    v = verdicts(catalog, w)["llm-api-foreign"]
    assert v.feasible
    assert any("relies on transfer basis consent" in f for f in v.flags)
    # the finance rule has no transfer basis: consent does not lift it
    wf = w.model_copy(update={"sector": "finance"})
    assert not verdicts(catalog, wf)["llm-api-foreign"].feasible


def test_minimum_level_excludes_with_level_named(catalog: Catalog) -> None:
    w = WorkloadData(name="w", jurisdiction="KR", data_class="internal", sector="private")
    vs = verdicts(catalog, w, minimum_level=3)
    assert vs["own-build"].feasible and vs["sovereign-cloud-domestic"].feasible
    v = vs["hyperscaler-sovereign"]
    assert not v.feasible and v.excluded_by == ["minimum-level"]
    assert "L2" in v.reasons[0] and "L3" in v.reasons[0]


def test_no_rule_binds_for_public_private_data(catalog: Catalog) -> None:
    w = WorkloadData(name="w", jurisdiction="KR", data_class="public", sector="private")
    assert all(v.feasible for v in verdicts(catalog, w).values())


def test_enforce_false_reports_but_admits(catalog: Catalog) -> None:
    w = WorkloadData(name="w", jurisdiction="KR", data_class="personal", sector="private")
    v = verdicts(catalog, w, enforce=False)["llm-api-foreign"]
    assert v.feasible and v.reasons


def test_scenario_vocabulary_matches_the_catalog() -> None:
    for model in (TrainingWorkload, InferenceWorkload):
        fields = model.model_fields
        assert set(fields["data_class"].annotation.__args__) == set(DATA_CLASSES)  # type: ignore[union-attr]
        assert set(fields["sector"].annotation.__args__) == set(SECTORS)  # type: ignore[union-attr]
    basis = TrainingWorkload.model_fields["transfer_basis"].annotation
    assert set(basis.__args__[0].__args__) == set(TRANSFER_BASES)  # type: ignore[union-attr]
