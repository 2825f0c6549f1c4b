"""Finance formulas: annuities, levelised capex, book values, cash-flow tables, break-even years."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factoryplan.economics import finance


def test_capital_recovery_factor_known_values() -> None:
    # 8% over 10 years: 0.14903 (standard annuity tables)
    assert finance.capital_recovery_factor(0.08, 10) == pytest.approx(0.1490295, rel=1e-6)
    assert finance.capital_recovery_factor(0.0, 4) == pytest.approx(0.25)
    assert finance.present_value_factor(0.08, 10) == pytest.approx(6.710081, rel=1e-6)


def test_levelised_capex_repays_capex_net_of_residual() -> None:
    capex, rate, life, residual = 1_000.0, 0.09, 5.0, 0.1
    annual = finance.levelised_capex(capex, rate, life, residual)
    pv_payments = sum(annual * finance.discount(rate, t) for t in range(1, 6))
    assert pv_payments + residual * capex * finance.discount(rate, life) == pytest.approx(capex)
    # no cost of capital: straight-line depreciation
    straight = finance.straight_line(capex, life, residual)
    assert finance.levelised_capex(capex, 0.0, life, residual) == pytest.approx(straight)
    assert finance.straight_line(capex, life, residual) == pytest.approx(180.0)


def test_book_value_fraction() -> None:
    assert finance.book_value_fraction(0, 5, 0.1) == pytest.approx(1.0)
    assert finance.book_value_fraction(5, 5, 0.1) == pytest.approx(0.1)
    assert finance.book_value_fraction(2.5, 5, 0.1) == pytest.approx(0.55)
    assert finance.book_value_fraction(7.5, 5, 0.1) == pytest.approx(0.05)  # residual declining past the life
    assert finance.book_value_fraction(12, 5, 0.1) == pytest.approx(0.0)


def test_cash_flows_refresh_and_residual() -> None:
    flows = finance.cash_flows(100.0, 50.0, 10.0, residual=0.2, it_life=5, fac_life=20, horizon_years=10, wacc=0.0)
    assert list(flows.capex) == [150.0, 0, 0, 0, 0, 100.0, 0, 0, 0, 0, 0]
    assert list(flows.opex) == [0.0] + [10.0] * 10
    # IT bought in year 5 ends its life at 10: credited at its residual; the facility at half its book value
    assert flows.residual[10] == pytest.approx(100 * 0.2 + 50 * 0.5)
    assert flows.tco == pytest.approx(150 + 100 + 100 - 45)
    assert flows.npv == pytest.approx(flows.tco)  # no discounting at a WACC of 0


def test_cash_flows_without_refresh_sweat_the_assets() -> None:
    flows = finance.cash_flows(100.0, 0.0, 10.0, residual=0.2, it_life=5, fac_life=20, horizon_years=8, wacc=0.1,
                               refresh=0)
    assert flows.capex.sum() == pytest.approx(100.0)
    assert flows.residual[8] == pytest.approx(100 * 0.2 * (1 - 3 / 5))
    assert flows.npv < flows.tco  # costs later in time weigh less


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.0, 0.2), min_size=3, max_size=3),
    st.lists(st.floats(2.0, 8.0), min_size=3, max_size=3),
)
def test_cash_flows_vectorised_equals_scalar(rates: list[float], lives: list[float]) -> None:
    vec = finance.cash_flows(1e6, 5e5, 1e5, residual=0.1, it_life=np.array(lives), fac_life=15, horizon_years=9,
                             wacc=np.array(rates))
    for i, (r, n) in enumerate(zip(rates, lives, strict=True)):
        one = finance.cash_flows(1e6, 5e5, 1e5, residual=0.1, it_life=n, fac_life=15, horizon_years=9, wacc=r)
        assert np.asarray(vec.npv)[i] == pytest.approx(one.npv)
        assert np.asarray(vec.tco)[i] == pytest.approx(one.tco)


def test_break_even_year() -> None:
    assert finance.break_even_year(100.0, 10.0, 30.0) == pytest.approx(5.0)
    assert finance.break_even_year(100.0, 30.0, 30.0) == float("inf")
    assert np.allclose(finance.break_even_year(100.0, 10.0, np.array([60.0, 10.0])), [2.0, np.inf])
