"""Cost of capital: capital recovery (annuity) factors, present values, levelised costs, cash flows.

All functions accept floats or numpy arrays (for Monte Carlo draws) and broadcast; a 0-d result
comes back as a float. Money is in USD, time in years, rates per year.

Two ways to turn capex into a yearly cost are offered side by side:
- the annuity (capital recovery factor at the WACC), the standard levelised-cost method
  (Short, Packey & Holt 1995, NREL/TP-462-5173, sec. 4), used for the plan's figures;
- straight-line depreciation with no cost of capital, the method of Epoch AI's training-cost code
  (github.com/epoch-research/training-cost-trends), kept for comparison with public analyses.
  The annuity at a WACC of 0 equals straight-line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
FloatOrArray = float | Array


def _out(x: Array) -> FloatOrArray:
    return float(x) if np.ndim(x) == 0 else x


def capital_recovery_factor(rate: FloatOrArray, years: FloatOrArray) -> FloatOrArray:
    """Annual payment per dollar of capex repaid over ``years`` at ``rate``.

    CRF = r(1+r)^n / ((1+r)^n - 1); at r = 0 it is 1/n (straight-line). Standard annuity formula
    (Short, Packey & Holt 1995, NREL/TP-462-5173, eq. 4-2). Edge cases: n must be > 0 (callers
    validate); |r| < 1e-12 is treated as 0 to avoid 0/0.
    """
    r = np.asarray(rate, dtype=float)
    n = np.asarray(years, dtype=float)
    small = np.abs(r) < 1e-12
    r_safe = np.where(small, 1.0, r)
    growth = (1.0 + r_safe) ** n
    crf = np.where(small, 1.0 / n, r_safe * growth / (growth - 1.0))
    return _out(crf)


def present_value_factor(rate: FloatOrArray, years: FloatOrArray) -> FloatOrArray:
    """Present value of 1 per year for ``years`` years (end-of-year payments): 1 / CRF."""
    return _out(1.0 / np.asarray(capital_recovery_factor(rate, years)))


def discount(rate: FloatOrArray, year: FloatOrArray) -> FloatOrArray:
    """Discount factor (1+r)^-t (end-of-year convention)."""
    return _out((1.0 + np.asarray(rate, dtype=float)) ** (-np.asarray(year, dtype=float)))


def levelised_capex(
    capex: FloatOrArray, rate: FloatOrArray, life_years: FloatOrArray, residual_fraction: FloatOrArray = 0.0
) -> FloatOrArray:
    """Equal annual cost that repays ``capex`` over its life at ``rate``, net of the residual value.

    annual = (capex - residual·capex·(1+r)^-n) · CRF(r, n). At r = 0 this is straight-line
    depreciation of capex·(1 - residual) over n years.
    """
    c = np.asarray(capex, dtype=float)
    pv_residual = np.asarray(residual_fraction) * c * np.asarray(discount(rate, life_years))
    return _out((c - pv_residual) * np.asarray(capital_recovery_factor(rate, life_years)))


def straight_line(capex: FloatOrArray, life_years: FloatOrArray, residual_fraction: FloatOrArray = 0.0) -> FloatOrArray:
    """Annual depreciation with no cost of capital (as in Epoch AI's analyses): capex·(1-residual)/n."""
    return _out(np.asarray(capex) * (1.0 - np.asarray(residual_fraction)) / np.asarray(life_years))


def book_value_fraction(age: FloatOrArray, life: FloatOrArray, residual: FloatOrArray) -> FloatOrArray:
    """Value of an asset of ``age`` years as a fraction of its price.

    Straight-line from 1 at age 0 to ``residual`` at the end of its ``life``; past its life the
    residual value itself declines straight-line to 0 over another life (a sweat-the-assets plan
    sells old equipment for less). Age 0 gives 1; ``residual`` = 0 and age >= life give 0.
    """
    a = np.asarray(age, dtype=float)
    n = np.asarray(life, dtype=float)
    res = np.asarray(residual, dtype=float)
    within = 1.0 - np.minimum(a, n) / n * (1.0 - res)
    beyond = res * np.clip(1.0 - (a - n) / n, 0.0, 1.0)
    return _out(np.where(a <= n, within, beyond))


@dataclass(frozen=True)
class CashFlowArrays:
    """Yearly cash flows, costs positive; each field has shape (years + 1, *draws)."""

    year: Array
    capex: Array
    opex: Array
    residual: Array
    total: Array
    discounted: Array

    @property
    def tco(self) -> FloatOrArray:
        """Undiscounted sum of the cash flows (capex + opex + refreshes - residual value)."""
        return _out(self.total.sum(axis=0))

    @property
    def npv(self) -> FloatOrArray:
        """Present value of the cash flows at the WACC (a cost, so positive)."""
        return _out(self.discounted.sum(axis=0))


def cash_flows(
    it_capex: FloatOrArray, fac_capex: FloatOrArray, opex: FloatOrArray, *, residual: FloatOrArray,
    it_life: FloatOrArray, fac_life: FloatOrArray, horizon_years: int, wacc: FloatOrArray,
    refresh: FloatOrArray = 1.0,
) -> CashFlowArrays:
    """Year 0 capex, opex at the end of each year 1..H, IT refresh, residual value credited in year H.

    - IT is bought again (``refresh`` = 1) every round(it_life) years while the horizon lasts;
      with ``refresh`` = 0 it runs past its life and no new IT capex is spent.
    - At the horizon the IT is credited at ``book_value_fraction`` of its age (so a horizon that
      ends exactly at the end of the IT life credits the stated residual value), and the facility
      at its remaining straight-line book value.
    Vectorised: every argument may be an array of draws; the year loop runs over H + 1 years only.
    """
    h = max(1, int(horizon_years))
    it = np.asarray(it_capex, dtype=float)
    fac = np.asarray(fac_capex, dtype=float)
    op = np.asarray(opex, dtype=float)
    shape = np.broadcast(it, fac, op, np.asarray(it_life), np.asarray(wacc), np.asarray(residual)).shape
    step = np.maximum(1.0, np.rint(np.asarray(it_life, dtype=float)))
    do_refresh = np.asarray(refresh, dtype=float) > 0.5
    years = np.arange(h + 1, dtype=float)
    capex = np.zeros((h + 1, *shape))
    opex_rows = np.zeros((h + 1, *shape))
    residual_rows = np.zeros((h + 1, *shape))
    last_purchase = np.zeros(shape)
    capex[0] = it + fac
    for t in range(1, h + 1):
        opex_rows[t] = op
        if t < h:
            buy = do_refresh & (np.mod(t, step) == 0)
            capex[t] = np.where(buy, it, 0.0)
            last_purchase = np.where(buy, float(t), last_purchase)
    it_value = np.asarray(book_value_fraction(h - last_purchase, it_life, residual))
    fac_value = np.clip(1.0 - h / np.asarray(fac_life, dtype=float), 0.0, 1.0)
    residual_rows[h] = it * it_value + fac * fac_value
    total = capex + opex_rows - residual_rows
    disc = np.asarray(discount(np.asarray(wacc)[None, ...], years.reshape((-1,) + (1,) * len(shape))))
    return CashFlowArrays(
        year=years, capex=capex, opex=opex_rows, residual=residual_rows, total=total, discounted=total * disc
    )


def break_even_year(capex_own: FloatOrArray, opex_own: FloatOrArray, annual_other: FloatOrArray) -> FloatOrArray:
    """Years until owning (capex up front, then opex) has cost no more than renting at ``annual_other``.

    t* = capex / (annual_other - opex); infinite (numpy inf) when renting costs no more per year
    than owning's running costs, so owning never catches up.
    """
    gap = np.asarray(annual_other, dtype=float) - np.asarray(opex_own, dtype=float)
    with np.errstate(divide="ignore"):
        t = np.where(gap > 0, np.asarray(capex_own, dtype=float) / np.where(gap > 0, gap, 1.0), np.inf)
    return _out(t)
