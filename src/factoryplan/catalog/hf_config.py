"""Read a Hugging Face ``config.json`` into a :class:`~factoryplan.catalog.schema.ModelArch`.

The reader looks at fields first and at ``model_type`` only for what a config leaves implicit
(GPT-2's biases and tied embeddings, Qwen2's q/k/v bias, Qwen3's q/k norms, gpt-oss's sinks).
It understands Llama, Mistral, Qwen2, Qwen3, Qwen3-MoE, Mixtral, DeepSeek-V2/V3/R1 and Kimi-K2
(MLA), DeepSeek-V3.2 (MLA with DeepSeek sparse attention: ``index_n_heads``, ``index_head_dim``,
``index_topk``), gpt-oss, MiniMax-M2, Gemma 2/3 (local and global layers by
``sliding_window_pattern``; tied embeddings and Gemma 3's q/k norms as the family's defaults),
GPT-2 and GPT-NeoX/Pythia configs, the hybrid Gated DeltaNet models Qwen3-Next and Qwen3.5
(``linear_*`` fields, ``layer_types`` or ``full_attention_interval``), Mamba-2 hybrids (Nemotron-H's
Mamba-2, attention, MLP and MoE blocks in Nemotron Nano 2 and Nemotron 3 Nano:
``hybrid_override_pattern`` or ``layers_block_type``; Granite 4.0-H's Mamba-2 and attention layers:
``layer_types``), and configs that nest the text model under ``text_config`` (multimodal
wrappers; the vision tower is not counted). A config with other layers than these (lightning
attention, other state-space layers, compressed or layer-shared sparse attention, Nemotron 3's
latent MoE, Nemotron NAS layers of different shapes) is refused with the reason; one that lacks a
needed field is refused with the list of fields it needs. The checkpoint's ``quantization_config``
gives the entry's ``release`` (the formats its weights are published in, which serving defaults to;
:mod:`factoryplan.catalog.hf_quant`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factoryplan.catalog.hf_fields import Config, bool_field, int_field, required_ints
from factoryplan.catalog.hf_hybrid import block_counts, granite_mamba, linear_attention, mamba2
from factoryplan.catalog.hf_quant import release_of
from factoryplan.catalog.schema import MLA, LinearAttention, ModelArch, MoE, SparseAttention
from factoryplan.errors import FactoryplanError

# The fields every config must give, by meaning, with the names families use for them.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "heads": ("num_attention_heads", "n_head"),
    "vocab": ("vocab_size", "padded_vocab_size"),
    "max_context": ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length"),
}
_FFN = ("intermediate_size", "n_inner", "ffn_hidden_size")
_KV_HEADS = ("num_key_value_heads", "num_kv_heads", "n_head_kv")
_EXPERTS = ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
_TOP_K = ("num_experts_per_tok", "experts_per_token", "num_experts_per_token", "moe_topk")
_WRAPPERS = ("text_config", "llm_config", "language_config")
_NESTED = frozenset({"vision_config", "audio_config", "quantization_config", *_WRAPPERS})

# What configs leave implicit, by model_type.
_PLAIN_MLP = frozenset({"gpt2", "gpt_bigcode", "gpt_neox", "gptj", "codegen", "nemotron_h"})  # nemotron_h: relu2
_RMS_ONLY = frozenset({"nemotron_h"})  # RMSNorm though the config names its epsilon layer_norm_epsilon
_ALL_BIASES = frozenset({"gpt2", "gpt_bigcode", "gpt_neox"})  # q/k/v, o and MLP biases
_MLP_BIAS_ONLY = frozenset({"gptj", "codegen"})
_QKV_BIAS_ONLY = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"})
_QWEN_HYBRID = frozenset({"qwen3_next", "qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text"})
_QK_NORM = frozenset({"qwen3", "qwen3_moe", "qwen3_vl", "qwen3_vl_moe", "gemma3", "gemma3_text", *_QWEN_HYBRID})
_SHARED_GATE = frozenset({"qwen2_moe", *_QWEN_HYBRID})  # sigmoid gate h -> 1 on the shared expert
_OUTPUT_GATE = frozenset({"qwen3_next"})  # gated attention without an attn_output_gate field
_LEARNED_POSITIONS = frozenset({"gpt2", "gpt_bigcode"})
_TIED_BY_DEFAULT = frozenset({"gpt2", "gpt_bigcode", "gemma", "gemma2", "gemma3", "gemma3_text"})
_SLIDING_EVERY_OTHER = frozenset({"gemma2"})  # local and global attention alternate
_SINKS = frozenset({"gpt_oss"})
_LLAMA4 = frozenset({"llama4", "llama4_text"})  # a shared expert of intermediate_size in every MoE layer
_EXPERT_BIAS = frozenset({"gpt_oss"})
_ROUTER_BIAS = frozenset({"glm4_moe", "glm_moe_dsa", "nemotron_h"})  # e_score_correction_bias, no topk_method field
_QKV_FLAG = frozenset({"glm4_moe"})  # attention_bias covers q/k/v only: o_proj has no bias

# Fields that announce layers factoryplan does not model (Nemotron-H's are read, see hf_hybrid.block_counts).
_NOVEL_FIELDS: dict[str, str] = {
    "attn_type_list": "linear (lightning) attention layers",
    "ssm_cfg": "state-space layers",
    "mamba_d_state": "Mamba state-space layers",
    "ssm_state_size": "state-space layers",
    "compress_ratios": "compressed sparse attention (KV entries pooled over several tokens, DeepSeek-V4)",
    "block_configs": "layers of different shapes (Nemotron NAS / DeciLM: per-layer attention groups and MLP "
    "sizes, some removed)",
}
# DeepSeek sparse attention: schema field -> config field.
_SPARSE_FIELDS = {"index_heads": "index_n_heads", "index_head_dim": "index_head_dim", "top_k": "index_topk"}
_KNOWN_LAYER_TYPES = frozenset({"full_attention", "sliding_attention", "linear_attention"})

NEEDS = (
    "num_hidden_layers (or n_layer), hidden_size (or n_embd), num_attention_heads (or n_head), "
    "vocab_size, intermediate_size (or n_inner; moe_intermediate_size for MoE experts), "
    "max_position_embeddings (or n_positions); optional: num_key_value_heads, head_dim, "
    "tie_word_embeddings, n_routed_experts/num_local_experts/num_experts with num_experts_per_tok, "
    "kv_lora_rank/q_lora_rank/qk_nope_head_dim/qk_rope_head_dim/v_head_dim (MLA), sliding_window; "
    "linear_num_key_heads/linear_num_value_heads/linear_key_head_dim/linear_value_head_dim/"
    "linear_conv_kernel_dim with layer_types or full_attention_interval (Gated DeltaNet); "
    "index_n_heads/index_head_dim/index_topk (DeepSeek sparse attention)"
)


def _load(source: str | Path | Mapping[str, Any]) -> tuple[Config, str, str, str]:
    """(config, where, source, as_of) from a path (file or directory) or a mapping."""
    if isinstance(source, Mapping):
        return dict(source), "config", "Hugging Face config (given as a mapping)", dt.date.today().isoformat()
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FactoryplanError("model config file not found", where=str(path)) from None
    except OSError as exc:
        raise FactoryplanError(f"cannot read the model config: {exc.strerror}", where=str(path)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FactoryplanError(f"not valid JSON: {exc.msg} (line {exc.lineno})", where=str(path)) from None
    if not isinstance(data, dict):
        raise FactoryplanError("a config.json is a JSON object of field: value", where=str(path))
    as_of = dt.date.fromtimestamp(path.stat().st_mtime).isoformat()
    return data, str(path), str(path), as_of


def _text_model(cfg: Config, notes: list[str]) -> Config:
    """The text model's config: ``text_config`` (or ``llm_config``...) over the outer fields."""
    for key in _WRAPPERS:
        inner = cfg.get(key)
        if isinstance(inner, dict):
            merged = {k: v for k, v in cfg.items() if k not in _NESTED}
            merged.update(inner)
            notes.append(
                f"text model of a {cfg.get('model_type', 'multimodal')} wrapper ({key}); "
                "vision/audio towers not counted"
            )
            return merged
    return cfg


