"""Published and measured serving results reproduced by the inference engine.

Sources (validation/data, copied with their provenance):

* published_runs.csv, inference rows: TensorRT-LLM ``docs/source/performance/perf-overview.md``
  (commit 00f37686) 'Throughput Measurements' (trtllm-bench, max load; Llama 3.1 8B and
  Llama 3.3 70B FP8 on H100 SXM and H200); NVIDIA NIM LLM benchmarking docs, Llama-3.3-70B-Instruct
  results v1.8.0 (2 x H100 80G, FP8, TP2, 5000/500 tokens, concurrency 1-100); vLLM CI performance
  benchmark build 9515 latency tests (H200, 32/128 tokens, batch 8).
* serving_measured_hopper.csv: 1,593 measured H100/H200 serving points (TensorRT-LLM, vLLM, SGLang;
  dense and MoE; BF16/FP8/FP4/INT4), published by NVIDIA with aiconfigurator-core 0.12.0; every row
  maps onto a catalog model. The 45 Qwen3.5 rows (hybrid linear attention) and the 30 GLM-5 rows
  (sparse attention) joined after a calibration, predicted out of sample first.

One set of calibrated constants (calibrations.inference.yaml) serves every row; nothing is tuned
per row. Targets of the engine's brief: output throughput and TPOT within 15% MAPE, TTFT within 25%
on the calibration rows. The bounds below are what the engine reaches (measured, with a point or
two of margin), so a regression fails them. TTFT of the measured set stays above its target: the
harness starts every user at once and its runs differ in ways one mean-value model cannot follow
(some engine versions add ~100 ms per request, some points queue for the KV cache; the one engine
release that kept its users in lockstep, SGLang 0.5.1, is predicted so, the harness having run it
without mixed chunks); the nine gpt-oss vLLM points at concurrency 512 (December 2025 runs) account for
1.8 points of the TPOT MAPE: about 100 of them were decoding whatever the layout and lengths (88-98,
output tokens/s x TPOT), and their TPOT at 512 users is below the same configuration's at 64 (3.6
against 7.1 ms at TP 8), which no server running more sequences shows; the InferenceMAX client opens
a session per request (no connection limit), so the likelier cause is a client that read its streams
late, which no serving model predicts.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.cli import main
from factoryplan.perf.inference import constants_from_catalog
from factoryplan.validation.inference import (
    Point,
    Prediction,
    band_gpus,
    error_bands,
    gpu_scaling,
    harness_fuses_allreduce,
    harness_mixes_prefill,
    implied_output_tokens_per_s,
    load_measured,
    model_id,
    predict,
)
from factoryplan.validation.published import PUBLISHED, load_published


@functools.cache
def published() -> tuple[list[Point], list[Prediction]]:
    cat = load_catalog()
    pts = load_published(cat).points
    return pts, predict(cat, pts)


@functools.cache
def measured() -> tuple[list[Point], list[Prediction]]:
    cat = load_catalog()
    pts = load_measured(cat).points
    return pts, predict(cat, pts)


def ape(pairs: list[tuple[Point, Prediction]], metric: str) -> np.ndarray:
    out = [abs(getattr(q, metric) - getattr(p, metric)) / getattr(p, metric) * 100
           for p, q in pairs if getattr(p, metric) and math.isfinite(getattr(q, metric))]
    return np.asarray(out)


def write_variants(path: Path, fields: list[str], row: dict[str, str], changes: list[dict[str, str]]) -> Path:
    """A measured-points file of ``row`` once per entry of ``changes`` (ids r0, r1, ...), each with
    those columns changed."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i, change in enumerate(changes):
            writer.writerow({**row, "id": f"r{i}", **change})
    return path


def test_published_rows_are_all_used() -> None:
    loaded = load_published(load_catalog())
    assert len(loaded.points) == 16
    assert {r for _, r in loaded.skipped} == {"lengths not given (ShareGPT (200 prompts)): a length distribution"}


