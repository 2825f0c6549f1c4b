"""The number formats a checkpoint publishes its weights in, from ``quantization_config``.

Read as the serving engines read it (vLLM's and TensorRT-LLM's checkpoint loaders):

* ``fp8`` (Hugging Face fine-grained FP8: DeepSeek-V3/R1, Qwen3 FP8, MiniMax-M2): every linear
  layer FP8 but those in ``modules_to_not_convert`` (routers, norms, the LM head);
* ``mxfp4`` (gpt-oss): the routed experts MXFP4, everything else BF16 (the format quantizes
  expert modules only), weight-only: the engines multiply them with BF16 activations (on parts with
  FP4 tensor cores TensorRT-LLM and SGLang quantize them to MXFP8 by default:
  :func:`~factoryplan.perf.inference_inputs.engine_activations`);
* ``compressed-tensors`` (llm-compressor: Kimi K2 Thinking and K2.5): the first config group's
  ``weights`` (4-bit ``int``: INT4; 4-bit ``float``: NVFP4; 8-bit ``float``: FP8) on the linear
  layers its ``ignore`` list leaves; an ignored attention (``self_attn``) keeps the other weights BF16;
  its ``input_activations`` (null: weight-only, BF16 activations);
* ``modelopt`` (NVIDIA ModelOpt checkpoints): ``quant_algo`` FP8, NVFP4 (W4A4) or a 4-bit AWQ
  (INT4; W4A16, or FP8 activations for W4A8), attention BF16 where ``exclude_modules`` names it,
  and the KV cache ``kv_cache_quant_algo`` names (compressed-tensors: ``kv_cache_scheme``);
* ``awq`` / ``gptq`` with 4 bits: INT4 weights throughout, weight-only.

Anything else (8-bit integer weights, bitsandbytes, an unknown method) is not modelled: the reader
notes it and the release is left unset (serving then defaults as for a BF16 checkpoint).
"""

from __future__ import annotations

from typing import Any

from factoryplan.catalog.hf_fields import Config
from factoryplan.catalog.schema import Release

_ATTENTION_MARKS = ("self_attn", "attention", "attn")


def _names(value: Any) -> list[str]:
    """A module list (strings) from a config field; anything else is empty."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _keeps_attention(modules: list[str]) -> bool:
    """Whether a list of unconverted / ignored / excluded modules names the attention layers."""
    return any(mark in name for name in modules for mark in _ATTENTION_MARKS)


def _bits_format(bits: Any, kind: str) -> str | None:
    """The weight format of ``bits``-bit ``kind`` ("int" or "float") weights, None where not modelled."""
    return {(4, "int"): "int4", (4, "float"): "fp4", (8, "float"): "fp8"}.get((bits, kind))


def _kv_format(q: Config) -> str:
    """The KV cache a quantization_config asks for (ModelOpt ``kv_cache_quant_algo``, compressed-tensors
    ``kv_cache_scheme``): "fp8", "fp4" or "" (the engine's default)."""
    algo = str(q.get("kv_cache_quant_algo") or "").upper()
    if algo:
        return {"FP8": "fp8", "NVFP4": "fp4"}.get(algo, "")
    scheme = q.get("kv_cache_scheme")
    if not isinstance(scheme, dict) or scheme.get("type", "float") != "float":
        return ""
    return _bits_format(scheme.get("num_bits"), "float") or ""


# (weights format, activations, modules kept unquantized, what the config says)
_Scheme = tuple[str | None, str, list[str], str]


def _compressed_tensors(q: Config) -> _Scheme:
    groups = q.get("config_groups")
    group = next(iter(groups.values()), None) if isinstance(groups, dict) else None
    weights = group.get("weights") if isinstance(group, dict) else None
    if not isinstance(weights, dict):
        return None, "", [], "compressed-tensors without weight groups"
    fmt = _bits_format(weights.get("num_bits"), str(weights.get("type", "int")))
    acts = group.get("input_activations") if isinstance(group, dict) else None
    act = "bf16"  # no input_activations: weight-only
    if isinstance(acts, dict):
        act = _bits_format(acts.get("num_bits"), str(acts.get("type", "float"))) or ""
    what = f"compressed-tensors {weights.get('num_bits')}-bit {weights.get('type')}"
    return fmt, "" if act == fmt else act, _names(q.get("ignore")), what + (", weight-only" if act == "bf16" else "")


def _modelopt(q: Config) -> _Scheme:
    algo = str(q.get("quant_algo", "")).upper()
    fmt, act = {"FP8": ("fp8", ""), "FP8_BLOCK_SCALES": ("fp8", ""), "NVFP4": ("fp4", ""),
                "W4A16_AWQ": ("int4", "bf16"), "W4A8_AWQ": ("int4", "fp8")}.get(algo, (None, ""))
    return fmt, act, _names(q.get("exclude_modules")), f"modelopt {algo or '(no quant_algo)'}"


def release_of(cfg: Config, notes: list[str], *, moe: bool) -> Release | None:
    """The checkpoint's weight formats from ``cfg['quantization_config']``; None without one (a BF16
    or FP16 checkpoint) or for a scheme factoryplan does not model (noted in ``notes``). ``moe``: the
    model has routed experts (a scheme that keeps attention BF16 then quantizes the experts; in a
    dense model the MLPs, which hold most weights, so the whole is read at the narrow format)."""
    q = cfg.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower()
    if method == "mxfp4":
        return Release(weights="bf16", experts="fp4", activations="bf16", quantization="mxfp4: routed experts "
                       "MXFP4 (weight-only); attention, router and embeddings BF16")
    if method == "fp8":
        return Release(weights="fp8", experts="fp8", quantization="fp8" + (
            " (block scales)" if q.get("weight_block_size") else ""))
    scheme: _Scheme
    if method == "compressed-tensors":
        scheme = _compressed_tensors(q)
    elif method == "modelopt":
        scheme = _modelopt(q)
    elif method in ("awq", "gptq"):
        bits = q.get("bits", q.get("w_bit"))
        kept = _names(q.get("modules_to_not_convert"))
        scheme = ("int4" if bits == 4 else None), "bf16", kept, f"{method} {bits}-bit"
    else:
        scheme = None, "", [], method or "(no quant_method)"
    fmt, act, kept, what = scheme
    if fmt is None:
        notes.append(f"quantization_config ({what}) not modelled: its weights are read as a BF16 checkpoint's")
        return None
    data = {"activations": act, "kv": _kv_format(q)}
    if _keeps_attention(kept) and moe:
        return Release.model_validate({"weights": "bf16", "experts": fmt, **data, "quantization": f"{what}: routed "
                                       f"experts {fmt.upper()}; attention, dense MLPs and shared experts BF16"})
    if _keeps_attention(kept):
        notes.append(f"quantization_config keeps attention BF16: read as {fmt} throughout (the MLPs hold most weights)")
    return Release.model_validate({"weights": fmt, "experts": fmt, **data, "quantization": what})


__all__ = ["release_of"]
