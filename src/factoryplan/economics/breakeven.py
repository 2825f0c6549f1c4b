"""When owning beats renting: break-even utilisation and break-even month.

- Break-even utilisation against pay-per-use capacity (cloud on-demand, LLM APIs): owning costs
  a fixed A per year whatever the use; renting the same work costs R(u) = R_1 x u, proportional
  to the share u of the hours the owned GPUs are busy. Owning is cheaper above
  u* = A / R_1 (R_1: the rental cost of the work at full use). A u* above 1 means owning never
  wins at that price. Reserved capacity is paid for every hour, like owned capacity, so its
  comparison does not depend on utilisation and has no break-even utilisation.
- Break-even month: the month from which the owner's cumulative spending (capex up front, then
  opex) falls below the alternative's (its capex, if any, then its yearly cost):
  t* = (capex_own - capex_alt) / (annual_alt - opex_own). Never (None) when the alternative's
  yearly cost does not exceed the owner's running costs. Residual value and refreshes are
  left out of this payback view (they are in the TCO).
"""

from __future__ import annotations

import math

import numpy as np

from factoryplan.economics.finance import FloatOrArray, break_even_year
from factoryplan.economics.unitcost import HOURS_PER_YEAR


def break_even_utilization(own_annual_usd: FloatOrArray, rent_usd_at_full_use: FloatOrArray) -> FloatOrArray:
    """u* = A / R_1: the owned GPUs' utilisation above which owning is cheaper than paying per use."""
    out = np.asarray(own_annual_usd, dtype=float) / np.asarray(rent_usd_at_full_use, dtype=float)
    return float(out) if out.ndim == 0 else out


def cloud_break_even_utilization(own_annual_usd: float, cloud_gpus: int, usd_per_gpu_hour: float) -> float:
    """Against on-demand GPUs: A / (cloud GPUs x hours per year x price)."""
    return float(break_even_utilization(own_annual_usd, cloud_gpus * HOURS_PER_YEAR * usd_per_gpu_hour))


def api_break_even_utilization(own_annual_usd: float, api_annual_usd: float, serving_utilization: float) -> float:
    """Against an API: the serving GPUs' utilisation at which own tokens cost what the API charges.

    At the planned demand the serving GPUs are busy ``serving_utilization`` of the time and the
    API bill is ``api_annual_usd``; at full use the same GPUs would serve 1/serving_utilization
    times the tokens, worth api_annual / serving_utilization at API prices.
    """
    return float(break_even_utilization(own_annual_usd, api_annual_usd / serving_utilization))


def break_even_month(
    own_capex_usd: float, own_opex_usd_per_year: float, alt_capex_usd: float, alt_annual_usd: float
) -> float | None:
    """Months until owning has cost less in total than the alternative; None if never, 0 if at once."""
    if own_capex_usd <= alt_capex_usd and own_opex_usd_per_year <= alt_annual_usd:
        return 0.0
    years = float(break_even_year(own_capex_usd - alt_capex_usd, own_opex_usd_per_year, alt_annual_usd))
    if not math.isfinite(years):
        return None
    return max(0.0, 12.0 * years)
