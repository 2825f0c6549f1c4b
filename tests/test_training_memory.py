"""Memory per GPU: ZeRO sharding, Korthikanti activations, in-flight micro-batches, margin."""

from __future__ import annotations

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import ModelArch
from factoryplan.perf import memory
from factoryplan.perf.flops import model_shape

GPT = ModelArch(
    id="gpt-test", name="GPT test", family="gpt", layers=24, hidden=2048, heads=16, kv_heads=16, head_dim=128,
    ffn=8192, vocab=51200, mlp="plain", norm="layer", source="test fixture", as_of="2024", basis="assumption",
)
ONE = np.array([1], dtype=np.int64)


@pytest.mark.parametrize(
    ("zero", "expected"),
    [(0, (2.0, 2.0, 12.0)), (1, (2.0, 2.0, 1.5)), (2, (2.0, 0.25, 1.5)), (3, (0.25, 0.25, 1.5))],
)
def test_zero_sharding_of_16_bytes_per_parameter(zero: int, expected: tuple[float, float, float]) -> None:
    s = memory.model_state_bytes(1.0, 8.0, zero * ONE, fp8=False)
    assert (float(s.weights[0]), float(s.gradients[0]), float(s.optimizer[0])) == pytest.approx(expected)


def test_fp8_keeps_a_one_byte_weight_copy() -> None:
    s = memory.model_state_bytes(1.0, 1.0, 0 * ONE, fp8=True)
    assert float(s.weights[0] + s.gradients[0] + s.optimizer[0]) == 17.0


def test_korthikanti_without_dropout_masks() -> None:
    # GPT (MHA, plain 4h MLP), fused attention: 32*s*b*h per layer (Korthikanti's 34 less two 1-byte
    # dropout masks) plus 4 bytes of softmax statistics per head and token
    shape = model_shape(GPT)
    tokens = 4 * 2048.0
    per_token = 32 * GPT.hidden + 4 * GPT.heads
    got = memory.layer_activation_bytes(shape, tokens, 1.0, 0 * ONE, moe=False)
    assert float(got[0]) == pytest.approx(tokens * per_token)
    # sequence parallelism divides every term by t
    assert float(memory.layer_activation_bytes(shape, tokens, 4.0, 0 * ONE, moe=False)[0]) == pytest.approx(
        tokens * per_token / 4)
    # unfused attention also keeps 5*a*s bytes per token (scores, softmax, dropout mask)
    unfused = memory.layer_activation_bytes(shape, tokens, 1.0, 0 * ONE, moe=False, seq_len=2048.0)
    assert float(unfused[0] - got[0]) == pytest.approx(tokens * 5 * GPT.heads * 2048)


def test_recomputation_keeps_less() -> None:
    shape = model_shape(GPT)
    modes = np.array([0, 1, 2], dtype=np.int64)
    none, sel, full = memory.layer_activation_bytes(shape, 1000.0, 1.0, modes, moe=False)
    assert none > sel > full
    assert full == pytest.approx(1000.0 * 2 * GPT.hidden)  # only the layer input


def test_inflight_microbatches() -> None:
    pp = np.array([1, 4, 4, 8], dtype=np.int64)
    vpp = np.array([1, 1, 1, 5], dtype=np.int64)
    got = memory.inflight_microbatches(pp, vpp, np.array([16.0, 16.0, 2.0, 64.0]))
    assert got == pytest.approx([1.0, 4.0, 2.0, 8 * (1 + 7 / 40)])


def test_moe_layer_keeps_k_copies(catalog: Catalog) -> None:
    shape = model_shape(catalog.models["qwen3-235b-a22b"])
    dense = memory.mlp_activation_bytes(shape, moe=False, selective=False)
    moe = memory.mlp_activation_bytes(shape, moe=True, selective=False)
    assert moe > shape.top_k * 4 * shape.hidden > dense


def test_usable_bytes() -> None:
    assert memory.usable_bytes(80e9, 0.05, 2e9) == pytest.approx(74e9)
