"""Unit economics of an owned deployment: $ per GPU-hour, per training run, per million tokens.

Conventions (USD; costs are the levelised annual cost of the deployment, see ``economics.tco``):
- $/GPU-hour at utilisation u: annual cost / (GPUs x 8,766 h x u). Idle hours are paid for by the
  hours that are used, so a lower utilisation raises the price of every used hour.
- A workload's share of the deployment's cost is its share of the compute systems' capex
  (GPUs x catalog price per GPU of its system). Network, storage, facility and power scale with
  the systems, so within one system type this is its GPU share; across types it weighs a
  B200 GPU above an H100 one.
- $ per training run: the run's GPU-hours (from the training engine) at the $/GPU-hour of its
  pool at the stated utilisation.
- $ per million tokens for an inference service: its share of the annual cost over the tokens
  it serves in a year at the average demand. The split between input and output tokens follows
  the GPU time each phase takes at the planned configuration: a prompt holds its replica for
  the time to first token (prefill is compute-bound and runs one prompt batch at a time), an
  output token holds it for TPOT / batch (decode steps are shared by the batch). When the
  engine does not report those figures only the blended price is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict

from factoryplan.economics.finance import FloatOrArray
from factoryplan.units import SECONDS_PER_YEAR

HOURS_PER_YEAR = SECONDS_PER_YEAR / 3600.0


class ServiceCost(BaseModel):
    """What one inference service's tokens cost on the owned deployment."""

    model_config = ConfigDict(frozen=True)

    name: str
    gpus: int
    cost_share: float  # share of the deployment's annual cost
    annual_usd: float
    input_tokens_per_year: float
    output_tokens_per_year: float
    usd_per_million_tokens: float  # blended over input and output tokens
    usd_per_million_input_tokens: float | None
    usd_per_million_output_tokens: float | None
    prefill_time_share: float | None  # share of the service's GPU time spent on prompts
    output_tokens_per_s_per_mw: float | None  # at the planned capacity (peak), per MW at the meter
    average_output_tokens_per_s_per_mw: float  # at the average demand


class RunCost(BaseModel):
    """What one training run costs on the owned deployment."""

    model_config = ConfigDict(frozen=True)

    name: str
    gpus: int
    gpu_hours: float
    wall_clock_days: float
    usd_per_gpu_hour: float
    usd: float


def usd_per_gpu_hour(annual_usd: FloatOrArray, gpus: FloatOrArray, utilization: FloatOrArray) -> FloatOrArray:
    """Levelised price of a used GPU-hour: annual / (GPUs x hours per year x utilisation).

    Utilisation must be > 0 (the assumption is validated before this is called).
    """
    out = np.asarray(annual_usd, dtype=float) / (np.asarray(gpus, dtype=float) * HOURS_PER_YEAR *
                                                  np.asarray(utilization, dtype=float))
    return float(out) if out.ndim == 0 else out


def cost_shares(weights: Mapping[str, float]) -> dict[str, float]:
    """Normalise capex weights (GPUs x price per GPU) into shares that sum to 1."""
    total = sum(weights.values())
    if total <= 0:
        return {k: 1.0 / len(weights) for k in weights} if weights else {}
    return {k: v / total for k, v in weights.items()}


def prefill_time_share(details: Mapping[str, float | int | str], output_tokens: int) -> float | None:
    """Share of a replica's time spent on a request's prompt, from the engine's planned figures.

    prefill = TTFT; decode = output tokens x TPOT / batch. None when the engine did not report
    ``ttft_ms``, ``tpot_ms`` and a batch size (``batch`` or ``concurrency``).
    """
    ttft = details.get("ttft_ms")
    tpot = details.get("tpot_ms")
    batch = details.get("batch", details.get("concurrency"))
    if not all(isinstance(v, int | float) and v > 0 for v in (ttft, tpot, batch)):
        return None
    assert isinstance(ttft, int | float) and isinstance(tpot, int | float) and isinstance(batch, int | float)
    prefill = float(ttft)
    decode = output_tokens * float(tpot) / float(batch)
    return prefill / (prefill + decode)


def service_cost(
    name: str, gpus: int, share: float, annual_usd: float, input_tokens_per_year: float,
    output_tokens_per_year: float, details: Mapping[str, float | int | str], output_tokens: int,
    facility_mw_share: float,
) -> ServiceCost:
    """$/Mtok (blended, input, output) and tokens/s per MW for one service.

    ``facility_mw_share`` is the service's share of facility power at the meter (MW).
    """
    annual = annual_usd * share
    tokens = input_tokens_per_year + output_tokens_per_year
    blended = annual / tokens * 1e6
    split = prefill_time_share(details, output_tokens)
    usd_in = usd_out = None
    if split is not None:
        usd_in = annual * split / input_tokens_per_year * 1e6
        usd_out = annual * (1 - split) / output_tokens_per_year * 1e6
    per_gpu = details.get("output_tokens_per_s_per_gpu")
    capacity = None
    if isinstance(per_gpu, int | float) and facility_mw_share > 0:
        capacity = float(per_gpu) * gpus / facility_mw_share
    average = output_tokens_per_year / SECONDS_PER_YEAR / facility_mw_share if facility_mw_share > 0 else 0.0
    return ServiceCost(
        name=name, gpus=gpus, cost_share=share, annual_usd=annual, input_tokens_per_year=input_tokens_per_year,
        output_tokens_per_year=output_tokens_per_year, usd_per_million_tokens=blended,
        usd_per_million_input_tokens=usd_in, usd_per_million_output_tokens=usd_out, prefill_time_share=split,
        output_tokens_per_s_per_mw=capacity, average_output_tokens_per_s_per_mw=average,
    )


def run_cost(
    name: str, gpus: int, details: Mapping[str, float | int | str], pool_usd_per_gpu_hour: float
) -> RunCost | None:
    """A training run's cost: its GPU-hours at its pool's $/GPU-hour. None without a run length."""
    days = details.get("wall_clock_days")
    hours = details.get("gpu_hours")
    if not isinstance(hours, int | float):
        if not isinstance(days, int | float):
            return None
        hours = gpus * float(days) * 24.0
    if not isinstance(days, int | float):
        days = float(hours) / max(gpus, 1) / 24.0
    return RunCost(
        name=name, gpus=gpus, gpu_hours=float(hours), wall_clock_days=float(days),
        usd_per_gpu_hour=pool_usd_per_gpu_hour, usd=float(hours) * pool_usd_per_gpu_hour,
    )
