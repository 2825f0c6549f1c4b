"""DeepSeek sparse attention (DSA): DeepSeek-V3.2's lightning indexer and top-k attention.

Parameter counts tensor by tensor (the ``Indexer`` of the DeepSeek-V3.2-Exp reference code), the
checkpoint count of the model page, the KV cache with the FP8 indexer key, the cost of a decode
step and of a prompt against DeepSeek-V3 (the same layers with dense MLA), training FLOPs, serving
from the catalog id and from a config.json, the plan, and measured-file rows that name the model.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from factoryplan.catalog import models as m
from factoryplan.catalog.hf_config import parse_hf_config
from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.catalog.schema import ModelArch
from factoryplan.errors import FactoryplanError
from factoryplan.perf import flops
from factoryplan.perf.inference import (
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    constants_from_catalog,
    hardware_of,
    iteration,
    kv_bytes_per_sequence_per_gpu,
    shape_of,
)
from factoryplan.perf.memory import attention_activation_bytes
from factoryplan.plan import build_plan
from factoryplan.scenario import parse_scenario
from factoryplan.validation.inference import MEASURED, load_measured, model_id, predict

from .conftest import cli_json

CONFIGS = Path(__file__).parent / "data" / "hf_configs"
V32 = CONFIGS / "deepseek-ai--DeepSeek-V3.2_config.json"
H, R_Q, N_I, D_I, V = 7168, 1536, 64, 128, 129280
INDEXER = {"wq_b": R_Q * N_I * D_I, "wk": H * D_I, "k_norm (weight, bias)": 2 * D_I, "weights_proj": H * N_I}
KEY_BYTES = 128 + 4  # FP8 key and one float32 scale per 128 values
LATENT = 512 + 64  # MLA's cached latent and RoPE key, elements


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def v32(cat: Catalog) -> ModelArch:
    return cat.models["deepseek-v3.2"]


@pytest.fixture(scope="module")
def v3(cat: Catalog) -> ModelArch:
    return cat.models["deepseek-v3"]


# ---------------------------------------------------------------- parameters


def test_indexer_counted_tensor_by_tensor(v32: ModelArch, v3: ModelArch) -> None:
    assert m.indexer_params_per_layer(v32) == sum(INDEXER.values()) == 13_959_424
    assert m.indexer_params_per_layer(v3) == 0
    assert m.attention_params_per_layer(v32) - m.attention_params_per_layer(v3) == 13_959_424
    assert m.param_breakdown(v32)["attention"] - m.param_breakdown(v3)["attention"] == 61 * 13_959_424
    assert m.params_total(v32) == 671_877_944_064  # DeepSeek-V3's 671,026,419,200 and 0.85B of indexers
    assert m.params_active(v32, embedding=False) - m.params_active(v3, embedding=False) == 61 * 13_959_424


def test_checkpoint_count_matches_the_model_page(v32: ModelArch) -> None:
    """The Hugging Face page gives 685B: the main model plus the multi-token-prediction layer (an MoE
    layer with its indexer, the 2h x h projection of the concatenated embedding and hidden state, three
    norms) and its own copies of the embedding and LM head. The main model alone is 1.9% short."""
    mtp = m.moe_layer_params(v32) + 2 * H * H + 3 * H
    checkpoint = m.params_total(v32) + mtp + 2 * V * H
    assert checkpoint == 685_355_329_792
    assert v32.published_params == 685e9
    assert abs(checkpoint - 685e9) <= 0.5e9  # inside the rounding of "685B"
    assert abs(m.params_total(v32) - 685e9) > 0.01 * 685e9


def test_sparse_attention_is_validated() -> None:
    cfg = json.loads(V32.read_text())
    with pytest.raises(FactoryplanError, match="missing index_head_dim"):
        parse_hf_config({k: v for k, v in cfg.items() if k != "index_head_dim"})
    with pytest.raises(FactoryplanError, match=r"sparse_attention needs mla with q_lora_rank > 0"):
        parse_hf_config({**cfg, "q_lora_rank": None})
    llama = json.loads((CONFIGS / "meta-llama--Llama-3.1-8B_config.json").read_text())
    with pytest.raises(FactoryplanError, match="sparse_attention needs mla"):
        parse_hf_config({**llama, "index_topk": 2048, "index_n_heads": 64, "index_head_dim": 128})
    with pytest.raises(FactoryplanError, match=r"index_head_dim \(32\) must be at least mla.qk_rope_head_dim"):
        parse_hf_config({**cfg, "index_head_dim": 32})


# ---------------------------------------------------------------- KV cache


def test_kv_cache_includes_the_indexer_key(v32: ModelArch, v3: ModelArch) -> None:
    assert m.indexer_key_bytes(v32) == KEY_BYTES
    assert m.kv_cache_bytes_per_token(v32, 2) == 61 * (LATENT * 2 + KEY_BYTES) == 78_324
    assert m.kv_cache_bytes_per_token(v32, 1) == 61 * (LATENT + KEY_BYTES) == 43_188
    contexts = np.array([1000.0, 2048.0, 131072.0])  # every token stays cached, read or not
    assert np.allclose(m.kv_cache_bytes(v32, contexts, 1), contexts * 43_188)
    par = Parallel(tp=8.0, ep=8.0)  # latent and indexer key are replicated on every TP rank
    per_seq = kv_bytes_per_sequence_per_gpu(shape_of(v32), par, "fp8", contexts)
    assert np.allclose(per_seq, contexts * 43_188)
    dense = kv_bytes_per_sequence_per_gpu(shape_of(v3), par, "fp8", contexts)
    assert np.allclose(per_seq / dense, (LATENT + KEY_BYTES) / LATENT)  # 23% more than DeepSeek-V3
    halves = kv_bytes_per_sequence_per_gpu(shape_of(v32), Parallel(tp=4.0, ep=8.0, pp=2.0), "fp8", contexts)
    assert np.allclose(halves, per_seq / 2)  # layers split over pipeline stages


# ---------------------------------------------------------------- step cost


def _engine(cat: Catalog) -> tuple[Hardware, Precision]:
    return hardware_of(cat.accelerators["h200-sxm"], cat.systems["hgx-h200"]), Precision("fp8", "fp8", "fp8")


def test_long_context_decode_is_several_times_cheaper(cat: Catalog, v32: ModelArch, v3: ModelArch) -> None:
    """8 x H200, FP8, SGLang profile, 64 decoding sequences. At 128k tokens of context MLA reads 2048
    latents instead of 131072, while the indexer still reads every 132-byte key: the attention of a
    decode step costs 3.8x less than DeepSeek-V3's under TP8 (latent reads dominate) and 11x less under
    attention DP8 (128 heads per rank: MLA's FLOPs dominate), the whole step (weights and experts read
    alike) 2.1x less with DP8. At 1k tokens the indexer makes it marginally dearer (1-2%)."""
    hw, prec = _engine(cat)
    k = constants_from_catalog(cat, "sglang")

    def step(arch: ModelArch, par: Parallel, ctx: float) -> tuple[float, float]:
        s = iteration(shape_of(arch), hw, par, prec, k, decode_seqs=64.0, ctx=ctx)
        return float(s.attention), float(s.total)

    tp8, dp8 = Parallel(tp=8.0, ep=8.0), Parallel(tp=1.0, dp=8.0, ep=8.0)
    for par, attention_gain in ((tp8, 3.5), (dp8, 10.0)):
        sparse, dense = step(v32, par, 131072.0), step(v3, par, 131072.0)
        assert dense[0] > attention_gain * sparse[0]
    sparse, dense = step(v32, dp8, 131072.0), step(v3, dp8, 131072.0)
    assert dense[1] > 2.0 * sparse[1]
    for par in (tp8, dp8):
        short, base = step(v32, par, 1024.0)[1], step(v3, par, 1024.0)[1]
        assert base < short < 1.03 * base


def _prefill_attention(cat: Catalog, shape: ModelShape, length: float) -> float:
    hw, prec = _engine(cat)
    k = constants_from_catalog(cat, "sglang")
    par = Parallel(tp=1.0, dp=8.0, ep=8.0)
    return float(iteration(shape, hw, par, prec, k, decode_seqs=0.0, ctx=0.0, prompts=1.0, prompt_len=length).attention)


def test_prompt_attention_grows_linearly_past_top_k(cat: Catalog, v32: ModelArch, v3: ModelArch) -> None:
    """Without the indexer's FLOPs a prompt's attention past ~13k tokens (where sparse attention in
    MLA's absorbed mode beats masked dense attention) grows linearly, S*k - k^2/2 pairs; the indexer
    keeps a small quadratic term. A 128k-token prompt's attention under attention DP costs 4x less than
    DeepSeek-V3's; below the crossover it costs as dense attention plus the indexer."""
    no_indexer = replace(shape_of(v32), index_flops=0.0)
    t = [_prefill_attention(cat, no_indexer, s) for s in (32768.0, 65536.0, 131072.0)]
    assert t[2] - t[1] == pytest.approx(2.0 * (t[1] - t[0]), rel=1e-9)
    dense = [_prefill_attention(cat, shape_of(v3), s) for s in (32768.0, 65536.0, 131072.0)]
    assert dense[2] - dense[1] == pytest.approx(4.0 * (dense[1] - dense[0]), rel=1e-9)
    assert _prefill_attention(cat, shape_of(v3), 131072.0) > 4.0 * _prefill_attention(cat, shape_of(v32), 131072.0)
    assert _prefill_attention(cat, no_indexer, 8192.0) == pytest.approx(_prefill_attention(cat, shape_of(v3), 8192.0))


def test_training_flops_cap_the_keys_and_add_the_indexer(v32: ModelArch, v3: ModelArch) -> None:
    sparse, dense = flops.model_shape(v32), flops.model_shape(v3)
    assert sparse.indexer_flops == 2 * N_I * D_I and sparse.sparse_top_k == 2048

    def mla(seq: float) -> float:  # per token and layer, the indexer's S/2 keys taken out
        return float(flops.full_attention_flops(sparse, seq)) - sparse.indexer_flops * seq / 2

    assert mla(131072.0) / mla(65536.0) < 1.01  # capped at 2048 keys: constant per token
    assert float(flops.full_attention_flops(dense, 131072.0)) == pytest.approx(
        2.0 * float(flops.full_attention_flops(dense, 65536.0)))
    absorbed = 128 * (2 * (512 + 64) + 2 * 512)
    assert mla(131072.0) == pytest.approx(absorbed * (2048 - 2048 * 2047 / (2 * 131072)))
    assert mla(4096.0) == pytest.approx(float(flops.full_attention_flops(dense, 4096.0)))  # masked dense
    per_token = flops.attention_flops_per_token(sparse, 131072.0)
    assert float(flops.attention_flops_per_token(dense, 131072.0)) > 3.0 * float(per_token)
    assert flops.matmul_params_per_token(sparse) - flops.matmul_params_per_token(dense) == 61 * 13_959_424
    # activations kept per token: indexer queries and key (BF16), head weights (fp32), top-k indices (int32)
    extra = attention_activation_bytes(sparse) - attention_activation_bytes(dense)
    assert extra == 2 * (N_I + 1) * D_I + 4 * N_I + 4 * 2048 == 25_088


# ---------------------------------------------------------------- commands


def test_serve_from_the_catalog_id_and_from_config_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--gpu", "h200-sxm", "--tp", "1", "--attention-dp", "8", "--ep", "8", "--isl", "32768", "--osl", "1024",
            "-c", "64", "--backend", "sglang")
    by_id = cli_json(capsys, "serve", "--model", "deepseek-v3.2", *args)
    by_path = cli_json(capsys, "serve", "--model", str(V32), *args)
    assert by_id["params_total"] == by_path["params_total"] == 671_877_944_064
    assert by_id["fits"] and by_id["tpot_ms"] == pytest.approx(by_path["tpot_ms"])
    assert by_id["ttft_ms"] == pytest.approx(by_path["ttft_ms"])
    dense = cli_json(capsys, "serve", "--model", "deepseek-v3", *args)
    assert dense["tpot_ms"] > 1.2 * by_id["tpot_ms"] and dense["ttft_ms"] > by_id["ttft_ms"]


