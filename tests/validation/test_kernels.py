"""The inference physics against kernels timed on one H200 (benchmarks/device/gpu_microbench.py, runs
on 2026-11-30 shipped under validation/data), and the catalog's measured kernel entry."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from tests.conftest import cli_json

from factoryplan.catalog.load import Catalog
from factoryplan.cli import main
from factoryplan.errors import FactoryplanError
from factoryplan.perf.inference import constants_from_catalog
from factoryplan.validation.kernels import (
    SHIPPED,
    implied_constants,
    kernel_cases,
    load_bench,
    summary,
)


@pytest.fixture(scope="module")
def families(catalog: Catalog) -> dict[str, dict[str, float]]:
    k = constants_from_catalog(catalog, "vllm")
    return summary([c for path in SHIPPED for c in kernel_cases(catalog, load_bench(catalog, path), k)])


def test_catalog_entry_is_what_the_shipped_runs_give(catalog: Catalog) -> None:
    """Each value of kernels-h200-sxm is the mean of what the runs that measured it give (rounded to 3
    digits): the three full runs; the attention run too for KV reads and prefill attention; the MoE run
    and the third full run for the grouped GEMMs' streaming."""
    entry = catalog.calibrations["kernels-h200-sxm"]
    assert entry.basis == "measured" and entry.engine == "kernels" and entry.applies_to == ["h200-sxm"]
    runs = [implied_constants(catalog, load_bench(catalog, path)) for path in SHIPPED]
    assert set(entry.values) == set(runs[0])
    for key, value in entry.values.items():
        given = [r[key] for r in runs if math.isfinite(r[key])]
        runs_measuring = {"moe_stream_fraction": 2, "kv_efficiency_fraction": 4, "attention_efficiency_fraction": 4}
        assert len(given) == runs_measuring.get(key, 3), key
        assert value == pytest.approx(sum(given) / len(given), rel=2e-3), key


def test_measured_constants_are_physical(catalog: Catalog) -> None:
    """What the H200 gives lies where Hopper microbenchmarks put it: power-limited large GEMMs at
    70-85% of the BF16 peak, FP8 not quite twice BF16, weight streaming and KV reads under the
    datasheet bandwidth, prefill attention at 55-70% (FlashAttention-2 on Hopper)."""
    v = catalog.calibrations["kernels-h200-sxm"].values
    assert 0.70 < v["gemm_efficiency_fraction"] < 0.85
    assert 0.85 < v["low_precision_efficiency_ratio"] < 1.0
    assert 0.70 < v["hbm_efficiency_fraction"] < v["kv_efficiency_fraction"] < 1.0
    assert 0.55 < v["attention_efficiency_fraction"] < 0.70
    assert 5e-6 < v["decode_other_kernels_per_layer_s"] < 40e-6
    assert 0.5 < v["moe_stream_fraction"] < v["hbm_efficiency_fraction"]  # many small matrices stream worse


def test_one_gemm_by_hand(catalog: Catalog) -> None:
    """A 1-token BF16 GEMV of Llama-3.1-70B's gate/up matrix: the smooth roofline of 2·k·n FLOPs and
    2·k·n bytes at the catalog efficiencies, written out here."""
    k = constants_from_catalog(catalog, "vllm")
    bench = load_bench(catalog, SHIPPED[0])
    case = next(c for c in kernel_cases(catalog, bench, k) if c.family == "gemm bf16" and c.case == "l70b_gate_up m=1")
    kk, n = 8192, 57344
    t_c = 2.0 * kk * n * (1 + k.gemm_m_half) / (989.4e12 * k.gemm_efficiency)
    t_m = 2.0 * kk * n / (4.8e12 * k.hbm_efficiency)
    assert case.predicted_s == pytest.approx(math.sqrt(t_c**2 + t_m**2), rel=1e-9)
    measured = next(r for r in bench.rows("gemm")
                    if r["shape"] == "l70b_gate_up" and r["m"] == 1 and r["dtype"] == "bf16")
    assert case.measured_s == measured["seconds"]