def _refuse_novel(cfg: Config, where: str) -> None:
    """Raise for layers other than softmax (dense or DeepSeek sparse) attention, Gated DeltaNet and
    the Mamba-2 hybrids' (lightning attention, other state-space layers, compressed sparse attention,
    latent MoE, layers of different shapes)."""
    layer_types = cfg.get("layer_types")
    granite = granite_mamba(cfg)
    if isinstance(layer_types, list):
        known = _KNOWN_LAYER_TYPES if "linear_num_value_heads" in cfg else _KNOWN_LAYER_TYPES - {"linear_attention"}
        known = known | {"mamba", "attention"} if granite else known
        odd = sorted({str(t) for t in layer_types} - known)
        if odd:
            count = sum(1 for t in layer_types if t in odd)
            raise FactoryplanError(
                f"has {count} of {len(layer_types)} layers of type {', '.join(odd)}, which factoryplan "
                "does not model (hybrid linear-attention or state-space architecture)",
                where=where,
                field="layer_types",
                allowed=", ".join(sorted(known)),
            )
    blocks = "hybrid_override_pattern" in cfg or "layers_block_type" in cfg
    for key, what in _NOVEL_FIELDS.items():
        if key in cfg and not (blocks and key == "ssm_state_size") and not (granite and key == "mamba_d_state"):
            raise FactoryplanError(
                f"uses {what}, which factoryplan does not model",
                where=where,
                field=key,
                allowed="softmax attention (full, sliding-window, GQA/MQA or MLA), DeepSeek sparse attention, "
                "Gated DeltaNet linear attention, Nemotron-H's and Granite 4.0-H's Mamba-2 layers",
            )
    if cfg.get("moe_latent_size"):  # Nemotron 3 Super/Ultra: experts work in a down-projected latent space
        raise FactoryplanError(
            "uses a latent mixture of experts (tokens projected down before the experts), which factoryplan "
            "does not model", where=where, field="moe_latent_size", value=cfg["moe_latent_size"],
        )
    if cfg.get("is_encoder_decoder") is True:
        raise FactoryplanError(
            "encoder-decoder models are not supported", where=where, field="is_encoder_decoder"
        )


