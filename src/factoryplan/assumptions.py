"""The assumptions a plan uses: catalog defaults, the scenario's overrides, and a record of use.

Every stage reads modelling assumptions through an ``AssumptionSet``. It answers in internal
units and remembers which names were read, so that the plan can list every assumption it used
with its value and source. Scenario overrides are given in the assumption's catalog unit
(e.g. ``wacc: 0.08``, ``facility_build_cost: 11e6`` in USD per MW when the catalog unit is
``usd_per_mw``) or with an explicit unit suffix (``facility_build_cost_usd_per_mw``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from factoryplan import units
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import Assumption
from factoryplan.errors import ScenarioError, unknown


class AssumptionUse(BaseModel):
    """One assumption as the plan used it (internal units, plus a friendly rendering)."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    unit: str
    display: str
    low: float | None
    high: float | None
    source: str
    basis: str
    overridden: bool


@dataclass
class AssumptionSet:
    """Catalog assumptions with scenario overrides; records which ones a plan reads."""

    catalog: Catalog
    overrides: dict[str, float] = field(default_factory=dict)  # internal units
    override_source: str = "scenario override"
    used: dict[str, None] = field(default_factory=dict)  # insertion-ordered set

    @classmethod
    def from_scenario(
        cls, catalog: Catalog, given: Mapping[str, float], *, where: str = "scenario"
    ) -> AssumptionSet:
        """Validate the scenario's ``assumptions:`` block: known names, sensible ranges."""
        overrides: dict[str, float] = {}
        for key, raw_value in given.items():
            name, value = _resolve(catalog, key, raw_value, where)
            overrides[name] = value
        return cls(catalog=catalog, overrides=overrides, override_source=f"{where} (override)")

    def get(self, name: str) -> float:
        """The value of ``name`` in internal units; records the use."""
        if name not in self.catalog.assumptions:
            raise unknown("assumption", name, self.catalog.assumptions)
        self.used[name] = None
        if name in self.overrides:
            return self.overrides[name]
        return self.catalog.assumptions[name].value

    def entry(self, name: str) -> Assumption:
        """The catalog entry behind an assumption (range, distribution, source)."""
        if name not in self.catalog.assumptions:
            raise unknown("assumption", name, self.catalog.assumptions)
        return self.catalog.assumptions[name]

    def report(self) -> list[AssumptionUse]:
        """Every assumption read so far, with value and source, in order of first use."""
        out = []
        for name in self.used:
            entry = self.catalog.assumptions[name]
            overridden = name in self.overrides
            value = self.overrides[name] if overridden else entry.value
            out.append(
                AssumptionUse(
                    name=name,
                    value=value,
                    unit=entry.unit,
                    display=display(value, entry.unit, assumption_unit(entry)),
                    low=None if overridden else entry.low,
                    high=None if overridden else entry.high,
                    source=self.override_source if overridden else entry.source,
                    basis="assumption" if overridden else entry.basis,
                    overridden=overridden,
                )
            )
        return out


def _resolve(catalog: Catalog, key: str, raw_value: object, where: str) -> tuple[str, float]:
    field_path = f"assumptions.{key}"
    name, given_unit = key, ""
    if key not in catalog.assumptions:
        parts = units.split_suffix(key)
        if parts is not None and parts[0] in catalog.assumptions:
            name, given_unit = parts
        else:
            raise unknown("assumption", key, catalog.assumptions, where=where, field=field_path, cls=ScenarioError)
    if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
        raise ScenarioError("must be a number", where=where, field=field_path, value=raw_value)
    entry = catalog.assumptions[name]
    friendly = given_unit or assumption_unit(entry)
    if units.unit(friendly).si != entry.unit:
        raise ScenarioError(
            f"unit {friendly!r} does not measure {entry.unit}", where=where, field=field_path, value=raw_value
        )
    value = units.to_si(float(raw_value), friendly, catalog.usd_per())
    if value < 0:
        raise ScenarioError("must not be negative", where=where, field=field_path, value=raw_value, allowed=">= 0")
    if entry.unit in ("fraction",) and value > 1:
        raise ScenarioError("is a fraction", where=where, field=field_path, value=raw_value, allowed="0 to 1")
    return name, value


_FRIENDLY: dict[str, str] = {
    "usd_per_w": "usd_per_mw",
    "usd_per_j": "usd_per_kwh",
    "usd_per_w_s": "usd_per_kw_month",
    "usd_per_gpu_s": "usd_per_gpu_hour",
    "usd_per_s": "usd_per_year",
    "usd_per_token": "usd_per_mtok",
    "s": "years",
    "w": "kw",
    "w_per_rack": "kw_per_rack",
    "w_per_gpu": "w_per_gpu",
    "fte_per_w": "fte_per_mw",
    "per_s": "per_year",
    "per_gpu_s": "per_gpu_year",
}


def assumption_unit(entry: Assumption) -> str:
    """The unit a scenario writes this assumption in: the catalog file's unit."""
    return entry.given_unit or _FRIENDLY.get(entry.unit, entry.unit)


def friendly_unit(si_unit: str) -> str:
    """The unit reports and scenario overrides use for an internal unit."""
    return _FRIENDLY.get(si_unit, si_unit)


def display(value: float, si_unit: str, shown_unit: str | None = None) -> str:
    """A human rendering of an internal value: '12M usd_per_mw', '0.09 fraction'."""
    friendly = shown_unit or friendly_unit(si_unit)
    try:
        shown = units.from_si(value, friendly)
    except (KeyError, ValueError):
        shown, friendly = value, si_unit
    if abs(shown) >= 1e6:
        text = f"{shown / 1e6:,.3g}M" if abs(shown) < 1e9 else f"{shown / 1e9:,.3g}B"
    elif abs(shown) >= 100:
        text = f"{shown:,.0f}"
    else:
        text = f"{shown:.4g}"
    return f"{text} {friendly}"