def test_physics_against_the_h200_kernels(families: dict[str, dict[str, float]]) -> None:
    """The step-time physics with the serving fit's constants, engine overheads excluded, against every
    timed kernel (the figures README's fidelity table gives). Dense GEMMs and whole steps within 15%;
    the decode step runs slower than the physics by what its other kernels take (norms, activations:
    ~17 us a layer, which the engines' per-layer overhead carries)."""
    assert families["gemm bf16"]["mape_pct"] < 12 and families["gemm bf16"]["n"] == 312
    assert families["gemm fp8"]["mape_pct"] < 18
    assert families["decode step"]["mape_pct"] < 15 and -15 < families["decode step"]["bias_pct"] < -5
    assert families["prefill"]["mape_pct"] < 13
    # the serving fit's MoE compute efficiency (0.35 of dense, the activations' traffic counted apart: the
    # engines' MoE layers as served, block-scaled FP8 expert kernels, routing and permutation included) is
    # well below PyTorch's grouped GEMM alone (0.85), while it streams expert weights faster than a grouped
    # GEMM does (at the dense rate)
    assert 50 < families["grouped gemm"]["bias_pct"] < 90
    assert families["grouped gemm, some experts"]["bias_pct"] < -15


def test_prefill_chunks_against_the_h200(families: dict[str, dict[str, float]]) -> None:
    """Chunked-prefill steps (a 512- or 2,048-token chunk with 0-128 decoding sequences, one pass) and
    prefills, BF16: the physics without the engine's other kernels predicts them faster, by the norms,
    activations and residual adds it leaves to the engine overheads (12-16%). With FP8 matrix products
    the benchmark's own unfused quantization kernels widen that to about 30% (engines fuse them)."""
    first = families["chunked prefill step"]
    assert first["n"] == 12 and first["mape_pct"] < 20 and first["bias_pct"] < -5
    assert families["prefill"]["n"] == 12 and families["prefill"]["bias_pct"] < -5
    assert -40 < families["prefill fp8"]["bias_pct"] < families["prefill"]["bias_pct"]


def test_attention_after_a_prefix(families: dict[str, dict[str, float]]) -> None:
    """A prompt chunk's attention after a prefix of its prompt: PyTorch runs the bottom-right causal
    mask on FlashAttention-2 (about 300 TFLOP/s, slower than the physics' 0.5 of the BF16 peak) and
    plain shapes on cuDNN's Hopper kernel (630-700 TFLOP/s, faster). The catalog's attention rate lies
    between the two kernels, closer to the one the engines' Hopper kernels resemble."""
    fa2 = families["attention after a prefix, lower right gqa"]
    cudnn = families["attention after a prefix, no mask all keys"]
    assert fa2["n"] == cudnn["n"] == 4
    assert -45 < fa2["bias_pct"] < -25 and 20 < cudnn["bias_pct"] < 45
    repeated = families["attention after a prefix, lower right repeated kv"]
    assert abs(repeated["bias_pct"] - fa2["bias_pct"]) < 3  # GQA costs FlashAttention-2 nothing here
    # the steps after a prefix ran that attention on FlashAttention-2: slower still than the physics
    assert families["chunked prefill step, after a prefix"]["bias_pct"] < families["chunked prefill step"]["bias_pct"]


def test_cli_json_and_cases(capsys: pytest.CaptureFixture[str]) -> None:
    d = cli_json(capsys, "validate", "kernels", "--cases")
    assert [f["accelerator"] for f in d["files"]] == ["h200-sxm"] * 10
    assert d["files"][0]["not_checked"] == {"hbm": 3}  # plain bandwidth figures: reported, not predicted
    assert {"gemm bf16", "gemm fp8", "attention prefill", "attention decode", "grouped gemm", "decode step",
            "decode step fp8", "prefill"} <= set(d["families"])
    assert len(d["cases"]) == sum(int(v["n"]) for v in d["families"].values())
    assert set(d["catalog"]) <= set(next(iter(d["implied"].values())))


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "kernels"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert re.search(r"gemm bf16\W+312\W+\d+\.\d%", out)
    assert re.search(r"gemm_efficiency_fraction\W+0\.754\W+0\.764", out)


