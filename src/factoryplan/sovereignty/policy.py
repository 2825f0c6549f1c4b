"""Which deployment options a workload's data may use, and the rule that excludes the others.

A rule (catalog ``rules``) covers workloads by the data subjects' jurisdiction, data class and
sector. It states what an option must satisfy (``require``: allowed values of an option attribute,
a boolean, or a minimum sovereignty ``level``) and what it must not be (``forbid``). A failed rule
with effect ``exclude`` makes the option infeasible for the workload, unless the workload declares
one of the rule's ``unless_transfer_basis`` (e.g. the data subjects' consent under PIPA Art. 28-8),
in which case the option stays feasible and the reliance is reported. A failed rule with effect
``flag`` reports an obligation or an exposure without excluding; a flag rule with no conditions
is an obligation under every option. A minimum sovereignty level (the
scenario's or the workload's) excludes options below it.

Option attributes are relative to the plan's jurisdiction: ``domestic`` and the plan's own
jurisdiction code are the same thing (a US provider is domestic in a US plan).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from factoryplan.catalog.schema import Option, Rule

DATA_CLASS_ORDER = ("public", "internal", "personal", "sensitive", "national-security")
LEVEL_NAMES = {
    0: "L0 none",
    1: "L1 data at rest in-country",
    2: "L2 in-country operations and keys",
    3: "L3 operator not subject to foreign extraterritorial law",
    4: "L4 owned / air-gapped",
}


class Verdict(BaseModel):
    """Whether one option may serve one workload, and why not."""

    model_config = ConfigDict(frozen=True)

    option: str
    workload: str
    feasible: bool
    level: int
    reasons: list[str]  # the excluding rules, in words
    flags: list[str]  # obligations, exposures and relied-on transfer bases that do not exclude
    excluded_by: list[str]  # ids of the excluding rules ("minimum-level" for a level floor)


class WorkloadData(BaseModel):
    """What the rules need to know about a workload."""

    model_config = ConfigDict(frozen=True)

    name: str
    jurisdiction: str
    data_class: str
    sector: str
    transfer_basis: list[str] = []
    minimum_level: int | None = None


def covers(rule: Rule, jurisdiction: str, data_class: str, sector: str) -> bool:
    """Does ``rule`` apply to a workload with these attributes?"""
    subjects = rule.subject_jurisdictions or [rule.jurisdiction]
    if jurisdiction not in subjects and "any" not in subjects:
        return False
    if data_class not in rule.data_classes and "any" not in rule.data_classes:
        return False
    return "any" in rule.sectors or sector in rule.sectors


_PLACES = ("data_location", "ops_staff_location", "operator_parent_jurisdiction")


def effective_attributes(option: Option, plan_jurisdiction: str) -> dict[str, object]:
    """The option's attributes seen from a plan in ``plan_jurisdiction``.

    A jurisdiction code equal to the plan's becomes ``domestic``; a foreign operator whose parent
    is in the plan's jurisdiction is a domestic operator there.
    """
    attrs = option.model_dump()
    for key in _PLACES:
        if attrs[key] == plan_jurisdiction:
            attrs[key] = "domestic"
    if attrs["operator"] == "foreign" and attrs["operator_parent_jurisdiction"] == "domestic":
        attrs["operator"] = "domestic"
    return attrs


def failed_requirements(rule: Rule, option: Option, plan_jurisdiction: str = "") -> list[str]:
    """The conditions of ``rule`` that ``option`` does not meet, as 'attribute is X, needs Y'."""
    attrs = effective_attributes(option, plan_jurisdiction)
    out = []
    for attr, need in rule.require.items():
        have = attrs.get(attr)
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
    for attr, banned in rule.forbid.items():
        have = attrs.get(attr)
        if str(have) in banned:
            out.append(f"{attr} is {have}, which the rule does not allow")
    return out


def assess(
    option: Option, workload: WorkloadData, rules: Iterable[Rule], *, plan_jurisdiction: str,
    minimum_level: int | None = None, enforce: bool = True,
) -> Verdict:
    """The verdict for one option and one workload under every covering rule and level floor."""
    reasons: list[str] = []
    flags: list[str] = []
    excluded_by: list[str] = []
    for rule in rules:
        if not covers(rule, workload.jurisdiction, workload.data_class, workload.sector):
            continue
        failed = failed_requirements(rule, option, plan_jurisdiction)
        if rule.effect == "flag" and not rule.require and not rule.forbid:
            flags.append(f"{rule.instrument}: {rule.text}")  # an obligation under every option
            continue
        if not failed:
            continue
        detail = f"{rule.instrument}: {rule.text} ({'; '.join(failed)})"
        basis = [b for b in workload.transfer_basis if b in rule.unless_transfer_basis]
        if rule.effect == "flag":
            flags.append(detail)
        elif basis:
            flags.append(f"relies on transfer basis {', '.join(basis)} under {rule.instrument}")
        else:
            reasons.append(detail)
            excluded_by.append(rule.id)
    floors = [lv for lv in (minimum_level, workload.minimum_level) if lv is not None]
    if floors and option.level < max(floors):
        need = max(floors)
        reasons.append(
            f"sovereignty level {LEVEL_NAMES[option.level]} is below the required {LEVEL_NAMES[need]}"
        )
        excluded_by.append("minimum-level")
    return Verdict(
        option=option.id, workload=workload.name, feasible=not reasons or not enforce, level=option.level,
        reasons=reasons, flags=flags, excluded_by=excluded_by,
    )


def assess_all(
    options: Iterable[Option], workloads: Sequence[WorkloadData], rules: Sequence[Rule], *,
    plan_jurisdiction: str, minimum_level: int | None = None, enforce: bool = True,
) -> list[Verdict]:
    """Every option against every workload."""
    return [
        assess(o, w, rules, plan_jurisdiction=plan_jurisdiction, minimum_level=minimum_level, enforce=enforce)
        for o in options
        for w in workloads
    ]
