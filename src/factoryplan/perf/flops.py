"""Training FLOPs of a transformer: the shape the engine needs and one definition of model FLOPs.

**Model FLOPs** (the definition behind ``model_tflops_per_gpu`` and MFU): the multiply-adds of
one forward and backward pass, counted as 2 FLOPs each, without activation recomputation:

``model_flops_per_token = 3 * (2 * N_matmul + A)``

* ``N_matmul``: the weights one token multiplies by: attention projections (GQA or MLA), the dense
  MLP (gated: 3 matrices, plain: 2), for MoE layers the router, the shared experts and ``k`` routed
  experts, and the LM head ``V*h`` (also when it is tied to the embedding). The embedding lookup,
  norms and biases are not matrix products and are not counted.
* ``A``: causal self-attention, ``2 * n_q * (d_qk + d_v) * c`` per layer, with ``c`` the keys an
  average query attends to: ``S/2`` for full causal attention over a sequence of ``S`` tokens, about
  ``W`` for a sliding window of ``W`` (see :func:`attended_keys`). Linear-attention (Gated
  DeltaNet) layers of hybrid models have no quadratic term: their chunked delta rule costs a fixed
  ``linear_attn_flops`` per token (``catalog.models.linear_attention_flops``), and their
  projections are part of ``N_matmul``. DeepSeek sparse attention (DeepSeek-V3.2) caps the keys of a
  query at ``k_top`` (MLA in its absorbed mode; the cheaper of that and masked dense attention) and
  adds a lightning indexer that scores the whole causal context at ``2*H_I*d_I`` per key (see
  :func:`full_attention_flops`); the indexer's projections are part of ``N_matmul``.
* Backward costs twice the forward (``3 = 1 + 2``).

This is the count of Megatron-Bridge (NeMo 25.x, causal attention). PaLM (Chowdhery et al. 2022,
App. B, ``6N + 12*L*H*Q*T``), NeMo 24.07 and Megatron-LM 2021 (Narayanan et al. eq. 3) count the
attention scores without the causal halving; Megatron-LM 2021 also counts the recomputed forward
(hardware FLOPs). :func:`published_flops_per_token` reproduces those conventions so that published
TFLOP/s figures can be turned back into tokens per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from factoryplan.catalog import models
from factoryplan.catalog.schema import ModelArch

FloatOrArray = float | npt.NDArray[np.float64]


@dataclass(frozen=True)
class ModelShape:
    """What the step-time and memory model reads from an architecture (counts, not bytes)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    qk_head_dim: int  # query/key width per head (MLA: nope + rope)
    v_head_dim: int
    ffn: int  # dense MLP intermediate size
    gated: bool  # SwiGLU-style MLP (3 matrices) or plain (2)
    vocab: int
    dense_layers: int
    moe_layers: int
    experts: int  # routed experts per MoE layer (0: dense model)
    top_k: int
    expert_ffn: int
    shared_ffn: int  # all shared experts of a layer together
    sliding_window: int
    sliding_layers: int
    attn_params: int  # attention projections of one softmax-attention layer (weights the tokens multiply by)
    attn_out_params: int  # of which the output projection
    linear_layers: int  # linear-attention (Gated DeltaNet) layers; the other layers have softmax attention
    linear_attn_params: int  # one linear-attention layer's weights, 0 without (its convolution: 1 MAC per weight too)
    linear_key_width: int  # H_k*d_k: query/key width of a linear-attention layer
    linear_value_width: int  # H_v*d_v: value width (the output projection's input)
    linear_value_heads: int  # H_v: value heads, one recurrent state each
    linear_attn_flops: float  # forward FLOPs per token of one linear layer's chunked delta rule
    kv_width: int  # K and V elements per token per layer that context parallelism exchanges
    sparse_top_k: int  # DeepSeek sparse attention: keys a query attends to (0: dense attention)
    sparse_key_flops: float  # FLOPs per head and attended key of sparse MLA (absorbed mode), 0 without
    index_heads: int  # lightning-indexer heads H_I (0 without sparse attention)
    index_head_dim: int  # lightning-indexer head width d_I
    dense_mlp_params: int
    expert_params: int  # one routed expert
    shared_params: int
    router_params: int
    embedding_params: int  # input embedding and any learned position table
    lm_head_params: int  # V*h, counted as a matrix product even when tied
    tied_embeddings: bool
    params_total: int
    params_active: int

    @property
    def attention_layers(self) -> int:
        """Layers with softmax attention (full or sliding-window)."""
        return self.layers - self.linear_layers

    @property
    def mean_attn_params(self) -> float:
        """Token-mixer projections of an average layer (softmax and linear layers differ)."""
        out = self.attention_layers * self.attn_params + self.linear_layers * self.linear_attn_params
        return out / self.layers

    @property
    def mean_attn_out_params(self) -> float:
        """Output projection of an average layer."""
        out = self.attention_layers * self.attn_out_params + self.linear_layers * self.linear_value_width * self.hidden
        return out / self.layers

    @property
    def indexer_flops(self) -> float:
        """Forward FLOPs of the lightning indexer per (query, key) pair: ``2*H_I*d_I``."""
        return 2.0 * self.index_heads * self.index_head_dim

    @property
    def is_moe(self) -> bool:
        """Whether the model has routed experts."""
        return self.moe_layers > 0

    @property
    def expert_params_total(self) -> int:
        """All routed-expert weights (sharded by expert parallelism)."""
        return self.moe_layers * self.experts * self.expert_params

    @property
    def non_expert_params(self) -> int:
        """Everything else (sharded by tensor and pipeline parallelism)."""
        return self.params_total - self.expert_params_total