def _required(cfg: Config, where: str) -> dict[str, int]:
    """The five required values; a missing one lists what is missing and what is needed."""
    found: dict[str, int] = {}
    missing: list[str] = []
    for meaning, names in _REQUIRED.items():
        value = int_field(cfg, names, where)
        if value is None:
            missing.append(" or ".join(names[:2]))
        else:
            found[meaning] = value
    if missing:
        raise FactoryplanError(
            f"cannot read the model architecture: missing {', '.join(missing)}",
            where=where,
            allowed=f"a config.json that gives {NEEDS}",
        )
    return found


def _moe_layer_set(cfg: Config, layers: int, where: str) -> set[int]:
    """Indices of MoE layers, by DeepSeek's, Qwen's or Llama 4's convention (all layers when none is given)."""
    listed = cfg.get("moe_layers")
    if isinstance(listed, list) and listed:
        return {int(i) for i in listed if 0 <= int(i) < layers}
    kinds = cfg.get("mlp_layer_types")  # transformers 5: "dense" or "sparse" per layer (GLM-5)
    if isinstance(kinds, list) and kinds:
        odd = sorted({str(k) for k in kinds} - {"dense", "sparse"})
        if len(kinds) != layers or odd:
            raise FactoryplanError(
                f"lists {len(kinds)} MLP layer types ({', '.join(odd) or 'dense/sparse'}) for {layers} layers",
                where=where,
                field="mlp_layer_types",
                allowed=f"{layers} entries, each 'dense' or 'sparse'",
            )
        return {i for i, k in enumerate(kinds) if k == "sparse"}
    if "interleave_moe_layer_step" in cfg:  # Llama 4: layers step-1, 2·step-1, ...
        step = int_field(cfg, ("interleave_moe_layer_step",), where) or 1
        return {i for i in range(layers) if (i + 1) % step == 0}
    if "first_k_dense_replace" in cfg or "moe_layer_freq" in cfg:
        first = int_field(cfg, ("first_k_dense_replace",), where) or 0
        freq = int_field(cfg, ("moe_layer_freq",), where) or 1
        return {i for i in range(layers) if i >= first and i % freq == 0}
    if "decoder_sparse_step" in cfg or "mlp_only_layers" in cfg:
        step = int_field(cfg, ("decoder_sparse_step",), where) or 1
        only = cfg.get("mlp_only_layers") or []
        if not isinstance(only, list):
            raise FactoryplanError(
                "must be a list of layer indices", where=where, field="mlp_only_layers", value=only
            )
        return {i for i in range(layers) if i not in only and (i + 1) % step == 0}
    return set(range(layers))


