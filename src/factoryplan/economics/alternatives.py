"""Other ways to get the same work done: rent GPUs in a cloud, or buy tokens from an LLM API.

Cloud: the workloads are re-sized on the offer's accelerator (by the plan) and rented for the
horizon. On-demand is billed for the hours used (GPUs x hours x utilisation); reserved capacity
is billed for every hour. API: each inference service's yearly input and output tokens at the
cheapest offer of a comparable model class; an API cannot run a training workload.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from factoryplan.catalog.schema import ApiPrice, CloudPrice
from factoryplan.units import SECONDS_PER_YEAR


class Alternative(BaseModel):
    """One way to obtain the workloads' compute, with its cost over the horizon."""

    model_config = ConfigDict(frozen=True)

    option: str  # what it is, in words
    option_id: str  # deployment option (sovereignty attributes)
    kind: str  # own | colo | cloud | api
    offer: str | None  # price entry id
    accelerator: str | None
    gpus: int | None
    scope: str  # "all" or "inference"
    annual_usd: float
    tco_usd: float
    usd_per_gpu_hour: float | None
    usd_per_million_tokens: float | None
    feasible: bool
    reasons: list[str]


class ServiceTokens(BaseModel):
    """A service's yearly token volume, for API pricing."""

    model_config = ConfigDict(frozen=True)

    name: str
    model_class: str
    input_tokens_per_year: float
    output_tokens_per_year: float


def cloud_alternative(
    price: CloudPrice, gpus: int, utilization: float, horizon_years: float, feasible: bool, reasons: Sequence[str],
) -> Alternative:
    """Renting ``gpus`` GPUs of ``price.accelerator`` for the horizon."""
    hours = SECONDS_PER_YEAR / 3600.0
    billed_fraction = utilization if price.pricing == "on-demand" else 1.0
    per_hour = price.price_usd_per_gpu_s * 3600.0
    annual = gpus * hours * billed_fraction * per_hour
    return Alternative(
        option=f"{price.provider} {price.accelerator} {price.pricing}",
        option_id=price.option,
        kind="cloud",
        offer=price.id,
        accelerator=price.accelerator,
        gpus=gpus,
        scope="all",
        annual_usd=annual,
        tco_usd=annual * horizon_years,
        usd_per_gpu_hour=per_hour,
        usd_per_million_tokens=None,
        feasible=feasible,
        reasons=list(reasons),
    )


def api_alternative(
    option_id: str, offers: Sequence[ApiPrice], services: Sequence[ServiceTokens], horizon_years: float,
    feasible: bool, reasons: Sequence[str],
) -> Alternative | None:
    """Buying every service's tokens from the cheapest offer of its model class under ``option_id``."""
    annual = 0.0
    tokens = 0.0
    used: list[str] = []
    for svc in services:
        candidates = [o for o in offers if o.option == option_id and o.model_class == svc.model_class]
        if not candidates:
            return None
        best = min(candidates, key=lambda o: _cost(o, svc))
        annual += _cost(best, svc)
        tokens += svc.input_tokens_per_year + svc.output_tokens_per_year
        used.append(best.id)
    if not services:
        return None
    return Alternative(
        option=f"LLM API ({', '.join(sorted(set(used)))})",
        option_id=option_id,
        kind="api",
        offer=",".join(sorted(set(used))),
        accelerator=None,
        gpus=None,
        scope="inference",
        annual_usd=annual,
        tco_usd=annual * horizon_years,
        usd_per_gpu_hour=None,
        usd_per_million_tokens=annual / tokens * 1e6 if tokens else None,
        feasible=feasible,
        reasons=list(reasons),
    )


def _cost(offer: ApiPrice, svc: ServiceTokens) -> float:
    return (
        svc.input_tokens_per_year * offer.input_usd_per_token + svc.output_tokens_per_year * offer.output_usd_per_token
    )


def cheapest_per_option(alternatives: Sequence[Alternative]) -> Mapping[str, Alternative]:
    """The cheapest alternative of each (option, pricing) kind, for summaries."""
    best: dict[str, Alternative] = {}
    for alt in alternatives:
        key = alt.option_id
        if key not in best or alt.tco_usd < best[key].tco_usd:
            best[key] = alt
    return best
