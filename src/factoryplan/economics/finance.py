"""Cost of capital: capital recovery (annuity) factors, present values, levelised costs.

All functions accept floats or numpy arrays (for Monte Carlo draws) and broadcast.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatOrArray = float | NDArray[np.float64]


def capital_recovery_factor(rate: FloatOrArray, years: FloatOrArray) -> FloatOrArray:
    """Annual payment per dollar of capex repaid over ``years`` at ``rate``.

    CRF = r(1+r)^n / ((1+r)^n - 1); at r = 0 it is 1/n (straight-line). Standard annuity formula
    (e.g. Short, Packey & Holt 1995, NREL/TP-462-5173, eq. 4-2).
    """
    r = np.asarray(rate, dtype=float)
    n = np.asarray(years, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        growth = (1.0 + r) ** n
        crf = np.where(np.abs(r) < 1e-12, 1.0 / n, r * growth / (growth - 1.0))
    return float(crf) if crf.ndim == 0 else crf


def present_value_factor(rate: FloatOrArray, years: FloatOrArray) -> FloatOrArray:
    """Present value of 1 per year for ``years`` years (end-of-year payments): 1 / CRF."""
    crf = capital_recovery_factor(rate, years)
    return 1.0 / crf


def discount(rate: FloatOrArray, year: FloatOrArray) -> FloatOrArray:
    """Discount factor (1+r)^-t."""
    out = (1.0 + np.asarray(rate, dtype=float)) ** (-np.asarray(year, dtype=float))
    return float(out) if out.ndim == 0 else out


def levelised_capex(
    capex: FloatOrArray, rate: FloatOrArray, life_years: FloatOrArray, residual_fraction: FloatOrArray = 0.0
) -> FloatOrArray:
    """Equal annual cost that repays ``capex`` over its life at ``rate``, net of the residual value.

    annual = (capex - residual·capex·(1+r)^-n) · CRF(r, n)
    """
    pv_residual = np.asarray(residual_fraction) * np.asarray(capex) * discount(rate, life_years)
    out = (np.asarray(capex) - pv_residual) * capital_recovery_factor(rate, life_years)
    return float(out) if np.ndim(out) == 0 else out


def straight_line(capex: FloatOrArray, life_years: FloatOrArray, residual_fraction: FloatOrArray = 0.0) -> FloatOrArray:
    """Annual depreciation with no cost of capital (as in Epoch AI's analyses)."""
    out = np.asarray(capex) * (1.0 - np.asarray(residual_fraction)) / np.asarray(life_years)
    return float(out) if np.ndim(out) == 0 else out
