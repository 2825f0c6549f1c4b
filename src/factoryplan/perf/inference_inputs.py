"""What one serving step is computed from: the model's shape, the hardware, a replica's layout, the
precisions, and the bytes of weights and KV cache a GPU holds.

:mod:`factoryplan.perf.inference` computes step times from them (and re-exports them: callers import
them there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

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
from factoryplan.units import MIB

if TYPE_CHECKING:
    from factoryplan.catalog.schema import Accelerator, ModelArch, System
    from factoryplan.perf.inference_constants import Constants

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
    expert_ffn: float = 0.0  # intermediate size of one routed expert
    gated_mlp: bool = True  # gate, up and down projections (SwiGLU); False: up and down (GELU, ReLU²)
    family: str = ""  # the architecture's family (Hugging Face model_type): engines' fusions follow it


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
        expert_ffn=float(moe.expert_ffn) if moe else 0.0,
        gated_mlp=arch.mlp == "gated",
        family=arch.family,
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
    # the fused all-reduce + RMSNorm kernels the part runs: (TP size, largest message through them, largest
    # through their one-shot form) in bytes, FUSED_ALLREDUCE_LIMITS; empty: none
    fused_allreduce_limits: tuple[tuple[float, float, float], ...] = ()

    @property
    def fused_allreduce(self) -> bool:
        """Whether the part runs the fused all-reduce + RMSNorm kernels engines fuse with."""
        return bool(self.fused_allreduce_limits)


_HOPPER_FUSION = ((2.0, 64.0 * MIB, 32.0 * MIB), (4.0, 2.0 * MIB, 2.0 * MIB), (8.0, 1.0 * MIB, 1.0 * MIB))
# Fused all-reduce + RMSNorm kernels by generation: (TP size, largest message through the fused kernel,
# largest through its one-shot form; two-shot between), bytes. NVIDIA: FlashInfer's kernels from
# TensorRT-LLM at vLLM's limits, keyed by compute capability (allreduce_rms_fusion.py,
# FI_ALLREDUCE_FUSION_MAX_SIZE_MB and _FI_ALLREDUCE_ONE_SHOT_MAX_SIZES_MB): Hopper (9.0) 64 / 2 / 1 MiB at
# TP 2 / 4 / 8 (one-shot up to 32 / 2 / 1; later releases lower TP 8 to 0.5 MiB, the calibrated runs'
# releases documented 1), Blackwell (10.0) 64 / 32 / 1 MiB (one-shot 32 / 4 / 1), Blackwell Ultra (10.3)
# 64 / 64 / 2 MiB (one-shot 32 / 4 / 2); no entry for Ampere or Ada, where the fusion stays off;
# TensorRT-LLM's fusions taken the same. AMD CDNA3 and CDNA4: AITER's fused kernel (vLLM PR #37646, March
# 2026; on with VLLM_ROCM_USE_AITER=1, as AMD's vLLM guides run it), Hopper's limits assumed. Others
# (Gaudi): none.
FUSED_ALLREDUCE_LIMITS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "hopper": _HOPPER_FUSION,
    "blackwell": ((2.0, 64.0 * MIB, 32.0 * MIB), (4.0, 32.0 * MIB, 4.0 * MIB), (8.0, 1.0 * MIB, 1.0 * MIB)),
    "blackwell-ultra": ((2.0, 64.0 * MIB, 32.0 * MIB), (4.0, 64.0 * MIB, 4.0 * MIB), (8.0, 2.0 * MIB, 2.0 * MIB)),
    "cdna3": _HOPPER_FUSION,
    "cdna4": _HOPPER_FUSION,
}


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
        fused_allreduce_limits=FUSED_ALLREDUCE_LIMITS.get(acc.generation, ()),
    )


def splits_evenly(
    s: ModelShape, tp: FloatOrArray, ep: FloatOrArray = 1.0, pp: FloatOrArray = 1.0, redundant: FloatOrArray = 0.0
) -> BoolArray:
    """Whether a layout splits the model as serving engines require (vLLM, SGLang, TensorRT-LLM):
    ``tp`` divides the attention heads (and a linear-attention layer's value heads); GQA key/value
    heads are split over ``tp`` or replicated in whole copies (``kv % tp == 0`` or ``tp % kv == 0``;
    MLA's latent is replicated whatever ``tp``); ``ep`` divides the expert slots, the routed experts
    plus a load balancer's ``redundant`` copies (TensorRT-LLM: ``num_slots % ep_size == 0``; SGLang:
    routed + ``ep_num_redundant_experts`` physical experts divisible by ``ep_size``), so 32 copies
    let DeepSeek-R1's 256 experts run on 72 ranks, 288 slots, 4 a rank (1 for a dense model, no
    copies); ``pp`` stages hold at least one layer each."""
    tp_a, ep_a, pp_a, extra = (np.asarray(x, dtype=float) for x in (tp, ep, pp, redundant))
    kv = s.kv_split
    ok = (np.mod(s.heads, tp_a) == 0) & ((np.mod(kv, tp_a) == 0) | (np.mod(tp_a, kv) == 0))
    if s.linear_layers:
        ok &= np.mod(s.state_split, tp_a) == 0
    ok &= (np.mod(s.experts + extra, ep_a) == 0) & (extra >= 0) if s.moe_layers else (ep_a == 1) & (extra == 0)
    return np.asarray(ok & (pp_a >= 1) & (pp_a <= s.layers), dtype=bool)


@dataclass(frozen=True)
class Parallel:
    """Parallelism of one replica. ``tp·dp = moe_tp·ep`` GPUs per pipeline stage.

    ``tp`` splits attention (and dense MLPs) across GPUs; ``dp`` (attention data parallelism)
    gives each group of ``tp`` GPUs its own sequences; ``moe_tp``/``ep`` split each expert / the
    set of experts; ``pp`` splits the layers into stages. ``redundant`` expert slots (0 for none;
    with the experts they split evenly over ``ep``, :func:`splits_evenly`) hold copies of popular
    experts, which an expert-parallel load balancer (EPLB: TensorRT-LLM's ``num_slots``, vLLM's and
    SGLang's redundant experts) places so that every rank expects the same load.
    """

    tp: FloatOrArray = 1.0
    dp: FloatOrArray = 1.0
    moe_tp: FloatOrArray = 1.0
    ep: FloatOrArray = 1.0
    pp: FloatOrArray = 1.0
    redundant: FloatOrArray = 0.0

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
        """The activation precision to report: the given one, else the weights' own (and the
        experts' own where theirs differs: "bf16; experts fp4")."""
        if self.activations or self.experts == self.weights:
            return self.activations or self.weights
        return f"{self.weights}; experts {self.experts}"

    def label(self) -> str:
        """The weights' formats for messages: "fp8", or "bf16 with fp4 experts" where they differ."""
        return self.weights if self.experts == self.weights else f"{self.weights} with {self.experts} experts"


DEFAULT_WEIGHTS = "fp8"  # a BF16 release is served from FP8 weights unless told otherwise


class ServedFormats(NamedTuple):
    """The number formats a model is served in and why (:func:`serving_precision`)."""

    weights: str
    experts: str
    activations: str  # "": the weights' own
    basis: str
    kv: str = ""  # the KV cache the release asks for; "": the engine's default


def serving_precision(
    arch: ModelArch, weights: str | None = None, experts: str | None = None, activations: str = "", *,
    field: str = "moe_precision",
) -> ServedFormats:
    """The formats a model is served in: weights, routed experts, activations, and the basis.

    Given ones stand (the experts default to the given weights' format, the activations to the
    weights' own); a format not given is the release's where the checkpoint is published quantized
    (``arch.release``: what the engines load, e.g. gpt-oss's MXFP4 experts beside BF16 attention,
    multiplied with BF16 activations; Kimi K2.5's INT4 experts; DeepSeek's FP8), else FP8 (the FP8
    checkpoints production serving uses for a BF16 release, or a release whose formats are not
    known). The release's activations and KV cache apply with its own weights and experts only.
    ``basis`` says which.
    """
    if experts is not None and arch.moe is None:
        raise FactoryplanError(f"{arch.id} has no routed experts", field=field, value=experts,
                               allowed="leave it out (the weights' format is the precision)")
    release = arch.release if arch.release is not None and arch.release.quantized() else None
    if weights is not None:
        return ServedFormats(weights, experts or weights, activations, "as given")
    if release is None:
        w = DEFAULT_WEIGHTS
        basis = f"{w} (the default unless the checkpoint is published quantized)"
        return ServedFormats(w, experts or w, activations, basis + ("; experts as given" if experts else ""))
    basis = f"as published ({release.quantization})" if release.quantization else "as published"
    if experts is not None:
        return ServedFormats(release.weights, experts, activations, basis + "; experts as given")
    return ServedFormats(release.weights, release.experts_format(), activations or release.activations, basis,
                         release.kv)


def compute_precision(weights: str, activations: str) -> str:
    """The tensor-core format a GEMM of ``weights`` x ``activations`` runs at: the wider operand's
    (W4A16 at BF16, W4A8 and W8A8 at FP8, NVFP4 W4A4 at FP4). No activation precision given: the
    weights' own (INT4 then runs weight-only at BF16, see :func:`peak_flops`)."""
    if not activations or _WIDTH[activations] <= _WIDTH[weights]:
        return weights
    return activations


def engine_activations(activations: str, experts: str, acc: Accelerator, k: Constants) -> str:
    """The activations an engine multiplies a release's weight-only FP4 (MXFP4) experts with: MXFP8 on
    an NVIDIA part with FP4 tensor cores (Blackwell) where the engine's kernels quantize them there
    (``k.fp4_experts_mxfp8``: TensorRT-LLM's TRTLLM MoE backend, SGLang's FlashInfer MXFP4 runner, both
    CUDA kernels; the GEMMs then run at the FP8 rate), else the release's ``activations`` (BF16 on
    Hopper, in vLLM, and on other vendors' parts, whose MXFP4 kernels these are not)."""
    blackwell = acc.vendor.lower() == "nvidia" and bool(acc.fp4_dense_flops)
    if activations == "bf16" and experts == "fp4" and blackwell and k.fp4_experts_mxfp8:
        return "fp8"
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


def sparse_on_fp4(arch: ModelArch, acc: Accelerator) -> bool:
    """Whether ``arch`` has DeepSeek sparse attention and ``acc`` FP4 units (Blackwell), where the
    engines keep its KV cache in FP8 by default (:func:`kv_precision`)."""
    return arch.sparse_attention is not None and bool(acc.fp4_dense_flops)


def kv_precision(k: Constants, weights: str, given: str | None = None, *, sparse_on_fp4: bool = False) -> str:
    """The KV-cache precision: the one given, else the engine's default (FP8 with FP8 or narrower
    weights where the engine quantizes the cache by default, else the model's BF16). ``sparse_on_fp4``:
    a DeepSeek-sparse-attention model on a part with FP4 units (Blackwell), whose cache the engines
    keep in FP8 by default whatever the weights (SGLang's server arguments set FP8 for DSA models on
    SM100 and later, BF16 on Hopper; vLLM's cache_dtype documentation: DeepSeek-V3.2 defaults to FP8)."""
    return given or ("fp8" if (k.kv_fp8_default and weights != "bf16") or sparse_on_fp4 else "bf16")


def check_kv_hardware(kv: str, acc: Accelerator, *, field: str) -> None:
    """An FP4 (NVFP4) KV cache needs a part with FP4 units (its quantize and dequantize
    instructions; NVIDIA Blackwell, AMD MI355X); name the field and what the part allows otherwise."""
    if kv == "fp4" and not acc.fp4_dense_flops:
        raise InfeasibleError(f"an FP4 KV cache needs FP4 hardware; {acc.id} has none", field=field, value=kv,
                              allowed=f"bf16 or fp8 on {acc.id}; fp4 on parts with FP4 tensor cores (NVIDIA "
                              "Blackwell: b200, b300, gb200, gb300; AMD MI355X)")


def serving_formats(
    arch: ModelArch, acc: Accelerator, k: Constants, weights: str | None = None, experts: str | None = None,
    activations: str = "", kv: str | None = None, *, fields: tuple[str, str] = ("moe_precision", "kv_precision"),
) -> tuple[Precision, str]:
    """The :class:`Precision` a model is served at on ``acc`` under engine ``k``, and its basis: the
    formats of :func:`serving_precision`, the KV cache given, else the release's, else the engine's
    (:func:`kv_precision`), checked against the part (:func:`check_kv_hardware`). ``fields``: the names
    of the experts' and the KV cache's inputs, for messages."""
    formats = serving_precision(arch, weights, experts, activations, field=fields[0])
    kv_format = kv_precision(k, formats.weights, kv or formats.kv or None, sparse_on_fp4=sparse_on_fp4(arch, acc))
    check_kv_hardware(kv_format, acc, field=fields[1])
    acts, basis = formats.activations, formats.basis
    if not activations:
        acts = engine_activations(acts, formats.experts, acc, k)
        if acts != formats.activations:
            basis += f"; the engine multiplies the FP4 experts with MXFP8 activations on {acc.id}'s FP4 tensor cores"
    return Precision(weights=formats.weights, experts=formats.experts, kv=kv_format, activations=acts), basis


def weight_bytes_per_gpu(s: ModelShape, par: Parallel, prec: Precision) -> FloatOrArray:
    """Weights one GPU holds: attention and dense MLPs split ``tp`` ways (a sparse-attention
    indexer is replicated), experts and their redundant copies ``moe_tp·ep`` ways, embedding and LM
    head vocabulary-parallel over ``tp`` (BF16), layers over ``pp``."""
    wb, eb = WEIGHT_BYTES[prec.weights], WEIGHT_BYTES[prec.experts]
    tp, pp = np.asarray(par.tp, dtype=float), np.asarray(par.pp, dtype=float)
    expert_slots = s.experts + np.asarray(par.redundant, dtype=float)
    per_layer = (
        s.layers * (s.attn_params / tp + s.indexer_params * (1.0 - 1.0 / tp)) * wb
        + s.dense_layers * s.mlp_params * wb / tp
        + s.moe_layers * (s.shared_params * wb / tp + expert_slots * s.expert_params * eb / (par.moe_tp * par.ep))
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
