"""Mamba-2 hybrids: Nemotron-H's separate Mamba-2, attention, MLP and MoE blocks (Nemotron 3 Nano,
Nemotron Nano 2), and Granite 4.0-H's Mamba-2 or attention layers each with its MoE.

Parameter counts against the published totals and tensor by tensor, the block layout read from
``hybrid_override_pattern`` or ``layers_block_type``, the KV cache of the attention blocks only,
the Mamba-2 state per sequence, the refusals of malformed layouts, and serving and training from
the catalog id and from a config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factoryplan.catalog import models as m
from factoryplan.catalog.hf_config import parse_hf_config
from factoryplan.catalog.load import load_catalog
from factoryplan.catalog.schema import ModelArch
from factoryplan.errors import FactoryplanError
from factoryplan.perf import flops
from factoryplan.perf.inference import Parallel, kv_bytes_per_sequence_per_gpu, shape_of

from .conftest import cli_json

CONFIGS = Path(__file__).parent / "data" / "hf_configs"
NANO3 = CONFIGS / "nvidia--NVIDIA-Nemotron-3-Nano-30B-A3B-BF16_config.json"
# Nemotron Nano 2 9B: dense squared-ReLU MLP blocks, no experts.
NANO2_9B: dict[str, Any] = json.loads((CONFIGS / "nvidia--NVIDIA-Nemotron-Nano-9B-v2_config.json").read_text())


@pytest.fixture(scope="module")
def nano3() -> ModelArch:
    return parse_hf_config(NANO3)


# ---------------------------------------------------------------- layout and parameters


def test_blocks_are_read_by_kind(nano3: ModelArch) -> None:
    """52 blocks: 23 Mamba-2, 6 attention (the mixers) and 23 MoE (the feed-forward blocks)."""
    assert (nano3.layers, nano3.ffn_layers) == (29, 23)
    assert (m.linear_attention_layers(nano3), m.attention_layers(nano3)) == (23, 6)
    assert (m.moe_layers(nano3), m.dense_layers(nano3)) == (23, 0)
    la, moe = nano3.linear_attention, nano3.moe
    assert la is not None and moe is not None
    assert (la.kind, la.value_heads, la.value_head_dim, la.key_heads, la.key_head_dim) == ("mamba2", 64, 64, 8, 128)
    assert (moe.experts, moe.active, moe.shared_ffn, moe.router_bias) == (128, 6, 3712, True)
    assert nano3.mlp == "plain" and nano3.norm == "rms" and nano3.ffn == 0


def test_nano3_total_matches_the_checkpoint(nano3: ModelArch) -> None:
    """31.6B in the released checkpoint (the card rounds to 30B total, 3.5B active); the active count
    is 3.58B with the input embedding."""
    assert abs(m.params_total(nano3) - 31.6e9) < 0.05e9
    assert m.params_active(nano3) == pytest.approx(3.580e9, rel=1e-3)


def test_mamba2_mixer_counted_tensor_by_tensor(nano3: ModelArch) -> None:
    """in_proj 2688 x (2*4096 + 2*8*128 + 64), conv1d (4096 + 2048) x 4 with a bias per channel,
    dt_bias/A_log/D 3 x 64, the gated norm over 4096 and out_proj 4096 x 2688."""
    in_proj, conv, out_proj = 2688 * (2 * 4096 + 2 * 1024 + 64), 6144 * (4 + 1), 4096 * 2688
    assert m.linear_attention_params_per_layer(nano3) == in_proj + conv + 3 * 64 + 4096 + out_proj == 38_742_208


def test_dense_mlp_blocks_and_pattern_or_block_list() -> None:
    """Nemotron Nano 2's 25 MLP blocks are dense squared-ReLU MLPs (up and down); the same layout
    given as layers_block_type reads the same."""
    arch = parse_hf_config(NANO2_9B)
    assert (arch.layers, arch.ffn_layers, m.dense_layers(arch), arch.moe) == (31, 25, 25, None)
    assert m.params_total(arch) == 8_888_254_208  # derived block by block; the card's "9B"
    assert m.dense_mlp_params(arch) == 2 * 4480 * 15680
    names = {"M": "mamba", "*": "attention", "-": "mlp"}
    listed = {k: v for k, v in NANO2_9B.items() if k != "hybrid_override_pattern"}
    listed["layers_block_type"] = [names[c] for c in NANO2_9B["hybrid_override_pattern"]]
    assert m.arch_fields(parse_hf_config(listed)) == m.arch_fields(arch)


def test_matmul_params_per_token_counts_each_block_once(nano3: ModelArch) -> None:
    shape = flops.model_shape(nano3)
    b = m.param_breakdown(nano3)
    assert flops.matmul_params_per_token(shape) == m.params_active(nano3) - b["embedding"] - b["norms"]


def test_engine_overheads_go_with_the_blocks(nano3: ModelArch) -> None:
    """Kernel launches and TP all-reduces scale with the 52 blocks, as a 26-layer transformer's
    would; a transformer's block layers are its layers."""
    assert shape_of(nano3).block_layers == 26.0
    qwen = load_catalog().models["qwen3-30b-a3b"]
    assert shape_of(qwen).block_layers == qwen.layers


