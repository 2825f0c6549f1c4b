"""Number formatting shared by the terminal, HTML and Markdown reports."""

from __future__ import annotations


def usd(value: float | None) -> str:
    """$1.23B, $456M, $7.8k, $0.42."""
    if value is None:
        return "-"
    a = abs(value)
    sign = "-" if value < 0 else ""
    if a >= 1e9:
        return f"{sign}${a / 1e9:,.2f}B"
    if a >= 1e6:
        return f"{sign}${a / 1e6:,.1f}M"
    if a >= 1e4:
        return f"{sign}${a / 1e3:,.0f}k"
    if a >= 100:
        return f"{sign}${a:,.0f}"
    return f"{sign}${a:,.2f}"


def num(value: float | int | None, digits: int = 3) -> str:
    """Thousands separators for large numbers, significant digits for small ones."""
    if value is None:
        return "-"
    if isinstance(value, int) or (abs(value) >= 100 and float(value).is_integer()):
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def mw(value: float) -> str:
    """Megawatts with sensible precision."""
    return f"{value:,.1f} MW" if value >= 10 else f"{value:,.2f} MW" if value >= 0.1 else f"{value * 1e3:,.0f} kW"