def test_a_file_for_another_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run on another part is predicted with that part's datasheet figures: the same H200 times
    labelled H100 (same compute, 3.35 instead of 4.8 TB/s) make the memory-bound kernels look fast."""
    data = json.loads(SHIPPED[0].read_text(encoding="utf-8"))
    data.pop("accelerator")
    data["grouped_gemm"].append({"shape": "x", "tokens_per_expert": 16, "error": "RuntimeError: no kernel"})
    path = tmp_path / "run.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    d = cli_json(capsys, "validate", "kernels", "--data", str(path), "--gpu", "h100-sxm")
    h200 = cli_json(capsys, "validate", "kernels")
    assert d["families"]["attention decode"]["bias_pct"] > h200["families"]["attention decode"]["bias_pct"] + 20
    assert d["files"][0]["not_checked"] == {"hbm": 3, "grouped_gemm (error)": 1}  # said, not dropped
    implied = next(iter(d["implied"].values()))
    assert implied["hbm_efficiency_fraction"] > 1.0  # faster than an H100 could stream: the label is wrong


def test_tensor_parallel_slices_are_their_own_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The gemm_tp section (one GPU's slice of each layer under TP) is predicted by the same GEMM model and
    reported apart from the whole layers, so a size effect shows as its own bias."""
    data = json.loads(SHIPPED[0].read_text(encoding="utf-8"))
    sliced = [{**r, "shape": r["shape"] + "/tp1"} for r in data["gemm"] if r["m"] in (1, 16, 64, 128)]
    path = tmp_path / "tp.json"
    path.write_text(json.dumps({"accelerator": "h200-sxm", "gemm_tp": sliced}), encoding="utf-8")
    d = cli_json(capsys, "validate", "kernels", "--data", str(path))
    whole = cli_json(capsys, "validate", "kernels", "--data", str(SHIPPED[0]))
    assert "gemm bf16" not in d["families"] and d["families"]["gemm bf16 tp slice"]["n"] == sum(
        r["dtype"] == "bf16" for r in sliced)
    assert set(d["families"]) == {"gemm bf16 tp slice", "gemm fp8 tp slice", "gemm fp8_fast_accum tp slice"}
    assert d["families"]["gemm bf16 tp slice"]["n"] < whole["families"]["gemm bf16"]["n"]
    bad = {"accelerator": "h200-sxm", "gemm_tp": [{**sliced[0], "dtype": "int8"}]}
    path.write_text(json.dumps(bad), encoding="utf-8")
    assert main(["validate", "kernels", "--data", str(path)]) != 0
    assert "gemm_tp[0]: dtype: unknown GEMM precision" in capsys.readouterr().err.replace("\n", " ")


def test_decode_steps_of_tensor_parallel_slices(catalog: Catalog) -> None:
    """One GPU's slice of a Llama-3.1-8B or -70B decode step under TP 2-8 (no all-reduce): at one sequence
    what the physics leaves out is a fixed time per layer, the same for both models and every TP (35-41
    us a layer, unfused, in a CUDA graph: four GEMMs' fixed costs and the norms, activations and
    attention launches), as the engines' per-layer overhead models it; the engines' fitted overheads
    lie below it (they fuse those kernels)."""
    k = constants_from_catalog(catalog, "vllm")
    cases = [c for path in SHIPPED if "decode_tp" in path.name
             for c in kernel_cases(catalog, load_bench(catalog, path), k) if c.family == "decode step tp slice"]
    assert len(cases) == 48
    per_layer = [(c.measured_s - c.predicted_s) / (80 if "70b" in c.case else 32) for c in cases
                 if c.case.endswith(" b=1")]
    assert len(per_layer) == 12 and min(per_layer) > 30e-6 and max(per_layer) < 45e-6
    assert max(per_layer) / min(per_layer) < 1.2
    for engine in ("vllm", "sglang", "trtllm"):
        assert constants_from_catalog(catalog, engine).layer_overhead_s < min(per_layer), engine