# ---------------------------------------------------------------- memory


def test_kv_cache_only_in_the_attention_blocks(nano3: ModelArch) -> None:
    assert m.kv_cache_bytes_per_token(nano3, 2) == 6 * 2 * 2 * 128 * 2
    state = 64 * 128 * 64 * 4 + (2 * 1024 + 4096) * 3 * 2  # float32 state + BF16 convolution window
    assert m.linear_state_bytes_per_layer(nano3) == state
    shape, par = shape_of(nano3), Parallel(tp=2.0)
    contexts = np.array([1024.0, 262144.0])
    per_seq = kv_bytes_per_sequence_per_gpu(shape, par, "bf16", contexts)
    assert np.allclose(per_seq, 23 * state / 2 + 6 * 2 * 128 * 2 * contexts)  # 2 KV heads over 2 ranks


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(("change", "field", "text"), [
    ({"hybrid_override_pattern": "M-M*X", "num_hidden_layers": 5}, "hybrid_override_pattern", "kind 'X'"),
    ({"hybrid_override_pattern": "M-M*"}, "hybrid_override_pattern", "names 4 blocks for 56 layers"),
    ({"hybrid_override_pattern": "----", "num_hidden_layers": 4}, "hybrid_override_pattern",
     "no Mamba-2 or attention block"),
    ({"mamba_num_heads": None}, "", "missing mamba_num_heads"),
    ({"mamba_num_heads": 60}, "mamba_num_heads", "multiple of"),
])
def test_malformed_layouts_are_refused(change: dict[str, Any], field: str, text: str) -> None:
    with pytest.raises(FactoryplanError, match=text) as exc:
        parse_hf_config({**NANO2_9B, **change})
    assert field in str(exc.value)


# The transformers documentation's GraniteMoeHybrid example config: Mamba-2 and attention layers,
# each followed by an MoE of 8 experts (top-2) and a shared expert.
GRANITE_H: dict[str, Any] = {
    "architectures": ["GraniteMoeHybridForCausalLM"], "model_type": "granitemoehybrid", "hidden_size": 512,
    "intermediate_size": 1024, "layer_types": ["mamba", "mamba", "mamba", "attention"] * 2,
    "mamba_conv_bias": True, "mamba_d_conv": 4, "mamba_d_head": 128, "mamba_d_state": 128, "mamba_expand": 2,
    "mamba_n_groups": 1, "mamba_n_heads": 8, "max_position_embeddings": 4096, "num_attention_heads": 8,
    "num_experts_per_tok": 2, "num_hidden_layers": 8, "num_key_value_heads": 8, "num_local_experts": 8,
    "rms_norm_eps": 1e-5, "shared_intermediate_size": 512, "tie_word_embeddings": True, "vocab_size": 49152,
}


