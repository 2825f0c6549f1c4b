"""Memory per GPU in training: weights, gradients, optimizer states, activations, margin.

Model states (mixed precision with Adam; Rajbhandari et al. 2020, "ZeRO", Sec. 3.1): 2 bytes of
16-bit weights, 2 bytes of 16-bit gradients and 12 bytes of optimizer state (fp32 master weights,
Adam first and second moments) per parameter, 16 bytes in all. FP8 training keeps one more byte
per parameter for the cached FP8 copy of the weights (Transformer Engine). ZeRO stage 1 (Megatron's
distributed optimizer) shards the optimizer state over the data-parallel group, stage 2 also the
gradients, stage 3 (FSDP) also the weights. Non-expert weights are split by tensor (``t``) and
pipeline (``p``) parallelism and sharded over the ``d*c`` data- and context-parallel ranks;
routed experts are split by expert parallelism ``e`` (expert tensor parallelism 1, as in
Megatron-Core MoE recipes) and sharded over the ``t*c*d/e`` ranks that hold the same experts.

Activations follow Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models" (arXiv:2205.05198), Sec. 4, with sequence parallelism (every term divided by
``t``) and context parallelism (the sequence divided by ``c``), generalised to GQA/MLA, gated MLPs
and MoE, without dropout. With fused (flash) attention no ``s^2`` score matrices are kept; for GPT
(MHA, plain 4h MLP) the per-layer bytes are then ``32*s*b*h/t`` (Korthikanti's ``34*s*b*h/t`` adds
two 1-byte dropout masks). Unfused attention (Megatron-LM 2021) also keeps the scores, softmax
output and dropout mask, ``5*a*s^2*b/t``, which selective recomputation removes. In-flight
micro-batches follow the same paper: the first pipeline stage holds ``p`` micro-batches under
1F1B, times ``1 + (p-1)/(p*v)`` when interleaved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from factoryplan.catalog.models import DELTA_RULE_CHUNK
from factoryplan.perf.flops import ModelShape

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
FloatOrArray = float | npt.NDArray[Any]  # any numeric array (degrees are integer arrays)

BYTES_WEIGHTS = 2.0  # 16-bit working copy of the weights
BYTES_GRADIENTS = 2.0  # 16-bit gradients (Megatron-Core DDP default grad buffer)
BYTES_OPTIMIZER = 12.0  # fp32 master weights + Adam m and v
BYTES_FP8_WEIGHT_CACHE = 1.0  # FP8 copy of the weights kept across micro-batches
RECOMPUTE = ("none", "selective", "full")


@dataclass(frozen=True)
class ModelStates:
    """Bytes per GPU of weights, gradients and optimizer states (arrays over configurations)."""

    weights: Array
    gradients: Array
    optimizer: Array


def model_state_bytes(params: FloatOrArray, shard: FloatOrArray, zero: IntArray, fp8: bool) -> ModelStates:
    """Weights, gradients and optimizer bytes of ``params`` parameters held by one GPU before
    sharding, with ZeRO stage ``zero`` sharding over ``shard`` ranks (see the module docstring)."""
    p = np.asarray(params, dtype=np.float64)
    n = np.maximum(np.asarray(shard, dtype=np.float64), 1.0)
    w_bytes = BYTES_WEIGHTS + (BYTES_FP8_WEIGHT_CACHE if fp8 else 0.0)
    return ModelStates(
        weights=p * w_bytes / np.where(zero >= 3, n, 1.0),
        gradients=p * BYTES_GRADIENTS / np.where(zero >= 2, n, 1.0),
        optimizer=p * BYTES_OPTIMIZER / np.where(zero >= 1, n, 1.0),
    )


def attention_activation_bytes(shape: ModelShape, fp8: bool = False) -> float:
    """Bytes per token kept by one attention block (before dividing by ``t``): the QKV input
    ``2h``, Q, K and V for the attention backward, the attention output ``2*n_q*d_v``, the fp32
    softmax statistics (4 bytes per head) and the two norm inputs ``4h``. FP8 training keeps the
    QKV input as its 1-byte FP8 cast and adds a 1-byte copy of the attention output (the output
    projection's FP8 input; the attention backward still needs the 16-bit one). DeepSeek sparse
    attention adds its lightning indexer's queries and key ``2*(H_I + 1)*d_I``, its fp32 head weights
    ``4*H_I`` and the ``k_top`` int32 indices of the selected keys ``4*k_top``, which the sparse
    attention backward reads (DeepSeek-V3.2: 25,088 bytes)."""
    h, nq = shape.hidden, shape.heads
    qkv = nq * shape.qk_head_dim + shape.kv_heads * (shape.qk_head_dim + shape.v_head_dim)
    gemm_in = (1.0 * h + 1.0 * nq * shape.v_head_dim) if fp8 else 2.0 * h
    indexer = 2.0 * (shape.index_heads + 1) * shape.index_head_dim + 4.0 * shape.index_heads + 4.0 * shape.sparse_top_k
    return gemm_in + 2.0 * qkv + 2.0 * nq * shape.v_head_dim + 4.0 * nq + 4.0 * h + indexer  # indexer: 0 if dense


def linear_attention_activation_bytes(shape: ModelShape, fp8: bool = False) -> float:
    """Bytes per token kept by one Gated DeltaNet block (before dividing by ``t``), by the same
    accounting as :func:`attention_activation_bytes`, with ``w_k = H_k*d_k`` and ``w_v = H_v*d_v``:
    the input projection's input ``2h``, its q/k/v and gate outputs ``2*(2*w_k + 2*w_v)``, the
    convolution's q/k/v outputs ``2*(2*w_k + w_v)``, the fp32 decay and beta per value head
    ``8*H_v``, the chunk's fp32 WY matrix ``4*C*H_v`` (FLA's chunked delta rule, ``C = 64``), the
    core output and the gated norm's output ``4*w_v`` and the two norm inputs ``4h``. FP8 keeps
    the input projection's input as its 1-byte cast (``h`` for ``2h``) and adds a 1-byte copy of
    the output projection's input (``w_v``). 0 without linear attention."""
    if shape.linear_layers == 0:
        return 0.0
    h, wk, wv, hv = shape.hidden, shape.linear_key_width, shape.linear_value_width, shape.linear_value_heads
    gemm_in = (1.0 * h + 1.0 * wv) if fp8 else 2.0 * h
    qkvz = 2.0 * (2 * wk + 2 * wv) + 2.0 * (2 * wk + wv)
    return gemm_in + qkvz + 8.0 * hv + 4.0 * DELTA_RULE_CHUNK * hv + 4.0 * wv + 4.0 * h


