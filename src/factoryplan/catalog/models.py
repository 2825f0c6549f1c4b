"""LLM architectures: parameter counts, KV-cache size and resolving a model reference.

Every count here is derived from a :class:`~factoryplan.catalog.schema.ModelArch` by the
formulas in the docstrings; nothing is looked up. Notation: ``h`` hidden size, ``L`` layers,
``n_q`` attention heads, ``n_kv`` key/value heads, ``d`` head dimension, ``V`` vocabulary,
``f`` dense MLP intermediate size, ``f_e`` one routed expert's intermediate size, ``E`` routed
experts, ``k`` routed experts per token.

Conventions (those of the Hugging Face implementations, which the published counts follow):

* Rotary position embeddings have no parameters; a learned absolute position table has
  ``position_embeddings * h``.
* An RMSNorm has a weight of its width; a LayerNorm a weight and a bias (twice its width).
* A multi-token-prediction (MTP) head is not part of the model: DeepSeek-V3's 671B excludes its
  14B MTP module (the 685B on its Hugging Face page includes it).
* A vision tower or other non-text module is not part of the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from factoryplan.catalog.hf_config import parse_hf_config
from factoryplan.catalog.schema import MLA, Entry, ModelArch
from factoryplan.errors import FactoryplanError, unknown

if TYPE_CHECKING:
    from factoryplan.catalog.load import Catalog

FloatOrArray = float | npt.NDArray[np.float64]

# ---------------------------------------------------------------- layer layout


def is_moe_layer(arch: ModelArch, index: int) -> bool:
    """Whether layer ``index`` (0-based) has a mixture-of-experts block instead of a dense MLP.

    Layers ``0 .. dense_layers-1`` are dense; from ``dense_layers`` on, every ``layer_freq``-th
    layer is MoE: ``index >= dense_layers and (index - dense_layers) % layer_freq == 0``.
    DeepSeek-V3 (``first_k_dense_replace=3``, ``moe_layer_freq=1``): layers 3..60 are MoE.
    """
    if arch.moe is None or index < arch.moe.dense_layers:
        return False
    return (index - arch.moe.dense_layers) % arch.moe.layer_freq == 0


def moe_layers(arch: ModelArch) -> int:
    """Number of MoE layers: ``ceil((L - dense_layers) / layer_freq)``, 0 for a dense model."""
    if arch.moe is None or arch.layers <= arch.moe.dense_layers:
        return 0
    return -(-(arch.layers - arch.moe.dense_layers) // arch.moe.layer_freq)


def dense_layers(arch: ModelArch) -> int:
    """Number of layers with a dense MLP: ``L - moe_layers``."""
    return arch.layers - moe_layers(arch)


# ---------------------------------------------------------------- per-layer counts


def _norm(arch: ModelArch, width: int) -> int:
    """One normalisation over ``width``: RMSNorm ``width``, LayerNorm ``2*width`` (weight, bias)."""
    return 2 * width if arch.norm == "layer" else width


def _mlp(arch: ModelArch, ffn: int, bias: bool) -> int:
    """One MLP of intermediate size ``ffn``.

    Gated (SwiGLU: gate, up, down): ``3*h*ffn``, biases ``2*ffn + h``.
    Plain (GELU: up, down): ``2*h*ffn``, biases ``ffn + h``.
    """
    if ffn == 0:
        return 0
    h = arch.hidden
    if arch.mlp == "gated":
        return 3 * h * ffn + ((2 * ffn + h) if bias else 0)
    return 2 * h * ffn + ((ffn + h) if bias else 0)


def _mla_attention(arch: ModelArch, mla: MLA) -> int:
    """Multi-head latent attention (DeepSeek-V2/V3, arXiv:2405.04434 Sec. 2.1).

    With ``r_q = q_lora_rank``, ``r_kv = kv_lora_rank``, ``d_n``/``d_r`` the no-RoPE/RoPE
    query-key head dims and ``d_v`` the value head dim:
    ``q_a_proj h*r_q + q_b_proj r_q*n_q*(d_n+d_r)`` (or ``q_proj h*n_q*(d_n+d_r)`` when
    ``r_q = 0``), ``kv_a_proj_with_mqa h*(r_kv+d_r)``, ``kv_b_proj r_kv*n_q*(d_n+d_v)``,
    ``o_proj n_q*d_v*h``. Biases (``attention_bias``) on q_a/kv_a, o bias with
    ``attention_out_bias``. The q_a and kv_a RMSNorms are counted in :func:`norm_params_per_layer`.
    """
    h, n = arch.hidden, arch.heads
    qk = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        q = h * mla.q_lora_rank + mla.q_lora_rank * n * qk + (mla.q_lora_rank if arch.attention_bias else 0)
    else:
        q = h * n * qk
    kv_a = h * (mla.kv_lora_rank + mla.qk_rope_head_dim)
    kv_a += (mla.kv_lora_rank + mla.qk_rope_head_dim) if arch.attention_bias else 0
    kv_b = mla.kv_lora_rank * n * (mla.qk_nope_head_dim + mla.v_head_dim)
    o = n * mla.v_head_dim * h + (h if arch.attention_out_bias else 0)
    return q + kv_a + kv_b + o


def attention_params_per_layer(arch: ModelArch) -> int:
    """Attention projections of one layer (norms excluded, sinks included).

    GQA/MHA: ``q h*n_q*d + k h*n_kv*d + v h*n_kv*d + o n_q*d*h``; ``attention_bias`` adds
    ``n_q*d + 2*n_kv*d`` (q/k/v), ``attention_out_bias`` adds ``h`` (o). Attention sinks
    (gpt-oss) add one learned logit per head, ``n_q``. MLA: see :func:`_mla_attention`.
    """
    sinks = arch.heads if arch.attention_sinks else 0
    if arch.mla is not None:
        return _mla_attention(arch, arch.mla) + sinks
    h, d = arch.hidden, arch.head_dim
    q, kv = arch.heads * d, arch.kv_heads * d
    weights = h * q + 2 * h * kv + q * h
    bias = (q + 2 * kv if arch.attention_bias else 0) + (h if arch.attention_out_bias else 0)
    return weights + bias + sinks


def norm_params_per_layer(arch: ModelArch) -> int:
    """Normalisation weights of one layer.

    Two per layer (before attention, before the MLP), plus: per-head q/k norms (Qwen3,
    ``qk_norm``) ``2*d`` (RMSNorm over the head dimension, shared by all heads); MLA's
    ``q_a_layernorm`` ``r_q`` (when ``r_q > 0``) and ``kv_a_layernorm`` ``r_kv`` (always RMSNorm).
    """
    total = 2 * _norm(arch, arch.hidden)
    if arch.qk_norm:
        total += 2 * _norm(arch, arch.head_dim)
    if arch.mla is not None:
        total += arch.mla.q_lora_rank + arch.mla.kv_lora_rank
    return total


def dense_mlp_params(arch: ModelArch) -> int:
    """The dense MLP of one dense layer: :func:`_mlp` at ``f`` (with ``mlp_bias``)."""
    return _mlp(arch, arch.ffn, arch.mlp_bias)


def expert_params(arch: ModelArch) -> int:
    """One routed expert: a gated MLP at ``f_e`` (``3*h*f_e``), with biases when
    ``expert_bias`` (gpt-oss: ``2*f_e + h``). 0 for a dense model."""
    if arch.moe is None:
        return 0
    return _mlp(arch, arch.moe.expert_ffn, arch.moe.expert_bias)


def shared_expert_params(arch: ModelArch) -> int:
    """All shared experts of one MoE layer together: an MLP at ``shared_ffn`` (``3*h*shared_ffn``).

    DeepSeek-V3 implements its one shared expert as one MLP of ``n_shared * moe_intermediate_size``.
    """
    if arch.moe is None or arch.moe.shared == 0:
        return 0
    return _mlp(arch, arch.moe.shared_ffn, arch.mlp_bias)


def router_params(arch: ModelArch) -> int:
    """The router (gate) of one MoE layer: ``h*E``, plus ``E`` with ``router_bias``."""
    if arch.moe is None:
        return 0
    return arch.hidden * arch.moe.experts + (arch.moe.experts if arch.moe.router_bias else 0)


def dense_layer_params(arch: ModelArch) -> int:
    """One whole dense layer: attention + norms + dense MLP."""
    return attention_params_per_layer(arch) + norm_params_per_layer(arch) + dense_mlp_params(arch)


def moe_layer_params(arch: ModelArch) -> int:
    """One whole MoE layer: attention + norms + router + shared experts + all ``E`` experts."""
    if arch.moe is None:
        return 0
    experts = arch.moe.experts * expert_params(arch)
    return (
        attention_params_per_layer(arch)
        + norm_params_per_layer(arch)
        + router_params(arch)
        + shared_expert_params(arch)
        + experts
    )


def moe_layer_active_params(arch: ModelArch) -> int:
    """What one token touches in one MoE layer: as :func:`moe_layer_params` with ``k`` of the
    ``E`` routed experts."""
    if arch.moe is None:
        return 0
    return moe_layer_params(arch) - (arch.moe.experts - arch.moe.active) * expert_params(arch)


# ---------------------------------------------------------------- whole model


def param_breakdown(arch: ModelArch) -> dict[str, int]:
    """Parameters by component, summed over layers.

    ``embedding`` ``V*h``; ``position_embedding`` ``position_embeddings*h`` (learned tables only);
    ``lm_head`` ``V*h`` unless ``tied_embeddings``; ``attention`` ``L*``
    :func:`attention_params_per_layer`; ``mlp_dense`` ``dense_layers*``
    :func:`dense_mlp_params`; ``moe_routed`` ``moe_layers*E*`` :func:`expert_params`;
    ``moe_shared`` ``moe_layers*`` :func:`shared_expert_params`; ``router`` ``moe_layers*``
    :func:`router_params`; ``norms`` ``L*`` :func:`norm_params_per_layer` plus the final norm.
    """
    n_moe = moe_layers(arch)
    n_experts = arch.moe.experts if arch.moe is not None else 0
    embedding = arch.vocab * arch.hidden
    return {
        "embedding": embedding,
        "position_embedding": arch.position_embeddings * arch.hidden,
        "lm_head": 0 if arch.tied_embeddings else embedding,
        "attention": arch.layers * attention_params_per_layer(arch),
        "mlp_dense": dense_layers(arch) * dense_mlp_params(arch),
        "moe_routed": n_moe * n_experts * expert_params(arch),
        "moe_shared": n_moe * shared_expert_params(arch),
        "router": n_moe * router_params(arch),
        "norms": arch.layers * norm_params_per_layer(arch) + _norm(arch, arch.hidden),
    }


def params_total(arch: ModelArch) -> int:
    """All parameters: the sum of :func:`param_breakdown` (MTP heads and vision towers excluded)."""
    return sum(param_breakdown(arch).values())


def params_active(arch: ModelArch, *, embedding: bool = True) -> int:
    """Parameters one token uses: everything except the ``E - k`` routed experts it skips.

    ``total - moe_layers * (E - k) * expert_params``; equals :func:`params_total` for a dense
    model. ``embedding=False`` also drops the input embedding table and any learned position
    table (a lookup, no FLOPs) but keeps the LM head (the shared matrix when tied), the
    convention of the gpt-oss model card (5.13B active). Mixtral, Qwen3 and DeepSeek publish
    active counts with the embedding included.
    """
    b = param_breakdown(arch)
    active = params_total(arch)
    if arch.moe is not None:
        active -= moe_layers(arch) * (arch.moe.experts - arch.moe.active) * expert_params(arch)
    if not embedding:
        active -= b["position_embedding"]
        if not arch.tied_embeddings:
            active -= b["embedding"]
    return active


def params_non_embedding(arch: ModelArch) -> int:
    """Total without the embedding, position table and LM head (the 'non-embedding' figure
    Qwen and Kaplan et al. 2020 report)."""
    b = param_breakdown(arch)
    return params_total(arch) - b["embedding"] - b["position_embedding"] - b["lm_head"]


# ---------------------------------------------------------------- KV cache


def kv_elements_per_token_per_layer(arch: ModelArch) -> int:
    """Cached elements per token in one attention layer.

    GQA/MHA: keys and values, ``2*n_kv*d``. MLA: the compressed latent and the decoupled RoPE
    key, ``kv_lora_rank + qk_rope_head_dim``, shared by all heads: the cache of serving engines
    that absorb ``kv_b_proj`` (vLLM, SGLang, TensorRT-LLM; DeepSeek-V2 paper Sec. 2.1.3). A naive
    implementation that caches decompressed k and v holds ``n_q*(d_n+d_r+d_v)`` instead.
    """
    if arch.mla is not None:
        return arch.mla.kv_lora_rank + arch.mla.qk_rope_head_dim
    return 2 * arch.kv_heads * arch.head_dim


def kv_cache_bytes_per_token(arch: ModelArch, bytes_per_element: FloatOrArray) -> FloatOrArray:
    """KV-cache bytes for one more token of context, every layer caching it:
    ``L * kv_elements_per_token_per_layer * bytes_per_element``.

    Llama 3.1 70B at bf16: ``80 * 2*8*128 * 2 = 327,680`` bytes; DeepSeek-V3 (MLA) at bf16:
    ``61 * (512+64) * 2 = 70,272`` bytes. Sliding-window layers stop growing at the window; use
    :func:`kv_cache_bytes` for a given context.
    """
    return arch.layers * kv_elements_per_token_per_layer(arch) * bytes_per_element


def kv_cache_bytes(
    arch: ModelArch, context_tokens: FloatOrArray, bytes_per_element: FloatOrArray
) -> FloatOrArray:
    """KV-cache bytes of one sequence holding ``context_tokens`` tokens.

    ``per_layer * bytes_per_element * ((L - S) * T + S * min(T, W))`` with ``S`` the
    sliding-window layers, ``W`` the window and ``T`` the context; ``S = 0`` when ``W = 0``.
    Vectorized over ``context_tokens`` and ``bytes_per_element``. Paged allocators round up to
    their block size; that is the engine's business, not this formula's.
    """
    per_layer = kv_elements_per_token_per_layer(arch) * bytes_per_element
    sliding = arch.sliding_layers if arch.sliding_window > 0 else 0
    full = arch.layers - sliding
    if isinstance(context_tokens, np.ndarray):
        tokens: FloatOrArray = context_tokens.astype(np.float64)
        capped: FloatOrArray = np.minimum(tokens, float(arch.sliding_window))
    else:
        tokens = float(context_tokens)
        capped = min(tokens, float(arch.sliding_window))
    return per_layer * (full * tokens + sliding * capped)


# ---------------------------------------------------------------- identity and lookup

_ENTRY_FIELDS = frozenset(Entry.model_fields) | {"published_params", "published_active_params"}


def arch_fields(arch: ModelArch) -> dict[str, object]:
    """The architecture of an entry without its identity, provenance and published counts:
    two entries with equal ``arch_fields`` have the same parameters and KV cache."""
    return {k: v for k, v in arch.model_dump().items() if k not in _ENTRY_FIELDS}


def resolve_model(catalog: Catalog, ref: str) -> ModelArch:
    """A model by catalog id, or parsed from a Hugging Face ``config.json``.

    ``ref`` is a catalog id (``llama-3.1-70b``), a path to a JSON file, or a directory that
    holds a ``config.json``. A catalog id wins over a file of the same name. An unknown id
    gets a did-you-mean and the list of ids; a path that ends in ``.json`` but does not exist,
    or a directory without ``config.json``, is reported with the path.
    """
    if ref in catalog.models:
        return catalog.models[ref]
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FactoryplanError("directory has no config.json", where=str(path), field="model")
        return parse_hf_config(path / "config.json")
    if path.is_file():
        return parse_hf_config(path)
    if ref.endswith(".json"):
        raise FactoryplanError("model config file not found", where=str(path), field="model")
    err = unknown("model", ref, catalog.models)
    raise FactoryplanError(
        err.message, field="model", allowed=f"{err.allowed}; or a path to a Hugging Face config.json"
    )


__all__ = [
    "arch_fields",
    "attention_params_per_layer",
    "dense_layer_params",
    "dense_layers",
    "dense_mlp_params",
    "expert_params",
    "is_moe_layer",
    "kv_cache_bytes",
    "kv_cache_bytes_per_token",
    "kv_elements_per_token_per_layer",
    "moe_layer_active_params",
    "moe_layer_params",
    "moe_layers",
    "norm_params_per_layer",
    "param_breakdown",
    "params_active",
    "params_non_embedding",
    "params_total",
    "resolve_model",
    "router_params",
    "shared_expert_params",
]
