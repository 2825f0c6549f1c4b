"""Read the catalog's data files, convert units once, validate, and overlay the user's files.

Shipped data lives in ``catalog/data/<kind>.yaml`` as a list of entries. A user's overlay file
is a mapping ``<kind>: [entries]``; an entry whose id exists replaces the fields it names (and
must restate ``source``, ``as_of`` and ``basis``), a new id adds an entry. A bad entry names the
file, the entry and the field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from factoryplan import units
from factoryplan.catalog.schema import (
    KINDS,
    Accelerator,
    ApiPrice,
    Assumption,
    Calibration,
    CloudPrice,
    Entry,
    Fx,
    Link,
    ModelArch,
    Option,
    Region,
    Rule,
    Switch,
    System,
)
from factoryplan.errors import CatalogError, FactoryplanError, did_you_mean, unknown

DATA_DIR = Path(__file__).parent / "data"
PROVENANCE = ("source", "as_of", "basis")
_NUMERIC_EXEMPT = frozenset({"year", "level", "value", "low", "high", "usd_per_unit"})

# the C loader is several times faster; fall back to pure Python where libyaml is absent
_Loader: type[yaml.SafeLoader | yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error names the file and the line."""
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_Loader)
    except FileNotFoundError:
        raise FactoryplanError("file not found", where=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else ""
        raise FactoryplanError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=str(path), field=line) from None


_ENTRY_START = re.compile(r"- id: *['\"]?([^'\"\s#]+)")


def entry_texts(path: Path) -> dict[str, str]:
    """Each top-level entry of a catalog data file as its own YAML text, by id, unparsed: a
    question that reads one model of thirty parses one. Entries start at column 0 with ``- id:``
    (block YAML indents everything inside an entry, so such a line always starts a new one); a
    file laid out otherwise is parsed whole and each entry dumped back."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("- ")]
    matches = [_ENTRY_START.match(lines[i]) for i in starts]
    if starts and all(matches):
        ends = [*starts[1:], len(lines)]
        return {m.group(1): "".join(lines[a:b]) for m, a, b in zip(matches, starts, ends, strict=True) if m}
    return {str(item.get("id", "?")): yaml.safe_dump([item], sort_keys=False) for item in read_yaml(path) or []}


def parse_entry(text: str, path: Path) -> dict[str, Any]:
    """The mapping of one entry's text from :func:`entry_texts`."""
    try:
        items = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise FactoryplanError(f"not valid YAML: {getattr(exc, 'problem', exc)}", where=str(path)) from None
    item: dict[str, Any] = items[0]
    return item


@dataclass
class Catalog:
    """All reference data, validated and in internal units. Read by every stage, written by none."""

    accelerators: dict[str, Accelerator] = field(default_factory=dict)
    systems: dict[str, System] = field(default_factory=dict)
    switches: dict[str, Switch] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    models: dict[str, ModelArch] = field(default_factory=dict)
    regions: dict[str, Region] = field(default_factory=dict)
    cloud_prices: dict[str, CloudPrice] = field(default_factory=dict)
    api_prices: dict[str, ApiPrice] = field(default_factory=dict)
    options: dict[str, Option] = field(default_factory=dict)
    assumptions: dict[str, Assumption] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    fx: dict[str, Fx] = field(default_factory=dict)
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    origin: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, id) -> file

    def kind(self, kind: str) -> dict[str, Entry]:
        """The entries of one kind, by id."""
        if kind not in KINDS:
            raise unknown("catalog kind", kind, KINDS)
        table: dict[str, Entry] = getattr(self, kind)
        return table

    def find(self, entry_id: str) -> tuple[str, Entry]:
        """(kind, entry) for an id in any kind, the first kind in catalog order winning; an
        accelerator's alias finds the accelerator."""
        for kind in KINDS:
            table = self.kind(kind)
            if entry_id in table:
                return kind, table[entry_id]
        hw_id = self.hardware_id(entry_id)
        if hw_id is not None:
            return self.find(hw_id)
        every = [i for k in KINDS for i in self.kind(k)]
        raise unknown("catalog id", entry_id, every)

    def get(self, kind: str, entry_id: str, *, field_name: str = "") -> Entry:
        """One entry; an unknown id lists the ids of that kind."""
        table = self.kind(kind)
        if entry_id not in table:
            raise unknown(kind.rstrip("s").replace("_", " "), entry_id, table, field=field_name)
        return table[entry_id]

    def hardware(self, ref: str, *, field_name: str = "hardware") -> tuple[Accelerator, System]:
        """(accelerator, system) for an accelerator id (its usual system: ``gb200`` -> GB200 NVL72)
        or a system id (its accelerator), in any case and with '_' for '-', or an accelerator's alias
        (``h100`` -> ``h100-sxm``); an unknown id lists both kinds."""
        hw_id = self.hardware_id(ref)
        if hw_id in self.systems:
            system = self.systems[hw_id]
            return self.accelerators[system.accelerator], system
        if hw_id in self.accelerators:
            acc = self.accelerators[hw_id]
            return acc, self.systems[acc.default_system]
        raise unknown("accelerator or system", ref, self.hardware_names(), field=field_name)

    def hardware_names(self) -> list[str]:
        """Every name :meth:`hardware` takes as written: accelerator and system ids, accelerators' aliases."""
        return [*self.accelerators, *self.systems, *(n for a in self.accelerators.values() for n in a.aliases)]

    def hardware_id(self, ref: str) -> str | None:
        """The accelerator or system id ``ref`` names (see :meth:`hardware`), or None."""
        return hardware_id_of(ref, self.systems, {a.id: a.aliases for a in self.accelerators.values()})

    def assumption(self, name: str) -> float:
        """The catalog value of an assumption, in internal units."""
        if name not in self.assumptions:
            raise unknown("assumption", name, self.assumptions)
        return self.assumptions[name].value

    def usd_per(self) -> dict[str, float]:
        """USD per unit of each currency with an exchange-rate entry."""
        return {fx.currency: fx.usd_per_unit for fx in self.fx.values()}


