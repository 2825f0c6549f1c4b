"""Units: the closed list of unit suffixes allowed in data and scenario field names.

A field named ``hbm_tb_s`` holds terabytes per second; the loader turns it into ``hbm_bytes_s``
(bytes per second) once, and all engine code computes in those internal units: SI for physical
quantities (W, J, s, bytes, FLOP/s, bit/s, m^2) and US dollars for money, with money rates per
SI unit (``usd_per_j``, ``usd_per_w_s``, ``usd_per_gpu_s``, ``usd_per_token``).

Decimal prefixes only: a gigabyte is 1e9 bytes, a tera-FLOP 1e12 FLOP (``gib`` is the one binary
unit and says so). Currencies other than USD are converted with the catalog's exchange rates.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86_400.0
SECONDS_PER_YEAR = 365.25 * SECONDS_PER_DAY
SECONDS_PER_MONTH = SECONDS_PER_YEAR / 12.0
J_PER_KWH = 3.6e6
J_PER_MWH = 3.6e9
GIB = 2.0**30
MIB = 2.0**20


@dataclass(frozen=True)
class Unit:
    """A friendly unit: its internal unit and the factor that converts a value into it."""

    si: str
    factor: float
    currency: str | None = None  # set when the factor must also be divided by an exchange rate


_UNITS: dict[str, Unit] = {
    # power and energy
    "w": Unit("w", 1.0),
    "kw": Unit("w", 1e3),
    "mw": Unit("w", 1e6),
    "gw": Unit("w", 1e9),
    "j": Unit("j", 1.0),
    "kwh": Unit("j", J_PER_KWH),
    "mwh": Unit("j", J_PER_MWH),
    # data and bandwidth (bytes, bits)
    "bytes": Unit("bytes", 1.0),
    "gb": Unit("bytes", 1e9),
    "tb": Unit("bytes", 1e12),
    "pb": Unit("bytes", 1e15),
    "gib": Unit("bytes", GIB),
    "bytes_s": Unit("bytes_s", 1.0),
    "gb_s": Unit("bytes_s", 1e9),
    "tb_s": Unit("bytes_s", 1e12),
    "bit_s": Unit("bit_s", 1.0),
    "gbit_s": Unit("bit_s", 1e9),
    "tbit_s": Unit("bit_s", 1e12),
    # compute (floating-point operations per second)
    "flops": Unit("flops", 1.0),
    "tflops": Unit("flops", 1e12),
    "pflops": Unit("flops", 1e15),
    # time
    "s": Unit("s", 1.0),
    "ms": Unit("s", 1e-3),
    "us": Unit("s", 1e-6),
    "hours": Unit("s", SECONDS_PER_HOUR),
    "days": Unit("s", SECONDS_PER_DAY),
    "months": Unit("s", SECONDS_PER_MONTH),
    "years": Unit("s", SECONDS_PER_YEAR),
    # space
    "m": Unit("m", 1.0),
    "m2": Unit("m2", 1.0),
    "u": Unit("u", 1.0),  # rack units
    # dimensionless
    "fraction": Unit("fraction", 1.0),
    "ratio": Unit("ratio", 1.0),
    "count": Unit("count", 1.0),
    "per_year": Unit("per_s", 1.0 / SECONDS_PER_YEAR),
    "per_gpu_year": Unit("per_gpu_s", 1.0 / SECONDS_PER_YEAR),
    "fte_per_gpu": Unit("fte_per_gpu", 1.0),
    "fte_per_mw": Unit("fte_per_w", 1e-6),
    "w_per_gpu": Unit("w_per_gpu", 1.0),
    "kw_per_gpu": Unit("w_per_gpu", 1e3),
    "kw_per_rack": Unit("w_per_rack", 1e3),
    "w_per_rack": Unit("w_per_rack", 1.0),
    "m2_per_rack": Unit("m2_per_rack", 1.0),
    "tokens": Unit("tokens", 1.0),
    "tokens_per_day": Unit("tokens_s", 1.0 / SECONDS_PER_DAY),
    "tokens_s": Unit("tokens_s", 1.0),
    "requests_s": Unit("requests_s", 1.0),
}

# Money: every currency becomes USD. (suffix body, internal suffix body, factor)
_MONEY_RATES: dict[str, tuple[str, float]] = {
    "": ("", 1.0),
    "_per_kwh": ("_per_j", 1.0 / J_PER_KWH),
    "_per_mwh": ("_per_j", 1.0 / J_PER_MWH),
    "_per_gpu_hour": ("_per_gpu_s", 1.0 / SECONDS_PER_HOUR),
    "_per_kw_month": ("_per_w_s", 1.0 / (1e3 * SECONDS_PER_MONTH)),
    "_per_kw": ("_per_w", 1e-3),
    "_per_mw": ("_per_w", 1e-6),
    "_per_gw": ("_per_w", 1e-9),
    "_per_year": ("_per_s", 1.0 / SECONDS_PER_YEAR),
    "_per_mtok": ("_per_token", 1e-6),
    "_per_m2": ("_per_m2", 1.0),
}
CURRENCIES: tuple[str, ...] = ("usd", "musd", "busd", "krw", "eur", "jpy")
_CURRENCY_SCALE: dict[str, float] = {"usd": 1.0, "musd": 1e6, "busd": 1e9, "krw": 1.0, "eur": 1.0, "jpy": 1.0}

for _cur in CURRENCIES:
    for _rate, (_si_rate, _factor) in _MONEY_RATES.items():
        _foreign = _cur in ("krw", "eur", "jpy")
        _UNITS[f"{_cur}{_rate}"] = Unit(
            f"usd{_si_rate}", _CURRENCY_SCALE[_cur] * _factor, _cur.upper() if _foreign else None
        )

# Longest suffix first, so that "usd_per_kwh" wins over "kwh".
_SUFFIXES: tuple[str, ...] = tuple(sorted(_UNITS, key=len, reverse=True))


def known_units() -> tuple[str, ...]:
    """Every unit suffix allowed in field names, longest first."""
    return _SUFFIXES


def unit(name: str) -> Unit:
    """The unit called ``name`` (e.g. ``"tb_s"``); KeyError when it is not in the closed list."""
    return _UNITS[name]


def split_suffix(field: str) -> tuple[str, str] | None:
    """Split ``hbm_tb_s`` into (``hbm``, ``tb_s``); None when the name ends in no known unit.

    A bare unit name (``"w"``, ``"usd"``) splits into ("", unit).
    """
    if field in _UNITS:
        return "", field
    # the longest known suffix is the tail after the leftmost underscore that leaves a unit name
    start = field.find("_")
    while start >= 0:
        if field[start + 1 :] in _UNITS:
            return field[:start], field[start + 1 :]
        start = field.find("_", start + 1)
    return None


def si_field(field: str) -> str:
    """The internal name of a unit-suffixed field: ``hbm_tb_s`` -> ``hbm_bytes_s``."""
    parts = split_suffix(field)
    if parts is None:
        return field
    stem, suffix = parts
    si = _UNITS[suffix].si
    return f"{stem}_{si}" if stem else si


def to_si(value: float, unit_name: str, usd_per: dict[str, float] | None = None) -> float:
    """Convert ``value`` in ``unit_name`` to internal units.

    ``usd_per`` maps a currency code (``"KRW"``) to USD per unit of that currency; it is needed only
    for non-USD money units.
    """
    u = _UNITS[unit_name]
    out = value * u.factor
    if u.currency is not None:
        if usd_per is None or u.currency not in usd_per:
            raise KeyError(f"no exchange rate for {u.currency}")
        out *= usd_per[u.currency]
    return out


def from_si(value: float, unit_name: str) -> float:
    """Convert an internal value back to ``unit_name`` (USD units only for money)."""
    u = _UNITS[unit_name]
    if u.currency is not None:
        raise ValueError(f"cannot report in {unit_name}: reports are in USD")
    return value / u.factor
