"""Model FLOPs of the training engine: one definition, checked against published ratios and identities."""

from __future__ import annotations

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import param_breakdown
from factoryplan.perf.flops import (
    attended_keys,
    attention_flops_per_token,
    matmul_params_per_token,
    model_flops_per_token,
    model_shape,
    published_flops_per_token,
)


def test_causal_keys_are_half_the_sequence() -> None:
    assert attended_keys(8192.0) == 4096.0
    assert np.allclose(attended_keys(np.array([2048.0, 4096.0])), [1024.0, 2048.0])


def test_sliding_window_keys() -> None:
    # query i sees min(i+1, W) keys: average W - W(W-1)/(2S)
    s, w = 4096.0, 128
    exact = sum(min(i + 1, w) for i in range(int(s))) / s
    assert attended_keys(s, w) == pytest.approx(exact, rel=1e-3)
    assert attended_keys(64.0, 128) == 32.0  # window longer than the sequence: plain causal


def test_dense_matmul_params_are_all_weights_but_embedding_and_norms(catalog: Catalog) -> None:
    arch = catalog.models["llama-3.1-8b"]
    b = param_breakdown(arch)
    expected = b["attention"] + b["mlp_dense"] + b["lm_head"]
    assert matmul_params_per_token(model_shape(arch)) == expected


def test_moe_matmul_params_count_active_experts_only(catalog: Catalog) -> None:
    arch = catalog.models["qwen3-235b-a22b"]
    shape = model_shape(arch)
    b = param_breakdown(arch)
    active_routed = b["moe_routed"] * arch.moe.active / arch.moe.experts  # type: ignore[union-attr]
    expected = b["attention"] + active_routed + b["router"] + b["lm_head"]
    assert matmul_params_per_token(shape) == pytest.approx(expected)
    assert matmul_params_per_token(shape) < 0.11 * shape.params_total


def test_llama3_8b_matches_megatron_bridge_ratio(catalog: Catalog) -> None:
    # Megatron-Bridge 25.11, Llama 3 8B at 8192 tokens: 744 model TFLOP/s at 14,451 tokens/s per GPU
    flops = model_flops_per_token(model_shape(catalog.models["llama-3.1-8b"]), 8192.0)
    assert flops == pytest.approx(744e12 / 14451, rel=0.01)


def test_qwen3_moe_matches_megatron_bridge_ratio(catalog: Catalog) -> None:
    # Megatron-Bridge 25.11, Qwen3-235B-A22B at 4096 tokens: 233 TFLOP/s at 1,575 tokens/s per GPU
    flops = model_flops_per_token(model_shape(catalog.models["qwen3-235b-a22b"]), 4096.0)
    assert flops == pytest.approx(233e12 / 1575, rel=0.02)


def test_nemo_2407_convention_counts_attention_without_the_causal_half(catalog: Catalog) -> None:
    shape = model_shape(catalog.models["llama-3.1-8b"])
    causal = float(attention_flops_per_token(shape, 8192.0))
    full = float(attention_flops_per_token(shape, 8192.0, causal=False))
    assert full == pytest.approx(2 * causal)
    nemo = published_flops_per_token(shape, 8192.0, "nemo-24.07")
    assert nemo - float(model_flops_per_token(shape, 8192.0)) == pytest.approx(3 * causal)
    # NeMo 24.07 Llama 3 8B: 697 TFLOP/s at 12,036 tokens/s
    assert nemo == pytest.approx(697e12 / 12036, rel=0.01)


def test_megatron_2021_formula(catalog: Catalog) -> None:
    shape = model_shape(catalog.models["llama-3.1-8b"])
    h, n, s, v = 4096.0, 32.0, 2048.0, 128256.0
    expected = 96 * n * h * h * (1 + s / (6 * h) + v / (16 * n * h))
    assert published_flops_per_token(shape, s, "megatron-2021") == pytest.approx(expected)
    with pytest.raises(ValueError):
        published_flops_per_token(shape, s, "palm")


def test_mla_head_dims(catalog: Catalog) -> None:
    shape = model_shape(catalog.models["deepseek-v3"])
    assert (shape.qk_head_dim, shape.v_head_dim) == (192, 128)
    assert shape.dense_layers == 3 and shape.moe_layers == 58 and shape.shared_ffn > 0