def mixer_activation_bytes(shape: ModelShape, fp8: bool = False) -> float:
    """Token-mixer bytes per token of an average layer: softmax-attention layers keep
    :func:`attention_activation_bytes`, linear-attention layers :func:`linear_attention_activation_bytes`."""
    if shape.linear_layers == 0:
        return attention_activation_bytes(shape, fp8)
    softmax = shape.attention_layers * attention_activation_bytes(shape, fp8)
    return (softmax + shape.linear_layers * linear_attention_activation_bytes(shape, fp8)) / shape.layers


def mlp_activation_bytes(shape: ModelShape, moe: bool, selective: bool, fp8: bool = False) -> float:
    """Bytes per token kept by one MLP block (before dividing by ``t``).

    Dense: input ``2h`` plus, gated, gate and up outputs ``4f`` and the activation output ``2f``
    (plain: ``2f + 2f``). MoE: router logits (fp32) ``4E``, the ``k`` dispatched copies ``2kh``, each
    routed expert's gated intermediates ``k*6f_e``, the expert outputs ``2kh``, and the shared
    experts like a dense MLP. Selective recomputation drops the activation outputs (``2f`` per MLP)
    and recomputes them in the backward pass. FP8 keeps the inputs of the two products (MLP input
    and activation output) as 1-byte casts.
    """
    h = shape.hidden
    width = 1.0 if fp8 else 2.0
    act_out = 0.0 if selective else width

    def inner(f: int) -> float:
        return (4.0 if shape.gated else 2.0) * f + act_out * f

    if not moe:
        return width * h + inner(shape.ffn)
    routed = 4.0 * shape.experts + (width + 2.0) * shape.top_k * h + shape.top_k * inner(shape.expert_ffn)
    shared = width * h + inner(shape.shared_ffn) if shape.shared_ffn else 0.0
    return routed + shared