def test_published_layout_reads_other_gpus_models_and_precisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows of the published table's layout for GPUs, models and precisions beyond the calibration
    rows (the sources' Blackwell tables) are read with the same rules, not skipped; a row the rules
    cannot read says why."""
    cat = load_catalog()
    with PUBLISHED.open(encoding="utf-8", newline="") as fh:
        columns = next(csv.reader(fh))
    rows = [("1", "Llama 3.3 70B", "B200 180GB", "FP4", "1", "", "", "1000", "1000", "max load", "12000"),
            ("2", "DeepSeek R1", "GB200-192GB", "FP4", "8", "", "8", "1024", "2048", "max load", "20000"),
            ("3", "Llama 4 Maverick", "H200 SXM 141GB", "FP8", "8", "", "8", "1000", "1000", "max load", "9000"),
            ("4", "Qwen3 235B A22B", "B200", "NVFP4", "4", "", "4", "1000", "1000", "64", "5000"),
            ("5", "Llama 3.1 8B", "H100-SXM-80GB", "FP8", "1", "", "", "1000", "1000", "dynamic", "9000"),
            ("6", "Llama 3.1 8B", "H100 NVL", "FP8", "1", "", "", "1000", "1000", "8", "900"),
            ("7", "Llama 3.1 8B", "H200", "FP8", "1", "", "", "1000", "1000", "8", ""),
            ("9", "Llama 3.1 405B", "GB200", "FP4", "", "", "", "1000", "1000", "max load", "3000"),
            ("10", "gpt-oss-120b", "B200", "MXFP4", "1", "", "", "1000", "1000", "max load", "20000")]
    path = tmp_path / "published.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for rid, model, gpu, prec, tp, pp, ep, isl, osl, conc, thr in rows:
            w.writerow({c: "" for c in columns} | {"gpu_count": "4" if rid == "9" else ""} | {
                "row_id": rid, "category": "inference", "model": model, "gpu_type": gpu, "precision": prec, "TP": tp,
                "PP": pp, "EP": ep, "input_len": isl, "output_len": osl, "concurrency_or_batch": conc,
                "output_throughput_tok_s": thr, "framework": "TensorRT-LLM (PyTorch backend, trtllm-bench)"})
    with path.open("a", encoding="utf-8", newline="") as fh:  # a table giving tokens/s per GPU only
        csv.DictWriter(fh, fieldnames=columns).writerow({c: "" for c in columns} | {
            "row_id": "8", "category": "inference", "model": "Llama 3.3 70B", "gpu_type": "H100-SXM-80GB",
            "precision": "FP8", "TP": "2", "input_len": "1000", "output_len": "1000",
            "concurrency_or_batch": "max load", "tokens_per_s_per_gpu": "1500", "framework": "TensorRT-LLM"})
    loaded = load_published(cat, path)
    got = {p.id: p for p in loaded.points}
    assert sorted(got) == ["published-1", "published-10", "published-2", "published-3", "published-4", "published-8",
                           "published-9"]
    assert got["published-9"].par.tp == 4  # no TP given: the row's four GPUs
    assert got["published-8"].output_tokens_per_s == 3000.0  # 1,500 a GPU on the replica's two
    assert (got["published-1"].accelerator, got["published-1"].weights) == ("b200", "fp4")
    assert got["published-1"].activations == "" and got["published-2"].activations == ""  # NVFP4 W4A4
    # gpt-oss's MXFP4 is weight-only; TensorRT-LLM on Blackwell multiplies it with MXFP8 activations
    assert got["published-10"].activations == "fp8"
    r1 = got["published-2"]
    assert (r1.model, r1.accelerator, r1.system) == ("deepseek-r1", "gb200", "gb200-nvl72")
    assert (r1.par.tp, r1.par.ep, r1.par.moe_tp) == (8, 8, 1)
    assert got["published-3"].model == "llama-4-maverick-17b-128e" and got["published-3"].accelerator == "h200-sxm"
    assert got["published-4"].concurrency == 64 and got["published-4"].par.tp == 4  # not read as attention DP
    reasons = dict(loaded.skipped)
    assert "users 'dynamic'" in reasons["published-5"] and "'H100 NVL' not in the catalog" in reasons["published-6"]
    assert reasons["published-7"].startswith("no serving figure")
    preds = predict(cat, loaded.points)
    assert all(q.fits and q.output_tokens_per_s > 0 for q in preds)
    # the command reads such a file in place of the bundled table
    assert main(["validate", "inference", "--published", str(path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)["published"]
    assert {r["id"] for r in out["rows"]} == set(got) and len(out["skipped"]) == 3


def test_trtllm_max_throughput_tables() -> None:
    """TensorRT-LLM perf-overview, max load: output tokens/s within 15% MAPE (12% measured); the
    70B rows within 9%, the 8B rows 18-29% low (at ~430 concurrent sequences the serving profile's
    per-sequence overhead and KV reservation are conservative for trtllm-bench)."""
    pts, preds = published()
    pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if p.concurrency == 0]
    assert len(pairs) == 10
    e = ape(pairs, "output_tokens_per_s")
    assert e.mean() <= 14.0
    assert e.max() <= 31.0
    seventy = [(p, q) for p, q in pairs if p.model == "llama-3.3-70b"]
    assert ape(seventy, "output_tokens_per_s").max() <= 11.0


def test_nim_concurrency_sweep() -> None:
    """NIM 1.8.0, Llama 3.3 70B FP8 TP2 on H100, 5000/500, a warmed-up (steady-state) sweep:
    throughput 6% and TPOT 8% MAPE, TTFT 22% (one user 19% high, 25 and 50 users 11% and 17% high:
    the engine's queue factor is its simulated scheduler's, whose closed loop waits longer than this
    warmed-up one; at 100 users the KV cache holds ~86 and the queue for a slot is 42% short)."""
    pts, preds = published()
    pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if p.ttft_ms]
    assert len(pairs) == 4
    assert ape(pairs, "output_tokens_per_s").mean() <= 7.0
    assert ape(pairs, "tpot_ms").mean() <= 10.0
    assert ape(pairs, "ttft_ms").mean() <= 26.0
    loaded = [(p, q) for p, q in pairs if 1 < p.concurrency < 100]
    assert ape(loaded, "ttft_ms").max() <= 18.0
    ratios = [q.ttft_ms / p.ttft_ms for p, q in pairs]
    assert all(0.5 <= r <= 1.3 for r in ratios)


def test_vllm_ci_latency() -> None:
    """vLLM CI latency tests (batch 8, 32 in / 128 out, BF16 on H200): end-to-end within 17%."""
    pts, preds = published()
    pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if p.e2e_ms]
    assert len(pairs) == 2
    assert ape(pairs, "e2e_ms").max() <= 17.0


def test_measured_hopper_overall() -> None:
    """The 1,593 measured points: TPOT 14.7% MAPE (median 9.2%), TTFT 26.5% (median 19.8%), and
    the throughput their TTFT and TPOT imply 14.3% (median 8.9%): the fit holds the microbenchmark
    priors firmly, which costs about a point in sample and gains about two on every hold-out
    (benchmarks/calibrate_inference.py, PRIOR_WEIGHT). The 45 Qwen3.5 points were first predicted
    out of sample (constants fitted without them: TPOT 21.3%, TTFT 18.8%, throughput 30.1%), the 30
    GLM-5 points too (TPOT 24%, TTFT 32%, every TPOT too fast by 12-45%); both are part of the
    calibration set now (TPOT/TTFT: Qwen3.5 17.6%/24.3%, GLM-5 18.8%/29.7%)."""
    pts, preds = measured()
    pairs = list(zip(pts, preds, strict=True))
    assert len(pairs) == 1593
    tpot, ttft = ape(pairs, "tpot_ms"), ape(pairs, "ttft_ms")
    assert tpot.mean() <= 15.5 and np.median(tpot) <= 10.5
    assert ttft.mean() <= 27.5 and np.median(ttft) <= 21.0
    implied = [replace(p, output_tokens_per_s=implied_output_tokens_per_s(p)) for p in pts if p.ttft_ms and p.tpot_ms]
    thr = ape(list(zip(implied, preds, strict=True)), "output_tokens_per_s")
    assert thr.mean() <= 15.5 and np.median(thr) <= 10.0


def test_error_bands_are_the_calibration_sets() -> None:
    """The band each engine's calibration entry carries (and `serve` reports) is what the calibration
    set shows with the shipped constants: measured / predicted at the 10th and 90th percentile, over
    the measured points (throughput: what their TTFT and TPOT imply) and the published rows. A refit
    that does not rewrite the band fails here."""
    from factoryplan.perf.inference_constants import error_band

    (m_pts, m_preds), (p_pts, p_preds) = measured(), published()
    implied = [replace(p, output_tokens_per_s=implied_output_tokens_per_s(p)) for p in m_pts]
    bands = error_bands(implied + p_pts, m_preds + p_preds)
    gpus = band_gpus(implied + p_pts)
    cat = load_catalog()
    assert set(bands) == {"trtllm", "vllm", "sglang"}
    for backend, values in bands.items():
        band = error_band(cat, backend)
        assert band is not None and band.basis.startswith(f"{values['band_points_count']:,.0f} {backend}")
        assert list(band.gpus) == gpus[backend] == ["h100-sxm", "h200-sxm"]  # measured_on: where the band holds
        for name, (lo, hi) in (("ttft", band.ttft), ("tpot", band.tpot), ("throughput", band.throughput)):
            assert lo == pytest.approx(values[f"{name}_measured_p10_ratio"], rel=5e-3)
            assert hi == pytest.approx(values[f"{name}_measured_p90_ratio"], rel=5e-3)
            assert 0.5 < lo < 1.0 < hi  # the prediction sits inside the band of every engine and figure
        # on a part the calibration has not measured: the leave-one-GPU-out band over the same points
        other = error_band(cat, backend, "b200")
        assert other is not None and other.unseen and other.basis.startswith(f"{values['band_points_count']:,.0f} ")
        for lo, hi in (other.ttft, other.tpot, other.throughput):
            assert 0.5 < lo < 1.0 < hi


@pytest.mark.parametrize(("group", "tpot_limit", "ttft_limit"), [
    ("trtllm", 14.0, 31.0), ("vllm", 23.0, 27.5), ("sglang", 13.0, 26.5),
    ("bf16", 11.0, 28.0), ("fp8", 17.5, 31.0), ("fp4", 26.5, 23.5), ("int4", 11.5, 20.5),
    ("h100-sxm", 17.0, 26.5), ("h200-sxm", 17.5, 31.5),
])
def test_measured_hopper_by_group(group: str, tpot_limit: float, ttft_limit: float) -> None:
    """TPOT and TTFT MAPE by serving engine, weight precision and GPU (FP4 is weight-only on
    Hopper: gpt-oss; its vLLM points at concurrency 512 are the nine outliers)."""
    pts, preds = measured()
    pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if group in (p.backend, p.weights, p.accelerator)]
    assert len(pairs) >= 45
    assert ape(pairs, "tpot_ms").mean() <= tpot_limit
    assert ape(pairs, "ttft_ms").mean() <= ttft_limit


def test_sglang_runs_scheduling_by_release() -> None:
    """The harness launched SGLang with prompt chunks mixed into decode iterations except release
    0.5.1 (its launch template never passed the flag): those 78 points ran SGLang's default, prompts
    apart and ahead of decoding, their users in lockstep for the whole run. Predicted so, their TTFT
    and TPOT MAPE are 11.8% and 4.6%; predicted as the other releases ran (mixed, users drifting apart
    after a first wave) they would be over 55% and 25%."""
    assert harness_mixes_prefill("sglang", "0.5.1.post1") is False
    assert harness_mixes_prefill("sglang", "0.5.6.post2") is True and harness_mixes_prefill("sglang", "") is True
    assert harness_mixes_prefill("trtllm", "1.0.0rc3") is None and harness_mixes_prefill("vllm", "0.12.0") is None
    pts, preds = measured()
    pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if p.backend == "sglang" and p.version == "0.5.1.post1"]
    assert len(pairs) == 78 and all(p.mixes_prefill is False for p, _ in pairs)
    assert ape(pairs, "ttft_ms").mean() <= 14.0 and ape(pairs, "tpot_ms").mean() <= 6.5
    mixed = [replace(p, mixes_prefill=True) for p, _ in pairs]
    as_mixed = list(zip(mixed, predict(load_catalog(), mixed), strict=True))
    assert ape(as_mixed, "ttft_ms").mean() > 55.0 and ape(as_mixed, "tpot_ms").mean() > 25.0


def test_vllm_runs_fuse_all_reduces_from_release_0_17() -> None:
    """vLLM fuses each TP all-reduce with the RMSNorm after it by default from 0.17 (its profile);
    runs of earlier releases, and runs whose release is not recorded, are predicted without it. Its
    0.18 campaigns (gpt-oss-120b, MiniMax-M2.5: 208 points) are predicted as fused; their TPOT error
    is smaller so than with the plain all-reduce's fixed cost."""
    assert harness_fuses_allreduce("vllm", "0.16.0") is False and harness_fuses_allreduce("vllm", "0.12.0") is False
    assert harness_fuses_allreduce("vllm", "") is False
    assert harness_fuses_allreduce("vllm", "vLLM (CI build 9515)") is False
    assert harness_fuses_allreduce("vllm", "0.18.0") is None and harness_fuses_allreduce("vllm", "1.0.0") is None
    assert harness_fuses_allreduce("trtllm", "1.0.0rc3") is None and harness_fuses_allreduce("sglang", "0.5.9") is None
    catalog = load_catalog()
    assert constants_from_catalog(catalog, "vllm").fused_allreduce == (("*", 0.0),)
    pts, preds = measured()
    pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if p.backend == "vllm" and p.version == "0.18.0"]
    assert len(pairs) == 208 and all(p.fuses_allreduce is None for p, _ in pairs)
    assert all(p.fuses_allreduce is False for p in pts if p.backend == "vllm" and p.version != "0.18.0")
    plain = [replace(p, fuses_allreduce=False) for p, _ in pairs]
    as_plain = list(zip(plain, predict(catalog, plain), strict=True))
    assert ape(pairs, "tpot_ms").mean() < ape(as_plain, "tpot_ms").mean() - 3.0


