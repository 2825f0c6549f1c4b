"""Catalog entries back in the friendly units of the data files, for `catalog show` and JSON."""

from __future__ import annotations

from typing import Any

from factoryplan import units
from factoryplan.catalog.schema import Assumption, Entry

# internal suffix -> unit shown to people (and accepted back in overlay files)
SHOW_UNIT: dict[str, str] = {
    "bytes": "gib",
    "bytes_s": "tb_s",
    "bit_s": "gbit_s",
    "flops": "tflops",
    "w": "w",
    "usd_per_j": "usd_per_kwh",
    "usd_per_gpu_s": "usd_per_gpu_hour",
    "usd_per_token": "usd_per_mtok",
    "usd_per_s": "usd_per_year",
    "usd_per_w_s": "usd_per_kw_month",
    "usd_per_w": "usd_per_mw",
}


def _friendly(key: str, value: Any) -> tuple[str, Any]:
    parts = units.split_suffix(key)
    if parts is None or not isinstance(value, int | float) or isinstance(value, bool):
        return key, value
    stem, suffix = parts
    si = units.unit(suffix).si
    if si != suffix or si not in SHOW_UNIT:
        return key, value
    shown = SHOW_UNIT[si]
    new_key = f"{stem}_{shown}" if stem else shown
    return new_key, round(units.from_si(float(value), shown), 10)


def friendly_fields(entry: Entry) -> dict[str, Any]:
    """The entry as a mapping with friendly unit suffixes (the data-file form)."""
    data = entry.model_dump(mode="json")
    if isinstance(entry, Assumption):
        from factoryplan.assumptions import assumption_unit

        unit = assumption_unit(entry)
        for key in ("value", "low", "high"):
            if data.get(key) is not None:
                data[key] = round(units.from_si(float(data[key]), unit), 10)
        data["unit"] = unit
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        new_key, new_value = _friendly(key, value)
        out[new_key] = new_value
    return out
