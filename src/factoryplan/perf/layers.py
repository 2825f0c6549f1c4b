"""Time of one transformer layer for one micro-batch on one GPU, forward and backward, vectorized.

Per GPU a micro-batch has ``m = micro_batch * S / cp`` tokens; tensor parallelism ``t`` splits
the weight matrices (and, with sequence parallelism, the token dimension of norms and residuals).
A matrix product of ``M x K`` by ``K x N`` costs ``2*M*K*N`` FLOPs and takes

``max(2MKN / (peak * eta * q(M) q(K) q(N)),  bytes / HBM bandwidth)``, ``q(x) = x / (x + x_half)``

where ``eta`` is the calibrated efficiency of large products at the precision and ``q`` the loss
to tile and wave quantisation when a dimension is small (``x_half`` calibrated); the second term
is the roofline on the part's FLOP:byte ratio, reached by small-batch expert products. Backward
products (data and weight gradients) cost twice the forward.

Fused attention (FlashAttention; Megatron-Core) runs in 16 bit at a calibrated efficiency, causal
FLOPs only, its backward at 2.5x the forward (FlashAttention-2, Dao 2023, Sec. 3.1: five matrix
products against two). Unfused attention (Megatron-LM 2021) computes the full ``S x S`` scores
as batched products of depth ``d`` and moves them through HBM: written by ``QK^T`` (2 bytes),
read and written by the fused scale-mask-softmax (4), read and written by dropout with its mask (5),
read by the product with ``V`` (2): ``13 * n_q * S`` bytes per token forward, twice that backward.
Other memory-bound kernels move the bytes listed in :func:`_elementwise_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from factoryplan.perf import comm
from factoryplan.perf.flops import ModelShape, attention_flops_per_token

if TYPE_CHECKING:
    from factoryplan.perf.training import Configs, Efficiencies, Hardware, Job

Array = npt.NDArray[np.float64]
Gemm = tuple[Array | float, Array | float, Array | float, Array | float]  # M, K, N, count

ATTENTION_BACKWARD_RATIO = 2.5
UNFUSED_SCORE_BYTES = 13.0  # per score element, forward (see the module docstring)
INPUT_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5}


@dataclass(frozen=True)
class LayerTimes:
    """Seconds per micro-batch on one GPU, forward and backward (recomputation included in the
    backward), for a dense layer, an MoE layer and the LM head; ``parts`` splits an average layer."""

    dense_fwd: Array
    dense_bwd: Array
    moe_fwd: Array
    moe_bwd: Array
    head_fwd: Array
    head_bwd: Array
    parts: dict[str, Array]


def gemm_time(g: Gemm, peak: float, eta: float, half: float, bytes_in: float, hbm_bytes_s: float) -> Array:
    """Time of ``count`` products ``M x K x N`` (see the module docstring); 0 for an empty one."""
    m, k, n, count = (np.asarray(x, dtype=np.float64) for x in g)
    q = m / (m + half) * k / (k + half) * n / (n + half)
    flops = 2.0 * m * k * n * count
    compute = flops / (peak * eta * np.where(q > 0, q, 1.0))
    traffic = count * ((m * k + k * n) * bytes_in + 2.0 * m * n) / hbm_bytes_s
    return np.asarray(np.where(flops > 0, np.maximum(compute, traffic), 0.0), dtype=np.float64)


def _gemms(shape: ModelShape, m: Array, t: Array, ep: Array) -> dict[str, list[Gemm]]:
    """The matrix products of each block for ``m`` tokens per GPU."""
    h, mult = float(shape.hidden), (2.0 if shape.gated else 1.0)
    attn_in = (shape.mean_attn_params - shape.mean_attn_out_params) / h  # hybrids: mean of softmax and linear layers
    out: dict[str, list[Gemm]] = {
        "attention": [(m, h, attn_in / t, 1.0), (m, shape.mean_attn_out_params / h / t, h, 1.0)],
        "dense_mlp": [(m, h, mult * shape.ffn / t, 1.0), (m, shape.ffn / t, h, 1.0)],
        "moe": [],
    }
    if shape.is_moe:
        local = shape.experts / ep
        per_expert = m / t * shape.top_k / local  # tokens each local expert receives (balanced routing)
        out["moe"] = [
            (m / t, h, float(shape.experts), 1.0),
            (per_expert, h, mult * shape.expert_ffn, local),
            (per_expert, float(shape.expert_ffn), h, local),
        ]
        if shape.shared_ffn:
            out["moe"] += [(m, h, mult * shape.shared_ffn / t, 1.0), (m, shape.shared_ffn / t, h, 1.0)]
    return out


def _cast_bytes(gemms: list[Gemm]) -> tuple[Array, Array]:
    """FP8 conversion traffic of a block's products. Transformer Engine fuses the casts into the
    kernels that produce the inputs (norms, activation functions), so the forward writes one
    extra byte per input element (its FP8 copy); the backward casts each output gradient from
    16 bit (read 2, write 1 byte) and writes the FP8 transpose of each input for the weight
    gradient (1 byte)."""
    fwd: Array = np.zeros(1)
    bwd: Array = np.zeros(1)
    for m, k, n, count in gemms:
        mk = np.asarray(m) * np.asarray(k) * np.asarray(count)
        fwd = fwd + mk
        bwd = bwd + 3.0 * np.asarray(m) * np.asarray(n) * np.asarray(count) + mk
    return fwd, bwd


def _elementwise_bytes(shape: ModelShape, m: Array, t: Array) -> dict[str, Array]:
    """Forward HBM traffic of memory-bound kernels per layer and micro-batch on one GPU (16-bit).

    Shared by every layer, on ``m/t`` tokens (sequence parallel): two norms (read and write ``h``,
    ``8h`` bytes) and two residual adds (``12h``); rotary embedding on the local query and key heads.
    Dense MLP activation: gated reads two and writes one ``f/t`` vector (``6f/t``), plain ``4f/t``.
    MoE on ``m/t`` tokens: router softmax and top-k on ``E`` fp32 logits (``12E``), permutation and
    un-permutation of ``k`` copies (``4(1+k)h``), the experts' activations (``6k*f_e``) and the shared
    experts' (``6 f_s / t`` per token of ``m``). Backward moves twice these bytes.
    """
    h = float(shape.hidden)
    act = 6.0 if shape.gated else 4.0
    rope = 4.0 * (shape.heads + shape.kv_heads) * shape.qk_head_dim
    common = m / t * (20.0 * h + rope)
    routed = m / t * (12.0 * shape.experts + 4.0 * (1.0 + shape.top_k) * h)
    moe_act = m / t * shape.top_k * act * shape.expert_ffn + m * act * shape.shared_ffn / t
    return {
        "dense": common + m * act * shape.ffn / t,
        "moe": common + routed + moe_act,
        "dense_act": m * act * shape.ffn / t,
        "moe_act": moe_act,
    }


def _attention_fwd(shape: ModelShape, hw: Hardware, eff: Efficiencies, job: Job, m: Array, t: Array) -> Array:
    """Forward seconds of the attention core per layer (average over full, sliding and linear
    layers; the chunked delta rule of linear layers runs at the fused-attention efficiency). Sparse
    attention and its lightning indexer have fused kernels only, whatever ``fused_attention``."""
    if eff.fused_attention >= 0.5 or shape.sparse_top_k:
        per_token = float(attention_flops_per_token(shape, float(job.seq_len))) / shape.layers
        return m / t * per_token / (hw.bf16_flops * eff.attention_efficiency)
    d = float(shape.qk_head_dim)
    q = d / (d + eff.gemm_half_dim)
    flops = m / t * 2.0 * shape.heads * (shape.qk_head_dim + shape.v_head_dim) * job.seq_len
    traffic = m / t * UNFUSED_SCORE_BYTES * shape.heads * job.seq_len
    scores = flops / (hw.bf16_flops * eff.gemm_efficiency * q)
    scores = scores + traffic / (hw.hbm_bytes_s * eff.memory_bound_efficiency)
    if shape.linear_layers == 0:
        return scores
    linear = m / t * shape.linear_layers * shape.linear_attn_flops / (hw.bf16_flops * eff.attention_efficiency)
    return (shape.attention_layers * scores + linear) / shape.layers


def layer_times(
    shape: ModelShape, hw: Hardware, eff: Efficiencies, links: comm.Links, job: Job, cfg: Configs
) -> LayerTimes:
    """Forward and backward seconds of each kind of layer for every configuration."""
    t = cfg.tp.astype(np.float64)
    m = cfg.mb * job.seq_len / cfg.cp.astype(np.float64)
    fp8 = job.precision in ("fp8", "fp4")
    peak, hbm = hw.peak(job.precision), hw.hbm_bytes_s
    bytes_in = INPUT_BYTES.get(job.precision, 2.0)
    mem_bw = hbm * eff.memory_bound_efficiency
    blocks = _gemms(shape, m, t, cfg.ep.astype(np.float64))

    def run(gemms: list[Gemm]) -> Array:
        out: Array = np.zeros_like(m)
        for g in gemms:
            out = out + gemm_time(g, peak, eff.gemm_efficiency, eff.gemm_half_dim, bytes_in, hbm)
        return out

    def casts(gemms: list[Gemm]) -> tuple[Array, Array]:
        if not fp8:
            return np.zeros_like(m), np.zeros_like(m)
        f, b = _cast_bytes(gemms)
        return f / mem_bw, b / mem_bw

    gemm = {name: run(g) for name, g in blocks.items()}
    cast = {name: casts(g) for name, g in blocks.items()}
    attn_f = _attention_fwd(shape, hw, eff, job, m, t)
    elem = {k: v / mem_bw for k, v in _elementwise_bytes(shape, m, t).items()}
    comms = _comm_times(shape, eff, links, cfg, m, t)
    result: dict[str, tuple[Array, Array, dict[str, Array]]] = {}
    for kind, mlp in (("dense", "dense_mlp"), ("moe", "moe")):
        g = gemm["attention"] + gemm[mlp]
        cast_f, cast_b = cast["attention"][0] + cast[mlp][0], cast["attention"][1] + cast[mlp][1]
        pieces = {"gemm": g, "attention": attn_f, "elementwise": elem[kind], "activation": elem[f"{kind}_act"],
                  "cast_fwd": cast_f, "cast_bwd": cast_b}
        result[kind] = _assemble(eff, cfg, pieces, comms[kind])
    head = gemm_time((m, float(shape.hidden), shape.vocab / t, 1.0), hw.bf16_flops, eff.gemm_efficiency,
                     eff.gemm_half_dim, 2.0, hbm)
    logits = 8.0 * m * shape.vocab / t / mem_bw  # fp32 logits written and read by the softmax
    share = shape.moe_layers / shape.layers
    parts = {k: (1.0 - share) * result["dense"][2][k] + share * result["moe"][2][k] for k in result["dense"][2]}
    return LayerTimes(
        dense_fwd=result["dense"][0], dense_bwd=result["dense"][1], moe_fwd=result["moe"][0],
        moe_bwd=result["moe"][1], head_fwd=head + logits, head_bwd=2.0 * head + logits, parts=parts,
    )


def _assemble(
    eff: Efficiencies, cfg: Configs, p: dict[str, Array], comms: dict[str, Array]
) -> tuple[Array, Array, dict[str, Array]]:
    """Forward and backward of one kind of layer from its pieces, with exposed communication."""
    ovl = eff.overlap_efficiency * eff.comm_overlap
    gemm, attn_f, elem = p["gemm"], p["attention"], p["elementwise"]
    attn_b = ATTENTION_BACKWARD_RATIO * attn_f
    tp_f = comm.exposed(comms["tp"], gemm, ovl)
    tp_b = comm.exposed(comms["tp"], 2.0 * gemm, ovl)
    cp_f = comm.exposed(comms["cp"], attn_f, eff.overlap_efficiency)
    cp_b = comm.exposed(2.0 * comms["cp"], attn_b, eff.overlap_efficiency)
    fwd = gemm + attn_f + elem + p["cast_fwd"] + tp_f + cp_f + comms["ep"]
    base_bwd = 2.0 * gemm + attn_b + 2.0 * elem + p["cast_bwd"] + tp_b + cp_b + comms["ep"]
    recompute = np.select([cfg.recompute == 2, cfg.recompute == 1], [fwd, attn_f + p["activation"]], 0.0)
    parts = {
        "gemm": 3.0 * gemm,
        "attention": attn_f + attn_b,
        "memory_bound": 3.0 * elem + p["cast_fwd"] + p["cast_bwd"],
        "tp_comm": tp_f + tp_b,
        "cp_comm": cp_f + cp_b,
        "ep_comm": 2.0 * comms["ep"],
        "recompute": recompute,
    }
    return fwd, base_bwd + recompute, parts


def _comm_times(
    shape: ModelShape, eff: Efficiencies, links: comm.Links, cfg: Configs, m: Array, t: Array
) -> dict[str, dict[str, Array]]:
    """Forward communication of one layer: TP all-gathers and reduce-scatters of ``m*h`` 16-bit
    activations (4 per dense layer, 2 for attention plus 2 for shared experts in an MoE layer); the
    CP ring of the local K and V (``(c-1)`` chunks of ``m * kv_width / t``, twice that backward); the
    EP dispatch and combine all-to-alls of ``k`` copies of each local token."""
    one = comm.ring_time(2.0 * m * shape.hidden, t, 1.0, links)
    kv_chunk = 2.0 * m * shape.kv_width / t
    cp = comm.ring_time(cfg.cp * kv_chunk, cfg.cp, t, links)
    a2a = comm.alltoall_time(2.0 * m / t * shape.top_k * shape.hidden, cfg.ep, 1.0, links)
    moe_tp = (2.0 + (2.0 if shape.shared_ffn else 0.0)) * one
    zero = np.zeros_like(m)
    return {
        "dense": {"tp": 4.0 * one, "cp": cp, "ep": zero},
        "moe": {"tp": moe_tp, "cp": cp, "ep": 2.0 * a2a if shape.is_moe else zero},
    }


__all__ = ["ATTENTION_BACKWARD_RATIO", "LayerTimes", "gemm_time", "layer_times"]
