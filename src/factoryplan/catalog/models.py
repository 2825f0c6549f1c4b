"""LLM architectures: parameter counts, KV-cache size and resolving a model reference.

Every count here is derived from a :class:`~factoryplan.catalog.schema.ModelArch` by the
formulas in the docstrings; nothing is looked up. Notation: ``h`` hidden size, ``L`` layers,
``n_q`` attention heads, ``n_kv`` key/value heads, ``d`` head dimension, ``V`` vocabulary,
``f`` dense MLP intermediate size, ``f_e`` one routed expert's intermediate size, ``E`` routed
experts, ``k`` routed experts per token. Hybrid models (Qwen3-Next, Qwen3.5) replace the softmax
attention of ``L_lin`` layers by Gated DeltaNet linear attention with ``H_k`` query/key heads of
``d_k``, ``H_v`` value heads of ``d_v`` and a causal convolution of width ``K``; the other
``L - L_lin`` layers keep softmax attention (and the KV cache). DeepSeek sparse attention (DSA,
DeepSeek-V3.2) adds to the MLA of every layer a lightning indexer of ``H_I`` heads of ``d_I`` that
picks the ``k_top`` cached tokens each query attends to.

Conventions (those of the Hugging Face implementations, which the published counts follow):

* Rotary position embeddings have no parameters; a learned absolute position table has
  ``position_embeddings * h``.
* An RMSNorm has a weight of its width; a LayerNorm a weight and a bias (twice its width).
* A multi-token-prediction (MTP) head is not part of the model: DeepSeek-V3's 671B excludes its
  14B MTP module (the 685B on its Hugging Face page includes it).
* A vision tower or other non-text module is not part of the model.

Which model a reference names (catalog id, config.json, repository name) is
:mod:`factoryplan.catalog.model_refs`'s, re-exported here.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from factoryplan.catalog.model_refs import ARCH_EQUIVALENT as ARCH_EQUIVALENT
from factoryplan.catalog.model_refs import MODEL_IDS as MODEL_IDS
from factoryplan.catalog.model_refs import arch_fields as arch_fields
from factoryplan.catalog.model_refs import check_context as check_context
from factoryplan.catalog.model_refs import repo_model_id as repo_model_id
from factoryplan.catalog.model_refs import resolve_model as resolve_model
from factoryplan.catalog.schema import MLA, LinearAttention, ModelArch, SparseAttention

FloatOrArray = float | npt.NDArray[np.float64]

# The convolution state of a linear-attention layer is kept in the activation dtype (BF16) by
# SGLang and vLLM; only the recurrent state follows ``mamba_ssm_dtype`` (``state_bytes``).
CONV_STATE_BYTES = 2
DELTA_RULE_CHUNK = 64  # tokens per chunk of the chunked gated delta rule (FLA, SGLang and vLLM kernels)
SSD_CHUNK = 128  # tokens per chunk of Mamba-2's chunked scan (the configs' chunk_size; mamba_ssm's default)
# The lightning indexer caches its key in FP8 with one float32 scale per block of 128 elements
# (DeepSeek-V3.2-Exp inference code: k_cache float8_e4m3fn, k_scale_cache float32 per 128; vLLM and
# SGLang keep the same 132 bytes per token and layer), whatever the precision of the MLA cache.
INDEX_KEY_BYTES = 1
INDEX_SCALE_BYTES = 4
INDEX_SCALE_BLOCK = 128

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


def ffn_blocks(arch: ModelArch) -> int:
    """Blocks with a feed-forward part, ``F``: every layer (``L``) unless the architecture keeps
    mixer and feed-forward in separate blocks (``ffn_layers``; Nemotron-H)."""
    return arch.layers if arch.ffn_layers is None else arch.ffn_layers


def moe_layers(arch: ModelArch) -> int:
    """Number of MoE layers: ``ceil((F - dense_layers) / layer_freq)`` over the feed-forward blocks
    ``F`` (:func:`ffn_blocks`), 0 for a dense model."""
    blocks = ffn_blocks(arch)
    if arch.moe is None or blocks <= arch.moe.dense_layers:
        return 0
    return -(-(blocks - arch.moe.dense_layers) // arch.moe.layer_freq)


def dense_layers(arch: ModelArch) -> int:
    """Number of layers with a dense MLP: ``F - moe_layers``."""
    return ffn_blocks(arch) - moe_layers(arch)


def linear_attention_layers(arch: ModelArch) -> int:
    """Number of layers with linear attention (Gated DeltaNet), ``L_lin``; 0 for a transformer."""
    return arch.linear_attention.layers if arch.linear_attention is not None else 0


def attention_layers(arch: ModelArch) -> int:
    """Number of layers with softmax attention (full or sliding-window): ``L - L_lin``.
    Qwen3.5-397B-A17B: every 4th of its 60 layers, 15."""
    return arch.layers - linear_attention_layers(arch)


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
    """Attention projections of one softmax-attention layer (norms excluded, sinks included).

    GQA/MHA: ``q h*n_q*d + k h*n_kv*d + v h*n_kv*d + o n_q*d*h``; ``attention_bias`` adds
    ``n_q*d + 2*n_kv*d`` (q/k/v), ``attention_out_bias`` adds ``h`` (o). Attention sinks
    (gpt-oss) add one learned logit per head, ``n_q``. An output gate (``attn_output_gate``,
    Qwen3-Next: ``o_proj(attn * sigmoid(gate))``) doubles q_proj's outputs, ``+ h*n_q*d``
    (and ``n_q*d`` bias). MLA: see :func:`_mla_attention`, plus the lightning indexer of sparse
    attention (:func:`indexer_params_per_layer`). Linear-attention layers: see
    :func:`linear_attention_params_per_layer`.
    """
    sinks = arch.heads if arch.attention_sinks else 0
    if arch.mla is not None:
        return _mla_attention(arch, arch.mla) + indexer_params_per_layer(arch) + sinks
    h, d = arch.hidden, arch.head_dim
    q, kv = arch.heads * d, arch.kv_heads * d
    gate = q if arch.attn_output_gate else 0
    weights = h * (q + gate) + 2 * h * kv + q * h
    bias = (q + gate + 2 * kv if arch.attention_bias else 0) + (h if arch.attention_out_bias else 0)
    return weights + bias + sinks


def indexer_params_per_layer(arch: ModelArch) -> int:
    """The lightning indexer of one sparse-attention layer; 0 without sparse attention.

    DeepSeek-V3.2-Exp reference implementation (``inference/model.py``, class ``Indexer``), no
    biases: ``wq_b r_q*H_I*d_I`` (queries from MLA's compressed query), ``wk h*d_I`` (one key head
    shared by the indexer heads), ``k_norm`` a LayerNorm ``2*d_I`` and ``weights_proj h*H_I`` (each
    head's weight in the index score). DeepSeek-V3.2 (``r_q = 1536``, ``H_I = 64``, ``d_I = 128``):
    ``12,582,912 + 917,504 + 256 + 458,752 = 13,959,424`` per layer, 0.85B over 61 layers.
    """
    dsa, mla = arch.sparse_attention, arch.mla
    if dsa is None or mla is None:
        return 0
    d, n = dsa.index_head_dim, dsa.index_heads
    return mla.q_lora_rank * n * d + arch.hidden * d + 2 * d + arch.hidden * n


def indexer_flops_per_key(sparse: SparseAttention | None) -> float:
    """FLOPs of one (query, cached key) pair in the lightning indexer: ``2*H_I*d_I`` (each head's
    ``q·k``; the ReLU, the head weights and the sum over heads add ``3*H_I``, not counted), run on
    FP8 tensor cores in the released kernels (DeepGEMM ``fp8_mqa_logits``). 0 without."""
    return 0.0 if sparse is None else 2.0 * sparse.index_heads * sparse.index_head_dim


def indexer_key_bytes(arch: ModelArch) -> float:
    """Bytes of one token's cached indexer key in one layer: ``d_I`` FP8 values and a float32 scale
    per block of 128, ``d_I + 4*ceil(d_I/128)`` (132 for DeepSeek-V3.2); 0 without sparse attention."""
    dsa = arch.sparse_attention
    if dsa is None:
        return 0.0
    blocks = -(-dsa.index_head_dim // INDEX_SCALE_BLOCK)
    return float(dsa.index_head_dim * INDEX_KEY_BYTES + blocks * INDEX_SCALE_BYTES)


def _linear_widths(la: LinearAttention) -> tuple[int, int]:
    """(key width ``H_k*d_k``, value width ``H_v*d_v``) of a Gated DeltaNet layer."""
    return la.key_heads * la.key_head_dim, la.value_heads * la.value_head_dim


def linear_attention_params_per_layer(arch: ModelArch) -> int:
    """The Gated DeltaNet block of one linear-attention layer (its gated norm included); 0 without.

    With ``w_k = H_k*d_k`` and ``w_v = H_v*d_v`` (transformers' ``Qwen3NextGatedDeltaNet``,
    ``Qwen3_5MoeGatedDeltaNet``): ``in_proj_qkvz h*(2*w_k + 2*w_v)`` (Qwen3.5 splits it into
    ``in_proj_qkv`` and ``in_proj_z``), ``in_proj_ba h*2*H_v`` (``in_proj_b``, ``in_proj_a``),
    the depthwise ``conv1d`` without bias over the q/k/v channels ``(2*w_k + w_v)*K``, ``dt_bias``
    and ``A_log`` ``2*H_v``, the gated RMSNorm over one value head ``d_v`` and
    ``out_proj w_v*h``. Qwen3.5-397B-A17B: 118,014,208 per layer. Mamba-2 layers: see
    :func:`_mamba2_params`, with the same convolution over x, B and C (``w_v + 2*w_k`` channels;
    ``+1`` per channel with ``conv_bias``).
    """
    la = arch.linear_attention
    if la is None:
        return 0
    h = arch.hidden
    wk, wv = _linear_widths(la)
    conv = (2 * wk + wv) * (la.conv_kernel + (1 if la.conv_bias else 0))
    if la.kind == "mamba2":
        return _mamba2_params(h, la.value_heads, wk, wv) + conv
    projections = h * (2 * wk + 2 * wv) + h * 2 * la.value_heads + wv * h
    return projections + conv + 2 * la.value_heads + la.value_head_dim


def _mamba2_params(h: int, heads: int, wk: int, wv: int) -> int:
    """A Mamba-2 mixer without its convolution, for ``wv = H*P`` channels (``d_inner``) and
    ``wk = G*N`` (B and C of ``G`` groups of state size ``N``): ``in_proj h*(2*wv + 2*wk + H)``
    (z, x, B, C and dt), ``dt_bias``, ``A_log`` and ``D`` ``3*H``, the gated RMSNorm over ``wv`` and
    ``out_proj wv*h`` (transformers' ``NemotronHMamba2Mixer``). Nemotron 3 Nano (``h = 2688``,
    ``H = P = 64``, ``G = 8``, ``N = 128``): 38,711,488, and 30,720 in its convolution with bias."""
    return h * (2 * wv + 2 * wk + heads) + 3 * heads + wv + wv * h


def linear_attention_flops(arch: ModelArch) -> tuple[float, float]:
    """(decode, prefill) FLOPs per token of one linear-attention layer's recurrence and
    convolution, projections excluded; (0, 0) without linear attention.

    Decode: a token decays, reads (``S^T k``), updates (``k·δ^T``) and reads out (``S^T q``) each
    value head's ``d_k x d_v`` state, ``7·H_v·d_k·d_v``, plus ``2·K`` per channel of the
    convolution (``2·H_k·d_k + H_v·d_v`` channels). Prefill: the chunked delta rule,
    ``2·H_v·(2·d_k·d_v + C·(d_k + d_v))`` with chunks of ``C = 64`` tokens: per chunk and head the
    intra-chunk ``Q·K^T`` and WY-transformed values (``C²·(d_k + d_v)`` multiply-adds) and the
    inter-chunk state read and update (``2·C·d_k·d_v``) (Yang et al. 2024, "Parallelizing Linear
    Transformers with the Delta Rule over Sequence Length", Sec. 3; Gated DeltaNet,
    arXiv:2412.06464, Sec. 3.3). Both are linear in the context: no term grows with it.

    Mamba-2 (Dao and Gu 2024, "Transformers are SSMs", arXiv:2405.21060, Sec. 6): decode decays the
    ``P x N`` state of each of the ``H`` heads, adds ``dt·x·B^T`` and reads out ``C``, ``5·H·N·P``;
    prefill runs the chunked scan (SSD) with chunks of ``Q = 128``: per token the chunk states and
    their read-out, ``4·H·N·P``, and the causal intra-chunk products, ``Q·G·N`` for ``C·B^T`` (B and
    C are shared by the ``G`` groups' heads) and ``Q·H·P`` for their product with x.
    """
    la = arch.linear_attention
    if la is None:
        return 0.0, 0.0
    wk, wv = _linear_widths(la)
    dkdv = la.key_head_dim * la.value_head_dim
    conv = 2.0 * la.conv_kernel * (2 * wk + wv)
    if la.kind == "mamba2":
        decode = 5.0 * la.value_heads * dkdv + conv
        prefill = la.value_heads * (4.0 * dkdv + SSD_CHUNK * la.value_head_dim) + SSD_CHUNK * wk
        return decode, prefill
    decode = 7.0 * la.value_heads * dkdv + conv
    prefill = 2.0 * la.value_heads * (2.0 * dkdv + DELTA_RULE_CHUNK * (la.key_head_dim + la.value_head_dim))
    return decode, prefill


def norm_params_per_layer(arch: ModelArch, *, linear: bool = False) -> int:
    """Normalisation weights of one layer.

    Two per layer (before attention, before the MLP), plus: per-head q/k norms (Qwen3,
    ``qk_norm``) ``2*d`` (RMSNorm over the head dimension, shared by all heads); MLA's
    ``q_a_layernorm`` ``r_q`` (when ``r_q > 0``) and ``kv_a_layernorm`` ``r_kv`` (always RMSNorm).
    ``linear=True``: a linear-attention layer, the two alone (its gated norm is counted in
    :func:`linear_attention_params_per_layer`).
    """
    total = 2 * _norm(arch, arch.hidden)
    if linear:
        return total
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
    """All shared experts of one MoE layer together: an MLP at ``shared_ffn`` (``3*h*shared_ffn``),
    plus ``h`` for the sigmoid gate on their output (``shared_gate``: Qwen2-MoE, Qwen3-Next,
    Qwen3.5's ``shared_expert_gate``).

    DeepSeek-V3 implements its one shared expert as one MLP of ``n_shared * moe_intermediate_size``.
    """
    if arch.moe is None or arch.moe.shared == 0:
        return 0
    return _mlp(arch, arch.moe.shared_ffn, arch.mlp_bias) + (arch.hidden if arch.moe.shared_gate else 0)


def router_params(arch: ModelArch) -> int:
    """The router (gate) of one MoE layer: ``h*E``, plus ``E`` with ``router_bias``."""
    if arch.moe is None:
        return 0
    return arch.hidden * arch.moe.experts + (arch.moe.experts if arch.moe.router_bias else 0)


def _mixer(arch: ModelArch, linear: bool) -> int:
    """Token mixer and norms of one layer: softmax attention, or linear attention (``linear``)."""
    if linear:
        return linear_attention_params_per_layer(arch) + norm_params_per_layer(arch, linear=True)
    return attention_params_per_layer(arch) + norm_params_per_layer(arch)


def dense_layer_params(arch: ModelArch, *, linear: bool = False) -> int:
    """One whole dense layer: attention + norms + dense MLP (``linear``: with linear attention)."""
    return _mixer(arch, linear) + dense_mlp_params(arch)


def moe_layer_params(arch: ModelArch, *, linear: bool = False) -> int:
    """One whole MoE layer: attention + norms + router + shared experts + all ``E`` experts
    (``linear``: with linear attention)."""
    if arch.moe is None:
        return 0
    experts = arch.moe.experts * expert_params(arch)
    return _mixer(arch, linear) + router_params(arch) + shared_expert_params(arch) + experts


def moe_layer_active_params(arch: ModelArch, *, linear: bool = False) -> int:
    """What one token touches in one MoE layer: as :func:`moe_layer_params` with ``k`` of the
    ``E`` routed experts."""
    if arch.moe is None:
        return 0
    return moe_layer_params(arch, linear=linear) - (arch.moe.experts - arch.moe.active) * expert_params(arch)


def attention_params_total(arch: ModelArch) -> int:
    """Token-mixer projections of all layers: ``(L - L_lin)*`` :func:`attention_params_per_layer`
    ``+ L_lin*`` :func:`linear_attention_params_per_layer`."""
    softmax = attention_layers(arch) * attention_params_per_layer(arch)
    return softmax + linear_attention_layers(arch) * linear_attention_params_per_layer(arch)


# ---------------------------------------------------------------- whole model


def param_breakdown(arch: ModelArch) -> dict[str, int]:
    """Parameters by component, summed over layers.

    ``embedding`` ``V*h``; ``position_embedding`` ``position_embeddings*h`` (learned tables only);
    ``lm_head`` ``V*h`` unless ``tied_embeddings``; ``attention`` :func:`attention_params_total`
    (softmax and linear attention layers); ``mlp_dense`` ``dense_layers*``
    :func:`dense_mlp_params`; ``moe_routed`` ``moe_layers*E*`` :func:`expert_params`;
    ``moe_shared`` ``moe_layers*`` :func:`shared_expert_params`; ``router`` ``moe_layers*``
    :func:`router_params`; ``norms`` :func:`norm_params_per_layer` of every layer (of its kind)
    plus the final norm.
    """
    n_moe = moe_layers(arch)
    n_experts = arch.moe.experts if arch.moe is not None else 0
    embedding = arch.vocab * arch.hidden
    return {
        "embedding": embedding,
        "position_embedding": arch.position_embeddings * arch.hidden,
        "lm_head": 0 if arch.tied_embeddings else embedding,
        "attention": attention_params_total(arch),
        "mlp_dense": dense_layers(arch) * dense_mlp_params(arch),
        "moe_routed": n_moe * n_experts * expert_params(arch),
        "moe_shared": n_moe * shared_expert_params(arch),
        "router": n_moe * router_params(arch),
        "norms": attention_layers(arch) * norm_params_per_layer(arch)
        + linear_attention_layers(arch) * norm_params_per_layer(arch, linear=True)
        + _norm(arch, arch.hidden),
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
    """KV-cache bytes for one more token of context, every softmax-attention layer caching it:
    ``(L - L_lin) * (kv_elements_per_token_per_layer * bytes_per_element + key_I)`` with ``key_I``
    the FP8 indexer key of sparse attention (:func:`indexer_key_bytes`, 0 without).

    Llama 3.1 70B at bf16: ``80 * 2*8*128 * 2 = 327,680`` bytes; DeepSeek-V3 (MLA) at bf16:
    ``61 * (512+64) * 2 = 70,272`` bytes; Qwen3.5-397B-A17B at bf16 (15 of 60 layers):
    ``15 * 2*2*256 * 2 = 30,720`` bytes; DeepSeek-V3.2 at bf16: ``61 * ((512+64)*2 + 132) = 78,324``
    bytes. Sliding-window layers stop growing at the window; use :func:`kv_cache_bytes` for a given
    context. Linear-attention layers cache no tokens; their fixed state is :func:`linear_state_bytes`.
    """
    per_layer = kv_elements_per_token_per_layer(arch) * bytes_per_element + indexer_key_bytes(arch)
    return attention_layers(arch) * per_layer


def kv_cache_bytes(
    arch: ModelArch, context_tokens: FloatOrArray, bytes_per_element: FloatOrArray
) -> FloatOrArray:
    """KV-cache bytes of one sequence holding ``context_tokens`` tokens.

    ``per_layer * bytes_per_element * ((L - L_lin - S) * T + S * min(T, W))`` with ``S`` the
    sliding-window layers, ``W`` the window, ``T`` the context and ``L_lin`` the linear-attention
    layers (no KV cache); ``S = 0`` when ``W = 0``. Sparse attention adds every layer's indexer key
    for every token, ``L * key_I * T`` (attention reads only ``k_top`` of the tokens, but all stay
    cached for the indexer). Vectorized over ``context_tokens`` and
    ``bytes_per_element``. Paged allocators round up to their block size; that is the engine's
    business, not this formula's. The fixed per-sequence state of linear-attention layers is not
    included (:func:`linear_state_bytes`).
    """
    per_layer = kv_elements_per_token_per_layer(arch) * bytes_per_element
    sliding = arch.sliding_layers if arch.sliding_window > 0 else 0
    full = attention_layers(arch) - sliding
    if isinstance(context_tokens, np.ndarray):
        tokens: FloatOrArray = context_tokens.astype(np.float64)
        capped: FloatOrArray = np.minimum(tokens, float(arch.sliding_window))
    else:
        tokens = float(context_tokens)
        capped = min(tokens, float(arch.sliding_window))
    return per_layer * (full * tokens + sliding * capped) + arch.layers * indexer_key_bytes(arch) * tokens


def linear_state_bytes_per_layer(arch: ModelArch) -> float:
    """The fixed state one sequence keeps in one linear-attention layer, whatever its length.

    The recurrent state ``H_v * d_k * d_v`` at ``state_bytes`` (``mamba_ssm_dtype``; float32 in
    Qwen3.5 and SGLang's default) plus the convolution state, the last ``K - 1`` inputs of the
    ``2*H_k*d_k + H_v*d_v`` q/k/v channels at :data:`CONV_STATE_BYTES`. Qwen3.5-397B-A17B:
    ``64*128*128*4 + 12288*3*2 = 4,268,032`` bytes. 0 without linear attention.
    """
    la = arch.linear_attention
    if la is None:
        return 0.0
    wk, wv = _linear_widths(la)
    recurrent = la.value_heads * la.key_head_dim * la.value_head_dim * la.state_bytes
    return float(recurrent + (2 * wk + wv) * (la.conv_kernel - 1) * CONV_STATE_BYTES)


def linear_state_bytes(arch: ModelArch) -> float:
    """The fixed state of one sequence over all linear-attention layers:
    ``L_lin *`` :func:`linear_state_bytes_per_layer` (Qwen3.5-397B-A17B: 45 layers, 192 MB),
    independent of the context; 0 for a transformer."""
    return linear_attention_layers(arch) * linear_state_bytes_per_layer(arch)


__all__ = [
    "CONV_STATE_BYTES",
    "DELTA_RULE_CHUNK",
    "INDEX_KEY_BYTES",
    "INDEX_SCALE_BLOCK",
    "INDEX_SCALE_BYTES",
    "arch_fields",
    "attention_layers",
    "attention_params_per_layer",
    "attention_params_total",
    "check_context",
    "dense_layer_params",
    "dense_layers",
    "dense_mlp_params",
    "expert_params",
    "ffn_blocks",
    "indexer_flops_per_key",
    "indexer_key_bytes",
    "indexer_params_per_layer",
    "is_moe_layer",
    "kv_cache_bytes",
    "kv_cache_bytes_per_token",
    "kv_elements_per_token_per_layer",
    "linear_attention_flops",
    "linear_attention_layers",
    "linear_attention_params_per_layer",
    "linear_state_bytes",
    "linear_state_bytes_per_layer",
    "moe_layer_active_params",
    "moe_layer_params",
    "moe_layers",
    "norm_params_per_layer",
    "param_breakdown",
    "params_active",
    "params_non_embedding",
    "params_total",
    "repo_model_id",
    "resolve_model",
    "router_params",
    "shared_expert_params",
]
