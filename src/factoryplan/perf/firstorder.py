"""First-order sizing of workloads: closed-form estimates with stated utilisation.

Training: the model FLOPs of a run are 6·N·D (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", eq. 2.1; N active parameters, D tokens); the GPUs needed are those FLOPs over
the deadline at a stated model-FLOPs utilisation (MFU) and goodput.

Inference is sized by the serving engine (``perf.inference``, ``perf.serving``, ``perf.capacity``).

Labelled first-order in the plan; the deep engines replace it workload by workload.
"""

from __future__ import annotations

import math

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.models import params_active, params_total
from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.units import SECONDS_PER_DAY

COMPUTE_PRECISION = {"bf16": "bf16", "fp8": "fp8", "fp4": "fp4", "int4": "fp8"}
MEMORY_RESERVE_FRACTION = 0.10  # activations, CUDA context, fragmentation (first-order)


def training_flops(arch: ModelArch, tokens: float) -> float:
    """Model FLOPs of a training run, 6·N_active·D (no recompute, attention not counted)."""
    return 6.0 * params_active(arch) * tokens


def peak_flops(acc: Accelerator, precision: str) -> float:
    """Dense peak at ``precision``, falling back to BF16 where the part lacks that unit."""
    return acc.dense_flops(COMPUTE_PRECISION[precision]) or acc.bf16_dense_flops


def size_training(
    arch: ModelArch, acc: Accelerator, system: System, tokens: float, deadline_days: float, precision: str,
    asm: AssumptionSet,
) -> dict[str, float | int | str]:
    """GPUs (whole systems) to train ``arch`` on ``tokens`` within the deadline, first-order."""
    mfu = asm.get("training_mfu_first_order")
    goodput = asm.get("goodput_training")
    flops = training_flops(arch, tokens)
    per_gpu = peak_flops(acc, precision) * mfu * goodput
    deadline_s = deadline_days * SECONDS_PER_DAY
    gpus_exact = flops / (per_gpu * deadline_s)
    # the optimizer state (16 bytes/param with fp32 master weights and Adam moments) must fit when sharded
    min_gpus_memory = 16.0 * params_total(arch) / (acc.hbm_bytes * (1 - 2 * MEMORY_RESERVE_FRACTION))
    gpus = max(gpus_exact, min_gpus_memory, 1.0)
    systems = math.ceil(gpus / system.gpus)
    gpus_int = systems * system.gpus
    wall_s = flops / (per_gpu * gpus_int)
    return {
        "gpus": gpus_int,
        "flops": flops,
        "wall_clock_days": wall_s / SECONDS_PER_DAY,
        "gpu_hours": gpus_int * wall_s / 3600.0,
        "mfu": mfu,
        "tokens_per_s_per_gpu": tokens / wall_s / gpus_int,
        "method": "first-order: 6·N·D model FLOPs at a stated MFU and goodput",
    }
