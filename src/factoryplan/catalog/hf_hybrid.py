"""The state-keeping layers of hybrid models in a Hugging Face ``config.json``: Gated DeltaNet linear
attention (Qwen3-Next, Qwen3.5) and Mamba-2 mixers (Nemotron-H's blocks, Granite 4.0-H's layers), as
:class:`~factoryplan.catalog.schema.LinearAttention`. Read by :func:`factoryplan.catalog.hf_config.parse_hf_config`.
"""

from __future__ import annotations

from pydantic import ValidationError

from factoryplan.catalog.hf_fields import Config, bool_field, int_field, required_ints
from factoryplan.catalog.schema import LinearAttention
from factoryplan.errors import FactoryplanError

# Nemotron-H's block kinds (``hybrid_override_pattern`` letter, ``layers_block_type`` name): each
# block is one Mamba-2 mixer, attention, dense MLP or MoE.
_BLOCK_KINDS = {"M": "mamba", "*": "attention", "-": "mlp", "E": "moe"}
_BLOCK_NAMES = {"mamba": "mamba", "attention": "attention", "full_attention": "attention", "mlp": "mlp", "moe": "moe"}
_BLOCK_FIELDS = {  # Mamba-2: schema field -> config fields (Nemotron-H's, Granite 4.0-H's)
    "key_heads": ("n_groups", "mamba_n_groups"), "key_head_dim": ("ssm_state_size", "mamba_d_state"),
    "value_heads": ("mamba_num_heads", "mamba_n_heads"), "value_head_dim": ("mamba_head_dim", "mamba_d_head"),
    "conv_kernel": ("conv_kernel", "mamba_d_conv"),
}
_GRANITE_HYBRID = frozenset({"granitemoehybrid"})  # layer_types mamba/attention, each layer with its MLP or MoE
# Gated DeltaNet (Qwen3-Next, Qwen3.5): schema field -> config field.
_LINEAR_FIELDS = {
    "key_heads": "linear_num_key_heads",
    "value_heads": "linear_num_value_heads",
    "key_head_dim": "linear_key_head_dim",
    "value_head_dim": "linear_value_head_dim",
    "conv_kernel": "linear_conv_kernel_dim",
}
_DTYPE_BYTES = {"float32": 4.0, "fp32": 4.0, "bfloat16": 2.0, "bf16": 2.0, "float16": 2.0, "fp16": 2.0}


def linear_layers(cfg: Config, layers: int, where: str) -> int:
    """Linear-attention layers: counted in ``layer_types``, else every layer but each
    ``full_attention_interval``-th (transformers' Qwen3-Next rule: layer ``i`` is full attention
    when ``(i + 1) % interval == 0``)."""
    layer_types = cfg.get("layer_types")
    if isinstance(layer_types, list):
        if len(layer_types) != layers:
            raise FactoryplanError(
                f"lists {len(layer_types)} layer types for {layers} layers", where=where, field="layer_types"
            )
        return sum(1 for t in layer_types if t == "linear_attention")
    interval = int_field(cfg, ("full_attention_interval",), where)
    if not interval:
        raise FactoryplanError(
            "a Gated DeltaNet config needs the layout of its linear-attention layers",
            where=where,
            field="layer_types",
            allowed="layer_types (one of full_attention, linear_attention per layer) or full_attention_interval",
        )
    return layers - layers // interval


def linear_attention(cfg: Config, layers: int, where: str, notes: list[str]) -> LinearAttention | None:
    """The Gated DeltaNet layers of a Qwen3-Next/Qwen3.5 config (``linear_*`` fields), or None."""
    if "linear_num_value_heads" not in cfg and "linear_num_key_heads" not in cfg:
        return None
    values = required_ints(cfg, _LINEAR_FIELDS, where, "a Gated DeltaNet config")
    count = linear_layers(cfg, layers, where)
    if count == 0:
        return None
    dtype = cfg.get("mamba_ssm_dtype")
    if dtype is None:
        state_bytes = 4.0
        notes.append("recurrent state read as float32 (no mamba_ssm_dtype; SGLang's default)")
    elif str(dtype) in _DTYPE_BYTES:
        state_bytes = _DTYPE_BYTES[str(dtype)]
    else:
        raise FactoryplanError(
            "unknown state dtype", where=where, field="mamba_ssm_dtype", value=dtype,
            allowed=", ".join(_DTYPE_BYTES),
        )
    try:
        return LinearAttention(layers=count, state_bytes=state_bytes, **values)
    except ValidationError as exc:
        raise FactoryplanError(
            exc.errors()[0]["msg"].removeprefix("Value error, "), where=where, field="linear_num_value_heads"
        ) from None