def _layout(moe_set: set[int], layers: int, where: str) -> tuple[int, int]:
    """(dense_layers, layer_freq) that reproduce ``moe_set`` exactly (see ``models.is_moe_layer``)."""
    ordered = sorted(moe_set)
    first = ordered[0]
    freq = ordered[1] - ordered[0] if len(ordered) > 1 else max(1, layers - first)
    if set(range(first, layers, freq)) != moe_set:
        raise FactoryplanError(
            f"MoE layers are not 'the first k dense, then every n-th': cannot represent MoE layers {ordered}",
            where=where,
            field="mlp_only_layers",
        )
    return first, freq


def _moe(cfg: Config, layers: int, where: str, notes: list[str], moe_set: set[int] | None = None) -> MoE | None:
    """The experts of a config, or None; ``moe_set`` gives the MoE layers (else read from the config)."""
    experts = int_field(cfg, _EXPERTS, where)
    if not experts:
        return None
    moe_set = _moe_layer_set(cfg, layers, where) if moe_set is None else moe_set
    if not moe_set:
        notes.append(f"{experts} experts configured but no layer uses them: read as dense")
        return None
    active = int_field(cfg, _TOP_K, where)
    expert_ffn = int_field(cfg, ("moe_intermediate_size", *_FFN), where)
    if not active or not expert_ffn:
        raise FactoryplanError(
            "a mixture-of-experts config needs the experts per token and the expert size",
            where=where,
            field="num_experts_per_tok" if not active else "moe_intermediate_size",
            allowed=f"{' or '.join(_TOP_K)}; moe_intermediate_size or intermediate_size",
        )
    shared, shared_ffn = 0, 0
    n_shared = int_field(cfg, ("n_shared_experts",), where)
    if n_shared:  # Nemotron-H sizes its shared expert apart from the routed ones
        width = int_field(cfg, ("moe_shared_expert_intermediate_size",), where) or expert_ffn
        shared, shared_ffn = n_shared, n_shared * width
    else:
        size = int_field(cfg, ("shared_expert_intermediate_size", "shared_intermediate_size"), where)
        if size:
            shared, shared_ffn = 1, size
    model_type = str(cfg.get("model_type", ""))
    if not shared and model_type in _LLAMA4:
        shared, shared_ffn = 1, expert_ffn
    dense, freq = _layout(moe_set, layers, where)
    router_bias = (
        model_type in _EXPERT_BIAS
        or model_type in _ROUTER_BIAS
        or cfg.get("topk_method") == "noaux_tc"
        or cfg.get("use_routing_bias") is True
    )
    return MoE(
        experts=experts,
        active=active,
        shared=shared,
        expert_ffn=expert_ffn,
        shared_ffn=shared_ffn,
        dense_layers=dense,
        layer_freq=freq,
        expert_bias=model_type in _EXPERT_BIAS,
        router_bias=router_bias,
        shared_gate=shared > 0 and model_type in _SHARED_GATE,
    )


def _mla(cfg: Config, where: str) -> MLA | None:
    if not cfg.get("kv_lora_rank"):
        return None
    names = ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
    values = required_ints(cfg, {n: n for n in names}, where, "an MLA config (kv_lora_rank given)",
                           allowed="kv_lora_rank, q_lora_rank (null or 0: full-rank queries), " + ", ".join(names[1:]))
    return MLA(q_lora_rank=int_field(cfg, ("q_lora_rank",), where) or 0, **values)