def test_same_configuration_on_two_gpus() -> None:
    """The hardware physics alone: 89 configurations of the measured set (vLLM's Llama-3.1-70B and
    gpt-oss-120b campaigns) ran on both H100 and H200 with the same engine version, lengths and
    users, so each campaign's own effects cancel in the H200/H100 ratio. The ratio is predicted
    within 7.6% (TPOT, median 4.4%) and 6.7% (throughput) on average; TTFT's median within 7.0%
    (6.9%, 3.7%, 6.0% and 7.0% before the engines' fused all-reduces entered the fit; in part the plain
    all-reduce's fixed cost, which rose from 13 to 21 us: a cost the same on both GPUs narrows the
    predicted ratio). Its mean, 100%,
    is set by three Llama-3.1-70B points on two H100s at 32-64 users with 8k-token prompts or
    outputs, where the smaller KV cache kept requests waiting 6-59 s and the prediction is 0.4-16 s."""
    pts, preds = measured()
    scaling = gpu_scaling(pts, preds)
    assert list(scaling) == ["h100-sxm -> h200-sxm"]
    figures = scaling["h100-sxm -> h200-sxm"]
    assert {int(v["pairs"]) for v in figures.values()} == {89}
    assert figures["tpot_ms"]["measured_ratio_median"] == pytest.approx(0.87, abs=0.01)  # H200 decodes faster
    assert figures["tpot_ms"]["ratio_error_pct"] <= 8.0 and figures["tpot_ms"]["median_ratio_error_pct"] <= 5.0
    assert figures["output_tokens_per_s"]["ratio_error_pct"] <= 7.5
    assert figures["ttft_ms"]["median_ratio_error_pct"] <= 7.0


