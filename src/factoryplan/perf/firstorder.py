"""First-order sizing of workloads: closed-form estimates with stated utilisation.

Training: the model FLOPs of a run are 6·N·D (Kaplan et al. 2020, "Scaling Laws for Neural
Language Models", eq. 2.1; N active parameters, D tokens); the GPUs needed are those FLOPs over
the deadline at a stated model-FLOPs utilisation (MFU) and goodput.

Inference: a decode step reads the weights once per batch and each sequence's KV cache (roofline
on HBM bandwidth at a stated efficiency), or is bound by 2·N FLOPs per token, whichever is slower;
prompts cost 2·N FLOPs per input token at a stated prefill utilisation.

Both are labelled first-order in the plan; the deep engines replace them workload by workload.
"""

from __future__ import annotations

import math

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.models import kv_cache_bytes_per_token, params_active, params_total
from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.errors import InfeasibleError
from factoryplan.units import SECONDS_PER_DAY

BYTES_PER_ELEMENT = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5, "int4": 0.5}
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


def _replica_gpus(arch: ModelArch, acc: Accelerator, system: System, precision: str) -> int:
    """Smallest power-of-two tensor-parallel group (within the scale-up domain) that holds the weights."""
    weights = params_total(arch) * BYTES_PER_ELEMENT[precision]
    usable = acc.hbm_bytes * (1 - MEMORY_RESERVE_FRACTION)
    tp = 1
    while weights > 0.8 * usable * tp:  # leave at least 20% for KV cache
        tp *= 2
        if tp > system.scaleup_domain_gpus:
            need = math.ceil(weights / (0.8 * usable))
            raise InfeasibleError(
                f"{arch.id} at {precision} does not fit one {system.id} scale-up domain",
                field="model",
                value=arch.id,
                allowed=f"needs >= {need} x {acc.id} at {precision}; domain has {system.scaleup_domain_gpus}",
            )
    return tp


def size_inference(
    arch: ModelArch, acc: Accelerator, system: System, *, peak_rps: float, input_tokens: int, output_tokens: int,
    tpot_ms: float, ttft_ms: float, precision: str, asm: AssumptionSet,
) -> dict[str, float | int | str]:
    """Replicas and GPUs to serve ``peak_rps`` within TPOT/TTFT targets, first-order roofline."""
    bw_eff = asm.get("decode_bandwidth_efficiency")
    prefill_mfu = asm.get("prefill_mfu_first_order")
    headroom = asm.get("serving_headroom")
    tp = _replica_gpus(arch, acc, system, precision)
    bpe = BYTES_PER_ELEMENT[precision]
    weights = params_total(arch) * bpe
    active_bytes = params_active(arch) * bpe
    kv_per_seq = float(kv_cache_bytes_per_token(arch, BYTES_PER_ELEMENT["fp8"])) * (input_tokens + output_tokens / 2)
    bw = acc.hbm_bytes_s * bw_eff * tp
    flops = peak_flops(acc, precision) * tp
    kv_room = acc.hbm_bytes * (1 - MEMORY_RESERVE_FRACTION) * tp - weights
    max_batch_memory = max(int(kv_room // kv_per_seq), 0)
    # step time t(B) = max((W_read(B) + B·kv)/bw, 2·N·B/flops); W_read grows to all weights for MoE
    best_batch, best_step = 0, 0.0
    batch = 1
    while batch <= max(max_batch_memory, 1):
        w_read = min(weights, active_bytes * batch) if arch.moe else weights
        step = max((w_read + batch * kv_per_seq) / bw, 2.0 * params_active(arch) * batch / (flops * prefill_mfu))
        if step * 1e3 > tpot_ms or batch > max_batch_memory:
            break
        best_batch, best_step = batch, step
        batch = batch * 2 if batch < 8 else int(batch * 1.25) + 1
    if best_batch == 0:
        raise InfeasibleError(
            f"{arch.id} on {tp} x {acc.id} cannot reach TPOT {tpot_ms:g} ms even at batch 1",
            field="tpot_ms",
            value=tpot_ms,
        )
    decode_tok_s = best_batch / best_step
    prefill_s_per_request = 2 * params_active(arch) * input_tokens / (flops * prefill_mfu)
    ttft_s = prefill_s_per_request
    # replica time splits between prefill and decode: requests/s one replica sustains
    rps_per_replica = 1.0 / (prefill_s_per_request + output_tokens / decode_tok_s)
    replicas = max(1, math.ceil(peak_rps / (rps_per_replica * (1 - headroom))))
    return {
        "gpus": replicas * tp,
        "replicas": replicas,
        "gpus_per_replica": tp,
        "batch": best_batch,
        "tpot_ms": best_step * 1e3,
        "ttft_ms": ttft_s * 1e3,
        "output_tokens_per_s_per_gpu": rps_per_replica * output_tokens / tp,
        "method": "first-order: HBM-bandwidth roofline decode, compute-bound prefill at stated efficiencies",
    }