def _sparse_attention(cfg: Config, where: str) -> SparseAttention | None:
    """DeepSeek sparse attention (``index_topk`` with the indexer's heads and head size), or None.
    An indexer whose top-k is shared across layers (GLM-5.2's ``index_topk_freq``, ``indexer_types``
    with ``shared`` layers) is refused: its indexer count and FLOPs differ per layer."""
    if "index_topk" not in cfg:
        return None
    values = required_ints(cfg, _SPARSE_FIELDS, where, "a DeepSeek sparse attention config (index_topk given)")
    kinds = cfg.get("indexer_types")
    shared = isinstance(kinds, list) and any(str(t) != "full" for t in kinds)
    if shared or (int_field(cfg, ("index_topk_freq",), where) or 1) > 1:
        raise FactoryplanError(
            "shares one lightning indexer's top-k across several layers, which factoryplan does not model",
            where=where,
            field="indexer_types" if shared else "index_topk_freq",
            allowed="an indexer in every layer (index_topk_freq 1, indexer_types all full)",
        )
    return SparseAttention(**values)


def _sliding(cfg: Config, layers: int, where: str) -> tuple[int, int]:
    """(window, sliding layers): ``layer_types`` when given; Qwen2's ``max_window_layers``;
    otherwise every layer (Mistral 7B v0.1). ``use_sliding_window: false`` turns it off.
    Llama 4's chunked local attention (``attention_chunk_size``, on the RoPE layers; every
    ``no_rope_layer_interval``-th layer attends globally) is read as a window of the chunk: a token
    attends to at most that many earlier tokens, and engines cache at most a chunk for those layers."""
    chunk = int_field(cfg, ("attention_chunk_size",), where) or 0
    if chunk:
        flags = cfg.get("no_rope_layers")
        if isinstance(flags, list) and len(flags) == layers and set(flags) <= {0, 1}:
            count = sum(int(f) for f in flags)
        else:
            count = layers - layers // (int_field(cfg, ("no_rope_layer_interval",), where) or 4)
        return chunk, count
    window = int_field(cfg, ("sliding_window",), where) or 0
    if window == 0 or cfg.get("use_sliding_window") is False:
        return 0, 0
    layer_types = cfg.get("layer_types")
    pattern = int_field(cfg, ("sliding_window_pattern",), where) or (
        2 if str(cfg.get("model_type", "")) in _SLIDING_EVERY_OTHER else 0
    )
    if isinstance(layer_types, list):
        count = sum(1 for t in layer_types if t == "sliding_attention")
    elif pattern:  # Gemma: every pattern-th layer attends globally, the others to the window
        count = layers - layers // pattern
    elif "max_window_layers" in cfg:
        count = max(0, layers - (int_field(cfg, ("max_window_layers",), where) or 0))
    else:
        count = layers
    return (window, count) if count else (0, 0)


def _biases(cfg: Config, model_type: str) -> tuple[bool, bool, bool]:
    """(q/k/v bias, o bias, MLP bias): ``attention_bias``/``mlp_bias`` fields first (Llama,
    Qwen3, gpt-oss, NeoX: one flag for q/k/v and o; GLM-4.5: q/k/v only), else the family's fixed
    layout."""
    flag = bool_field(cfg, "attention_bias")
    if flag is not None:
        qkv, out = flag, flag and model_type not in _QKV_FLAG
    else:
        qkv = model_type in _ALL_BIASES or model_type in _QKV_BIAS_ONLY
        out = model_type in _ALL_BIASES
    mlp = bool_field(cfg, "mlp_bias")
    mlp_bias = mlp if mlp is not None else (model_type in _ALL_BIASES or model_type in _MLP_BIAS_ONLY)
    return qkv, out, mlp_bias


def _identity(where: str, cfg: Config, model_id: str | None) -> tuple[str, str]:
    """(id, name): the given id, else the file's name (``config.json``: its directory's name)."""
    if model_id is not None:
        return model_id, model_id
    if where != "config":
        path = Path(where)
        stem = path.parent.name if path.name == "config.json" else re.sub(r"[._-]?config$", "", path.stem)
    else:
        stem = str(cfg.get("_name_or_path") or cfg.get("model_type") or "hf-model")
    slug = re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-._") or "hf-model"
    return slug, stem or slug