def test_gpu_scaling_pairs_only_the_same_configuration() -> None:
    """Ratios pair points that differ in the GPU alone; repeated rows are averaged, and a point of
    another engine version or concurrency has no partner."""
    pts, _ = measured()
    base = next(p for p in pts if p.accelerator == "h100-sxm" and p.ttft_ms and p.tpot_ms)
    a = replace(base, ttft_ms=100.0, tpot_ms=10.0, output_tokens_per_s=1000.0)
    b = replace(base, accelerator="h200-sxm", system="hgx-h200", ttft_ms=80.0, tpot_ms=8.0,
                output_tokens_per_s=1250.0)
    b_again = replace(b, ttft_ms=120.0)  # a repeat of b: the two are averaged (TTFT 100 ms)
    lone = replace(b, version="other", ttft_ms=1.0)
    busier = replace(b, concurrency=base.concurrency * 2, ttft_ms=1.0)
    q = Prediction(ttft_ms=50.0, tpot_ms=5.0, output_tokens_per_s=500.0, e2e_ms=math.nan, fits=True)
    q_fast = Prediction(ttft_ms=45.0, tpot_ms=4.5, output_tokens_per_s=550.0, e2e_ms=math.nan, fits=True)
    got = gpu_scaling([a, b, b_again, lone, busier], [q, q_fast, q_fast, q_fast, q_fast])
    assert list(got) == ["h100-sxm -> h200-sxm"]
    f = got["h100-sxm -> h200-sxm"]
    assert {v["pairs"] for v in f.values()} == {1.0}
    assert f["ttft_ms"]["measured_ratio_median"] == pytest.approx(1.0)
    assert f["ttft_ms"]["predicted_ratio_median"] == pytest.approx(0.9)
    assert f["ttft_ms"]["ratio_error_pct"] == pytest.approx(10.0)
    assert f["tpot_ms"]["measured_ratio_median"] == pytest.approx(0.8)
    assert f["tpot_ms"]["ratio_error_pct"] == pytest.approx(12.5)  # 0.9 / 0.8 - 1
    assert f["output_tokens_per_s"]["measured_ratio_median"] == pytest.approx(1.25)
    assert gpu_scaling([a], [q]) == {}
    # the order puts the earlier part first, whatever the names
    flipped = gpu_scaling([a, b], [q, q_fast], {"h200-sxm": (2023.0, 1.0), "h100-sxm": (2024.0, 1.0)})
    assert list(flipped) == ["h200-sxm -> h100-sxm"]
    assert flipped["h200-sxm -> h100-sxm"]["tpot_ms"]["measured_ratio_median"] == pytest.approx(1.25)


def test_measured_hopper_dense_models_tighter() -> None:
    """Dense Llama 3.1 70B and Qwen3-32B, the best-conditioned families: TPOT within 12% and 10%."""
    pts, preds = measured()
    for model, limit in (("llama-3.1-70b", 12.0), ("qwen3-32b", 10.0)):
        pairs = [(p, q) for p, q in zip(pts, preds, strict=True) if p.model == model]
        assert ape(pairs, "tpot_ms").mean() <= limit, model