def test_moe_decode_steps(catalog: Catalog) -> None:
    """Whole decode steps of a Qwen3-30B-A3B-shaped model (random router: routing about uniform) over 1-256
    sequences. What a step adds from one sequence on (more experts touched, then more tokens per expert)
    the physics predicts within 25% from 4 sequences (82-92%: the experts' small matrices stream slower
    than the dense rate it gives them); the time it leaves out at one sequence is a fixed ~110 us per
    layer, PyTorch's two dozen unfused kernels of an MoE layer, above what the engines' fitted per-layer
    overheads hold for their fused MoE kernels."""
    k = constants_from_catalog(catalog, "vllm")
    runs = [[c for c in kernel_cases(catalog, load_bench(catalog, path), k) if c.family == "moe decode step"]
            for path in SHIPPED if "decode_moe" in path.name]
    assert [len(r) for r in runs] == [9, 9]
    one = [run[0] for run in runs]
    assert all(c.case.endswith(" b=1") for c in one)
    for run in runs:
        for c in run:
            if int(c.case.rsplit("=", 1)[1]) >= 4:
                ratio = (c.predicted_s - run[0].predicted_s) / (c.measured_s - run[0].measured_s)
                assert 0.75 < ratio < 1.0, c.case
    fixed = [(c.measured_s - c.predicted_s) / 48 for c in one]
    assert all(90e-6 < f < 130e-6 for f in fixed)
    for engine in ("vllm", "sglang", "trtllm"):
        e = constants_from_catalog(catalog, engine)
        assert e.layer_overhead_s + e.moe_layer_overhead_s < min(fixed), engine


@pytest.mark.parametrize(("content", "args", "message"), [
    ("{", [], "--data: not a JSON file"),
    ('{"hbm": []}', [], "not a gpu_microbench.py output (no gemm, gemm_tp, attention, grouped_gemm"),
    ('{"gemm": []}', [], "--gpu: the file does not say which accelerator it measured"),
    ('{"gemm": [], "accelerator": "h300"}', [], "--gpu: unknown accelerator 'h300'"),
    ('{"gemm": [{"shape": "x", "dtype": "bf16", "m": 1}]}', [], "gemm[0]: a record lacks keys (got 'k, n, seconds"),
    ('{"gemm": [{"shape": "x", "dtype": "int8", "m": 1, "k": 2, "n": 3, "seconds": 1, "tflops": 1, '
     '"weight_bytes_per_s": 1}]}', [], "gemm[0]: dtype: unknown GEMM precision (got 'int8'; allowed: bf16, fp8"),
    ('{"decode": [{"kind": "prefill", "seq": 512, "seconds": -1}]}', [],
     "decode[0]: seconds: not a positive number (got -1)"),
    ('{"decode": [{"kind": "mixed_step", "batch": -1, "context": 1024, "chunk": 512, "prefix": 0, '
     '"seconds": 0.01}]}', [], "decode[0]: batch: not a non-negative number (got -1)"),
    ('{"decode_tp": [{"kind": "decode_step_tp_slice", "model": "llama-9b", "tp": 2, "batch": 1, "context": 1, '
     '"seconds": 1, "gemms_only_seconds": 1}]}', [], "decode_tp[0]: model: unknown model 'llama-9b'"),
    ('{"attention": [{"kind": "prefix_causal", "variant": "v", "batch": 1, "q_heads": 32, "head_dim": 128, '
     '"chunk": 0, "prefix": 64, "seconds": 0.01}]}', [], "attention[0]: chunk: not a positive number (got 0)"),
])
def test_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, args: list[str],
                   message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    code = main(["validate", "kernels", "--data", str(path), *args])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message in err and "Traceback" not in err


def test_missing_file_and_bad_backend(catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FactoryplanError, match="cannot read"):
        load_bench(catalog, tmp_path / "absent.json")
    code = main(["validate", "kernels", "--backend", "tgi"])
    assert code == 2 and "--backend: unknown serving engine 'tgi'" in " ".join(capsys.readouterr().err.split())