def _dense_ffn(cfg: Config, where: str, model_type: str, hidden: int, has_dense: bool) -> int:
    """The dense MLP size; 0 when every layer is MoE (the config's ``intermediate_size`` then
    sizes the experts, or is unused). GPT-2's ``n_inner: null`` means ``4 * n_embd``.
    Llama 4's dense layers use ``intermediate_size_mlp`` (its ``intermediate_size`` sizes the experts)."""
    ffn = int_field(cfg, ("intermediate_size_mlp", *_FFN), where)
    if ffn is None and model_type in _LEARNED_POSITIONS:
        ffn = 4 * hidden
    if has_dense and not ffn:
        raise FactoryplanError(
            "cannot read the model architecture: missing intermediate_size or n_inner (dense MLP size)",
            where=where,
            allowed=f"a config.json that gives {NEEDS}",
        )
    return ffn if has_dense and ffn else 0


def _head_dims(cfg: Config, where: str, mla: MLA | None, hidden: int, heads: int) -> tuple[int, int]:
    """(head_dim, kv_heads): MLA's q/k head is ``qk_nope + qk_rope``; otherwise ``head_dim`` or
    ``hidden / heads``. KV heads default to the query heads (MHA), 1 with ``multi_query``."""
    if mla is not None:
        head_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    else:
        head_dim = int_field(cfg, ("head_dim", "attention_head_dim"), where) or 0
        if not head_dim:
            if hidden % heads:
                raise FactoryplanError(
                    "hidden size is not a multiple of the heads; give head_dim", where=where, field="head_dim"
                )
            head_dim = hidden // heads
    kv_heads = int_field(cfg, _KV_HEADS, where) or (1 if cfg.get("multi_query") is True else heads)
    return head_dim, kv_heads


def _layer_stack(
    cfg: Config, num_layers: int, blocks: dict[str, int] | None, where: str, notes: list[str]
) -> tuple[int, int | None, MoE | None, bool]:
    """(layers, feed-forward layers where they are separate blocks, the MoE, whether any
    feed-forward layer is dense). Nemotron-H counts blocks: its mixer blocks are the layers, its
    MLP blocks, then its MoE blocks, the feed-forward ones."""
    if blocks is None:
        moe = _moe(cfg, num_layers, where, notes)
        return num_layers, None, moe, moe is None or moe.dense_layers > 0 or moe.layer_freq > 1
    layers, ffn_layers = blocks["mamba"] + blocks["attention"], blocks["mlp"] + blocks["moe"]
    moe = _moe(cfg, ffn_layers, where, notes, moe_set=set(range(blocks["mlp"], ffn_layers)))
    notes.append(
        f"{blocks['mamba']} Mamba-2, {blocks['attention']} attention, {blocks['mlp']} MLP and {blocks['moe']} "
        "MoE blocks; two norms counted per mixer block"
    )
    return layers, ffn_layers, moe, blocks["mlp"] > 0


def _linear_mixers(
    cfg: Config, blocks: dict[str, int] | None, layers: int, where: str, notes: list[str]
) -> LinearAttention | None:
    """The linear-time mixers: Nemotron-H's or Granite 4.0-H's Mamba-2 layers, else Gated DeltaNet
    layers (Qwen3-Next, Qwen3.5), else None."""
    if blocks is not None:
        return mamba2(cfg, blocks["mamba"], where)
    if granite_mamba(cfg):
        kinds = [str(t) for t in cfg["layer_types"]]
        if len(kinds) != layers:
            raise FactoryplanError(f"lists {len(kinds)} layer types for {layers} layers", where=where,
                                   field="layer_types")
        return mamba2(cfg, kinds.count("mamba"), where)
    return linear_attention(cfg, layers, where, notes)


