"""Cloud and API alternatives, comparable API model classes, break-even utilisation and month."""

from __future__ import annotations

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import ApiPrice, CloudPrice
from factoryplan.economics.alternatives import (
    OwnBasis,
    ServiceTokens,
    api_alternative,
    cloud_alternative,
    comparable_offers,
)
from factoryplan.economics.breakeven import break_even_month
from factoryplan.economics.unitcost import HOURS_PER_YEAR

OWN = OwnBasis(annual_usd=2.0e6, capex_usd=6.0e6, opex_usd_per_year=0.5e6, inference_share=0.5,
               serving_utilization=0.4)


def _offer(catalog: Catalog, pricing: str) -> CloudPrice:
    return next(p for p in catalog.cloud_prices.values() if p.accelerator == "h100-sxm" and p.pricing == pricing)


def test_on_demand_is_billed_for_used_hours_and_breaks_even(catalog: Catalog) -> None:
    price = _offer(catalog, "on-demand")
    alt = cloud_alternative(price, 64, 0.6, 5.0, True, [], OWN)
    per_hour = price.price_usd_per_gpu_s * 3600
    assert alt.annual_usd == pytest.approx(64 * HOURS_PER_YEAR * 0.6 * per_hour)
    assert alt.tco_usd == pytest.approx(alt.annual_usd * 5)
    u = alt.break_even_utilization
    assert u is not None
    # at the break-even utilisation renting the same work costs what owning costs
    at_u = cloud_alternative(price, 64, u, 5.0, True, [], OWN)
    assert at_u.annual_usd == pytest.approx(OWN.annual_usd)


def test_reserved_is_billed_every_hour_without_break_even_utilisation(catalog: Catalog) -> None:
    price = _offer(catalog, "reserved-1y")
    alt = cloud_alternative(price, 64, 0.3, 3.0, False, ["rule"], OWN)
    assert alt.annual_usd == pytest.approx(64 * HOURS_PER_YEAR * price.price_usd_per_gpu_s * 3600)
    assert alt.break_even_utilization is None and "every hour" in alt.note
    assert not alt.feasible and alt.reasons == ["rule"]


def test_break_even_month_equalises_cumulative_costs() -> None:
    month = break_even_month(6.0e6, 0.5e6, 0.0, 2.0e6)
    assert month is not None
    years = month / 12
    assert 6.0e6 + 0.5e6 * years == pytest.approx(2.0e6 * years)
    assert break_even_month(6.0e6, 2.0e6, 0.0, 1.5e6) is None  # running costs alone exceed the rent
    assert break_even_month(1.0e6, 0.1e6, 2.0e6, 0.5e6) == 0.0  # cheaper from the start


def _api(pid: str, cls: str, option: str, pin: float, pout: float) -> ApiPrice:
    return ApiPrice(id=pid, name=pid, provider="p", model_class=cls, open_weights=False,
                    input_usd_per_token=pin * 1e-6, output_usd_per_token=pout * 1e-6, option=option,
                    source="test offer", as_of="2026", basis="assumption")


OFFERS = [_api("a", "small", "api-x", 0.1, 0.4), _api("b", "frontier", "api-x", 2.0, 8.0),
          _api("c", "large-open", "api-y", 0.5, 1.5)]


def test_comparable_class_falls_back_to_a_larger_one() -> None:
    assert [o.id for o in comparable_offers(OFFERS, "api-x", "medium-open")] == ["b"]
    assert [o.id for o in comparable_offers(OFFERS, "api-x", "small")] == ["a"]
    assert comparable_offers(OFFERS, "api-y", "frontier") == []


def test_api_alternative_prices_tokens_and_breaks_even() -> None:
    svc = ServiceTokens(name="s", model_class="medium-open", input_tokens_per_year=4e12, output_tokens_per_year=1e12)
    alt = api_alternative("api-x", OFFERS, [svc], 5.0, True, [], OWN)
    assert alt is not None
    annual = 4e12 * 2e-6 + 1e12 * 8e-6
    assert alt.annual_usd == pytest.approx(annual)
    assert alt.usd_per_million_tokens == pytest.approx(annual / 5e12 * 1e6)
    assert "priced as frontier" in alt.note
    # at u*, own serving cost equals what the API charges for the tokens the GPUs would then serve
    u = alt.break_even_utilization
    assert u is not None
    assert OWN.annual_usd * OWN.inference_share == pytest.approx(annual / OWN.serving_utilization * u)
    assert api_alternative("api-y", OFFERS, [svc.model_copy(update={"model_class": "frontier"})], 5.0, True, []) is None


def test_commitments_are_cheaper_than_on_demand(catalog: Catalog) -> None:
    """For each provider and GPU, reserved-3y < reserved-1y < on-demand per GPU-hour."""
    by_key: dict[tuple[str, str], dict[str, float]] = {}
    for p in catalog.cloud_prices.values():
        by_key.setdefault((p.provider, p.accelerator), {})[p.pricing] = p.price_usd_per_gpu_s
    order = ("reserved-3y", "reserved-1y", "on-demand")
    checked = 0
    for key, prices in by_key.items():
        present = [prices[o] for o in order if o in prices]
        assert present == sorted(present), key
        checked += len(present) > 1
    assert checked >= 8