def _convert_entry(raw: Mapping[str, Any], usd_per: Mapping[str, float], where: str) -> dict[str, Any]:
    """Rename unit-suffixed fields to internal names and scale their values."""
    out: dict[str, Any] = {}
    unit_name = raw.get("unit")
    for key, value in raw.items():
        if key in ("value", "low", "high") and isinstance(unit_name, str):
            out[key] = _scale(value, unit_name, usd_per, where, key)
            continue
        parts = units.split_suffix(key) if key not in _NUMERIC_EXEMPT else None
        if parts is None or isinstance(value, bool) or not isinstance(value, int | float | None):
            out[key] = value
            continue
        new_key = units.si_field(key)
        if new_key in out:
            raise CatalogError(f"field given twice in different units ({new_key})", where=where, field=key)
        out[new_key] = _scale(value, parts[1], usd_per, where, key)
    if isinstance(unit_name, str):
        try:
            out["unit"] = units.unit(unit_name).si
            out["given_unit"] = unit_name
        except KeyError:
            raise CatalogError(
                "unknown unit", where=where, field="unit", value=unit_name, allowed=", ".join(units.known_units())
            ) from None
    return out


def _scale(value: Any, unit_name: str, usd_per: Mapping[str, float], where: str, key: str) -> Any:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return value
    try:
        return units.to_si(float(value), unit_name, dict(usd_per))
    except KeyError as exc:
        raise CatalogError(f"cannot convert: {exc}", where=where, field=key, value=value) from None


def _validate(kind: str, raw: Mapping[str, Any], usd_per: Mapping[str, float], where: str) -> Entry:
    model = KINDS[kind]
    if not isinstance(raw, Mapping):
        raise CatalogError("each entry must be a mapping of field: value", where=where, value=raw)
    entry_id = raw.get("id", "?")
    where_entry = f"{where}: {kind}[{entry_id}]"
    converted = _convert_entry(raw, usd_per, where_entry)
    raw_name = {units.si_field(k): k for k in raw}
    try:
        return model.model_validate(converted)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        top = str(err["loc"][0]) if err["loc"] else ""
        shown = raw_name.get(top, top) + loc[len(top) :]
        if err["type"] == "extra_forbidden":
            names = _friendly_names(model)
            hint = did_you_mean(shown, names) or did_you_mean(units.si_field(top), model.model_fields)
            raise CatalogError(
                f"unknown field{hint}", where=where_entry, field=shown, allowed=", ".join(names)
            ) from None
        value = raw.get(raw_name.get(top, top)) if err["type"] != "missing" else None
        raise CatalogError(err["msg"], where=where_entry, field=shown, value=value) from None


def _friendly_names(model: type[Entry]) -> list[str]:
    """The model's fields as a data file writes them (``hbm_bytes_s`` -> ``hbm_tb_s``)."""
    from factoryplan.catalog.display import SHOW_UNIT

    out = []
    for name in model.model_fields:
        parts = units.split_suffix(name)
        if parts is not None and parts[1] in SHOW_UNIT and parts[0]:
            name = f"{parts[0]}_{SHOW_UNIT[parts[1]]}"
        out.append(name)
    return out


def _raw_shipped() -> list[tuple[str, Path, Any]]:
    """(kind, file, entries) for ``<kind>.yaml`` and ``<kind>.<part>.yaml`` files in the data folder."""
    raw: list[tuple[str, Path, Any]] = []
    for path in sorted(DATA_DIR.glob("*.yaml")):
        kind = path.name.split(".")[0]
        if kind not in KINDS:
            raise unknown("catalog kind", kind, KINDS, where=str(path), cls=CatalogError)
        raw.append((kind, path, read_yaml(path) or []))
    return raw


def _fx_rates(entries: Iterable[Fx]) -> dict[str, float]:
    return {e.currency: e.usd_per_unit for e in entries}


