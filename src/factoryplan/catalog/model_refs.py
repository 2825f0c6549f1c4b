"""Which model a reference names: a catalog id, a Hugging Face ``config.json`` (a file or a folder
that holds one) or a Hugging Face repository name whose architecture the catalog has; and whether a
request fits the model's context window. Re-exported by :mod:`factoryplan.catalog.models`.
"""

from __future__ import annotations

import re
from collections.abc import Container
from pathlib import Path
from typing import TYPE_CHECKING

from factoryplan.catalog.schema import Entry, ModelArch, Release, WeightFormat
from factoryplan.errors import FactoryplanError, unknown

if TYPE_CHECKING:
    from factoryplan.catalog.load import Catalog


_ENTRY_FIELDS = frozenset(Entry.model_fields) | {"published_params", "published_active_params", "release"}


def arch_fields(arch: ModelArch) -> dict[str, object]:
    """The architecture of an entry without its identity, provenance, published counts and release formats:
    two entries with equal ``arch_fields`` have the same parameters and KV cache."""
    return {k: v for k, v in arch.model_dump().items() if k not in _ENTRY_FIELDS}


# Hugging Face repositories of the calibration data sets -> catalog ids (other names are matched by their
# last part, see repo_model_id)
MODEL_IDS = {
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "nvidia/llama-3.1-8b-instruct-fp8": "llama-3.1-8b",
    "meta-llama/llama-3.1-70b": "llama-3.1-70b",
    "meta-llama/llama-3.3-70b-instruct": "llama-3.3-70b",
    "qwen/qwen3-32b": "qwen3-32b",
    "qwen/qwen3-235b-a22b-fp8": "qwen3-235b-a22b",
    "openai/gpt-oss-120b": "gpt-oss-120b",
    "deepseek-ai/deepseek-v3": "deepseek-v3",
    "deepseek-ai/deepseek-r1": "deepseek-r1",
    "minimaxai/minimax-m2.5": "minimax-m2.5",
    "moonshotai/kimi-k2.5": "kimi-k2.5",
    "qwen/qwen3.5-397b-a17b": "qwen3.5-397b-a17b",
    "deepseek-ai/deepseek-v3.2-exp": "deepseek-v3.2",
    "zhipuai/glm-5": "glm-5",
}
# Suffixes of a repository name that do not change the architecture (post-training, quantized
# checkpoints, revisions, dates): stripped one at a time until a catalog id matches.
_VARIANT_SUFFIX = re.compile(
    r"-(instruct|chat|hf|it|base|thinking|fp8|fp4|nvfp4|mxfp4|bf16|fp16|int4|int8|awq|gptq|w4a16|w4a8|w8a8|"
    r"dynamic|static|pertensor|block|terminus|preview|v\d+(\.\d+)?|\d{4})$"
)
# Releases whose text model has the architecture of a catalog entry (same config.json shapes).
ARCH_EQUIVALENT = {
    "kimi-k2": "kimi-k2.5",  # K2.5 continues K2's DeepSeek-V3-style backbone (61 layers, 384 experts)
    "minimax-m2": "minimax-m2.5", "minimax-m2.1": "minimax-m2.5",  # 62 layers, 256 experts, top-8
    "deepseek-v3.1": "deepseek-v3",  # V3.1 keeps V3's layers; V3.2 adds sparse attention (its own entry)
    "deepseek-v3.2-exp": "deepseek-v3.2",  # the experimental release of the same sparse-attention layers
    "deepseek-v3.2-speciale": "deepseek-v3.2",  # the same checkpoint layout (685B with the MTP layer)
    "glm-4.6": "glm-4.5", "glm-4.7": "glm-4.5",  # Glm4MoeForCausalLM: 92 layers, 160 experts (not -Air, -Flash)
    "qwen3-coder-30b-a3b": "qwen3-30b-a3b",  # 48 layers, 128 experts of 768; 30.5B, 3.3B active
    "deepseek-r1-distill-llama-70b": "llama-3.3-70b",  # fine-tuned from Llama-3.3-70B-Instruct
    "deepseek-r1-distill-llama-8b": "llama-3.1-8b",  # fine-tuned from Llama-3.1-8B
    "deepseek-r1-distill-qwen-32b": "qwen2.5-32b",  # fine-tuned from Qwen2.5-32B
    "deepseek-r1-distill-qwen-7b": "qwen2.5-7b",  # from Qwen2.5-Math-7B: Qwen2.5-7B's shapes
    "qwq-32b": "qwen2.5-32b",  # Qwen2.5-32B's layers (its own config.json gives its longer context)
    # NVIDIA's Llama fine-tunes that keep the base model's layers (LlamaForCausalLM, the same shapes); the
    # Super-49B and Ultra-253B releases are pruned (DeciLM block_configs) and are not mapped
    "llama-3.1-nemotron-70b": "llama-3.1-70b", "llama-3.1-nemotron-nano-8b": "llama-3.1-8b",
    # Qwen3-VL: the text model under text_config has the Qwen3 release's shapes (interleaved M-RoPE,
    # 262,144 positions); the vision tower (0.4-0.6B) is not counted. 2B: 28 x 2048, 16 heads, FFN 6144,
    # tied; 4B: 36 x 2560, tied; 8B: 36 x 4096, FFN 12288; 32B: 64 x 5120, FFN 25600; 30B-A3B: 48 x
    # 2048, 128 experts of 768, top-8; 235B-A22B: 94 x 4096, 128 experts of 1536.
    "qwen3-vl-2b": "qwen3-1.7b", "qwen3-vl-4b": "qwen3-4b", "qwen3-vl-8b": "qwen3-8b", "qwen3-vl-32b": "qwen3-32b",
    "qwen3-vl-30b-a3b": "qwen3-30b-a3b", "qwen3-vl-235b-a22b": "qwen3-235b-a22b",
}


