"""Other ways to get the same work done: colocation, GPUs rented in a cloud, tokens bought from an API.

Cloud: the workloads are re-sized on the offer's accelerator (by the plan) and rented for the
horizon. On-demand is billed for the hours used (GPUs x hours x utilisation); reserved capacity
(1-year, 3-year) for every hour. Providers are hyperscalers, neoclouds, domestic and sovereign
clouds, as the catalog's price entries say.

API: each inference service's yearly input and output tokens at the cheapest offer of a
comparable model class under one deployment option: the service's own class, else the next
larger class (small < medium-open < large-open < frontier: a larger model can do a smaller
one's job, not the reverse). An API cannot run a training workload.

Each alternative carries its break-even utilisation and break-even month against the plan's own
deployment (see ``economics.breakeven``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from factoryplan.catalog.schema import ApiPrice, CloudPrice
from factoryplan.economics.breakeven import api_break_even_utilization, break_even_month, cloud_break_even_utilization
from factoryplan.economics.unitcost import HOURS_PER_YEAR

MODEL_CLASSES = ("small", "medium-open", "large-open", "frontier")


class Alternative(BaseModel):
    """One way to obtain the workloads' compute, with its cost over the horizon."""

    model_config = ConfigDict(frozen=True)

    option: str  # what it is, in words
    option_id: str  # deployment option (sovereignty attributes)
    kind: str  # own | colo | cloud | api
    offer: str | None  # price entry id(s)
    provider_kind: str | None = None  # hyperscaler, neocloud, domestic-cloud, ...
    pricing: str | None = None  # on-demand, reserved-1y, reserved-3y, per-token, owned
    accelerator: str | None
    gpus: int | None
    scope: str  # "all" or "inference"
    annual_usd: float
    tco_usd: float
    usd_per_gpu_hour: float | None
    usd_per_million_tokens: float | None
    break_even_utilization: float | None = None  # owned GPUs' utilisation above which owning is cheaper
    break_even_month: float | None = None  # month from which owning has cost less in total
    note: str = ""
    feasible: bool
    reasons: list[str]


class ServiceTokens(BaseModel):
    """A service's yearly token volume, for API pricing."""

    model_config = ConfigDict(frozen=True)

    name: str
    model_class: str
    input_tokens_per_year: float
    output_tokens_per_year: float


@dataclass(frozen=True)
class OwnBasis:
    """The plan's own deployment, as the alternatives are compared with it."""

    annual_usd: float  # levelised annual cost
    capex_usd: float
    opex_usd_per_year: float
    inference_share: float  # share of the own cost that serves the inference services
    serving_utilization: float  # share of the serving GPUs' capacity the average demand uses


def cloud_alternative(
    price: CloudPrice, gpus: int, utilization: float, horizon_years: float, feasible: bool, reasons: Sequence[str],
    own: OwnBasis | None = None,
) -> Alternative:
    """Renting ``gpus`` GPUs of ``price.accelerator`` for the horizon."""
    billed_fraction = utilization if price.pricing == "on-demand" else 1.0
    per_hour = price.price_usd_per_gpu_s * 3600.0
    annual = gpus * HOURS_PER_YEAR * billed_fraction * per_hour
    u_star = month = None
    note = ""
    if own is not None:
        month = break_even_month(own.capex_usd, own.opex_usd_per_year, 0.0, annual)
        if price.pricing == "on-demand":
            u_star = cloud_break_even_utilization(own.annual_usd, gpus, per_hour)
            note = "owning never cheaper at this price" if u_star > 1 else ""
        else:
            note = "reserved capacity is paid every hour: no break-even utilisation, compare TCO"
    return Alternative(
        option=f"{price.provider} {price.accelerator} {price.pricing}", option_id=price.option, kind="cloud",
        offer=price.id, provider_kind=price.provider_kind, pricing=price.pricing, accelerator=price.accelerator,
        gpus=gpus, scope="all", annual_usd=annual, tco_usd=annual * horizon_years, usd_per_gpu_hour=per_hour,
        usd_per_million_tokens=None, break_even_utilization=u_star, break_even_month=month, note=note,
        feasible=feasible, reasons=list(reasons),
    )


def comparable_offers(offers: Sequence[ApiPrice], option_id: str, model_class: str) -> list[ApiPrice]:
    """Offers of ``option_id`` in ``model_class``, else in the next larger class that has any."""
    start = MODEL_CLASSES.index(model_class) if model_class in MODEL_CLASSES else 0
    for cls in MODEL_CLASSES[start:]:
        found = [o for o in offers if o.option == option_id and o.model_class == cls]
        if found:
            return found
    return []


def api_alternative(
    option_id: str, offers: Sequence[ApiPrice], services: Sequence[ServiceTokens], horizon_years: float,
    feasible: bool, reasons: Sequence[str], own: OwnBasis | None = None,
) -> Alternative | None:
    """Buying every service's tokens from the cheapest comparable offer under ``option_id``."""
    if not services:
        return None
    annual = tokens = 0.0
    used: list[str] = []
    substituted: list[str] = []
    for svc in services:
        candidates = comparable_offers(offers, option_id, svc.model_class)
        if not candidates:
            return None
        best = min(candidates, key=lambda o: _cost(o, svc))
        if best.model_class != svc.model_class:
            substituted.append(f"{svc.name}: {svc.model_class} priced as {best.model_class}")
        annual += _cost(best, svc)
        tokens += svc.input_tokens_per_year + svc.output_tokens_per_year
        used.append(best.id)
    u_star = month = None
    if own is not None and own.inference_share > 0:
        share_annual = own.annual_usd * own.inference_share
        u_star = api_break_even_utilization(share_annual, annual, own.serving_utilization)
        month = break_even_month(own.capex_usd * own.inference_share, own.opex_usd_per_year * own.inference_share,
                                 0.0, annual)
    note = "; ".join(substituted)
    return Alternative(
        option=f"LLM API ({', '.join(sorted(set(used)))})", option_id=option_id, kind="api",
        offer=",".join(sorted(set(used))), provider_kind="api", pricing="per-token", accelerator=None, gpus=None,
        scope="inference", annual_usd=annual, tco_usd=annual * horizon_years, usd_per_gpu_hour=None,
        usd_per_million_tokens=annual / tokens * 1e6 if tokens else None, break_even_utilization=u_star,
        break_even_month=month, note=note, feasible=feasible, reasons=list(reasons),
    )


def _cost(offer: ApiPrice, svc: ServiceTokens) -> float:
    return (
        svc.input_tokens_per_year * offer.input_usd_per_token + svc.output_tokens_per_year * offer.output_usd_per_token
    )
