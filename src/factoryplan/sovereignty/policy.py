"""Which deployment options a workload's data may use, and the rule that excludes the others.

A rule (catalog ``rules``) covers workloads by jurisdiction of the data subjects, data class and
sector, and states what an option must satisfy: allowed values of an option attribute, a minimum
sovereignty level, or a boolean attribute. An option is feasible for a workload when no covering
rule with effect ``exclude`` fails; rules with effect ``flag`` add obligations without excluding.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from factoryplan.catalog.schema import Option, Rule

DATA_CLASS_ORDER = ("public", "internal", "personal", "sensitive", "national-security")


class Verdict(BaseModel):
    """Whether one option may serve one workload, and why not."""

    model_config = ConfigDict(frozen=True)

    option: str
    workload: str
    feasible: bool
    reasons: list[str]  # the excluding rules, in words
    flags: list[str]  # obligations that apply without excluding


def covers(rule: Rule, jurisdiction: str, data_class: str, sector: str) -> bool:
    """Does ``rule`` apply to a workload with these attributes?"""
    subjects = rule.subject_jurisdictions or [rule.jurisdiction]
    if jurisdiction not in subjects and "any" not in subjects:
        return False
    if data_class not in rule.data_classes and "any" not in rule.data_classes:
        return False
    return "any" in rule.sectors or sector in rule.sectors


def failed_requirements(rule: Rule, option: Option) -> list[str]:
    """The requirements of ``rule`` that ``option`` does not meet, as 'attribute is X, needs Y'."""
    out = []
    for attr, need in rule.require.items():
        have = getattr(option, attr, None)
        if isinstance(need, bool):
            ok = have is need
        elif isinstance(need, int):
            ok = isinstance(have, int) and have >= need
        else:
            ok = str(have) in need
        if not ok:
            shown = " or ".join(need) if isinstance(need, list) else str(need)
            at_least = ">= " if isinstance(need, int) and not isinstance(need, bool) else ""
            out.append(f"{attr} is {have}, needs {at_least}{shown}")
    return out


def assess(
    option: Option, workload: str, jurisdiction: str, data_class: str, sector: str, rules: Iterable[Rule],
    *, enforce: bool = True,
) -> Verdict:
    """The verdict for one option and one workload under every covering rule."""
    reasons: list[str] = []
    flags: list[str] = []
    for rule in rules:
        if not covers(rule, jurisdiction, data_class, sector):
            continue
        if rule.effect == "flag":
            flags.append(f"{rule.instrument}: {rule.text}")
            continue
        failed = failed_requirements(rule, option)
        if failed:
            reasons.append(f"{rule.instrument}: {rule.text} ({'; '.join(failed)})")
    return Verdict(
        option=option.id,
        workload=workload,
        feasible=not reasons or not enforce,
        reasons=reasons,
        flags=flags,
    )