@pytest.mark.parametrize(("repo", "expected"), [
    ("nvidia/DeepSeek-R1-0528-FP4-v2", "deepseek-r1"),
    ("deepseek-ai/DeepSeek-V3-0324", "deepseek-v3"),
    ("nvidia/Llama-3.3-70B-Instruct-FP4", "llama-3.3-70b"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "qwen3-235b-a22b"),
    ("Qwen/Qwen3-8B", "qwen3-8b"),
    ("moonshotai/Kimi-K2-Instruct", "kimi-k2.5"),
    ("MiniMaxAI/MiniMax-M2", "minimax-m2.5"),
    ("deepseek-ai/DeepSeek-V3.2", "deepseek-v3.2"),  # its own entry (sparse attention), not DeepSeek-V3
    ("deepseek-ai/DeepSeek-V3.2-Exp", "deepseek-v3.2"),
    ("nvidia/DeepSeek-V3.2-Exp-FP4", "deepseek-v3.2"),
    ("zai-org/GLM-4.6", "glm-4.5"),  # GLM-4.5's layers with a longer context
    ("zai-org/GLM-4.7-FP8", "glm-4.5"),
    ("zai-org/GLM-4.5-Air", None),  # a smaller model of the family
    ("zai-org/GLM-4.7-Flash", None),  # MLA, a different architecture
    ("zhipuai/GLM-5", "glm-5"),
    ("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", "qwen3-coder-480b-a35b"),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3-30b-a3b"),  # Qwen3-30B-A3B's layers, longer context
    ("zai-org/GLM-5-FP8", "glm-5"),
])
def test_data_set_model_names_map_to_architectures(repo: str, expected: str | None) -> None:
    """Measured files of other GPUs name quantized checkpoints and dated releases of the same models."""
    from factoryplan.validation.inference import model_id

    assert model_id(load_catalog().models, repo) == expected


@pytest.mark.parametrize(("system", "expected"), [
    ("b200_sxm", ("b200", "dgx-b200")), ("gb200_sxm", ("gb200", "gb200-nvl72")),
    ("gb300_sxm", ("gb300", "gb300-nvl72")), ("b300_sxm", ("b300", "dgx-b300")),
    ("a100_sxm", ("a100-sxm-80gb", "dgx-a100-80gb")), ("l40s", ("l40s", "l40s-server")),
    ("rtx_pro_6000_server", None),
])
def test_data_set_system_names_map_to_hardware(system: str, expected: tuple[str, str] | None) -> None:
    from factoryplan.validation.inference import hardware_id

    assert hardware_id(load_catalog(), system) == expected


@pytest.mark.parametrize(("mode", "weights", "activations"), [
    ("", "bf16", ""), ("float16", "bf16", ""), ("bfloat16", "bf16", ""), ("fp8_block", "fp8", ""),
    ("nvfp4", "fp4", ""), ("w4a16_mxfp4", "fp4", "bf16"), ("w4a8_mxfp4_fp8", "fp4", "fp8"),
    ("w4afp8", "int4", "fp8"), ("int4_wo", "int4", "bf16"), ("w4a16_awq", "int4", "bf16"),
    ("None", "bf16", ""), ("nan", "bf16", ""), ("fp16", "bf16", ""),
    ("int8_wo", "fp8", "bf16"), ("sq", "fp8", ""), ("w8a8", "fp8", "fp8"),
])
def test_data_set_quantization_modes(mode: str, weights: str, activations: str) -> None:
    from factoryplan.validation.inference import activations_of, quant

    assert (quant(mode), activations_of(mode)) == (weights, activations)


@pytest.mark.parametrize(("text", "engine"), [
    ("trtllm", "trtllm"), ("TensorRT-LLM", "trtllm"), ("dynamo-trtllm", "trtllm"), ("trt_llm", "trtllm"),
    ("vLLM", "vllm"), ("vllm-openai", "vllm"), ("SGLang", "sglang"), ("llama.cpp", None),
])
def test_data_set_engine_names(text: str, engine: str | None) -> None:
    from factoryplan.validation.inference import engine_name

    assert engine_name(text) == engine


def test_moe_row_without_expert_columns_splits_experts_over_the_group() -> None:
    """A MoE row with blank moe_tp/ep columns runs its experts over the tp x dp GPUs (repair (e)),
    not replicated on each GPU."""
    import csv

    from factoryplan.validation import inference as vi

    with vi.MEASURED.open(encoding="utf-8", newline="") as fh:
        row = next(r for r in csv.DictReader(fh)
                   if r["model_path"] == "Qwen/Qwen3-235B-A22B-FP8" and r["tp_size"] == "4")
    row = {**row, "moe_tp_size": "", "moe_ep_size": ""}
    par, repair = vi.row_parallel(row, 128, 8, vi._concurrency(row))
    assert (par.tp * par.dp, par.moe_tp * par.ep) == (4, 4) and repair.startswith("(e)")


def test_wide_expert_parallel_rows_get_the_slots_the_engines_need(catalog: Catalog, tmp_path: Path) -> None:
    """A DeepSeek-R1 row on 48 ranks (six H200 systems) or a disaggregated one decoding on 72 GPUs of an
    NVL72 rack cannot have run without redundant expert copies (256 experts do not split over 48 or
    72 ranks): repair (f) gives them the fewest, 32 (288 slots, 6 or 4 a rank), and says so; a row on
    32 ranks needs none."""

    from factoryplan.validation import inference as vi

    with vi.MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        row = next(r for r in reader if r["model_path"] == "deepseek-ai/DeepSeek-R1" and r["attention_dp_size"] == "8")
    wide = {**row, "id": "wide", "attention_dp_size": "48", "moe_ep_size": "48", "batch_size": "64",
            "silicon_data_source": "silicon_concurrency=3072"}
    even = {**wide, "id": "even", "attention_dp_size": "32", "moe_ep_size": "32",
            "silicon_data_source": "silicon_concurrency=2048"}
    disagg = {**row, "id": "disagg", "mode": "disagg", "system": "gb200", "silicon_data_source": "",
              "prefill_tp_size": "1", "prefill_attention_dp_size": "8", "prefill_moe_ep_size": "8",
              "prefill_num_workers": "2", "prefill_batch_size": "1", "decode_tp_size": "1",
              "decode_attention_dp_size": "72", "decode_moe_ep_size": "72", "decode_num_workers": "1",
              "decode_batch_size": "32"}
    sample = tmp_path / "points.csv"
    with sample.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows([wide, even, disagg])
    loaded = vi.load_measured(catalog, sample)
    assert not loaded.skipped
    by_id = {p.id: p for p in loaded.points}
    assert float(by_id["wide"].par.redundant) == 32 and by_id["wide"].repair.endswith(
        "(f) ep 48 with 256 experts: 32 redundant slots (6 a rank)")
    assert float(by_id["even"].par.redundant) == 0 and "(f)" not in by_id["even"].repair
    dec = by_id["disagg"]
    assert dec.disagg is not None and float(dec.par.ep) == 72 and float(dec.par.redundant) == 32
    assert float(dec.disagg.prefill.redundant) == 0 and "decode: (f) ep 72 with 256 experts" in dec.repair
    preds = vi.predict(catalog, loaded.points)
    assert all(math.isfinite(q.tpot_ms) and q.tpot_ms > 0 and math.isfinite(q.ttft_ms) for q in preds)