def block_counts(cfg: Config, total: int, where: str) -> dict[str, int] | None:
    """Nemotron-H's blocks by kind (``mamba``, ``attention``, ``mlp``, ``moe``), from
    ``layers_block_type`` (one name per block) or ``hybrid_override_pattern`` (one letter per block:
    M Mamba-2, * attention, - MLP, E MoE); None for a config without either. They must name each of
    the ``num_hidden_layers`` blocks."""
    types, pattern = cfg.get("layers_block_type"), cfg.get("hybrid_override_pattern")
    if isinstance(types, list) and types:
        field, kinds = "layers_block_type", [_BLOCK_NAMES.get(str(t), str(t)) for t in types]
        allowed = ", ".join(_BLOCK_NAMES)
    elif isinstance(pattern, str) and pattern:
        field, kinds = "hybrid_override_pattern", [_BLOCK_KINDS.get(c, repr(c)) for c in pattern]
        allowed = "a string of " + ", ".join(_BLOCK_KINDS)
    elif types is None and pattern is None:
        return None
    else:
        raise FactoryplanError("must list the model's blocks", where=where,
                               field="layers_block_type" if types is not None else "hybrid_override_pattern",
                               value=types if types is not None else pattern)
    odd = sorted(set(kinds) - set(_BLOCK_NAMES.values()))
    if odd:
        raise FactoryplanError(f"has blocks of kind {', '.join(odd)}, which factoryplan does not model",
                               where=where, field=field, allowed=allowed)
    if len(kinds) != total:
        raise FactoryplanError(f"names {len(kinds)} blocks for {total} layers (num_hidden_layers)", where=where,
                               field=field)
    counts = {kind: kinds.count(kind) for kind in ("mamba", "attention", "mlp", "moe")}
    if counts["mamba"] + counts["attention"] == 0:
        raise FactoryplanError("has no Mamba-2 or attention block", where=where, field=field)
    return counts


def granite_mamba(cfg: Config) -> bool:
    """Whether the config is a Granite 4.0-H hybrid: ``layer_types`` of Mamba-2 and attention layers,
    each followed by its own MLP or MoE (unlike Nemotron-H's separate blocks)."""
    return str(cfg.get("model_type", "")) in _GRANITE_HYBRID and isinstance(cfg.get("layer_types"), list)


def mamba2(cfg: Config, layers: int, where: str) -> LinearAttention | None:
    """Mamba-2 mixers (Nemotron-H: ``mamba_num_heads``, ``mamba_head_dim``, ``n_groups``,
    ``ssm_state_size``, ``conv_kernel``; Granite 4.0-H: ``mamba_n_heads``, ``mamba_d_head``,
    ``mamba_n_groups``, ``mamba_d_state``, ``mamba_d_conv``) as state-keeping mixers, or None without one."""
    if layers == 0:
        return None
    values = required_ints(cfg, _BLOCK_FIELDS, where, "a Mamba-2 config")
    dtype = str(cfg.get("mamba_ssm_cache_dtype") or "float32")
    if dtype not in _DTYPE_BYTES:
        raise FactoryplanError("unknown state dtype", where=where, field="mamba_ssm_cache_dtype", value=dtype,
                               allowed=", ".join(_DTYPE_BYTES))
    bias = bool_field(cfg, "use_conv_bias")
    bias = bool_field(cfg, "mamba_conv_bias") if bias is None else bias
    try:
        return LinearAttention(layers=layers, kind="mamba2", state_bytes=_DTYPE_BYTES[dtype],
                               conv_bias=True if bias is None else bias,
                               **values)
    except ValidationError as exc:
        raise FactoryplanError(
            exc.errors()[0]["msg"].removeprefix("Value error, "), where=where, field="mamba_num_heads"
        ) from None