def layer_activation_bytes(
    shape: ModelShape, tokens: FloatOrArray, tp: FloatOrArray, recompute: IntArray, moe: bool, fp8: bool = False,
    seq_len: float = 0.0,
) -> Array:
    """Activation bytes one layer keeps for one micro-batch of ``tokens`` tokens per context-parallel
    rank: ``tokens/t * (attention + MLP)``, attention averaged over the layer kinds of a hybrid
    model (:func:`mixer_activation_bytes`); full recomputation keeps only the layer input ``2h``.
    ``seq_len > 0`` marks unfused attention, which also keeps ``5*n_q*seq_len`` bytes per token
    (scores, softmax, dropout mask) in its softmax-attention layers unless recomputed."""
    m = np.asarray(tokens, dtype=np.float64) / np.asarray(tp, dtype=np.float64)
    attn = mixer_activation_bytes(shape, fp8)
    scores = 5.0 * shape.heads * seq_len * (shape.attention_layers / shape.layers if shape.linear_layers else 1.0)
    none = m * (attn + scores + mlp_activation_bytes(shape, moe, selective=False, fp8=fp8))
    sel = m * (attn + mlp_activation_bytes(shape, moe, selective=True, fp8=fp8))
    full = m * 2.0 * shape.hidden
    return np.asarray(np.where(recompute == 0, none, np.where(recompute == 1, sel, full)), dtype=np.float64)


def inflight_microbatches(pp: IntArray, vpp: IntArray, n_micro: FloatOrArray) -> Array:
    """Micro-batches whose activations the first pipeline stage holds at once: 1 without pipeline
    parallelism, ``min(p, m)`` under 1F1B, times ``1 + (p-1)/(p*v)`` when interleaved (Korthikanti
    et al. 2022, Sec. 4.2.3)."""
    p = pp.astype(np.float64)
    v = vpp.astype(np.float64)
    base = np.minimum(p, np.asarray(n_micro, dtype=np.float64))
    factor = np.where(v > 1, 1.0 + (p - 1.0) / (p * v), 1.0)
    return np.asarray(np.where(p > 1, base * factor, 1.0), dtype=np.float64)


def logits_bytes(tokens: FloatOrArray, vocab: int, tp: FloatOrArray) -> Array:
    """The LM head's fp32 logits and their gradient on the last stage: ``8 * tokens * V / t``."""
    return np.asarray(8.0 * np.asarray(tokens, dtype=np.float64) * vocab / np.asarray(tp, dtype=np.float64))


def usable_bytes(hbm_bytes: float, reserve_fraction: float, reserve_bytes: float) -> float:
    """HBM left for the model after the CUDA context, communication buffers and allocator
    fragmentation: ``hbm * (1 - reserve_fraction) - reserve_bytes``."""
    return hbm_bytes * (1.0 - reserve_fraction) - reserve_bytes


__all__ = [
    "BYTES_GRADIENTS",
    "BYTES_OPTIMIZER",
    "BYTES_WEIGHTS",
    "RECOMPUTE",
    "ModelStates",
    "attention_activation_bytes",
    "inflight_microbatches",
    "layer_activation_bytes",
    "linear_attention_activation_bytes",
    "logits_bytes",
    "mixer_activation_bytes",
    "mlp_activation_bytes",
    "model_state_bytes",
    "usable_bytes",
]