@pytest.mark.parametrize(("repo", "expected"), [
    ("nvidia/DeepSeek-R1-0528-FP4", "deepseek-r1"),
    ("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8", "qwen3-235b-a22b"),
    ("zai-org/GLM-4.6-FP8", "glm-4.5"),
    ("moonshotai/Kimi-K2-Instruct", "kimi-k2.5"),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3-30b-a3b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "llama-3.3-70b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama-3.1-8b"),
    ("mistralai/Mixtral-8x22B-Instruct-v0.1", "mixtral-8x22b"),
    ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),  # the release's first name
    ("nvidia/Meta-Llama-3.1-405B-Instruct-FP8", "llama-3.1-405b"),
    ("deepseek-ai/DeepSeek-V3.1-Terminus", "deepseek-v3"),
    ("zai-org/GLM-4.5-Air", None),  # another architecture: 46 layers, 128 experts
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "qwen2.5-32b"),
    ("Qwen/QwQ-32B", "qwen2.5-32b"),
    ("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF", "llama-3.1-70b"),  # a fine-tune with the base's layers
    ("nvidia/Llama-3.1-Nemotron-Nano-8B-v1", "llama-3.1-8b"),
    ("nvidia/Llama-3_3-Nemotron-Super-49B-v1_5", None),  # pruned: layers of different shapes
    ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
    ("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", None),  # Qwen2.5-14B, not in the catalog
    ("Qwen/Qwen3-0.6B", "qwen3-0.6b"),
    ("Qwen/Qwen3-1.7B-FP8", "qwen3-1.7b"),
    ("Qwen/Qwen3-32B-FP8-Static-PerTensor", "qwen3-32b"),  # a quantization recipe, the same layers
    ("Qwen/Qwen3-VL-2B-Instruct", "qwen3-1.7b"),  # Qwen3-VL's text models: the Qwen3 shapes
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3-8b"),
    ("Qwen/Qwen3-VL-32B-Thinking", "qwen3-32b"),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3-30b-a3b"),
    ("Qwen/Qwen3-VL-235B-A22B-Instruct-FP8", "qwen3-235b-a22b"),
    ("MiniMaxAI/MiniMax-M3", None),  # a new architecture
    ("Qwen/Qwen3.5-27B-FP8", "qwen3.5-27b"),
    ("nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4", "nemotron-3-nano-30b-a3b"),
])
def test_repository_names_map_to_catalog_architectures(repo: str, expected: str | None) -> None:
    """A data set's model repository maps onto the catalog entry with its architecture (variant
    suffixes stripped, releases of the same architecture mapped), or to none."""
    assert model_id(load_catalog().models, repo) == expected


def test_kv_cache_column_of_a_data_set_is_used(tmp_path: Path) -> None:
    """A ``kv_cache_quant_mode`` column sets each row's KV precision (blank/auto: the engine's default);
    an FP4 cache on a part without FP4 units, or a format the engine does not know, skips the row with the
    column and value; the written points name the KV precision."""
    import csv

    from factoryplan.commands.validate_inference import write_points_csv
    from factoryplan.validation.inference import MEASURED, load_measured, predict

    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [*(reader.fieldnames or []), "kv_cache_quant_mode"]
        row = next(r for r in reader if r["model_path"] == "meta-llama/Llama-3.1-70B" and r["isl"] == "8192"
                   and r["mode"] == "agg" and r["system"] == "h200_sxm")
    cases = [("h200_sxm", ""), ("h200_sxm", "bfloat16"), ("h200_sxm", "auto"), ("b200_sxm", "fp8"),
             ("b200_sxm", "nvfp4"), ("h200_sxm", "nvfp4"), ("h200_sxm", "int2")]
    path = write_variants(tmp_path / "points.csv", fields, row,
                          [{"system": system, "kv_cache_quant_mode": kv} for system, kv in cases])
    cat = load_catalog()
    loaded = load_measured(cat, path)
    assert [p.kv for p in loaded.points] == ["", "bf16", "", "fp8", "fp4"]
    assert [(i, r.split(":")[0].split(" names")[0]) for i, r in loaded.skipped] == [
        ("r5", "kv_cache_quant_mode 'nvfp4'"), ("r6", "kv_cache_quant_mode 'int2'")]
    default, bf16, auto, b200_fp8, b200_fp4 = predict(cat, loaded.points)
    assert (auto.ttft_ms, auto.tpot_ms) == (default.ttft_ms, default.tpot_ms)
    assert bf16.tpot_ms > default.tpot_ms  # the default is FP8 with FP8 weights
    assert b200_fp4.tpot_ms < b200_fp8.tpot_ms
    out = tmp_path / "out.csv"
    write_points_csv(out, [("data", loaded, [default, bf16, auto, b200_fp8, b200_fp4])])
    with out.open(encoding="utf-8", newline="") as fh:
        assert [r["kv"] for r in csv.DictReader(fh)][:5] == ["default", "bf16", "default", "fp8", "fp4"]


