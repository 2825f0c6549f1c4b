"""Unit suffixes: splitting field names, internal names, conversions and currencies."""

from __future__ import annotations

import math

import pytest

from factoryplan import units
from factoryplan.units import (
    J_PER_KWH,
    SECONDS_PER_HOUR,
    SECONDS_PER_MONTH,
    SECONDS_PER_YEAR,
    from_si,
    known_units,
    si_field,
    split_suffix,
    to_si,
)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("hbm_tb_s", ("hbm", "tb_s")),
        ("hbm_gb", ("hbm", "gb")),
        ("scaleup_bidir_gb_s", ("scaleup_bidir", "gb_s")),  # not ("scaleup_bidir_gb", "s")
        ("bf16_dense_tflops", ("bf16_dense", "tflops")),
        ("power_kw", ("power", "kw")),
        ("tdp_w", ("tdp", "w")),
        ("nic_gbit_s", ("nic", "gbit_s")),
        ("price_usd", ("price", "usd")),
        ("price_usd_per_gpu_hour", ("price", "usd_per_gpu_hour")),
        ("electricity_krw_per_kwh", ("electricity", "krw_per_kwh")),  # not ("electricity_krw_per", "kwh")
        ("fte_cost_usd_per_year", ("fte_cost", "usd_per_year")),
        ("input_usd_per_mtok", ("input", "usd_per_mtok")),
        ("facility_build_cost_musd_per_mw", ("facility_build_cost", "musd_per_mw")),
        ("rack_u", ("rack", "u")),
        ("reach_m", ("reach", "m")),
        ("kw", ("", "kw")),
        ("usd", ("", "usd")),
    ],
)
def test_split_suffix_takes_the_longest_unit(field: str, expected: tuple[str, str]) -> None:
    assert split_suffix(field) == expected


@pytest.mark.parametrize("field", ["gpus", "nics_per_gpu", "ports", "pue_air", "systems_per_rack", "name"])
def test_split_suffix_none_for_fields_without_a_unit(field: str) -> None:
    assert split_suffix(field) is None


@pytest.mark.parametrize(
    ("field", "internal"),
    [
        ("hbm_tb_s", "hbm_bytes_s"),
        ("hbm_gb", "hbm_bytes"),
        ("bf16_dense_tflops", "bf16_dense_flops"),
        ("power_kw", "power_w"),
        ("tdp_w", "tdp_w"),
        ("nic_gbit_s", "nic_bit_s"),
        ("scaleup_bidir_gb_s", "scaleup_bidir_bytes_s"),
        ("price_usd_per_gpu_hour", "price_usd_per_gpu_s"),
        ("input_usd_per_mtok", "input_usd_per_token"),
        ("electricity_krw_per_kwh", "electricity_usd_per_j"),
        ("electricity_usd_per_mwh", "electricity_usd_per_j"),
        ("fte_cost_usd_per_year", "fte_cost_usd_per_s"),
        ("colo_usd_per_kw_month", "colo_usd_per_w_s"),
        ("build_musd_per_mw", "build_usd_per_w"),
        ("rack_u", "rack_u"),
        ("reach_m", "reach_m"),
        ("kw", "w"),
        ("gpus", "gpus"),  # no unit: unchanged
    ],
)
def test_si_field(field: str, internal: str) -> None:
    assert si_field(field) == internal


@pytest.mark.parametrize(
    ("value", "unit_name", "expected"),
    [
        (3.35, "tb_s", 3.35e12),
        (80, "gb", 80e9),
        (989.4, "tflops", 989.4e12),
        (400, "gbit_s", 400e9),
        (10.2, "kw", 10_200.0),
        (1.2, "mw", 1.2e6),
        (1, "kwh", J_PER_KWH),
        (5, "years", 5 * 365.25 * 86_400),
        (2, "hours", 7_200.0),
        (6.88, "usd_per_gpu_hour", 6.88 / 3_600),
        (185, "usd_per_kw_month", 185 / (1_000 * SECONDS_PER_MONTH)),
        (12e6, "usd_per_mw", 12.0),
        (12, "musd_per_mw", 12.0),
        (0.0806, "usd_per_kwh", 0.0806 / 3.6e6),
        (1.25, "usd_per_mtok", 1.25e-6),
        (200_000, "usd_per_year", 200_000 / SECONDS_PER_YEAR),
        (0.5, "fte_per_mw", 0.5e-6),
        (30, "kw_per_rack", 30_000.0),
        (1, "gib", 2**30),
    ],
)
def test_to_si_known_values(value: float, unit_name: str, expected: float) -> None:
    assert to_si(value, unit_name) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("unit_name", [u for u in known_units() if units.unit(u).currency is None])
def test_from_si_inverts_to_si(unit_name: str) -> None:
    for value in (0.0, 1.0, 3.35, 1.5e7):
        back = from_si(to_si(value, unit_name), unit_name)
        assert math.isclose(back, value, rel_tol=1e-12, abs_tol=0.0)


def test_seconds_constants_are_consistent() -> None:
    assert math.isclose(SECONDS_PER_MONTH * 12, SECONDS_PER_YEAR, rel_tol=1e-12)
    assert math.isclose(SECONDS_PER_HOUR * 24 * 365.25, SECONDS_PER_YEAR, rel_tol=1e-12)


def test_currency_conversion_uses_the_exchange_rate() -> None:
    rates = {"KRW": 1 / 1400, "EUR": 1.08, "JPY": 1 / 150}
    assert to_si(182.7, "krw_per_kwh", rates) == pytest.approx(182.7 / 1400 / 3.6e6, rel=1e-12)
    assert to_si(0.19, "eur_per_kwh", rates) == pytest.approx(0.19 * 1.08 / 3.6e6, rel=1e-12)
    assert to_si(5000, "krw_per_mtok", rates) == pytest.approx(5000 / 1400 / 1e6, rel=1e-12)
    assert to_si(100, "jpy", rates) == pytest.approx(100 / 150, rel=1e-12)
    assert units.unit("krw_per_kwh").si == "usd_per_j"
    assert units.unit("eur").currency == "EUR"
    assert units.unit("usd").currency is None


def test_foreign_currency_without_a_rate_is_an_error() -> None:
    with pytest.raises(KeyError, match="KRW"):
        to_si(182.7, "krw_per_kwh")
    with pytest.raises(KeyError, match="EUR"):
        to_si(1.0, "eur", {"KRW": 1 / 1400})


def test_reports_are_in_usd_only() -> None:
    with pytest.raises(ValueError, match="USD"):
        from_si(1.0, "krw_per_kwh")


def test_known_units_longest_first_and_closed() -> None:
    names = known_units()
    assert list(names) == sorted(names, key=len, reverse=True)
    assert len(set(names)) == len(names)
    for expected in ("tb_s", "gbit_s", "tflops", "kw", "usd_per_gpu_hour", "krw_per_kwh", "fraction", "mw"):
        assert expected in names
    with pytest.raises(KeyError):
        units.unit("furlongs")