def test_granite_hybrid_layers_keep_their_moe() -> None:
    """Granite 4.0-H: every layer is a Mamba-2 or attention mixer followed by its MoE, counted
    tensor by tensor: tied embedding 49152 x 512; per Mamba-2 layer in_proj 512 x (2*1024 + 2*128
    + 8), conv (1024 + 256) x 5, dt/A/D 24, gated norm 1024, out_proj 1024 x 512 and two norms; per
    attention layer 4 x 512 x 512 and two norms; per layer a router 512 x 8, 8 gated experts of
    1024 and a gated shared expert of 512; the final norm."""
    arch = parse_hf_config(GRANITE_H)
    assert (arch.layers, arch.ffn_layers, m.linear_attention_layers(arch), m.moe_layers(arch)) == (8, None, 6, 8)
    mamba = 512 * (2 * 1024 + 2 * 128 + 8) + 1280 * 5 + 24 + 1024 + 1024 * 512 + 2 * 512
    attention = 4 * 512 * 512 + 2 * 512
    moe = 512 * 8 + 8 * 3 * 512 * 1024 + 3 * 512 * 512
    assert m.params_total(arch) == 49152 * 512 + 6 * mamba + 2 * attention + 8 * moe + 512 == 144_552_080


def test_latent_moe_is_refused_naming_the_field() -> None:
    cfg = {**json.loads(NANO3.read_text()), "moe_latent_size": 1024}
    with pytest.raises(FactoryplanError, match=r"moe_latent_size: .*latent mixture of experts"):
        parse_hf_config(cfg)
    assert parse_hf_config({**cfg, "moe_latent_size": None}).moe is not None  # Megatron writes null


def test_other_state_space_configs_are_still_refused() -> None:
    cfg = {**NANO2_9B, "mamba_d_state": 16}
    del cfg["hybrid_override_pattern"]
    with pytest.raises(FactoryplanError, match=r"mamba_d_state: .*does not model"):
        parse_hf_config(cfg)


# ---------------------------------------------------------------- commands


def test_serve_from_the_catalog_id_and_from_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    """The catalog entry is the config.json's architecture: the same figures either way. Long
    prompts cost the hybrid little KV cache: more users fit than in a same-size transformer."""
    assert m.arch_fields(load_catalog().models["nemotron-3-nano-30b-a3b"]) == m.arch_fields(parse_hf_config(NANO3))
    args = ("--gpu", "h100-sxm", "--tp", "2", "--isl", "32768", "--osl", "1024", "-c", "32", "--backend", "vllm")
    by_id = cli_json(capsys, "serve", "--model", "nemotron-3-nano-30b-a3b", *args)
    by_path = cli_json(capsys, "serve", "--model", str(NANO3), *args)
    assert by_id["fits"] and by_id["tpot_ms"] == pytest.approx(by_path["tpot_ms"])
    assert by_id["ttft_ms"] == pytest.approx(by_path["ttft_ms"])
    qwen = cli_json(capsys, "serve", "--model", "qwen3-30b-a3b", *args)
    assert by_id["max_concurrency"] > 3 * qwen["max_concurrency"]
    by_repo = cli_json(capsys, "serve", "--model", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-FP8", *args)
    assert by_repo["params_total"] == by_id["params_total"]
    nano2 = cli_json(capsys, "serve", "--model", "nvidia/NVIDIA-Nemotron-Nano-9B-v2", *args)
    assert nano2["model"] == "nemotron-nano-9b-v2" and nano2["fits"]


def test_train_from_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    r = cli_json(capsys, "train", "--model", str(NANO3), "--gpu", "h100-sxm", "--gpus", "64", "--seq-len", "8192",
                 "--global-batch", "512", "--search")
    assert r["fits"] and 0.02 < r["mfu"] < 0.6 and r["params"] == m.params_total(parse_hf_config(NANO3))