def test_fp4_label_on_a_weight_only_checkpoint(tmp_path: Path) -> None:
    """gpt-oss has one FP4 checkpoint, MXFP4 and weight-only: a row labelled nvfp4 is that checkpoint,
    where a DeepSeek-R1 row labelled nvfp4 is NVIDIA's NVFP4 W4A4 one. Its activations are what the
    row's engine multiplies it with on the row's GPU (BF16 on Hopper and in vLLM; MXFP8 in TensorRT-LLM
    and SGLang on Blackwell); a label naming the activations (w4a16_mxfp4, w4a8_mxfp4_fp8) wins."""
    from factoryplan.commands.validate_inference import write_points_csv
    from factoryplan.validation.inference import MEASURED, load_measured, predict

    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    oss = next(r for r in rows if r["model_path"] == "openai/gpt-oss-120b" and r["gemm_quant_mode"] == "nvfp4"
               and r["backend"] == "trtllm")
    dsr1 = next(r for r in rows if r["model_path"] == "deepseek-ai/DeepSeek-R1" and r["mode"] == "agg")
    path = tmp_path / "points.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerow({**oss, "id": "oss-w4a16", "system": "b200_sxm", "moe_quant_mode": "w4a16_mxfp4"})
        writer.writerow({**oss, "id": "oss-w4a8", "system": "b200_sxm", "moe_quant_mode": "w4a8_mxfp4_fp8"})
        writer.writerow({**dsr1, "id": "dsr1", "system": "b200_sxm", "gemm_quant_mode": "nvfp4",
                         "moe_quant_mode": "nvfp4"})
        for backend in ("trtllm", "sglang", "vllm"):
            writer.writerow({**oss, "id": f"oss-{backend}", "system": "b200_sxm", "backend": backend})
        writer.writerow({**oss, "id": "oss-h200", "system": "h200_sxm"})
    cat = load_catalog()
    points = load_measured(cat, path).points
    assert [(p.id, p.weights, p.experts, p.activations) for p in points] == [
        ("oss-w4a16", "fp4", "fp4", "bf16"), ("oss-w4a8", "fp4", "fp4", "fp8"), ("dsr1", "fp4", "fp4", ""),
        ("oss-trtllm", "fp4", "fp4", "fp8"), ("oss-sglang", "fp4", "fp4", "fp8"), ("oss-vllm", "fp4", "fp4", "bf16"),
        ("oss-h200", "fp4", "fp4", "bf16")]
    preds = predict(cat, points)
    w4a16, w4a8 = preds[:2]
    out = tmp_path / "out.csv"
    write_points_csv(out, [("data", load_measured(cat, path), preds)])
    with out.open(encoding="utf-8", newline="") as fh:  # the points say what the GEMMs multiplied with
        assert [r["activations"] for r in csv.DictReader(fh)] == [
            "bf16", "fp8", "weights'", "fp8", "fp8", "bf16", "bf16"]
    assert w4a16.ttft_ms > w4a8.ttft_ms  # BF16 expert GEMMs prefill slower than FP8 ones


def test_requests_per_user_column_sets_the_first_wave(tmp_path: Path) -> None:
    """A ``requests_per_user`` column says how many requests each user sent in the run: the first of
    each queued as the first wave, 1 in N of the run (blank: the calibrated share). A value that is
    not a whole number of requests skips the row naming the column; the written points carry it."""
    from factoryplan.commands.validate_inference import write_points_csv
    from factoryplan.perf.inference import constants_from_catalog, hardware_of, shape_of
    from factoryplan.perf.serving import serve
    from factoryplan.validation.inference import MEASURED, load_measured, point_precision, predict

    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [*(reader.fieldnames or []), "requests_per_user"]
        row = next(r for r in reader if r["model_path"] == "Qwen/Qwen3-32B" and r["isl"] == "4096"
                   and r["mode"] == "agg" and r["backend"] == "vllm")  # a row of a harness the source names not
    cases = ["", "1", "10", "1000", "0", "2.5", "many"]
    path = write_variants(tmp_path / "points.csv", fields, row, [{"requests_per_user": n} for n in cases])
    cat = load_catalog()
    loaded = load_measured(cat, path)
    assert [p.requests_per_user for p in loaded.points] == [0.0, 1.0, 10.0, 1000.0]
    assert [(i, r.split(" is not")[0]) for i, r in loaded.skipped] == [
        ("r4", "requests_per_user '0'"), ("r5", "requests_per_user '2.5'"), ("r6", "requests_per_user 'many'")]
    preds = predict(cat, loaded.points)
    p = loaded.points[0]
    assert p.fuses_allreduce is False  # vLLM 0.12: before the fused all-reduce (harness_fuses_allreduce)
    k = replace(constants_from_catalog(cat, "vllm"), fused_allreduce=())
    shape = shape_of(cat.models[p.model])
    hw = hardware_of(cat.accelerators[p.accelerator], cat.systems[p.system])
    prec = point_precision(cat, p, k)
    for pred, share in zip(preds, (k.burst_share, 1.0, 0.1, 0.001), strict=True):
        r = serve(shape, hw, p.par, prec, replace(k, burst_share=share), concurrency=p.concurrency, isl=p.isl,
                  osl=p.osl, burst=True)
        assert pred.ttft_ms == pytest.approx(float(r.ttft_s) * 1e3, rel=1e-9)
        assert pred.tpot_ms == pytest.approx(float(r.tpot_s) * 1e3, rel=1e-9)
    assert preds[1].ttft_ms > preds[2].ttft_ms > preds[3].ttft_ms  # fewer requests a user: more in the first wave
    out = tmp_path / "out.csv"
    write_points_csv(out, [("data", loaded, preds)])
    with out.open(encoding="utf-8", newline="") as fh:
        assert [r["requests_per_user"] for r in csv.DictReader(fh)][:4] == ["", "1.0", "10.0", "1000.0"]