def _repo_match(known: Container[str], repo: str) -> tuple[str, bool] | None:
    """(catalog id, whether the name is that entry's own model rather than another release of its
    architecture) of a repository name, or None (:func:`repo_model_id`)."""
    key = repo.strip().lower()
    if key in MODEL_IDS:
        return MODEL_IDS[key], True
    # Meta-Llama-3.1-8B, NVIDIA-Nemotron-3-Nano-30B-A3B: the releases' first names
    cand = key.split("/")[-1].removeprefix("meta-").removeprefix("nvidia-")
    while True:
        if cand in known:
            return cand, True
        if ARCH_EQUIVALENT.get(cand, "") in known:
            return ARCH_EQUIVALENT[cand], False
        shorter = _VARIANT_SUFFIX.sub("", cand)
        if shorter == cand or not shorter:
            return None
        cand = shorter


def repo_model_id(known: Container[str], repo: str) -> str | None:
    """The catalog id (one of ``known``) of a Hugging Face repository name, or None.

    ``nvidia/DeepSeek-R1-0528-FP4-v2`` -> ``deepseek-r1``, ``Qwen/Qwen3-235B-A22B-Instruct-2507-FP8``
    -> ``qwen3-235b-a22b``: variant suffixes are stripped one at a time, and a release with a
    catalog entry's architecture maps to it (:data:`ARCH_EQUIVALENT`).
    """
    match = _repo_match(known, repo)
    return None if match is None else match[0]


# A repository name's quantization tag -> (weights, routed experts, activations) of the checkpoint it names
_QUANT_TAGS: dict[str, tuple[WeightFormat, WeightFormat, str]] = {
    "fp8": ("fp8", "fp8", ""), "w8a8": ("fp8", "fp8", ""), "fp4": ("fp4", "fp4", ""), "nvfp4": ("fp4", "fp4", ""),
    "mxfp4": ("bf16", "fp4", "bf16"), "int4": ("int4", "int4", "bf16"), "awq": ("int4", "int4", "bf16"),
    "gptq": ("int4", "int4", "bf16"), "w4a16": ("int4", "int4", "bf16"), "w4a8": ("int4", "int4", "fp8"),
    "bf16": ("bf16", "bf16", ""), "fp16": ("bf16", "bf16", ""),
}