def _arch_fields(cfg: Config, where: str, notes: list[str]) -> dict[str, Any]:
    """Everything but identity and provenance, read from the (text model's) config."""
    req = _required(cfg, where)
    model_type = str(cfg.get("model_type", "unknown"))
    hidden, heads = req["hidden"], req["heads"]
    blocks = block_counts(cfg, req["layers"], where)
    layers, ffn_layers, moe, has_dense = _layer_stack(cfg, req["layers"], blocks, where, notes)
    mla = _mla(cfg, where)
    ffn = _dense_ffn(cfg, where, model_type, hidden, has_dense)
    head_dim, kv_heads = _head_dims(cfg, where, mla, hidden, heads)
    window, sliding = _sliding(cfg, layers, where)
    qkv_bias, out_bias, mlp_bias = _biases(cfg, model_type)
    tied = bool_field(cfg, "tie_word_embeddings")
    layer_norm = model_type not in _RMS_ONLY and "rms_norm_eps" not in cfg and (
        "layer_norm_epsilon" in cfg or "layer_norm_eps" in cfg
    )
    qk_norm = bool(bool_field(cfg, "use_qk_norm") or bool_field(cfg, "qk_layernorm") or model_type in _QK_NORM)
    gate = bool_field(cfg, "attn_output_gate")
    linear = _linear_mixers(cfg, blocks, layers, where, notes)
    if qk_norm and cfg.get("qk_norm_type") == "per_layer":
        notes.append(
            "q/k norms span all heads in this model; counted per head (undercounts "
            f"{(heads + kv_heads - 2) * head_dim} parameters per layer)"
        )
    if window and cfg.get("attention_chunk_size"):
        notes.append(f"chunked local attention ({window} tokens) on {sliding} layers read as a sliding window")
    if cfg.get("num_nextn_predict_layers") or cfg.get("use_mtp") or cfg.get("mtp_num_hidden_layers"):
        notes.append("multi-token-prediction module not counted")
    return {
        "family": model_type,
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "ffn": ffn,
        "vocab": req["vocab"],
        "tied_embeddings": tied if tied is not None else model_type in _TIED_BY_DEFAULT,
        "mlp": "plain" if model_type in _PLAIN_MLP else "gated",
        "attention_bias": qkv_bias,
        "attention_out_bias": out_bias,
        "mlp_bias": mlp_bias,
        "qk_norm": qk_norm,
        "norm": "layer" if layer_norm else "rms",
        "position_embeddings": req["max_context"] if model_type in _LEARNED_POSITIONS else 0,
        "attention_sinks": model_type in _SINKS,
        "sliding_window": window,
        "sliding_layers": sliding,
        "max_context": req["max_context"],
        "attn_output_gate": gate if gate is not None else model_type in _OUTPUT_GATE,
        "moe": moe,
        "mla": mla,
        "linear_attention": linear,
        "ffn_layers": ffn_layers,
        "sparse_attention": _sparse_attention(cfg, where),
    }


def parse_hf_config(source: str | Path | Mapping[str, Any], *, model_id: str | None = None) -> ModelArch:
    """A :class:`ModelArch` from a Hugging Face ``config.json`` (a path, a directory holding
    one, or the parsed mapping).

    ``source`` of the entry is the file's path, ``basis`` is ``spec`` and ``as_of`` the file's
    modification date (today for a mapping). ``id`` is ``model_id`` or the file's name
    (``deepseek-ai--DeepSeek-V3_config.json`` -> ``deepseek-ai--deepseek-v3``; a ``config.json``
    takes its directory's name). Approximations the reader makes are listed in ``notes``.
    Raises :class:`FactoryplanError` naming the file and the field for a config it cannot read.
    """
    raw, where, source_label, as_of = _load(source)
    notes: list[str] = []
    cfg = _text_model(raw, notes)
    _refuse_novel(cfg, where)
    fields = _arch_fields(cfg, where, notes)
    quant = cfg if isinstance(cfg.get("quantization_config"), dict) else raw
    fields["release"] = release_of(quant, notes, moe=fields["moe"] is not None)
    entry_id, name = _identity(where, raw, model_id)
    try:
        return ModelArch(
            id=entry_id,
            name=name,
            source=source_label,
            as_of=as_of,
            basis="spec",
            notes="; ".join(notes),
            **fields,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise FactoryplanError(err["msg"], where=where, field=loc, value=err.get("input")) from None


__all__ = ["NEEDS", "parse_hf_config"]
