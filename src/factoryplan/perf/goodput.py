"""A whole training run: steps, goodput under failures and checkpoints, wall clock, GPU-hours, energy.

Failures: a job on ``N`` GPUs with ``lambda`` interruptions per GPU-second fails on average every
``M = 1 / (lambda * N)`` seconds (the Llama 3 run: 419 unexpected interruptions on 16,384 H100 in
54 days, about one every 3 hours). Each failure costs a restart ``R`` and, on average, half a
checkpoint interval of lost work. Checkpoints take ``delta`` seconds of blocking write every ``tau``
seconds of work; the interval that minimises the waste is Young's ``tau = sqrt(2 * delta * M)``
(Young 1974, "A first order approximation to the optimum checkpoint interval"; Daly 2006 adds
higher-order terms that matter only when ``delta`` approaches ``M``). The useful fraction of wall
time is then

``goodput = tau / (tau + delta) * (1 - (R + (tau + delta) / 2) / M)``

clipped at 0. Formulas accept floats or numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from factoryplan.units import J_PER_MWH, SECONDS_PER_DAY, SECONDS_PER_HOUR

FloatOrArray = float | npt.NDArray[np.float64]

CHECKPOINT_BYTES_PER_PARAM = 14.0  # 16-bit weights + fp32 master weights and Adam moments


@dataclass(frozen=True)
class RunAssumptions:
    """Reliability and power inputs of a run, in internal units."""

    interruptions_per_gpu_s: float
    restart_s: float
    checkpoint_bytes_s_per_gpu: float  # blocking write bandwidth of one GPU's checkpoint shard
    power_fraction: float  # average draw of the systems as a fraction of their maximum power


@dataclass(frozen=True)
class RunResult:
    """A run of ``tokens`` tokens on ``gpus`` GPUs at a given step time."""

    steps: int
    compute_s: float  # failure-free time: steps x step time
    goodput: float
    checkpoint_interval_s: float
    checkpoint_s: float
    mtbf_s: float
    wall_clock_days: float
    gpu_hours: float
    energy_mwh: float


def _scalar_or_array(x: npt.NDArray[np.float64]) -> FloatOrArray:
    return x if x.ndim else float(x)


def mean_time_between_failures(gpus: FloatOrArray, interruptions_per_gpu_s: float) -> FloatOrArray:
    """``M = 1 / (lambda * N)`` in seconds; infinite when the rate is 0."""
    n = np.asarray(gpus, dtype=np.float64)
    rate = max(interruptions_per_gpu_s, 0.0) * n
    with np.errstate(divide="ignore"):
        out = np.where(rate > 0, 1.0 / np.where(rate > 0, rate, 1.0), np.inf)
    return _scalar_or_array(np.asarray(out, dtype=np.float64))


def young_interval(checkpoint_s: FloatOrArray, mtbf_s: FloatOrArray) -> FloatOrArray:
    """Young's optimal checkpoint interval ``sqrt(2 * delta * M)`` (seconds of work between
    checkpoints)."""
    out = np.sqrt(2.0 * np.asarray(checkpoint_s, dtype=np.float64) * np.asarray(mtbf_s, dtype=np.float64))
    return _scalar_or_array(np.asarray(out, dtype=np.float64))


def goodput(mtbf_s: float, restart_s: float, checkpoint_s: float) -> tuple[float, float]:
    """(useful fraction of wall time, checkpoint interval) under Young's interval; see the module
    docstring. With no failures (``M`` infinite) nothing is lost: (1.0, inf)."""
    if math.isinf(mtbf_s):
        return 1.0, math.inf
    if checkpoint_s <= 0:
        return max(0.0, 1.0 - restart_s / mtbf_s), 0.0
    tau = float(young_interval(checkpoint_s, mtbf_s))
    useful = tau / (tau + checkpoint_s) * (1.0 - (restart_s + (tau + checkpoint_s) / 2.0) / mtbf_s)
    return max(0.0, useful), tau


def checkpoint_seconds(params_total: float, gpus: int, bytes_s_per_gpu: float) -> float:
    """Blocking time of one distributed checkpoint: every GPU writes its share of the model and
    optimizer state (``14`` bytes per parameter) at ``bytes_s_per_gpu``."""
    return CHECKPOINT_BYTES_PER_PARAM * params_total / gpus / bytes_s_per_gpu


def run(
    tokens: float, tokens_per_step: float, step_time_s: float, gpus: int, params_total: float,
    system_power_w_per_gpu: float, asm: RunAssumptions,
) -> RunResult:
    """Steps, goodput, wall clock, GPU-hours and IT energy of a run (facility PUE not included)."""
    steps = math.ceil(tokens / tokens_per_step)
    compute_s = steps * step_time_s
    mtbf = float(mean_time_between_failures(float(gpus), asm.interruptions_per_gpu_s))
    ckpt = checkpoint_seconds(params_total, gpus, asm.checkpoint_bytes_s_per_gpu)
    useful, tau = goodput(mtbf, asm.restart_s, ckpt)
    wall = compute_s / useful if useful > 0 else math.inf
    return RunResult(
        steps=steps,
        compute_s=compute_s,
        goodput=useful,
        checkpoint_interval_s=tau,
        checkpoint_s=ckpt,
        mtbf_s=mtbf,
        wall_clock_days=wall / SECONDS_PER_DAY,
        gpu_hours=gpus * wall / SECONDS_PER_HOUR,
        energy_mwh=gpus * wall * system_power_w_per_gpu * asm.power_fraction / J_PER_MWH,
    )


__all__ = [
    "CHECKPOINT_BYTES_PER_PARAM",
    "RunAssumptions",
    "RunResult",
    "checkpoint_seconds",
    "goodput",
    "mean_time_between_failures",
    "run",
    "young_interval",
]