def model_shape(arch: ModelArch) -> ModelShape:
    """The :class:`ModelShape` of a catalog or config.json architecture."""
    moe = arch.moe
    if arch.mla is not None:
        qk = arch.mla.qk_nope_head_dim + arch.mla.qk_rope_head_dim
        v = arch.mla.v_head_dim
        kv_width = arch.heads * (qk + v)  # CP exchanges the decompressed per-head K and V
    else:
        qk = v = arch.head_dim
        kv_width = 2 * arch.kv_heads * arch.head_dim
    breakdown = models.param_breakdown(arch)
    la, dsa, mla = arch.linear_attention, arch.sparse_attention, arch.mla
    sparse_key = 2.0 * (mla.kv_lora_rank + mla.qk_rope_head_dim) + 2.0 * mla.kv_lora_rank if mla else 0.0
    return ModelShape(
        name=arch.id,
        layers=arch.layers,
        hidden=arch.hidden,
        heads=arch.heads,
        kv_heads=arch.kv_heads,
        qk_head_dim=qk,
        v_head_dim=v,
        ffn=arch.ffn,
        gated=arch.mlp == "gated",
        vocab=arch.vocab,
        dense_layers=models.dense_layers(arch),
        moe_layers=models.moe_layers(arch),
        experts=moe.experts if moe else 0,
        top_k=moe.active if moe else 0,
        expert_ffn=moe.expert_ffn if moe else 0,
        shared_ffn=moe.shared_ffn if moe else 0,
        sliding_window=arch.sliding_window,
        sliding_layers=arch.sliding_layers if arch.sliding_window > 0 else 0,
        attn_params=models.attention_params_per_layer(arch),
        attn_out_params=arch.heads * v * arch.hidden,
        linear_layers=models.linear_attention_layers(arch),
        linear_attn_params=models.linear_attention_params_per_layer(arch),
        linear_key_width=la.key_heads * la.key_head_dim if la is not None else 0,
        linear_value_width=la.value_heads * la.value_head_dim if la is not None else 0,
        linear_value_heads=la.value_heads if la is not None else 0,
        linear_attn_flops=models.linear_attention_flops(arch)[1],
        kv_width=kv_width,
        sparse_top_k=dsa.top_k if dsa is not None else 0,
        sparse_key_flops=sparse_key if dsa is not None else 0.0,
        index_heads=dsa.index_heads if dsa is not None else 0,
        index_head_dim=dsa.index_head_dim if dsa is not None else 0,
        dense_mlp_params=models.dense_mlp_params(arch),
        expert_params=models.expert_params(arch),
        shared_params=models.shared_expert_params(arch),
        router_params=models.router_params(arch),
        embedding_params=breakdown["embedding"] + breakdown["position_embedding"],
        lm_head_params=arch.vocab * arch.hidden,
        tied_embeddings=arch.tied_embeddings,
        params_total=models.params_total(arch),
        params_active=models.params_active(arch),
    )


def attended_keys(seq_len: FloatOrArray, window: int = 0) -> FloatOrArray:
    """Keys an average query attends to under a causal mask over ``seq_len`` tokens.

    Full attention: ``S/2`` (the convention of Megatron-Bridge; exactly ``(S+1)/2``). A sliding
    window of ``W < S``: query ``i`` sees ``min(i+1, W)`` keys, on average ``W - W*(W-1)/(2*S)``.
    ``window = 0`` means full attention.
    """
    s = np.asarray(seq_len, dtype=np.float64)
    out = s / 2.0
    if window > 0:
        w = float(window)
        out = np.where(s > w, w - w * (w - 1.0) / (2.0 * s), out)
    return out if isinstance(seq_len, np.ndarray) else float(out)


def matmul_params_per_token(shape: ModelShape) -> int:
    """Weights one token multiplies by (``N_matmul``): every layer's projections (softmax or
    linear attention), the active experts, router and shared experts of MoE layers, and the LM head."""
    moe_layer = shape.top_k * shape.expert_params + shape.shared_params + shape.router_params
    return (
        shape.attention_layers * shape.attn_params
        + shape.linear_layers * shape.linear_attn_params
        + shape.dense_layers * shape.dense_mlp_params
        + shape.moe_layers * moe_layer
        + shape.lm_head_params
    )