def test_inferencemax_rows_are_predicted_as_its_client_sent_them(tmp_path: Path) -> None:
    """Rows from InferenceMAX's result files ran its client: lengths drawn from [int(0.8 L), L] (mean
    (int(0.8 L) + L)/2) and ten requests per user, where the file does not say; a ``random_range_ratio``
    column gives the ratio for any row (1: fixed lengths), one outside [0, 1] skips the row naming it.
    Rows of other sources are sent at their nominal lengths. Predictions and the implied throughput
    use the mean lengths; the written points carry the ratio."""
    from factoryplan.commands.validate_inference import write_points_csv
    from factoryplan.perf.inference import constants_from_catalog, hardware_of, shape_of
    from factoryplan.perf.serving import serve
    from factoryplan.validation.inference import (
        MEASURED,
        implied_output_tokens_per_s,
        inferencemax_row,
        load_measured,
        point_precision,
        predict,
        sent_length,
    )

    assert sent_length(1024, 0.8) == (819 + 1024) / 2 and sent_length(1000, 0.8) == 900.0
    assert sent_length(8192, 1.0) == 8192 and sent_length(7, 0.0) == 3.5
    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [*(reader.fieldnames or []), "random_range_ratio"]
        row = next(r for r in reader if r["model_path"] == "meta-llama/Llama-3.1-70B" and r["isl"] == "8192"
                   and r["mode"] == "agg" and r["system"] == "h200_sxm" and r["backend"] == "vllm")
    assert inferencemax_row(row["silicon_data_source"])
    assert inferencemax_row("db-dump/2026-04-27; config_id=81") and not inferencemax_row(
        "source_file=/data/h100_sxm/vllm/0.12.0/Qwen_Qwen3-32B.csv")
    other = "source_file=/data/h200_sxm/vllm/0.12.0/Llama.csv; silicon_concurrency=" + row["batch_size"]
    cases = [("", row["silicon_data_source"]), ("1", row["silicon_data_source"]), ("0.5", row["silicon_data_source"]),
             ("", other), ("1.5", row["silicon_data_source"]), ("most", row["silicon_data_source"])]
    path = write_variants(tmp_path / "points.csv", fields, row,
                          [{"random_range_ratio": ratio, "silicon_data_source": source} for ratio, source in cases])
    cat = load_catalog()
    loaded = load_measured(cat, path)
    assert [(p.range_ratio, p.requests_per_user) for p in loaded.points] == [
        (0.8, 10.0), (1.0, 10.0), (0.5, 10.0), (1.0, 0.0)]
    assert [(i, r.split(" is not")[0]) for i, r in loaded.skipped] == [
        ("r4", "random_range_ratio '1.5'"), ("r5", "random_range_ratio 'most'")]
    first = loaded.points[0]
    assert (first.isl_sent, first.osl_sent) == ((6553 + 8192) / 2, (int(0.8 * first.osl) + first.osl) / 2)
    preds = predict(cat, loaded.points)
    k = constants_from_catalog(cat, "vllm")
    shape = shape_of(cat.models[first.model])
    hw = hardware_of(cat.accelerators[first.accelerator], cat.systems[first.system])
    prec = point_precision(cat, first, k)
    r = serve(shape, hw, first.par, prec, replace(k, burst_share=0.1), concurrency=first.concurrency,
              isl=first.isl_sent, osl=first.osl_sent, burst=True)
    assert preds[0].ttft_ms == pytest.approx(float(r.ttft_s) * 1e3, rel=1e-9)
    assert preds[0].tpot_ms == pytest.approx(float(r.tpot_s) * 1e3, rel=1e-9)
    assert preds[2].ttft_ms < preds[0].ttft_ms < preds[1].ttft_ms  # shorter prompts prefill sooner
    assert implied_output_tokens_per_s(first) == pytest.approx(
        first.concurrency * first.osl_sent * 1e3 / (first.ttft_ms + (first.osl_sent - 1) * first.tpot_ms))
    out = tmp_path / "out.csv"
    write_points_csv(out, [("data", loaded, preds)])
    with out.open(encoding="utf-8", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [r["range_ratio"] for r in written][:4] == ["0.8", "1.0", "0.5", "1.0"]
    assert [r["isl"] for r in written][:4] == ["8192.0"] * 4  # the nominal lengths, as the file gave them


def test_precision_column_and_columns_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Where both quantization modes are blank, the ``precision`` column (their summary) gives the
    format, and one naming none skips the row with that column; the quantization modes win where
    given. A column no rule reads is reported (text and JSON), not used silently."""
    from factoryplan.validation.inference import MEASURED, load_measured

    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [*(reader.fieldnames or []), "nextn"]
        row = next(r for r in reader if r["model_path"] == "meta-llama/Llama-3.1-70B" and r["mode"] == "agg")
    cases = [("fp8", "", ""), ("", "", ""), ("fp8", "fp8", "fp8"), ("int3", "", ""), ("fp4", "fp8", "fp8")]
    path = write_variants(tmp_path / "points.csv", fields, row,
                          [{"precision": summary, "gemm_quant_mode": gemm, "moe_quant_mode": moe, "nextn": "1"}
                           for summary, gemm, moe in cases])
    loaded = load_measured(load_catalog(), path)
    assert [(p.id, p.weights) for p in loaded.points] == [("r0", "fp8"), ("r1", "bf16"), ("r2", "fp8"), ("r4", "fp8")]
    assert [(i, r.split(" names")[0]) for i, r in loaded.skipped] == [("r3", "precision 'int3'")]
    assert loaded.unread == ["nextn"]
    assert main(["validate", "inference", "--data", str(path), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["columns_not_read"] == ["nextn"]
    assert main(["validate", "inference", "--data", str(path)]) == 0
    assert "columns not read (no rule uses them): nextn" in " ".join(capsys.readouterr().out.split())