def _merge(base: dict[str, Any], patch: Mapping[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in PROVENANCE if k not in patch]
    if missing:
        raise CatalogError(
            "an overlay entry must restate its provenance",
            where=where,
            field=", ".join(missing),
            allowed="every entry gives source, as_of and basis",
        )
    merged = dict(base)
    # a patch in other units replaces the base field of the same quantity
    patch_si = {units.si_field(k) for k in patch}
    for key in list(merged):
        if units.si_field(key) in patch_si:
            del merged[key]
    merged.update(patch)
    return merged


@functools.lru_cache(maxsize=8)
def _load_cached(overlays: tuple[str, ...]) -> Catalog:
    raw = _raw_shipped()
    overlay_data: list[tuple[Path, dict[str, Any]]] = []
    for name in overlays:
        path = Path(name)
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise CatalogError("an overlay file is a mapping of kind: [entries]", where=str(path))
        for kind in data:
            if kind not in KINDS:
                raise unknown("catalog kind", str(kind), KINDS, where=str(path))
        overlay_data.append((path, data))

    # exchange rates first: other entries need them to convert money
    merged_raw: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {k: {} for k in KINDS}
    for kind, path, items in raw:
        if not isinstance(items, list):
            raise CatalogError(f"{kind} must be a list of entries", where=str(path))
        for item in items:
            item_id = str(item.get("id", "?")) if isinstance(item, dict) else "?"
            if item_id in merged_raw[kind]:
                raise CatalogError("duplicate id", where=str(path), field=f"{kind}[{item_id}]")
            merged_raw[kind][item_id] = (str(path), item)
    for path, data in overlay_data:
        for kind, items in data.items():
            if not isinstance(items, list):
                raise CatalogError(f"{kind} must be a list of entries", where=str(path))
            for item in items:
                if not isinstance(item, dict) or "id" not in item:
                    raise CatalogError("each overlay entry needs an id", where=str(path), field=kind, value=item)
                item_id = str(item["id"])
                where = f"{path}: {kind}[{item_id}]"
                if item_id in merged_raw[kind]:
                    merged_raw[kind][item_id] = (str(path), _merge(merged_raw[kind][item_id][1], item, where))
                else:
                    merged_raw[kind][item_id] = (str(path), item)

    cat = Catalog()
    fx_entries = [_validate("fx", item, {}, f) for f, item in merged_raw["fx"].values()]
    usd_per = _fx_rates(e for e in fx_entries if isinstance(e, Fx))
    for kind, entries in merged_raw.items():
        table = cat.kind(kind)
        for item_id, (where, item) in entries.items():
            entry = _validate(kind, item, usd_per, where)
            table[item_id] = entry
            cat.origin[(kind, item_id)] = where
    check_references(cat)
    return cat


def load_catalog(overlays: Iterable[str | Path] = ()) -> Catalog:
    """The shipped catalog with the user's overlay files applied, validated; cached per overlay list."""
    return _load_cached(tuple(str(Path(p)) for p in overlays))


def _ref(cat: Catalog, kind: str, owner_kind: str, owner: str, field_name: str, value: str) -> None:
    if value not in cat.kind(kind):
        err = unknown(kind.rstrip("s").replace("_", " "), value, cat.kind(kind))
        raise CatalogError(
            err.message,
            where=f"{cat.origin.get((owner_kind, owner), '?')}: {owner_kind}[{owner}]",
            field=field_name,
            allowed=err.allowed,
        )


def hardware_id_of(ref: str, systems: Iterable[str], aliases: Mapping[str, Iterable[str]]) -> str | None:
    """The system or accelerator id ``ref`` names: an id as written, then lower-cased with '_' read
    as '-' (``H100_SXM``), then an accelerator's alias; ``aliases`` maps each accelerator id to its
    aliases. None when nothing matches."""
    known = {*systems, *aliases}
    if ref in known:
        return ref
    key = ref.strip().lower().replace("_", "-")
    if key in known:
        return key
    return next((acc for acc, names in aliases.items() if key in names), None)


def check_references(cat: Catalog) -> None:
    """Every id an entry names must exist (an accelerator's system, a price's option, ...); an
    accelerator's alias names nothing else."""
    taken = {*cat.accelerators, *cat.systems}
    for a in cat.accelerators.values():
        _ref(cat, "systems", "accelerators", a.id, "default_system", a.default_system)
        for alias in a.aliases:
            if alias in taken:
                raise CatalogError(
                    f"alias {alias!r} of {a.id} is already an accelerator or system id or another alias",
                    where=f"{cat.origin.get(('accelerators', a.id), '?')}: accelerators[{a.id}]",
                    field="aliases", allowed="a name no other entry uses",
                )
            taken.add(alias)
    for s in cat.systems.values():
        _ref(cat, "accelerators", "systems", s.id, "accelerator", s.accelerator)
        _ref(cat, "switches", "systems", s.id, "compute_fabric", s.compute_fabric)
    for c in cat.cloud_prices.values():
        _ref(cat, "accelerators", "cloud_prices", c.id, "accelerator", c.accelerator)
        _ref(cat, "options", "cloud_prices", c.id, "option", c.option)
    for p in cat.api_prices.values():
        _ref(cat, "options", "api_prices", p.id, "option", p.option)


__all__ = ["DATA_DIR", "Catalog", "Entry", "entry_texts", "load_catalog", "parse_entry", "read_yaml"]