def repo_release(repo: str, arch: ModelArch, own: bool) -> Release | None:
    """The number formats of the checkpoint a repository name names (``arch``: the catalog entry it
    maps to): its quantization tag (``-FP8``, ``-NVFP4``, ``-MXFP4``, ``-AWQ``, ``-GPTQ-Int4``; the
    last one given), else the entry's ``release`` where the name is the entry's ``own`` model
    (post-training, revision and date suffixes aside), else unknown: another release of the
    architecture may be published otherwise (Kimi-K2-Instruct at FP8, the catalog's Kimi K2.5 with INT4
    experts)."""
    tags = [t for t in repo.strip().lower().split("/")[-1].split("-") if t in _QUANT_TAGS]
    if tags:
        weights, experts, activations = _QUANT_TAGS[tags[-1]]
        return Release.model_validate({"weights": weights, "experts": experts, "activations": activations,
                                       "quantization": f"{repo}: the repository name's -{tags[-1].upper()} tag"})
    return arch.release if own else None


def resolve_model(catalog: Catalog, ref: str) -> ModelArch:
    """A model by catalog id, or parsed from a Hugging Face ``config.json``.

    ``ref`` is a catalog id (``llama-3.1-70b``), a path to a JSON file, a directory that holds a
    ``config.json``, or a Hugging Face repository name whose architecture the catalog has
    (``meta-llama/Llama-3.1-70B-Instruct``, :func:`repo_model_id`), with the formats that checkpoint
    is published in (:func:`repo_release`). A catalog id wins over a file
    of the same name, and a local directory or file over a repository name. An unknown id gets a
    did-you-mean and the list of ids; a path that ends in ``.json`` but does not exist, or a
    directory without ``config.json``, is reported with the path.
    """
    if ref in catalog.models:
        return catalog.models[ref]
    path = Path(ref).expanduser()
    # the config.json reader loads only when a model is given as one (a catalog id does not need it)
    from factoryplan.catalog.hf_config import parse_hf_config

    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FactoryplanError("directory has no config.json", where=str(path), field="model")
        return parse_hf_config(path / "config.json")
    if path.is_file():
        return parse_hf_config(path)
    if ref.endswith(".json"):
        raise FactoryplanError("model config file not found", where=str(path), field="model")
    match = _repo_match(catalog.models, ref) if "/" in ref else None
    if match is not None:  # the architecture, published as the repository name says
        arch = catalog.models[match[0]]
        release = repo_release(ref, arch, own=match[1])
        return arch if release == arch.release else arch.model_copy(update={"release": release})
    err = unknown("model", ref, catalog.models)
    raise FactoryplanError(
        err.message, field="model",
        allowed=f"{err.allowed}; or a path to a Hugging Face config.json, or the repository name of a catalog "
        "architecture (meta-llama/Llama-3.1-70B-Instruct)",
    )


def check_context(arch: ModelArch, prompt_tokens: int, output_tokens: int, *, field: str, where: str = "") -> None:
    """A request's prompt and output must fit the model's context window (``max_context``: the
    config's ``max_position_embeddings``); a longer one (RoPE scaling such as YaRN) is a model with a
    larger window: a config.json or a catalog overlay that says so."""
    if prompt_tokens + output_tokens > arch.max_context:
        raise FactoryplanError(
            f"{prompt_tokens:,} prompt + {output_tokens:,} output tokens exceed {arch.id}'s context of "
            f"{arch.max_context:,} tokens", where=where, field=field,
            allowed=f"prompt + output <= {arch.max_context:,}; for a longer window (RoPE scaling) give a config.json "
            "or catalog overlay with a larger max_context",
        )
