"""The inference step-time model: one forward iteration of an LLM replica, vectorized.

An iteration of an in-flight-batching engine processes ``B`` decoding sequences (one new token
each, attending to ``ctx`` cached tokens) and ``Np`` prompt tokens of new requests (prefill) in
one forward pass. Its time on one GPU is the sum over layers of

* **GEMMs** (attention projections, dense MLPs, shared experts, the LM head), each a smooth
  roofline of its compute ``2·M·P / (F·e(M))`` and its weight read ``P·b_w / (BW·e_bw)`` with
  ``M`` the tokens in the pass (Williams, Waterman and Patterson 2009, "Roofline"). The compute
  efficiency ``e(M) = e_max·M/(M + m0)`` ramps with the tokens per step (tile and wave
  quantization); where the crossing lies depends on the part's FLOP:byte ratio ``F/BW``.
* **MoE experts**: ``T`` tokens routed to ``k`` of ``E`` experts touch
  ``U = E·(1 - (1 - k/E)^T)`` distinct experts (uniform routing), whose weights are read once per
  pass; the grouped GEMM runs at ``M = T·k/U`` tokens per expert.
* **attention**: decode reads each sequence's KV cache (GQA heads split across tensor-parallel
  ranks up to the number of KV heads; MLA's compressed latent is replicated, DeepSeek-V2 paper
  Sec. 2.1) and does ``2·(d_qk + d_v)`` FLOPs per head and cached token; causal prefill does
  ``2·(d_qk + d_v)·S²/2`` per head (FlashAttention, Dao 2023). Sliding-window layers cap the
  context at the window.
* **linear attention** (Gated DeltaNet layers of hybrid models, Yang et al. 2024,
  arXiv:2412.06464): no KV cache; each sequence keeps a fixed recurrent and convolution state per
  layer, which a decode step reads and writes once (memory-bound, at the KV-cache efficiency) with
  a few FLOPs per state element; a prompt runs the chunked delta rule, FLOPs linear in its length
  (see :func:`shape_of`). Tensor parallelism splits the heads and so the state. Mamba-2 mixers
  (Nemotron-H, Granite 4.0-H) are the same kind of layer with their own parameter and FLOP counts
  (:func:`~factoryplan.catalog.models.linear_attention_flops`).
* **DeepSeek sparse attention** (DeepSeek-V3.2; DeepSeek-AI 2025, "DeepSeek-V3.2-Exp: Boosting
  Long-Context Efficiency with DeepSeek Sparse Attention", Sec. 2): MLA attends to the ``k_top``
  cached latents a lightning indexer picks, so decode reads ``min(ctx, k_top)`` latents per
  sequence and layer; a prompt's attention runs in MLA's absorbed (MQA) mode over
  ``Σ_pos min(pos, k_top)`` pairs at the decode FLOPs per pair (Sec. 2.1) or, where cheaper
  (prompts under ~13k tokens for DeepSeek-V3.2), as masked dense MHA over ``S²/2`` pairs (the
  report's short-sequence prefill, Sec. 3). The indexer reads every cached FP8 indexer key and
  scores it at ``2·H_I·d_I`` FLOPs on FP8 tensor cores, for each decoded token and each causal
  pair of a prompt (:func:`_indexer`).
* **collectives** over the scale-up domain: two all-reduces per layer under tensor parallelism
  (``α + 2(t-1)/t · bytes / (BW_link·e_link)``, the bandwidth-optimal bound of Patarasuk and
  Yuan 2009), and an all-to-all dispatch and combine per MoE layer under attention data
  parallelism. Beyond the scale-up domain the NICs carry the traffic; an expert all-to-all that
  spans domains reaches the peers in the GPU's own domain over NVLink while the rest goes through
  its NIC, the two in parallel.
* **engine overheads**: a fixed time per iteration (scheduling, launch), per layer (kernel gaps),
  per MoE layer (routing, token permutation, the experts' launches) and per running sequence
  (request bookkeeping, sampling), from the serving engine's calibrated profile. An iteration
  that carries prompt tokens runs outside the CUDA graphs captured for decode batches, so its
  kernels are launched one by one: an extra cost per layer. Where mixer and feed-forward are
  separate blocks (Nemotron-H), the per-layer costs and the TP all-reduces count blocks in pairs.

Pipeline parallelism splits the layers into ``pp`` stages: one token passes every stage in turn
(latency), while ``pp`` micro-batches keep the stages busy (throughput; see ``serving``).

Inputs are plain floats or numpy arrays (broadcast together), in internal units (s, bytes,
FLOP/s). Calibrated constants come from catalog entries of kind ``calibrations`` with
``engine: inference`` (see :func:`constants_from_catalog`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from factoryplan.catalog.models import (
    attention_layers,
    attention_params_total,
    dense_layers,
    dense_mlp_params,
    expert_params,
    ffn_blocks,
    indexer_flops_per_key,
    indexer_key_bytes,
    indexer_params_per_layer,
    kv_elements_per_token_per_layer,
    linear_attention_flops,
    linear_attention_layers,
    linear_state_bytes_per_layer,
    moe_layers,
    norm_params_per_layer,
    router_params,
    shared_expert_params,
)
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.perf.inference_constants import BACKENDS as BACKENDS  # re-exported: callers import them here
from factoryplan.perf.inference_constants import ENGINE_FIELDS as ENGINE_FIELDS
from factoryplan.perf.inference_constants import GLOBAL_FIELDS as GLOBAL_FIELDS
from factoryplan.perf.inference_constants import YAML_NAMES as YAML_NAMES
from factoryplan.perf.inference_constants import Constants as Constants
from factoryplan.perf.inference_constants import constants_from_catalog as constants_from_catalog
from factoryplan.perf.inference_constants import constants_from_values as constants_from_values

if TYPE_CHECKING:
    from factoryplan.catalog.schema import Accelerator, ModelArch, System

Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
FloatOrArray = float | Array

PRECISIONS = ("bf16", "fp8", "fp4", "int4")
KV_PRECISIONS = ("bf16", "fp8", "fp4")
ACTIVATION_PRECISIONS = ("bf16", "fp8", "fp4")
_WIDTH = {"fp4": 0, "int4": 0, "fp8": 1, "bf16": 2}
# Bytes per weight, block scales included: NVFP4 one FP8 scale per 16 values, MXFP4 one E8M0 per 32,
# INT4 (AWQ/GPTQ) one BF16 scale per group of 128; FP8 per-tensor or 128x128-block scales are negligible.
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 16.0, "int4": 0.5 + 2.0 / 128.0}
# NVFP4 KV cache: 4-bit values and an FP8 (E4M3) scale per 16, dequantized to FP8 inside the attention
# kernel; quantizing needs Blackwell's FP4 conversion instructions (FlashInfer nvfp4_kv_quantize: SM100+)
KV_BYTES = {"bf16": 2.0, "fp8": 1.0, "fp4": 0.5 + 1.0 / 16.0}
ACTIVATION_BYTES = 2.0  # activations and collectives travel in BF16


@dataclass(frozen=True)
class ModelShape:
    """What the step-time model needs of an architecture, as plain numbers (see ``shape_of``)."""

    name: str
    layers: int
    hidden: float
    heads: float
    kv_split: float  # how many ways the KV cache can be split across TP ranks (KV heads; 1 for MLA)
    dense_layers: int
    moe_layers: int
    attn_params: float  # attention projections + norms of one layer (mean over softmax and linear layers)
    mlp_params: float  # dense MLP of one dense layer
    shared_params: float  # shared experts + router of one MoE layer
    expert_params: float  # one routed expert
    experts: float
    active: float
    vocab_params: float  # V*h: one embedding table or LM head
    tied: bool
    kv_elems: float  # cached elements per token per layer
    full_layers: int  # layers attending to the whole context
    window: float  # sliding window (tokens) of the softmax layers that are not full; 0 = none
    decode_attn_flops: float  # FLOPs per head per cached token in decode
    prefill_attn_flops: float  # FLOPs per head per (query, key) pair in prefill
    mla: bool
    linear_layers: int = 0  # linear-attention (Gated DeltaNet) layers: no KV cache
    state_bytes: float = 0.0  # fixed state of one sequence in one linear layer (recurrent + convolution)
    state_split: float = 1.0  # how many ways TP can split that state (value heads)
    linear_decode_flops: float = 0.0  # FLOPs of one decoded token in one linear layer
    linear_prefill_flops: float = 0.0  # FLOPs per prompt token in one linear layer (chunked delta rule)
    top_k: float = 0.0  # sparse attention: cached latents a query attends to in a layer (0: the whole context)
    index_key_bytes: float = 0.0  # sparse attention: the FP8 indexer key cached per token and layer
    index_flops: float = 0.0  # sparse attention: indexer FLOPs per (query, cached key) pair, 2·H_I·d_I
    indexer_params: float = 0.0  # sparse attention: indexer weights of one layer, replicated on every TP rank
    # (mixer blocks + feed-forward blocks) / 2, the layers of a transformer with that many blocks: kernel
    # launches and TP all-reduces go with the blocks (Nemotron-H keeps mixer and feed-forward apart); 0: layers
    block_layers: float = 0.0


def shape_of(arch: ModelArch) -> ModelShape:
    """Derive the :class:`ModelShape` of an architecture from the catalog's parameter formulas.

    Decode attention FLOPs per head and cached token: ``4·d`` for GQA/MHA (``q·k`` and ``p·v``);
    ``2·(r_kv + d_r) + 2·r_kv`` for MLA with absorbed projections (attention runs in the latent
    space). Prefill: ``2·(d_qk + d_v)`` per (query, key) pair, ``d_qk = d_n + d_r`` for MLA.
    ``attn_params`` is the mean over the layers of a hybrid model (softmax and linear attention
    layers differ), so that ``L·attn_params`` is every layer's projections.

    Linear-attention layers: :func:`~factoryplan.catalog.models.linear_attention_flops` per token
    (decode and chunked prefill) and ``linear_state_bytes_per_layer`` per sequence. Sparse attention:
    ``index_topk``, the indexer key of ``indexer_key_bytes`` (132 bytes for DeepSeek-V3.2), its
    ``2·H_I·d_I`` FLOPs per scored key and its weights (part of ``attn_params`` too).
    """
    sliding = arch.sliding_layers if arch.sliding_window > 0 else 0
    if arch.mla is not None:
        m = arch.mla
        decode = 2.0 * (m.kv_lora_rank + m.qk_rope_head_dim) + 2.0 * m.kv_lora_rank
        prefill = 2.0 * (m.qk_nope_head_dim + m.qk_rope_head_dim) + 2.0 * m.v_head_dim
        kv_split = 1.0
    else:
        decode = prefill = 4.0 * arch.head_dim
        kv_split = float(arch.kv_heads)
    moe, la = arch.moe, arch.linear_attention
    n_linear = linear_attention_layers(arch)
    norms = attention_layers(arch) * norm_params_per_layer(arch) + n_linear * norm_params_per_layer(arch, linear=True)
    lin_dec, lin_pre = linear_attention_flops(arch)
    return ModelShape(
        name=arch.id,
        layers=arch.layers,
        hidden=float(arch.hidden),
        heads=float(arch.heads),
        kv_split=kv_split,
        dense_layers=dense_layers(arch),
        moe_layers=moe_layers(arch),
        attn_params=float(attention_params_total(arch) + norms) / arch.layers,
        mlp_params=float(dense_mlp_params(arch)),
        shared_params=float(shared_expert_params(arch) + router_params(arch)),
        expert_params=float(expert_params(arch)),
        experts=float(moe.experts) if moe else 0.0,
        active=float(moe.active) if moe else 0.0,
        vocab_params=float(arch.vocab * arch.hidden),
        tied=arch.tied_embeddings,
        kv_elems=float(kv_elements_per_token_per_layer(arch)),
        full_layers=attention_layers(arch) - sliding,
        window=float(arch.sliding_window if sliding else 0),
        decode_attn_flops=decode,
        prefill_attn_flops=prefill,
        mla=arch.mla is not None,
        linear_layers=n_linear,
        state_bytes=linear_state_bytes_per_layer(arch),
        state_split=float(la.value_heads) if la is not None else 1.0,
        linear_decode_flops=lin_dec,
        linear_prefill_flops=lin_pre,
        top_k=float(arch.sparse_attention.top_k) if arch.sparse_attention is not None else 0.0,
        index_key_bytes=indexer_key_bytes(arch),
        index_flops=indexer_flops_per_key(arch.sparse_attention),
        indexer_params=float(indexer_params_per_layer(arch)),
        block_layers=(arch.layers + ffn_blocks(arch)) / 2.0,
    )


@dataclass(frozen=True)
class Hardware:
    """One GPU and its scale-up domain, in internal units (fields may be arrays of several parts)."""

    name: str
    bf16_flops: FloatOrArray
    fp8_flops: FloatOrArray  # 0 where the part has no FP8 tensor cores
    fp4_flops: FloatOrArray  # 0 where the part has no FP4 tensor cores
    hbm_bytes: FloatOrArray
    hbm_bytes_s: FloatOrArray
    link_bytes_s: FloatOrArray  # scale-up bandwidth per GPU, one direction
    nic_bytes_s: FloatOrArray  # scale-out bandwidth per GPU, one direction
    domain: FloatOrArray  # GPUs in one scale-up (NVLink) domain
    system_gpus: FloatOrArray
    tdp_w: FloatOrArray
    system_w: FloatOrArray


def hardware_of(acc: Accelerator, system: System) -> Hardware:
    """The :class:`Hardware` of an accelerator in a system (NVLink domain, NICs, power)."""
    return Hardware(
        name=f"{acc.id}/{system.id}",
        bf16_flops=acc.bf16_dense_flops,
        fp8_flops=acc.fp8_dense_flops or 0.0,
        fp4_flops=acc.fp4_dense_flops or 0.0,
        hbm_bytes=acc.hbm_bytes,
        hbm_bytes_s=acc.hbm_bytes_s,
        link_bytes_s=acc.scaleup_bidir_bytes_s / 2.0,
        nic_bytes_s=system.nic_bit_s * system.nics_per_gpu / 8.0,
        domain=float(system.scaleup_domain_gpus),
        system_gpus=float(system.gpus),
        tdp_w=acc.tdp_w,
        system_w=system.power_w,
    )


def splits_evenly(
    s: ModelShape, tp: FloatOrArray, ep: FloatOrArray = 1.0, pp: FloatOrArray = 1.0
) -> BoolArray:
    """Whether a layout splits the model as serving engines require (vLLM, SGLang, TensorRT-LLM):
    ``tp`` divides the attention heads (and a linear-attention layer's value heads); GQA key/value
    heads are split over ``tp`` or replicated in whole copies (``kv % tp == 0`` or ``tp % kv == 0``;
    MLA's latent is replicated whatever ``tp``); ``ep`` divides the routed experts (1 for a dense
    model); ``pp`` stages hold at least one layer each."""
    tp_a, ep_a, pp_a = (np.asarray(x, dtype=float) for x in (tp, ep, pp))
    kv = s.kv_split
    ok = (np.mod(s.heads, tp_a) == 0) & ((np.mod(kv, tp_a) == 0) | (np.mod(tp_a, kv) == 0))
    if s.linear_layers:
        ok &= np.mod(s.state_split, tp_a) == 0
    ok &= np.mod(s.experts, ep_a) == 0 if s.moe_layers else ep_a == 1
    return np.asarray(ok & (pp_a >= 1) & (pp_a <= s.layers), dtype=bool)


# ---------------------------------------------------------------- small physics functions


def gemm_peak(hw: Hardware, precision: str, k: Constants) -> FloatOrArray:
    """The tensor peak a GEMM of ``precision`` weights runs against: :func:`peak_flops`, scaled
    by ``low_precision_efficiency`` where it runs on FP8/FP4 tensor cores (their doubled rate is
    harder to feed, and activations are quantized on the fly), not where it is weight-only."""
    native = peak_flops(hw, precision)
    low = np.asarray(native) > np.asarray(hw.bf16_flops) * 1.01
    return np.where(low, np.asarray(native) * k.low_precision_efficiency, native)


def peak_flops(hw: Hardware, precision: str) -> FloatOrArray:
    """Dense tensor FLOP/s the GEMMs of weights stored at ``precision`` run at on ``hw``.

    FP8 weights use FP8 tensor cores where the part has them; FP4 weights use FP4 tensor cores
    where present, else they are dequantized in the kernel and multiplied at BF16 (weight-only,
    as Marlin and the Triton MXFP4 MoE kernels do on Hopper); INT4 is always weight-only (BF16).
    """
    if precision == "fp8":
        return np.where(np.asarray(hw.fp8_flops) > 0, hw.fp8_flops, hw.bf16_flops)
    if precision == "fp4":
        return np.where(np.asarray(hw.fp4_flops) > 0, hw.fp4_flops, hw.bf16_flops)
    return hw.bf16_flops


def gemm_time(
    flops: FloatOrArray, weight_bytes: FloatOrArray, tokens: FloatOrArray, peak: FloatOrArray,
    bandwidth: FloatOrArray, k: Constants, compute_scale: float = 1.0, bandwidth_scale: float = 1.0,
) -> FloatOrArray:
    """Time of a GEMM (or a group of GEMMs sharing ``tokens``): a smooth roofline.

    ``t_c = flops / (peak·e_max·s_c·M/(M + m0))``, ``t_m = bytes / (BW·e_bw·s_m)``,
    ``t = (t_c^n + t_m^n)^(1/n)``, with ``s_c``/``s_m`` a kernel's compute and bandwidth
    efficiency relative to a dense GEMM (1 for dense GEMMs). ``M = 0`` (no tokens) costs
    nothing; small ``M`` is memory-bound, large ``M`` compute-bound.
    """
    m = np.maximum(tokens, 1e-9)
    t_c = flops * (m + k.gemm_m_half) / (m * peak * k.gemm_efficiency * compute_scale)
    t_m = weight_bytes / (bandwidth * k.hbm_efficiency * bandwidth_scale)
    t = smooth_roofline(t_c, t_m, k.roofline_sharpness)
    return np.where(np.asarray(tokens) > 0, t, 0.0)


def smooth_roofline(t_c: FloatOrArray, t_m: FloatOrArray, n: float) -> FloatOrArray:
    """``(t_c^n + t_m^n)^(1/n)``: the compute and memory times of one kernel overlapping imperfectly
    (``n -> inf`` is the hard roofline ``max``); ``n = 2``, the catalog's, is a square root of
    squares (times of seconds neither overflow nor underflow there; ``np.hypot``, which guards
    against both, is three times slower over a million configurations)."""
    c, m = np.asarray(t_c, dtype=float), np.asarray(t_m, dtype=float)
    if n == 2.0:
        return np.asarray(np.sqrt(c * c + m * m), dtype=np.float64)
    return np.asarray((c**n + m**n) ** (1.0 / n), dtype=np.float64)


def experts_touched(
    experts: FloatOrArray, active: FloatOrArray, tokens: FloatOrArray, concentration: float = np.inf
) -> FloatOrArray:
    """Expected distinct experts that ``T`` tokens routed to ``k`` of ``E`` experts touch.

    Uniform routing: an expert is missed by one token with probability ``1 - k/E``, so
    ``U = E·(1 - (1 - k/E)^T)``. Routers favour some experts: let an expert's popularity be its
    uniform share times ``x ~ Gamma(a, 1/a)`` (mean 1; ``a`` the concentration, uniform as
    ``a -> inf``). It is missed by ``T`` tokens with probability ``E[(1 - k/E)^(T·x)]
    = (1 + T·λ/a)^(-a)``, ``λ = -ln(1 - k/E)``, so ``U = E·(1 - (1 + T·λ/a)^(-a))``: fewer distinct
    experts for the same tokens (popular experts are hit again). ``T = 0`` gives 0; large ``T``
    gives ``E``.
    """
    e = np.maximum(experts, 1.0)
    t = np.maximum(tokens, 0.0)
    lam = -np.log1p(-np.minimum(active / e, 1.0 - 1e-12))
    if not np.isfinite(concentration):
        return np.asarray(e * -np.expm1(-lam * t), dtype=np.float64)
    return np.asarray(e * (1.0 - (1.0 + t * lam / concentration) ** -concentration), dtype=np.float64)


def allreduce_time(
    message_bytes: FloatOrArray, ranks: FloatOrArray, link_bytes_s: FloatOrArray, latency_s: FloatOrArray,
    k: Constants,
) -> FloatOrArray:
    """All-reduce of ``message_bytes`` over ``ranks`` GPUs: ``α + 2(r-1)/r · bytes / (BW·e)``.

    One rank costs nothing (Patarasuk and Yuan 2009: the bandwidth-optimal all-reduce moves
    ``2(r-1)/r`` of the message over each GPU's link).
    """
    r = np.maximum(ranks, 1.0)
    t = latency_s + 2.0 * (r - 1.0) / r * message_bytes / (link_bytes_s * k.link_efficiency)
    return np.where(r > 1.0, t, 0.0)


def spread_alltoall_time(send_bytes: FloatOrArray, ranks: FloatOrArray, hw: Hardware, k: Constants) -> FloatOrArray:
    """All-to-all where each of ``ranks`` GPUs sends ``send_bytes`` spread evenly over the others.

    Inside one scale-up domain all of it crosses NVLink. A group spanning domains (whole domains of
    ``g`` GPUs) sends the share bound for its own domain, ``(g-1)/(r-1)``, over NVLink while the rest
    leaves through the GPU's own NIC (every GPU sends at once, so NICs are not shared); the two run in
    parallel, the slower sets the time, plus the network's latency. The physics of the training
    engine's hierarchical all-to-all (:func:`factoryplan.perf.comm.alltoall_time`), whose placement
    rule does not fit here: training tiles many groups, so a group stays on NVLink only if its span
    divides the domain; a serving replica is placed whole, so 64 GPUs of a 72-GPU NVL72 rack do. 0 for
    one rank.
    """
    r = np.maximum(np.asarray(ranks, dtype=float), 1.0)
    x = np.asarray(send_bytes, dtype=float)
    g = np.minimum(np.asarray(hw.domain, dtype=float), r)
    others = np.maximum(r - 1.0, 1.0)
    intra = x * (g - 1.0) / others / (hw.link_bytes_s * k.link_efficiency)
    inter = x * (r - g) / others / (hw.nic_bytes_s * k.link_efficiency)
    lat = np.where(r > g, k.network_latency_s, k.allreduce_latency_s)
    return np.where(r > 1.0, lat + np.maximum(intra, inter), 0.0)


def _collective_path(hw: Hardware, group: FloatOrArray, k: Constants) -> tuple[FloatOrArray, FloatOrArray]:
    """(bandwidth, latency) for a collective over ``group`` GPUs: NVLink inside the scale-up
    domain, the NICs (and the network latency) once the group spans domains."""
    inside = np.asarray(group) <= np.asarray(hw.domain)
    bw = np.where(inside, hw.link_bytes_s, hw.nic_bytes_s)
    lat = np.where(inside, k.allreduce_latency_s, k.network_latency_s)
    return bw, lat


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Parallel:
    """Parallelism of one replica. ``tp·dp = moe_tp·ep`` GPUs per pipeline stage.

    ``tp`` splits attention (and dense MLPs) across GPUs; ``dp`` (attention data parallelism)
    gives each group of ``tp`` GPUs its own sequences; ``moe_tp``/``ep`` split each expert / the
    set of experts; ``pp`` splits the layers into stages.
    """

    tp: FloatOrArray = 1.0
    dp: FloatOrArray = 1.0
    moe_tp: FloatOrArray = 1.0
    ep: FloatOrArray = 1.0
    pp: FloatOrArray = 1.0

    def gpus(self) -> FloatOrArray:
        """GPUs of one replica."""
        return np.asarray(np.asarray(self.tp) * np.asarray(self.dp) * np.asarray(self.pp), dtype=np.float64)


@dataclass(frozen=True)
class Precision:
    """Precisions: dense linear weights, expert weights, KV cache (LM head stays BF16), and the
    activations the GEMMs multiply them with ("": the weights' own, BF16 for INT4 weight-only)."""

    weights: str = "fp8"
    experts: str = "fp8"
    kv: str = "fp8"
    activations: str = ""

    def activation_format(self) -> str:
        """The activation precision to report: the given one, else the weights' own."""
        return self.activations or self.weights


def compute_precision(weights: str, activations: str) -> str:
    """The tensor-core format a GEMM of ``weights`` x ``activations`` runs at: the wider operand's
    (W4A16 at BF16, W4A8 and W8A8 at FP8, NVFP4 W4A4 at FP4). No activation precision given: the
    weights' own (INT4 then runs weight-only at BF16, see :func:`peak_flops`)."""
    if not activations or _WIDTH[activations] <= _WIDTH[weights]:
        return weights
    return activations


def check_precision(p: Precision) -> None:
    """Reject a precision the engine does not know, naming the field and what is allowed."""
    for field_name, value, allowed in (
        ("precision", p.weights, PRECISIONS),
        ("moe_precision", p.experts, PRECISIONS),
        ("kv_precision", p.kv, KV_PRECISIONS),
        ("activation_precision", p.activations or "bf16", ACTIVATION_PRECISIONS),
    ):
        if value not in allowed:
            raise FactoryplanError("unknown precision", field=field_name, value=value, allowed=", ".join(allowed))


def kv_precision(k: Constants, weights: str, given: str | None = None) -> str:
    """The KV-cache precision: the one given, else the engine's default (FP8 with FP8 or narrower
    weights where the engine quantizes the cache by default, else BF16)."""
    return given or ("fp8" if k.kv_fp8_default and weights != "bf16" else "bf16")


def check_kv_hardware(kv: str, acc: Accelerator, *, field: str) -> None:
    """An FP4 (NVFP4) KV cache needs a part with FP4 units (its quantize and dequantize
    instructions; NVIDIA Blackwell, AMD MI355X); name the field and what the part allows otherwise."""
    if kv == "fp4" and not acc.fp4_dense_flops:
        raise InfeasibleError(f"an FP4 KV cache needs FP4 hardware; {acc.id} has none", field=field, value=kv,
                              allowed=f"bf16 or fp8 on {acc.id}; fp4 on parts with FP4 tensor cores (NVIDIA "
                              "Blackwell: b200, b300, gb200, gb300; AMD MI355X)")


# ---------------------------------------------------------------- memory


def weight_bytes_per_gpu(s: ModelShape, par: Parallel, prec: Precision) -> FloatOrArray:
    """Weights one GPU holds: attention and dense MLPs split ``tp`` ways (a sparse-attention
    indexer is replicated), experts ``moe_tp·ep`` ways, embedding and LM head vocabulary-parallel
    over ``tp`` (BF16), layers over ``pp``."""
    wb, eb = WEIGHT_BYTES[prec.weights], WEIGHT_BYTES[prec.experts]
    tp, pp = np.asarray(par.tp, dtype=float), np.asarray(par.pp, dtype=float)
    per_layer = (
        s.layers * (s.attn_params / tp + s.indexer_params * (1.0 - 1.0 / tp)) * wb
        + s.dense_layers * s.mlp_params * wb / tp
        + s.moe_layers * (s.shared_params * wb / tp + s.experts * s.expert_params * eb / (par.moe_tp * par.ep))
    )
    vocab = (1.0 if s.tied else 2.0) * s.vocab_params * 2.0 / tp
    return np.asarray(per_layer / pp + vocab / np.minimum(pp, 2.0), dtype=np.float64)


def kv_bytes_per_sequence_per_gpu(s: ModelShape, par: Parallel, kv: str, context: FloatOrArray) -> FloatOrArray:
    """KV-cache bytes of one sequence holding ``context`` tokens on the GPU that serves it.

    GQA heads split over up to ``kv_heads`` TP ranks; MLA's latent is replicated on every TP
    rank; layers split over ``pp`` stages; sliding-window layers hold at most the window.
    Linear-attention layers add their fixed state, whatever the context, split over up to
    ``H_v`` TP ranks (its KV-cache precision does not apply: the state keeps its own dtype).
    Sparse attention adds the FP8 indexer key of every token in every layer, ``L·key_I·ctx``,
    replicated on every TP rank like the latent.
    """
    pp = np.asarray(par.pp, dtype=float)
    split = np.minimum(par.tp, s.kv_split) * pp
    capped = np.minimum(context, s.window) if s.window > 0 else 0.0
    per_elem = s.kv_elems * KV_BYTES[kv] / split
    full = s.full_layers * np.asarray(context, dtype=float)
    sliding = s.layers - s.full_layers - s.linear_layers
    state = s.linear_layers * s.state_bytes / (np.minimum(par.tp, s.state_split) * pp)
    index = s.layers * s.index_key_bytes * np.asarray(context, dtype=float) / pp
    return np.asarray(per_elem * (full + sliding * capped) + state + index, dtype=np.float64)


# ---------------------------------------------------------------- one iteration


@dataclass(frozen=True)
class Step:
    """Seconds of one iteration by component (all on the slowest GPU)."""

    gemm: FloatOrArray
    moe: FloatOrArray
    attention: FloatOrArray
    comm: FloatOrArray
    overhead: FloatOrArray

    @property
    def total(self) -> FloatOrArray:
        """The whole iteration."""
        return self.gemm + self.moe + self.attention + self.comm + self.overhead


def _dense_gemms(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, tokens: FloatOrArray, logits: FloatOrArray,
    k: Constants,
) -> FloatOrArray:
    """Attention projections, dense MLPs, shared experts and the LM head of one stage."""
    tp = np.asarray(par.tp, dtype=float)
    params = (s.layers * s.attn_params + s.dense_layers * s.mlp_params + s.moe_layers * s.shared_params) / tp
    params = params + s.layers * s.indexer_params * (1.0 - 1.0 / tp)  # the indexer is replicated
    wb, peak = WEIGHT_BYTES[prec.weights], gemm_peak(hw, compute_precision(prec.weights, prec.activations), k)
    body = gemm_time(2.0 * tokens * params, params * wb, tokens, peak, hw.hbm_bytes_s, k)
    head_params = s.vocab_params / tp
    head = gemm_time(2.0 * logits * head_params, head_params * 2.0, logits, hw.bf16_flops, hw.hbm_bytes_s, k)
    return body / np.asarray(par.pp, dtype=float) + head  # the LM head runs on the last stage, once per token


def _experts(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, tokens: FloatOrArray, k: Constants
) -> FloatOrArray:
    """Routed experts of one stage: touched experts' weights read once, grouped GEMM at T·k/U."""
    if s.moe_layers == 0:
        return np.zeros_like(np.asarray(tokens, dtype=float))
    gpus = np.asarray(par.moe_tp, dtype=float) * par.ep
    touched = experts_touched(s.experts, s.active, tokens, k.routing_concentration)
    per_expert_tokens = tokens * s.active / np.maximum(touched, 1e-9)
    params_gpu = touched / par.ep * s.expert_params / par.moe_tp
    flops = 2.0 * tokens * s.active * s.expert_params / gpus
    peak = gemm_peak(hw, compute_precision(prec.experts, prec.activations), k)
    t = gemm_time(
        flops, params_gpu * WEIGHT_BYTES[prec.experts], per_expert_tokens, peak,
        hw.hbm_bytes_s, k, k.moe_efficiency * k.moe_kernel_efficiency, k.moe_kernel_efficiency,
    )
    return t * s.moe_layers / np.asarray(par.pp, dtype=float)


def attended_pairs(prefix: FloatOrArray, length: FloatOrArray, window: float = math.inf) -> FloatOrArray:
    """(query, key) pairs of ``length`` prompt tokens computed after ``prefix`` cached ones, each
    attending causally to at most ``window`` earlier tokens: ``∫_P^{P+N} min(p, W) dp``,
    ``N·(P + N/2)`` without a window, ``N·W - W²/2`` for a whole prompt longer than the window."""
    p = np.asarray(prefix, dtype=float)
    n = np.asarray(length, dtype=float)
    if not math.isfinite(window):
        return np.asarray(n * (p + n / 2.0), dtype=np.float64)
    a, b = np.minimum(p, window), np.minimum(p + n, window)
    beyond = np.maximum(p + n - np.maximum(p, window), 0.0)
    return np.asarray((b * b - a * a) / 2.0 + (window * beyond if math.isfinite(window) else 0.0), dtype=np.float64)


def _attention(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, decode_seqs: FloatOrArray, ctx: FloatOrArray,
    prompt_len: FloatOrArray, prompts: FloatOrArray, k: Constants, prompt_prefix: FloatOrArray = 0.0,
    decode_tokens: FloatOrArray = 1.0,
) -> FloatOrArray:
    """Decode attention (KV read, roofline with its FLOPs) plus causal prefill attention of the
    ``prompt_len`` new tokens of each prompt over its ``prompt_prefix`` cached ones and themselves
    (:func:`attended_pairs`); linear layers read and write each decoding sequence's state and run the
    chunked delta rule on the new tokens; sparse attention caps the keys of a query at ``k_top`` and
    adds :func:`_indexer`. ``decode_tokens`` tokens of each decoding sequence (speculative decoding
    verifies its drafts together) read the sequence's cache once and each do the attention FLOPs."""
    tp = np.asarray(par.tp, dtype=float)
    heads = s.heads / tp
    kv_gpu = s.kv_elems * KV_BYTES[prec.kv] / np.minimum(tp, s.kv_split)
    lin_split = np.minimum(tp, s.state_split)
    sliding = s.layers - s.full_layers - s.linear_layers
    ctx_win = np.minimum(ctx, s.window) if s.window > 0 else 0.0
    attended = np.minimum(ctx, s.top_k) if s.top_k > 0 else np.asarray(ctx, dtype=float)
    ctx_layers = s.full_layers * attended + sliding * ctx_win
    dec_bytes = decode_seqs * (ctx_layers * kv_gpu + s.linear_layers * 2.0 * s.state_bytes / lin_split)
    lin_flops = s.linear_layers * s.linear_decode_flops / lin_split
    dec_flops = decode_seqs * decode_tokens * (ctx_layers * heads * s.decode_attn_flops + lin_flops)
    attn_peak = hw.bf16_flops * k.attention_efficiency
    t_dec = smooth_roofline(dec_flops / attn_peak, dec_bytes / (hw.hbm_bytes_s * k.kv_efficiency),
                            k.roofline_sharpness)
    length = np.asarray(prompt_len, dtype=float)
    full_flops = attended_pairs(prompt_prefix, length) * s.prefill_attn_flops  # per head, one full layer
    if s.top_k > 0:  # the cheaper of sparse MQA mode over Σ_pos min(pos, k) pairs and masked MHA
        full_flops = np.minimum(full_flops, attended_pairs(prompt_prefix, length, s.top_k) * s.decode_attn_flops)
    win_flops = attended_pairs(prompt_prefix, length, s.window) * s.prefill_attn_flops if s.window > 0 else 0.0
    flops = s.full_layers * full_flops + sliding * win_flops
    linear = length * s.linear_layers * s.linear_prefill_flops / lin_split
    t_pre = prompts * (flops * heads + linear) / attn_peak
    t_idx = _indexer(s, hw, decode_seqs, ctx, length, prompts, k, prompt_prefix, decode_tokens)
    return np.asarray((t_dec + t_pre + t_idx) / np.asarray(par.pp, dtype=float), dtype=np.float64)


def _indexer(
    s: ModelShape, hw: Hardware, decode_seqs: FloatOrArray, ctx: FloatOrArray, length: FloatOrArray,
    prompts: FloatOrArray, k: Constants, prefix: FloatOrArray = 0.0, decode_tokens: FloatOrArray = 1.0,
) -> FloatOrArray:
    """The lightning indexer of sparse attention in all layers; 0 without. It scores every cached
    token, so it keeps the context's full length: a decoding sequence reads ``ctx`` FP8 keys of
    ``key_I`` bytes per layer (at the KV-cache efficiency) and does ``2·H_I·d_I`` FLOPs per key, a
    roofline; a prompt of ``S`` tokens scores ``S²/2`` causal pairs (its new tokens after a cached
    prefix, :func:`attended_pairs`). The FLOPs run on FP8 tensor
    cores (DeepGEMM's FP8 MQA-logits kernels) at the attention efficiency, not split by TP (vLLM and
    SGLang replicate the indexer on every TP rank)."""
    if s.top_k <= 0:
        return 0.0
    peak = gemm_peak(hw, "fp8", k) * k.attention_efficiency
    keys = decode_seqs * s.layers * np.asarray(ctx, dtype=float)
    t_c = keys * decode_tokens * s.index_flops / peak  # each verified token scores the keys, read once
    t_m = keys * s.index_key_bytes / (hw.hbm_bytes_s * k.kv_efficiency)
    t_pre = prompts * s.layers * attended_pairs(prefix, length) * s.index_flops / peak
    return np.asarray(smooth_roofline(t_c, t_m, k.roofline_sharpness) + t_pre, dtype=np.float64)


def _communication(
    s: ModelShape, hw: Hardware, par: Parallel, tokens_rank: FloatOrArray, k: Constants
) -> FloatOrArray:
    """Collectives of one stage: TP all-reduces, MoE all-to-all under attention DP, PP sends."""
    tp, dp, pp = (np.asarray(x, dtype=float) for x in (par.tp, par.dp, par.pp))
    msg = tokens_rank * s.hidden * ACTIVATION_BYTES
    bw_tp, lat_tp = _collective_path(hw, tp, k)
    per_layer = 2.0 * allreduce_time(msg, tp, bw_tp, lat_tp, k)
    moe_comm: FloatOrArray = 0.0
    if s.moe_layers:
        group = tp * dp
        # a token goes once to each GPU that holds one of its k experts: r·(1 - (1 - 1/r)^k) GPUs;
        # dispatch there and combine back
        dest = group * (1.0 - (1.0 - 1.0 / np.maximum(group, 1.0)) ** s.active)
        a2a = 2.0 * spread_alltoall_time(msg * dest, group, hw, k)
        moe_comm = np.where(dp > 1.0, a2a, 0.0)
    total = ((s.block_layers or s.layers) * per_layer + s.moe_layers * moe_comm) / pp
    bw_pp, lat_pp = _collective_path(hw, tp * dp * pp, k)
    send = np.where(pp > 1.0, lat_pp + msg / (bw_pp * k.link_efficiency), 0.0)
    return total + send


def iteration(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *,
    decode_seqs: FloatOrArray, ctx: FloatOrArray, prompts: FloatOrArray = 0.0, prompt_len: FloatOrArray = 0.0,
    prompt_prefix: FloatOrArray = 0.0, decode_tokens: FloatOrArray = 1.0,
) -> Step:
    """One forward pass of one pipeline stage on its busiest GPU.

    ``decode_seqs`` sequences of the replica decode ``decode_tokens`` tokens each (1; with speculative
    decoding the token and its drafts, verified together) at mean context ``ctx``;
    ``prompts`` new requests of ``prompt_len`` tokens are prefilled in the same pass, after
    ``prompt_prefix`` tokens of each that the prefix cache already holds (they cost attention only). Decoding
    sequences spread over the ``dp`` attention ranks; a prompt sits on one rank, so a rank's
    attention GEMMs see at least one whole prompt. All ``dp`` ranks' tokens meet in the experts.
    """
    dp = np.asarray(par.dp, dtype=float)
    n_prompts = np.asarray(prompts, dtype=float)
    prompt_tokens = n_prompts * prompt_len
    rank_prompt = np.maximum(prompt_tokens / dp, np.minimum(prompt_tokens, prompt_len))
    rank_prompts = np.maximum(n_prompts / dp, np.minimum(n_prompts, 1.0))
    rank_seqs = np.asarray(decode_seqs, dtype=float) / dp
    rank_decode = rank_seqs * decode_tokens
    tokens_rank = rank_decode + rank_prompt
    all_tokens = np.asarray(decode_seqs, dtype=float) * decode_tokens + prompt_tokens
    gemm = _dense_gemms(s, hw, par, prec, tokens_rank, rank_decode + rank_prompts, k)
    moe = _experts(s, hw, par, prec, all_tokens, k)
    attn = _attention(s, hw, par, prec, rank_seqs, ctx, prompt_len, rank_prompts, k, prompt_prefix, decode_tokens)
    comm = _communication(s, hw, par, tokens_rank, k)
    prompt = np.asarray(n_prompts > 0, dtype=float)  # the iteration runs outside the decode CUDA graphs
    layers = (k.layer_overhead_s + k.prefill_layer_overhead_s * prompt) * (s.block_layers or s.layers)
    layers = layers + k.moe_layer_overhead_s * s.moe_layers
    overhead = (
        k.step_overhead_s + layers / np.asarray(par.pp, dtype=float)
        + k.sequence_overhead_s * (rank_seqs + rank_prompts)
    )
    zero = np.zeros_like(np.asarray(gemm, dtype=float))
    return Step(gemm=gemm + zero, moe=moe + zero, attention=attn + zero, comm=comm + zero, overhead=overhead + zero)