def full_attention_flops(shape: ModelShape, seq_len: FloatOrArray, *, causal: bool = True) -> FloatOrArray:
    """Forward FLOPs per token of one full-attention layer: ``2 * n_q * (d_qk + d_v)`` per key,
    ``S/2`` keys causal (:func:`attended_keys`), ``S`` not.

    DeepSeek sparse attention (DeepSeek-AI 2025, "DeepSeek-V3.2-Exp", Sec. 2.1 and 3): a query attends
    to at most ``k_top`` keys in MLA's absorbed (MQA) mode, ``n_q * (2*(r_kv + d_r) + 2*r_kv)`` per key
    (``attended_keys(S, k_top)`` keys, ``min(S, k_top)`` non-causal), or as masked dense attention
    where that is cheaper (short sequences); the lightning indexer adds ``2*H_I*d_I`` per key of the
    whole (causal) context, so past ``k_top`` the attention grows linearly and only the small
    indexer term quadratically."""
    s = np.asarray(seq_len, dtype=np.float64)
    keys = attended_keys(s) if causal else s
    out = 2.0 * shape.heads * (shape.qk_head_dim + shape.v_head_dim) * keys
    if shape.sparse_top_k:
        top = attended_keys(s, shape.sparse_top_k) if causal else np.minimum(s, float(shape.sparse_top_k))
        out = np.minimum(out, shape.heads * shape.sparse_key_flops * top) + shape.indexer_flops * keys
    return out if isinstance(seq_len, np.ndarray) else float(out)


def attention_flops_per_token(shape: ModelShape, seq_len: FloatOrArray, *, causal: bool = True) -> FloatOrArray:
    """Forward FLOPs of the attention scores and the weighted sum, all layers, per token:
    ``sum_layers 2 * n_q * (d_qk + d_v) * keys``; ``keys`` from :func:`attended_keys`
    (``causal=False``: every query sees all ``S`` keys, the PaLM/NeMo 24.07 count); full layers of a
    sparse-attention model by :func:`full_attention_flops`. Linear-attention layers add
    ``linear_attn_flops`` each, whatever ``S``."""
    per_key = 2.0 * shape.heads * (shape.qk_head_dim + shape.v_head_dim)
    linear = shape.linear_layers * shape.linear_attn_flops
    if not causal:
        out = shape.attention_layers * full_attention_flops(shape, seq_len, causal=False) + linear
        return out if isinstance(seq_len, np.ndarray) else float(out)
    full_layers = shape.attention_layers - shape.sliding_layers
    out = full_layers * full_attention_flops(shape, seq_len)
    if shape.sliding_layers:
        out = out + shape.sliding_layers * per_key * attended_keys(seq_len, shape.sliding_window)
    return out + linear


def forward_flops_per_token(shape: ModelShape, seq_len: FloatOrArray) -> FloatOrArray:
    """Forward FLOPs per token: ``2 * N_matmul + A`` (see the module docstring)."""
    return 2.0 * matmul_params_per_token(shape) + attention_flops_per_token(shape, seq_len)


def model_flops_per_token(shape: ModelShape, seq_len: FloatOrArray) -> FloatOrArray:
    """Model FLOPs per trained token: three times the forward (no recomputation)."""
    return 3.0 * forward_flops_per_token(shape, seq_len)


def published_flops_per_token(shape: ModelShape, seq_len: float, convention: str) -> float:
    """FLOPs per token as a publication counted them, to turn its TFLOP/s back into tokens/s.

    * ``"megatron-2021"``: Narayanan et al. 2021 eq. 3, ``96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h))``
      per ``B*s`` tokens: GPT layers, non-causal attention, with the recomputed forward (4 passes).
      Megatron-DeepSpeed (BLOOM, MT-NLG) prints the same formula.
    * ``"nemo-24.07"``: model FLOPs with non-causal attention, no recompute (NeMo's
      ``flops_formulas``; PaLM App. B counts attention the same way).
    * ``"model"``: this module's :func:`model_flops_per_token` (Megatron-Bridge 25.x).
    """
    if convention == "megatron-2021":
        h, n_layers = float(shape.hidden), float(shape.layers)
        return 96.0 * n_layers * h * h * (1.0 + seq_len / (6.0 * h) + shape.vocab / (16.0 * n_layers * h))
    if convention == "nemo-24.07":
        attention = attention_flops_per_token(shape, seq_len, causal=False)
        return float(6.0 * matmul_params_per_token(shape) + 3.0 * attention)
    if convention == "model":
        return float(model_flops_per_token(shape, seq_len))
    raise ValueError(f"unknown FLOP convention {convention!r}")


__all__ = [
    "ModelShape",
    "attended_keys",
    "attention_flops_per_token",
    "forward_flops_per_token",
    "full_attention_flops",
    "matmul_params_per_token",
    "model_flops_per_token",
    "model_shape",
    "published_flops_per_token",
]
