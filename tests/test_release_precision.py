"""A model is served in the formats its checkpoint is published in, unless told otherwise.

The release comes from the checkpoint's ``quantization_config`` (read from a config.json, or recorded
in the catalog entry); a BF16 release is served at FP8 by default, as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from factoryplan.catalog import models as m
from factoryplan.catalog.hf_config import parse_hf_config
from factoryplan.catalog.hf_quant import release_of
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.catalog.schema import Release
from factoryplan.cli import main
from factoryplan.errors import FactoryplanError
from factoryplan.perf.inference import serving_precision
from factoryplan.plan import build_plan
from factoryplan.report.summary import key_figures
from factoryplan.scenario import parse_scenario

from .conftest import cli_json
from .test_models import CATALOG_CONFIGS

CONFIGS = Path(__file__).parent / "data" / "hf_configs"

# config -> (weights, experts) as published; None: a BF16 checkpoint
PUBLISHED = {
    "openai--gpt-oss-120b_config.json": ("bf16", "fp4"),  # MXFP4 experts, attention and router BF16
    "openai--gpt-oss-20b_config.json": ("bf16", "fp4"),
    "moonshotai--Kimi-K2.5_config.json": ("bf16", "int4"),  # INT4 routed experts (text_config)
    "deepseek-ai--DeepSeek-R1_config.json": ("fp8", "fp8"),
    "deepseek-ai--DeepSeek-V3.2_config.json": ("fp8", "fp8"),
    "MiniMaxAI--MiniMax-M2.5_config.json": ("fp8", "fp8"),
    "Qwen--Qwen3-235B-A22B-FP8_config.json": ("fp8", "fp8"),
    "Qwen--Qwen3-32B_config.json": None,
    "meta-llama--Llama-3.1-70B_config.json": None,
    "zai-org--GLM-5_config.json": None,
}
# Catalog entries whose config copy is another release than the one the entry names: the catalog's
# qwen3-235b-a22b is Qwen's BF16 base; its architecture is checked against the FP8 variant's config.
OTHER_RELEASE = {"qwen3-235b-a22b"}


def formats(r: Release | None) -> tuple[str, str] | None:
    return None if r is None else (r.weights, r.experts_format())


def with_activations(r: Release | None) -> tuple[str, str, str] | None:
    return None if r is None else (r.weights, r.experts_format(), r.activations)


@pytest.mark.parametrize(("config", "expected"), sorted(PUBLISHED.items()))
def test_release_read_from_config(config: str, expected: tuple[str, str] | None) -> None:
    assert formats(parse_hf_config(CONFIGS / config).release) == expected


@pytest.mark.parametrize(("model_id", "config"), sorted(
    (m, c) for m, c in CATALOG_CONFIGS.items() if m not in OTHER_RELEASE))
def test_catalog_release_matches_its_config(catalog: Catalog, model_id: str, config: str) -> None:
    assert formats(catalog.models[model_id].release) == formats(parse_hf_config(CONFIGS / config).release)


def test_another_release_of_the_architecture_keeps_its_own_formats(catalog: Catalog) -> None:
    """Qwen's FP8 variant is published at FP8; the catalog entry names the BF16 base (served at the FP8
    default all the same, but as a default, not as published)."""
    assert formats(parse_hf_config(CONFIGS / CATALOG_CONFIGS["qwen3-235b-a22b"]).release) == ("fp8", "fp8")
    assert catalog.models["qwen3-235b-a22b"].release is None


def quant(q: dict[str, Any], moe: bool = True) -> tuple[tuple[str, str] | None, list[str]]:
    notes: list[str] = []
    return formats(release_of({"quantization_config": q}, notes, moe=moe)), notes


NVFP4_W4A4 = {"weights": {"num_bits": 4, "type": "float", "group_size": 16},
              "input_activations": {"num_bits": 4, "type": "float", "group_size": 16}}


@pytest.mark.parametrize(("q", "moe", "expected"), [
    # NVFP4 experts (W4A4) through llm-compressor, attention kept
    ({"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "config_groups": {"g": NVFP4_W4A4},
      "ignore": ["lm_head", "re:.*self_attn.*"]}, True, ("bf16", "fp4", "")),
    # FP8 W8A8 everywhere through llm-compressor
    ({"quant_method": "compressed-tensors", "ignore": ["lm_head"], "config_groups": {
        "g": {"weights": {"num_bits": 8, "type": "float"}, "input_activations": {"num_bits": 8, "type": "float"}}}},
     False, ("fp8", "fp8", "")),
    # INT4 weights with FP8 activations (W4A8)
    ({"quant_method": "compressed-tensors", "config_groups": {
        "g": {"weights": {"num_bits": 4, "type": "int"}, "input_activations": {"num_bits": 8, "type": "float"}}}},
     False, ("int4", "int4", "fp8")),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "exclude_modules": ["lm_head"]}, False, ("fp4", "fp4", "")),
    ({"quant_method": "modelopt", "quant_algo": "NVFP4",
      "exclude_modules": ["lm_head", "model.layers.*.self_attn*"]}, True, ("bf16", "fp4", "")),
    ({"quant_method": "modelopt", "quant_algo": "FP8"}, False, ("fp8", "fp8", "")),
    ({"quant_method": "modelopt", "quant_algo": "W4A8_AWQ"}, False, ("int4", "int4", "fp8")),
    ({"quant_method": "awq", "bits": 4, "group_size": 128}, False, ("int4", "int4", "bf16")),
    ({"quant_method": "gptq", "bits": 4}, True, ("int4", "int4", "bf16")),
    ({"quant_method": "mxfp4"}, True, ("bf16", "fp4", "bf16")),
])
def test_quantization_schemes(q: dict[str, Any], moe: bool, expected: tuple[str, str, str]) -> None:
    notes: list[str] = []
    assert with_activations(release_of({"quantization_config": q}, notes, moe=moe)) == expected


@pytest.mark.parametrize(("q", "kv"), [
    ({"quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8"}, "fp8"),
    ({"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": "NVFP4"}, "fp4"),
    ({"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": None}, ""),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": NVFP4_W4A4},
      "kv_cache_scheme": {"num_bits": 8, "type": "float"}}, "fp8"),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": NVFP4_W4A4},
      "kv_cache_scheme": {"num_bits": 8, "type": "int"}}, ""),
    ({"quant_method": "fp8"}, ""),
])
def test_kv_cache_the_checkpoint_asks_for(q: dict[str, Any], kv: str) -> None:
    release = release_of({"quantization_config": q}, [], moe=False)
    assert release is not None and release.kv == kv


def test_dense_model_with_attention_kept_reads_the_mlps_format() -> None:
    got, notes = quant({"quant_method": "compressed-tensors", "ignore": ["re:.*self_attn.*"],
                        "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int"}}}}, moe=False)
    assert got == ("int4", "int4") and "keeps attention BF16" in notes[0]


@pytest.mark.parametrize(("q", "what"), [
    ({"quant_method": "gptq", "bits": 8}, "gptq 8-bit"),
    ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bitsandbytes"),
    ({"quant_method": "compressed-tensors", "config_groups": {}}, "compressed-tensors without weight groups"),
    ({"quant_method": "compressed-tensors",
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "int"}}}},
     "compressed-tensors 8-bit int, weight-only"),
    ({}, "(no quant_method)"),
])
def test_schemes_not_modelled_are_noted_not_guessed(q: dict[str, Any], what: str) -> None:
    got, notes = quant(q)
    assert got is None and notes == [f"quantization_config ({what}) not modelled: its weights are read as a BF16 "
                                     "checkpoint's"]


def test_serving_precision_defaults(catalog: Catalog) -> None:
    oss, llama = catalog.models["gpt-oss-120b"], catalog.models["llama-3.3-70b"]
    w, e, a, basis, kv = serving_precision(oss)
    assert (w, e, a, kv) == ("bf16", "fp4", "bf16", "") and basis.startswith("as published (mxfp4: routed experts")
    assert serving_precision(oss, activations="fp8")[:3] == ("bf16", "fp4", "fp8")  # W4A8, as asked
    assert serving_precision(oss, "fp8")[:3] == ("fp8", "fp8", "")  # given weights: the experts follow
    assert serving_precision(oss, None, "fp8")[:3] == ("bf16", "fp8", "")  # the release's activations go with it
    assert serving_precision(oss, "fp4", "int4") == ("fp4", "int4", "", "as given", "")
    w, e, a, basis, _ = serving_precision(llama)
    assert (w, e, a) == ("fp8", "fp8", "") and "unless the checkpoint is published quantized" in basis
    assert serving_precision(catalog.models["deepseek-r1"])[:3] == ("fp8", "fp8", "")
    assert serving_precision(catalog.models["kimi-k2.5"])[:3] == ("bf16", "int4", "bf16")


def test_gpt_oss_fits_one_h100_as_published(capsys: pytest.CaptureFixture[str]) -> None:
    """gpt-oss-120b's MXFP4 checkpoint (~61 GiB) runs on one 80 GB GPU; at FP8 it needs two."""
    args = ("serve", "-m", "gpt-oss-120b", "-g", "h100-sxm", "--tp", "1", "--isl", "1000", "--osl", "500", "-c", "16")
    d = cli_json(capsys, *args)
    assert d["fits"] is True and (d["precision"], d["moe_precision"], d["kv_precision"]) == ("bf16", "fp4", "bf16")
    assert d["activation_precision"] == "bf16"  # MXFP4 is weight-only
    assert 60 < d["weights_per_gpu_gib"] < 66 and "as published (mxfp4" in d["precision_basis"]
    assert d["compute_precision"] == "bf16"
    code = main([*args, "--precision", "fp8"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3 and "needs >= 2 x h100-sxm at fp8" in err


def test_does_not_fit_names_both_formats(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "-m", "kimi-k2.5", "-g", "h100-sxm", "--tp", "4", "--isl", "1000", "--osl", "100",
                 "-c", "8"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3 and "kimi-k2.5 at bf16 with int4 experts does not fit 4 x h100-sxm" in err
    assert "needs >= 8 x h100-sxm at bf16 with int4 experts" in err


def plan_scenario(**precision: str) -> dict[str, object]:
    return {"name": "oss", "region": "kr", "hardware": ["h100-sxm"],
            "workloads": [{"name": "code", "kind": "inference", "model": "gpt-oss-120b", "requests_per_s": 2,
                           "input_tokens": 2000, "output_tokens": 400, "ttft_ms": 2000, "tpot_ms": 50,
                           **precision}]}


def test_plan_serves_the_release_unless_told(catalog: Catalog) -> None:
    published = build_plan(parse_scenario(plan_scenario()), catalog).workloads[0]
    d = published.details
    assert (published.precision, d["moe_precision"], d["activation_precision"], d["kv_precision"]) == (
        "bf16", "fp4", "bf16", "bf16")
    assert "bf16 with fp4 experts" in key_figures(published)
    assert str(published.details["precision_basis"]).startswith("as published (mxfp4")
    fp8 = build_plan(parse_scenario(plan_scenario(precision="fp8")), catalog).workloads[0]
    assert fp8.precision == "fp8" and fp8.details["precision_basis"] == "as given"
    assert ", fp8, TPOT" in key_figures(fp8)
    assert fp8.gpus > published.gpus  # twice the expert bytes: at least two GPUs a replica
    mixed = build_plan(parse_scenario(plan_scenario(precision="fp8", moe_precision="fp4")), catalog).workloads[0]
    assert (mixed.precision, mixed.details["moe_precision"]) == ("fp8", "fp4")


def test_a_release_entry_is_checked(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="experts"):
        Release.model_validate({"weights": "bf16", "experts": "fp6"})
    assert json.loads(catalog.models["gpt-oss-120b"].model_dump_json())["release"]["experts"] == "fp4"


@pytest.mark.parametrize(("repo", "model", "expected"), [
    ("nvidia/DeepSeek-R1-0528-FP4-v2", "deepseek-r1", ("fp4", "fp4")),  # the tag names the checkpoint
    ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "qwen3-235b-a22b", ("fp8", "fp8")),
    ("Qwen/Qwen3-30B-A3B-GPTQ-Int4", "qwen3-30b-a3b", ("int4", "int4")),
    ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", "llama-3.3-70b", ("fp8", "fp8")),
    ("openai/gpt-oss-120b", "gpt-oss-120b", ("bf16", "fp4")),  # the entry's own release
    ("deepseek-ai/DeepSeek-R1-0528", "deepseek-r1", ("fp8", "fp8")),  # a revision of the entry's model
    ("moonshotai/Kimi-K2-Instruct", "kimi-k2.5", None),  # another release of K2.5's architecture: not known
    ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.3-70b", None),
])
def test_repository_names_carry_their_checkpoint_formats(
    catalog: Catalog, repo: str, model: str, expected: tuple[str, str] | None
) -> None:
    arch = resolve_model(catalog, repo)
    assert arch.id == model and formats(arch.release) == expected
    assert m.arch_fields(arch) == m.arch_fields(catalog.models[model])


def test_a_repository_tag_sets_the_serving_default(capsys: pytest.CaptureFixture[str]) -> None:
    d = cli_json(capsys, "serve", "-m", "nvidia/DeepSeek-R1-0528-FP4-v2", "-g", "b200", "--tp", "8", "--isl", "1000",
                 "--osl", "100", "-c", "8")
    assert (d["model"], d["precision"], d["moe_precision"]) == ("deepseek-r1", "fp4", "fp4")
    assert "-FP4 tag" in d["precision_basis"]


def test_expert_formats_need_experts(catalog: Catalog, capsys: pytest.CaptureFixture[str]) -> None:
    """A dense model has no routed experts: their format is refused rather than reported and ignored."""
    code = main(["serve", "-m", "llama-3.3-70b", "-g", "h200", "--tp", "2", "--isl", "1000", "--osl", "100", "-c", "8",
                 "--moe-precision", "fp4"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "--moe-precision: llama-3.3-70b has no routed experts (got 'fp4'" in err
    sc = plan_scenario(moe_precision="fp4")
    sc["workloads"][0]["model"] = "llama-3.1-8b"  # type: ignore[index]
    with pytest.raises(FactoryplanError, match=r"llama-3\.1-8b has no routed experts"):
        build_plan(parse_scenario(sc), catalog)


def test_a_modelopt_nvfp4_checkpoint_serves_as_its_config_says(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """NVIDIA's NVFP4 checkpoints quantize the experts W4A4, keep attention BF16 and ask for an FP8 KV
    cache (kv_cache_quant_algo): a config.json saying so is served that way by default."""
    cfg = json.loads((CONFIGS / "deepseek-ai--DeepSeek-R1_config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8",
                                  "exclude_modules": ["lm_head", "model.layers.*.self_attn*"]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    args = ("serve", "-m", str(path), "--tp", "8", "--ep", "8", "--isl", "1000", "--osl", "500", "-c", "32")
    d = cli_json(capsys, *args, "-g", "b200")
    assert (d["precision"], d["moe_precision"], d["kv_precision"]) == ("bf16", "fp4", "fp8")
    assert (d["activation_precision"], d["compute_precision"]) == ("bf16; experts fp4", "bf16; experts fp4")
    hopper = cli_json(capsys, *args, "-g", "h200")  # no FP4 units: the experts run weight-only
    assert hopper["compute_precision"] == "bf16; experts bf16 (weight-only fp4)"
    assert cli_json(capsys, *args, "-g", "b200", "--kv-precision", "bf16")["kv_precision"] == "bf16"  # as given


@pytest.mark.parametrize(("gpu", "backend", "activations", "compute"), [
    ("b200", "trtllm", "fp8", "bf16; experts fp8"),  # TRTLLM MoE backend: MXFP8 x MXFP4 on Blackwell
    ("gb300", "sglang", "fp8", "bf16; experts fp8"),  # flashinfer_mxfp4 runner, precision "default"
    ("b200", "vllm", "bf16", "bf16"),  # FlashInfer TRT-LLM BF16 x MXFP4
    ("h200-sxm", "trtllm", "bf16", "bf16"),  # Hopper: Triton MXFP4, BF16 activations
    ("mi355x", "sglang", "bf16", "bf16"),  # FP4 units, but not the CUDA kernels that quantize to MXFP8
])
def test_engine_chooses_the_mxfp4_experts_activations(
    capsys: pytest.CaptureFixture[str], gpu: str, backend: str, activations: str, compute: str
) -> None:
    """gpt-oss's weight-only MXFP4 experts are multiplied with what the engine's kernels on the part
    use unless the activations are given; given ones stand (BF16 prefills slower than MXFP8)."""
    args = ("serve", "-m", "gpt-oss-120b", "-g", gpu, "--tp", "1", "--backend", backend, "--isl", "8000",
            "--osl", "500", "-c", "32")
    d = cli_json(capsys, *args)
    assert (d["activation_precision"], d["compute_precision"]) == (activations, compute)
    assert ("MXFP8 activations on" in d["precision_basis"]) is (activations == "fp8")
    given = cli_json(capsys, *args, "--activation-precision", "bf16")
    assert (given["activation_precision"], given["compute_precision"]) == ("bf16", "bf16")
    assert (d["ttft_ms"] < 0.9 * given["ttft_ms"]) is (activations == "fp8")
    if activations == "bf16":
        assert d["ttft_ms"] == pytest.approx(given["ttft_ms"])


def test_plan_runs_mxfp4_experts_as_the_engine_does(catalog: Catalog) -> None:
    """The planner takes the engine's activations for MXFP4 experts on a Blackwell part (TensorRT-LLM,
    the default on NVIDIA: MXFP8) and keeps given ones."""
    blackwell = {**plan_scenario(), "hardware": ["b200"]}
    d = build_plan(parse_scenario(blackwell), catalog).workloads[0].details
    assert (d["moe_precision"], d["activation_precision"]) == ("fp4", "fp8")
    assert "MXFP8 activations on b200" in str(d["precision_basis"])
    workload = {**blackwell["workloads"][0], "activation_precision": "bf16"}  # type: ignore[index]
    given = build_plan(parse_scenario({**blackwell, "workloads": [workload]}), catalog).workloads[0].details
    assert given["activation_precision"] == "bf16" and "MXFP8 activations on" not in str(given["precision_basis"])
