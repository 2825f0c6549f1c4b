"""Reading the fields of a Hugging Face ``config.json``: the first of several names a family uses,
checked as a whole number or a flag (shared by :mod:`factoryplan.catalog.hf_config` and
:mod:`factoryplan.catalog.hf_hybrid`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factoryplan.errors import FactoryplanError

Config = dict[str, Any]


def first(cfg: Config, names: tuple[str, ...]) -> tuple[str, Any] | None:
    """(name, value) of the first of ``names`` that the config gives (not null)."""
    for name in names:
        if cfg.get(name) is not None:
            return name, cfg[name]
    return None


def as_int(name: str, value: Any, where: str) -> int:
    """A non-negative integer field; a float with no fraction passes (``4096.0``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 0:
        raise FactoryplanError("must be a non-negative integer", where=where, field=name, value=value)
    return int(value)


def int_field(cfg: Config, names: tuple[str, ...], where: str) -> int | None:
    """The first of ``names`` the config gives, as a non-negative integer (:func:`as_int`); None without."""
    found = first(cfg, names)
    return None if found is None else as_int(found[0], found[1], where)


def bool_field(cfg: Config, name: str) -> bool | None:
    """The config's ``name`` when it is a true/false flag, else None (absent, null or not a flag)."""
    value = cfg.get(name)
    return value if isinstance(value, bool) else None


def required_ints(
    cfg: Config, fields: Mapping[str, str | tuple[str, ...]], where: str, what: str, allowed: str = ""
) -> dict[str, int]:
    """One group of whole-number fields a config must give together (schema field -> the config
    name, or the names it goes by), each present and non-zero: ``{schema field: value}``; otherwise an
    error "``what`` is missing ..." naming the missing ones (``allowed``: what to say is needed;
    default every field of the group)."""
    names = {field: (keys,) if isinstance(keys, str) else keys for field, keys in fields.items()}
    values = {field: int_field(cfg, keys, where) for field, keys in names.items()}
    missing = [" or ".join(names[f]) for f, v in values.items() if not v]
    if missing:
        raise FactoryplanError(f"{what} is missing {', '.join(missing)}", where=where,
                               allowed=allowed or ", ".join(" or ".join(keys) for keys in names.values()))
    return {field: int(v or 0) for field, v in values.items()}