def test_train_and_plan_take_the_model(capsys: pytest.CaptureFixture[str], cat: Catalog) -> None:
    r = cli_json(capsys, "train", "--model", str(V32), "--gpu", "h800", "--gpus", "2048", "--seq-len", "4096",
                 "--global-batch", "15360", "--search")
    assert r["fits"] and 0.05 < r["mfu"] < 0.6 and r["params"] == 671_877_944_064
    workload = {"name": "agents", "kind": "inference", "model": "deepseek-v3.2", "requests_per_s": 2,
                "input_tokens": 32000, "output_tokens": 1000, "ttft_ms": 10000, "tpot_ms": 60, "precision": "fp8"}
    scenario = {"name": "dsa", "region": "kr", "hardware": ["h200-sxm"], "workloads": [workload]}
    plan = build_plan(parse_scenario(scenario), cat)
    assert plan.workloads[0].gpus >= 8 and plan.workloads[0].method.startswith("inference engine")


# ---------------------------------------------------------------- measured files


@pytest.mark.parametrize("repo", ["deepseek-ai/DeepSeek-V3.2-Exp", "deepseek-ai/DeepSeek-V3.2",
                                  "nvidia/DeepSeek-V3.2-NVFP4"])
def test_data_set_names_map_to_the_entry(cat: Catalog, repo: str) -> None:
    assert model_id(cat.models, repo) == "deepseek-v3.2"


def test_measured_rows_are_predicted_not_skipped(cat: Catalog, tmp_path: Path) -> None:
    """Rows of a measured file that name DeepSeek-V3.2(-Exp) become points; at 1k tokens of
    context the prediction is within a few percent of DeepSeek-V3's for the same configuration."""
    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if r["model_path"] == "deepseek-ai/DeepSeek-V3" and r["mode"] == "agg"][:2]
    path = tmp_path / "measured.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i, name in enumerate(("deepseek-ai/DeepSeek-V3.2-Exp", "deepseek-ai/DeepSeek-V3")):
            writer.writerow({**rows[0], "id": f"row{i}", "model_path": name})
    loaded = load_measured(cat, path)
    assert not loaded.skipped and [p.model for p in loaded.points] == ["deepseek-v3.2", "deepseek-v3"]
    sparse, dense = predict(cat, loaded.points)
    assert math.isfinite(sparse.tpot_ms) and math.isfinite(sparse.ttft_ms) and sparse.fits
    assert sparse.tpot_ms == pytest.approx(dense.tpot_ms, rel=0.05)
