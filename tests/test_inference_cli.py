"""`factoryplan serve` and `factoryplan validate inference`: documented keys, config.json models, errors."""

from __future__ import annotations

import collections
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.cli import main
from factoryplan.perf.inference_constants import error_band

from .conftest import cli_json

CONFIGS = Path(__file__).parent / "data" / "hf_configs"
POINT_KEYS = {"ttft_ms", "tpot_ms", "output_tokens_per_s", "output_tokens_per_s_per_gpu", "tokens_per_s_per_user",
              "memory_per_gpu_gib", "max_concurrency", "fits"}
PLAN_KEYS = {"gpus", "replicas", "config", "ttft_ms", "tpot_ms", "systems", "power_kw", "mode", "frontier",
             "frontier_disaggregated"}


def test_point_estimate_keys(capsys: pytest.CaptureFixture[str]) -> None:
    d = cli_json(capsys, "serve", "--model", "llama-3.3-70b", "--gpu", "h200-sxm", "--tp", "2", "--isl", "2000",
                 "--osl", "500", "--concurrency", "32")
    assert set(d) >= POINT_KEYS
    assert d["fits"] is True and d["max_concurrency"] > 32 and d["gpus"] == 2
    assert d["output_tokens_per_s_per_gpu"] == pytest.approx(d["output_tokens_per_s"] / 2)
    assert d["tokens_per_s_per_user"] == pytest.approx(1000 / d["tpot_ms"])
    assert 0 < d["memory_per_gpu_gib"] < 141e9 / 2**30
    assert "expert_load_busiest_rank" not in d  # a dense model has no expert ranks


def test_the_cli_leaves_pydantic_plugins_as_it_found_them(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    args = ("serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--tp", "1", "--isl", "100", "--osl", "10",
            "--concurrency", "1")
    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    cli_json(capsys, *args)
    assert "PYDANTIC_DISABLE_PLUGINS" not in os.environ  # switched off for the run only
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "0")
    cli_json(capsys, *args)
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "0"  # a user's own setting is kept


def test_figures_come_with_the_calibration_band(capsys: pytest.CaptureFixture[str]) -> None:
    """A point estimate, a disaggregated deployment and a capacity plan each give the range in which 8
    in 10 of the engine's calibration measurements fell around such a prediction; the table shows it."""
    args = ("--model", "llama-3.3-70b", "--gpu", "h200-sxm", "--isl", "2000", "--osl", "500")
    d = cli_json(capsys, "serve", *args, "--tp", "2", "--concurrency", "32")
    for key in ("ttft_ms", "tpot_ms", "output_tokens_per_s"):
        lo, hi = d[f"{key}_range"]
        assert lo < d[key] < hi
    assert d["range_basis"].startswith("8 in 10 measurements of the 760 trtllm calibration points")
    sg = cli_json(capsys, "serve", *args, "--tp", "2", "--concurrency", "32", "--backend", "sglang")
    lo, hi = sg["ttft_ms_range"]
    assert lo < sg["ttft_ms"] < hi and sg["range_basis"].startswith("8 in 10 measurements of the 274 sglang")
    # SGLang prefills apart from decoding: a benchmark's users stay in lockstep, every wave a first wave
    assert sg["mixed_chunk"] is False and sg["first_wave_share"] == 1.0 and "stay in step" in sg["note"]
    assert sg["ttft_ms"] > 3 * sg["ttft_ms_steady"] and sg["tpot_ms"] < sg["tpot_ms_steady"]
    mixed = cli_json(capsys, "serve", *args, "--tp", "2", "--concurrency", "32", "--backend", "sglang",
                     "--mixed-chunk")
    assert mixed["mixed_chunk"] is True and mixed["first_wave_share"] == d["first_wave_share"] < 0.2
    assert "note" not in mixed and mixed["ttft_ms"] < sg["ttft_ms"] / 2
    assert cli_json(capsys, "serve", *args, "--tp", "2", "--concurrency", "32", "--mixed-chunk") == d  # trtllm mixes
    dis = cli_json(capsys, "serve", *args, "--concurrency", "64", "--prefill-tp", "2", "--tp", "2")
    assert dis["tpot_ms_range"][0] < dis["tpot_ms"] < dis["tpot_ms_range"][1]
    plan = cli_json(capsys, "serve", *args, "--rps", "4", "--ttft-ms", "1500", "--tpot-ms", "40")
    lo, hi = plan["output_tokens_per_s_per_gpu_range"]
    assert lo < plan["output_tokens_per_s_per_gpu"] < hi and plan["tpot_ms_range"][1] > plan["tpot_ms"]
    assert "started their users together" in plan["range_basis"]  # a plan sizes a running service
    assert "started their users together" not in d["range_basis"]
    assert "measured on" not in d["range_basis"]  # H200 is among the calibration GPUs
    # on a part the calibration never measured, the band is the one of a GPU left out of the fit, and says so
    bw = cli_json(capsys, "serve", *args[:2], "--gpu", "b200", *args[4:], "--tp", "2", "--concurrency", "32")
    assert "(each predicted by a fit without the points of its GPU)" in bw["range_basis"]
    assert bw["range_basis"].endswith("; measured on h100-sxm and h200-sxm only: on b200 the band is that of a GPU "
                                      "the fit has not seen")
    seen, unseen = error_band(load_catalog(), "trtllm", "h200-sxm"), error_band(load_catalog(), "trtllm", "b200")
    assert seen is not None and unseen is not None and unseen.unseen and not seen.unseen
    assert unseen.tpot != seen.tpot
    figures = (("tpot_ms", unseen.tpot), ("ttft_ms", unseen.ttft), ("output_tokens_per_s", unseen.throughput))
    for key, (lo, hi) in figures:
        assert bw[f"{key}_range"] == pytest.approx([bw[key] * lo, bw[key] * hi])
    assert main(["serve", *args, "--tp", "2", "--concurrency", "32"]) == 0
    table = capsys.readouterr().out
    assert f"{d['tpot_ms_range'][0]:,.4g} - {d['tpot_ms_range'][1]:,.4g}" in table


def test_no_band_where_the_calibration_entry_gives_none() -> None:
    """An overlay that refits an engine without its band: no range is reported rather than a stale one."""
    from types import SimpleNamespace

    from factoryplan.catalog.load import load_catalog
    from factoryplan.perf.inference_constants import error_band

    cal = load_catalog().calibrations
    bare = {i: (c.model_copy(update={"values": {k: v for k, v in c.values.items() if "_measured_p" not in k}})
                if c.backend == "vllm" else c) for i, c in cal.items()}
    cat = SimpleNamespace(calibrations=bare)
    assert error_band(cat, "vllm") is None  # type: ignore[arg-type]
    assert error_band(cat, "vllm", "b200") is None  # type: ignore[arg-type]
    band = error_band(cat, "trtllm")  # type: ignore[arg-type]
    assert band is not None and band.tpot[0] < 1 < band.tpot[1]
    # an entry without the unseen-GPU band gives its in-sample one on other parts, and says what that assumes
    old = {i: (c.model_copy(update={"values": {k: v for k, v in c.values.items() if "unseen" not in k}})
               if c.backend == "trtllm" else c) for i, c in cal.items()}
    fallback = error_band(SimpleNamespace(calibrations=old), "trtllm", "b200")  # type: ignore[arg-type]
    assert fallback is not None and not fallback.unseen and fallback.tpot == band.tpot
    assert fallback.caveat("b200").endswith("on b200 the band assumes the engine errs as it does there")


def test_accelerator_implies_its_system(capsys: pytest.CaptureFixture[str]) -> None:
    d = cli_json(capsys, "serve", "-m", "deepseek-r1", "-g", "gb200", "--tp", "8", "--ep", "8", "--isl", "1024",
                 "--osl", "1024", "-c", "64", "--precision", "fp4")
    assert d["system"] == "gb200-nvl72" and d["compute_precision"] == "fp4"
    h = cli_json(capsys, "serve", "-m", "gpt-oss-120b", "-g", "hgx-h200", "--tp", "1", "--isl", "1024",
                 "--osl", "1024", "-c", "8", "--precision", "fp4", "--backend", "vllm")
    assert h["gpu"] == "h200-sxm" and h["compute_precision"] == "bf16 (weight-only fp4)"
    # the names people type: an alias and a data set's spelling give the part they mean, said in the output
    a = cli_json(capsys, "serve", "-m", "llama-3.1-8b", "-g", "h100", "--tp", "1", "--isl", "1000", "--osl", "200",
                 "-c", "8")
    b = cli_json(capsys, "serve", "-m", "llama-3.1-8b", "-g", "H100_SXM", "--tp", "1", "--isl", "1000", "--osl",
                 "200", "-c", "8")
    assert a["gpu"] == b["gpu"] == "h100-sxm" and a["system"] == "dgx-h100" and a["tpot_ms"] == b["tpot_ms"]


@pytest.mark.parametrize("config", [
    "meta-llama--Llama-3.1-8B_config.json",
    "Qwen--Qwen3-30B-A3B_config.json",
    "mistralai--Mixtral-8x7B-v0.1_config.json",
    "deepseek-ai--DeepSeek-V3_config.json",
    "openai--gpt-oss-120b_config.json",
])
def test_hugging_face_configs(capsys: pytest.CaptureFixture[str], config: str) -> None:
    d = cli_json(capsys, "serve", "--model", str(CONFIGS / config), "--gpu", "h200-sxm", "--tp", "8", "--isl", "1000",
                 "--osl", "200", "--concurrency", "16")
    assert d["ttft_ms"] > 0 and d["tpot_ms"] > 0 and d["fits"]


def test_repository_names_of_catalog_architectures(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "-g", "b200", "--isl", "1000", "--osl", "100", "--tp", "8", "-c", "8"]
    by_repo = cli_json(capsys, *base, "-m", "meta-llama/Llama-3.1-70B-Instruct")
    assert by_repo == cli_json(capsys, *base, "-m", "llama-3.1-70b")  # the same architecture, named by its id
    assert cli_json(capsys, *base, "-m", "nvidia/DeepSeek-R1-0528-FP4-v2", "--ep", "8")["model"] == "deepseek-r1"
    assert main([*base, "-m", "meta-llama/Llama-9-70B"]) == 2
    assert "repository name of a catalog architecture" in " ".join(capsys.readouterr().err.split())


def test_requests_longer_than_the_context_window_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "-m", "qwen3-32b", "-g", "h200-sxm", "--osl", "1000"]
    assert main([*base, "--isl", "40000", "--tp", "2", "-c", "4"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--isl/--osl" in err and "40,000 prompt + 1,000 output" in err and "context of 40,960" in err
    assert main([*base, "--isl", "40000", "--rps", "1"]) == 2  # the capacity planner too
    assert "context of 40,960" in " ".join(capsys.readouterr().err.split())
    assert cli_json(capsys, *base, "--isl", "39960", "--tp", "2", "-c", "4")["fits"]


def test_capacity_plan_compares_gpu_types(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "-m", "llama-3.3-70b", "--isl", "2000", "--osl", "500", "--rps", "20", "--ttft-ms", "1000",
            "--tpot-ms", "40"]
    d = cli_json(capsys, *args, "-g", "h200,b200,mi300x")
    opts = {o["gpu"]: o for o in d["hardware_options"]}
    assert set(opts) == {"h200-sxm", "b200", "mi300x"} and all(o["feasible"] for o in opts.values())
    assert opts["mi300x"]["backend"] == "vllm" and opts["b200"]["backend"] == "trtllm"  # each vendor's engine
    chosen = [o for o in d["hardware_options"] if o["chosen"]]
    assert len(chosen) == 1 and chosen[0]["gpu"] == d["gpu"]
    assert d["gpus"] == min(o["gpus"] for o in opts.values())
    for gpu in ("h200-sxm", "b200"):  # each type's plan is the plan that type gets alone
        alone = cli_json(capsys, *args, "-g", gpu)
        assert (alone["gpus"], alone["config"]) == (opts[gpu]["gpus"], opts[gpu]["config"])
    # a type that cannot take part says why; the others still compete
    d = cli_json(capsys, *args, "-g", "mi300x,h200", "--backend", "trtllm")  # first in the list, too
    bad = [o for o in d["hardware_options"] if not o["feasible"]]
    assert [o["gpu"] for o in bad] == ["mi300x"] and "does not run on AMD" in bad[0]["reason"]
    assert main([*args, "-g", "h200,b200", "--format", "table"]) == 0
    assert "hardware compared" in capsys.readouterr().out
    assert main(["serve", "-m", "llama-3.3-70b", "-g", "h200,b200", "--isl", "2000", "--osl", "500", "--tp", "1",
                 "-c", "4"]) == 2
    assert "give one GPU for a point estimate" in " ".join(capsys.readouterr().err.split())


def test_users_beyond_the_kv_cache_queue_and_are_told_so(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["serve", "-m", "llama-3.1-70b", "-g", "h100-sxm", "--tp", "2", "--isl", "8000", "--osl", "1000"]
    d = cli_json(capsys, *args, "-c", "400")
    assert d["fits"] is False and d["running"] == d["max_concurrency"] < 400
    assert f"holds {d['max_concurrency']} of the 400 users" in d["note"] and "FP8 KV" not in d["note"]
    assert d["ttft_ms"] > 60_000  # the queued users wait for running ones to finish
    assert "note" not in cli_json(capsys, *args, "-c", str(d["max_concurrency"]))


def test_users_beyond_the_engines_batch_limit_are_told_which_limit(capsys: pytest.CaptureFixture[str]) -> None:
    """vLLM runs at most max_num_seqs (256) sequences, whatever room the KV cache has: the note names
    that limit, not the KV cache, and --max-batch lifts it."""
    args = ["serve", "-m", "llama-3.1-8b", "-g", "h200-sxm", "--tp", "1", "--backend", "vllm", "--isl", "1000",
            "--osl", "1000", "-c", "512"]
    d = cli_json(capsys, *args)
    assert d["max_batch"] == 256 and d["max_concurrency"] == d["running"] == 256 and d["fits"] is False
    assert "runs at most 256 of the 512 users' sequences at once (max_num_seqs 256" in d["note"]
    assert "the KV cache holds all of them" in d["note"] and "--max-batch" in d["note"]
    lifted = cli_json(capsys, *args, "--max-batch", "512")
    assert lifted["max_batch"] == 512 and lifted["running"] == 512 and "note" not in lifted
    assert lifted["ttft_ms"] < d["ttft_ms"] / 10 and lifted["output_tokens_per_s"] > d["output_tokens_per_s"]


def test_engine_limits_are_reported_and_can_be_set(capsys: pytest.CaptureFixture[str]) -> None:
    """The token budget and batch limit assumed are in the output (the engine's defaults unless given);
    a smaller token budget chunks an 8,000-token prompt into more iterations (a lone user's TTFT is
    longer: each pass reads the weights again), and a batch limit below the users queues the rest
    (TTFT includes their wait). Under load the smaller chunks also wait less behind other prompts, so
    there the budget can move TTFT either way."""
    args = ["serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--tp", "4", "--isl", "8000", "--osl", "500",
            "-c", "64"]
    base = cli_json(capsys, *args)
    assert (base["token_budget"], base["max_batch"]) == (8192, 2048)  # TensorRT-LLM's defaults
    alone = [cli_json(capsys, *args[:-1], "1", *budget) for budget in ([], ["--token-budget", "2048"])]
    assert alone[1]["token_budget"] == 2048 and alone[1]["ttft_ms"] > 1.05 * alone[0]["ttft_ms"]
    capped = cli_json(capsys, *args, "--max-batch", "32")
    assert capped["max_concurrency"] == capped["running"] == 32 and capped["ttft_ms"] > 2 * base["ttft_ms"]
    assert "max_batch_size 32" in capped["note"]
    plan = cli_json(capsys, "serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--isl", "2000", "--osl", "500",
                    "--rps", "20", "--max-batch", "16", "--mode", "aggregated")
    assert plan["max_batch"] == 16 and plan["concurrency_per_replica"] <= 16
    assert main(["serve", *args, "--token-budget", "0"]) == 2


def test_capacity_plan_gives_its_gpus_across_the_error_band(capsys: pytest.CaptureFixture[str]) -> None:
    """A capacity plan gives the GPUs it would need at the two edges of the engine's error band, with
    the ratios it used; the table shows the range."""
    args = ["serve", "-m", "llama-3.3-70b", "-g", "h200", "--isl", "2000", "--osl", "400", "--rps", "40",
            "--ttft-ms", "1500", "--tpot-ms", "40"]
    d = cli_json(capsys, *args)
    lo, hi = d["gpus_range"]
    assert lo < d["gpus"] < hi
    band = error_band(load_catalog(), "trtllm")
    assert band is not None
    assert f"TPOT runs x{band.tpot[0]:.2f} to x{band.tpot[1]:.2f}" in d["gpus_range_basis"]
    assert "760 trtllm" in d["gpus_range_basis"] and "measured on" not in d["gpus_range_basis"]
    gb = cli_json(capsys, *[("gb200" if a == "h200" else a) for a in args])
    assert "measured on h100-sxm and h200-sxm only: on gb200" in gb["gpus_range_basis"]
    assert main(args) == 0
    assert f"gpus_range                         {lo} - {hi}" in capsys.readouterr().out


def test_fp4_kv_cache_on_blackwell_only(capsys: pytest.CaptureFixture[str]) -> None:
    """--kv-precision fp4 (NVFP4) holds ~1.78x FP8's sequences on B200, so users FP8 would queue run; a
    queue note on a Blackwell part suggests it; a part without FP4 units refuses it, naming the option."""
    args = ["serve", "-m", "llama-3.1-70b", "-g", "b200", "--tp", "2", "--precision", "fp4", "--isl", "8000",
            "--osl", "1000", "-c", "300"]
    fp8 = cli_json(capsys, *args)
    fp4 = cli_json(capsys, *args, "--kv-precision", "fp4")
    assert (fp8["kv_precision"], fp4["kv_precision"]) == ("fp8", "fp4")
    assert fp8["max_concurrency"] < 300 <= fp4["max_concurrency"] and "note" not in fp4
    assert fp4["max_concurrency"] > 1.7 * fp8["max_concurrency"]
    assert "an FP4 KV cache" in fp8["note"]
    assert fp4["ttft_ms"] < fp8["ttft_ms"] / 3  # nobody waits for a free slot
    assert main(["serve", "-m", "llama-3.1-70b", "-g", "h200", "--tp", "2", "--kv-precision", "fp4", "--isl", "8000",
                 "--osl", "1000", "-c", "8"]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "--kv-precision: an FP4 KV cache needs FP4 hardware; h200-sxm has none" in err and "bf16 or fp8" in err


def test_attention_dp_and_expert_parallel(capsys: pytest.CaptureFixture[str]) -> None:
    tp = cli_json(capsys, "serve", "-m", "deepseek-r1", "-g", "h200-sxm", "--tp", "8", "--ep", "8", "--isl", "1024",
                  "--osl", "1024", "-c", "256")
    dp = cli_json(capsys, "serve", "-m", "deepseek-r1", "-g", "h200-sxm", "--tp", "1", "--attention-dp", "8", "--ep",
                  "8", "--isl", "1024", "--osl", "1024", "-c", "256")
    assert tp["gpus"] == dp["gpus"] == 8
    assert dp["max_concurrency"] > tp["max_concurrency"]  # MLA's latent is not split by TP: DP holds more
    # --attention-dp without --tp: one GPU per rank, the same estimate
    implied = cli_json(capsys, "serve", "-m", "deepseek-r1", "-g", "h200-sxm", "--attention-dp", "8", "--ep", "8",
                       "--isl", "1024", "--osl", "1024", "-c", "256")
    assert implied["tp"] == 1 and implied["tpot_ms"] == dp["tpot_ms"] and implied["ttft_ms"] == dp["ttft_ms"]


def test_redundant_experts_balance_wide_expert_parallelism(capsys: pytest.CaptureFixture[str]) -> None:
    """An expert-parallel load balancer's redundant slots (one per rank) cost their weights and
    shorten the step: the busiest of 32 ranks no longer carries the router's favourites."""
    base = ("serve", "-m", "deepseek-r1", "-g", "gb200", "--attention-dp", "32", "--ep", "32", "--isl", "1024",
            "--osl", "1024", "-c", "4096", "--precision", "fp4")
    plain = cli_json(capsys, *base)
    balanced = cli_json(capsys, *base, "--redundant-experts", "32")
    assert plain["redundant_experts"] == 0 and balanced["redundant_experts"] == 32
    # the busiest rank's load in a decode step of 4,096 sequences: the router's favourites, then sampling alone
    assert plain["expert_load_busiest_rank"] > 1.3 > 1.1 > balanced["expert_load_busiest_rank"] > 1.0
    extra_gib = balanced["weights_per_gpu_gib"] - plain["weights_per_gpu_gib"]
    assert 0.0 < extra_gib < 0.1 * plain["weights_per_gpu_gib"]
    # one more expert per GPU in each of the 58 MoE layers: 3 x 7168 x 2048 NVFP4 weights with their scales
    assert extra_gib / 58 == pytest.approx(3 * 7168 * 2048 * 0.5625 / 2**30, rel=0.02)
    assert balanced["tpot_ms"] < 0.95 * plain["tpot_ms"]
    assert balanced["output_tokens_per_s"] > plain["output_tokens_per_s"]


def test_redundant_slots_let_expert_parallelism_span_a_whole_nvl72(capsys: pytest.CaptureFixture[str]) -> None:
    """72 ranks do not divide DeepSeek-R1's 256 experts, but 32 copies make 288 slots, 4 a rank, as the
    engines' load balancers place them (TensorRT-LLM ``num_slots``, SGLang redundant experts): each GPU
    holds 4 experts a layer, one fewer than 64 ranks with one copy each (320 slots, 5 a rank)."""
    base = ("serve", "-m", "deepseek-r1", "-g", "gb200", "--isl", "1024", "--osl", "1024", "-c", "4096",
            "--precision", "fp4")
    wide = cli_json(capsys, *base, "--attention-dp", "72", "--ep", "72", "--redundant-experts", "32")
    ranks64 = cli_json(capsys, *base, "--attention-dp", "64", "--ep", "64", "--redundant-experts", "64")
    assert wide["gpus"] == 72 and wide["ep"] == 72 and wide["redundant_experts"] == 32 and wide["fits"]
    # one expert fewer on each GPU in each of the 58 MoE layers: 3 x 7168 x 2048 NVFP4 weights with their scales
    expert_gib = 3 * 7168 * 2048 * 0.5625 / 2**30
    assert (ranks64["weights_per_gpu_gib"] - wide["weights_per_gpu_gib"]) / 58 == pytest.approx(expert_gib, rel=0.02)
    # the same 4,096 users over more ranks: fewer sequences a rank, a shorter step
    assert wide["tpot_ms"] < ranks64["tpot_ms"]


def test_a_replica_across_nvlink_domains_says_what_crosses_the_network(capsys: pytest.CaptureFixture[str]) -> None:
    """A layout over more GPUs than one NVLink domain names the systems it takes and which collectives
    leave through the NICs (none of the calibration points does); one inside a domain says nothing."""
    base = ("serve", "-m", "deepseek-r1", "--isl", "2000", "--osl", "500", "-c", "512")
    wide = cli_json(capsys, *base, "-g", "h100", "--attention-dp", "16", "--ep", "16")
    assert wide["systems"] == 2 and wide["note"] == (
        "the replica spans 2 dgx-h100 systems (8 GPUs share NVLink): its expert all-to-all crosses each GPU's "
        "400 Gb/s network link, which no calibration point measures")
    staged = cli_json(capsys, "serve", "-m", "llama-3.1-405b", "-g", "h100", "--tp", "8", "--pp", "2", "--isl",
                      "2000", "--osl", "500", "-c", "32")
    assert staged["systems"] == 2 and "its pipeline sends cross each GPU's" in staged["note"]
    rack = cli_json(capsys, *base, "-g", "gb200", "--attention-dp", "32", "--ep", "32")
    assert rack["systems"] == 1 and "note" not in rack
    split = cli_json(capsys, *base, "-g", "h100", "--prefill-tp", "1", "--prefill-attention-dp", "16",
                     "--prefill-ep", "16", "--attention-dp", "32", "--ep", "32")
    assert split["systems"] == 6 and "a prefill worker spans 2 dgx-h100 systems" in split["note"]
    assert "a decode worker spans 4 dgx-h100 systems" in split["note"]


def test_a_host_limited_step_is_named(capsys: pytest.CaptureFixture[str], catalog: Catalog) -> None:
    """Llama-3.1-8B on 8 B200 with 1,000 SGLang users: the scheduler's host work per sequence, not the
    GPUs, sets the decode step, and the output says so; at 16 users it does not."""
    from factoryplan.perf.inference import constants_from_catalog

    host_s = constants_from_catalog(catalog, "sglang").cpu_sequence_s
    base = ("serve", "-m", "llama-3.1-8b", "-g", "b200", "--tp", "8", "--isl", "1000", "--osl", "1000",
            "--backend", "sglang")
    busy = cli_json(capsys, *base, "-c", "1000")
    assert "host work" in busy["note"] and busy["decode_step_ms"] == pytest.approx(busy["running"] * host_s * 1e3)
    assert "host work" not in cli_json(capsys, *base, "-c", "16")["note"]  # only the lockstep of its users


def test_disaggregated_point_estimate(capsys: pytest.CaptureFixture[str], catalog: Catalog) -> None:
    """--prefill-tp (with worker counts) predicts a given prefill/decode deployment with the closed-loop
    disaggregated form: its GPUs, TTFT, TPOT and throughput."""
    from factoryplan.perf.inference import Parallel, Precision, constants_from_catalog, hardware_of, shape_of
    from factoryplan.perf.serving import closed_loop_disaggregated

    d = cli_json(capsys, "serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--isl", "2000", "--osl", "500", "-c", "64",
                 "--prefill-tp", "2", "--prefill-workers", "2", "--tp", "4", "--decode-workers", "1")
    assert set(d) >= POINT_KEYS and d["mode"] == "disaggregated"
    assert (d["gpus"], d["prefill_gpus"], d["decode_gpus"]) == (8, 4, 4)
    s = shape_of(catalog.models["llama-3.1-70b"])
    hw = hardware_of(catalog.accelerators["h200-sxm"], catalog.systems["hgx-h200"])
    def loop(burst: bool) -> Any:
        return closed_loop_disaggregated(s, hw, Parallel(tp=2), Parallel(tp=4), Precision(), constants_from_catalog(
            catalog, "trtllm"), concurrency=64, isl=2000, osl=500, prefill_workers=2, decode_workers=1, burst=burst)

    r, steady = loop(True), loop(False)  # users start together (a benchmark run) unless --start steady
    assert d["start"] == "together"
    assert d["ttft_ms"] == pytest.approx(float(r.ttft_s) * 1e3) and d["tpot_ms"] == pytest.approx(float(r.tpot_s) * 1e3)
    assert d["output_tokens_per_s_per_gpu"] == pytest.approx(float(r.output_tokens_per_s) / 8)
    assert d["ttft_ms_steady"] == pytest.approx(float(steady.ttft_s) * 1e3)
    assert d["ttft_ms_steady"] < d["ttft_ms"]
    assert d["tpot_ms_steady"] == pytest.approx(float(steady.tpot_s) * 1e3)


def test_users_start_together_unless_asked(capsys: pytest.CaptureFixture[str], catalog: Catalog) -> None:
    """A point estimate answers what a benchmark run at that concurrency measures (the users start
    together, the first wave queues; the regime of every measured calibration point) and gives the
    steady state beside it; --start steady gives the steady state alone. A capacity plan sizes a
    running service, so --start is refused there."""
    from factoryplan.perf.inference import Parallel, Precision, constants_from_catalog, hardware_of, shape_of
    from factoryplan.perf.serving import serve

    args = ("serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--tp", "4", "--isl", "4000", "--osl", "500", "-c", "64")
    d, st = cli_json(capsys, *args), cli_json(capsys, *args, "--start", "steady")
    s = shape_of(catalog.models["llama-3.1-70b"])
    hw = hardware_of(catalog.accelerators["h200-sxm"], catalog.systems["hgx-h200"])
    k = constants_from_catalog(catalog, "trtllm")
    for data, burst in ((d, True), (st, False)):
        r = serve(s, hw, Parallel(tp=4), Precision(), k, concurrency=64, isl=4000, osl=500, burst=burst)
        assert data["ttft_ms"] == pytest.approx(float(r.ttft_s) * 1e3)
        assert data["tpot_ms"] == pytest.approx(float(r.tpot_s) * 1e3)
    assert d["start"] == "together" and st["start"] == "steady" and "ttft_ms_steady" not in st
    assert (d["ttft_ms_steady"], d["tpot_ms_steady"]) == pytest.approx((st["ttft_ms"], st["tpot_ms"]))
    assert d["ttft_ms"] > 1.2 * st["ttft_ms"]  # 64 prompts of 4,000 tokens queue in the first wave
    assert "started their users together" in st["range_basis"]
    assert main(["serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--isl", "4000", "--osl", "500", "--rps", "5",
                 "--start", "steady"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--start" in err and "steady" in err


def test_requests_per_user_sets_the_first_wave(capsys: pytest.CaptureFixture[str], catalog: Catalog) -> None:
    """--requests-per-user N: each user sends N requests in the run, so 1 in N queues as the first wave
    (the calibrated share without it): one request each is the first wave alone, many approach the
    steady state. It describes users starting together, so --start steady and a capacity plan refuse
    it, and so does an aggregated engine that prefills apart (SGLang without --mixed-chunk: its users stay
    in lockstep, every wave a first wave); a disaggregated deployment takes it too."""
    from factoryplan.perf.inference import Parallel, Precision, constants_from_catalog, hardware_of, shape_of
    from factoryplan.perf.serving import serve

    args = ("serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--tp", "4", "--isl", "4000", "--osl", "500", "-c", "64")
    base, one, ten, many = (cli_json(capsys, *args, *extra) for extra in (
        (), ("--requests-per-user", "1"), ("--requests-per-user", "10"), ("--requests-per-user", "10000")))
    k = constants_from_catalog(catalog, "trtllm")
    assert base["first_wave_share"] == k.burst_share
    assert (one["first_wave_share"], ten["first_wave_share"]) == (1.0, 0.1)
    s = shape_of(catalog.models["llama-3.1-70b"])
    hw = hardware_of(catalog.accelerators["h200-sxm"], catalog.systems["hgx-h200"])
    r = serve(s, hw, Parallel(tp=4), Precision(), replace(k, burst_share=0.1), concurrency=64, isl=4000, osl=500,
              burst=True)
    assert (ten["ttft_ms"], ten["tpot_ms"]) == pytest.approx((float(r.ttft_s) * 1e3, float(r.tpot_s) * 1e3))
    assert one["ttft_ms"] > ten["ttft_ms"] > many["ttft_ms"] > base["ttft_ms_steady"]
    assert many["ttft_ms"] == pytest.approx(base["ttft_ms_steady"], rel=0.01)
    assert one["ttft_ms_steady"] == base["ttft_ms_steady"]  # the steady state beside it is the same
    dis = ("serve", "-m", "llama-3.1-70b", "-g", "h200-sxm", "--isl", "2000", "--osl", "500", "-c", "64",
           "--prefill-tp", "2", "--tp", "4")
    assert cli_json(capsys, *dis, "--requests-per-user", "1")["ttft_ms"] > cli_json(capsys, *dis)["ttft_ms"]
    steady = [*args, "--start", "steady", "--requests-per-user", "4"]
    plan = [*args[:-2], "--rps", "5", "--requests-per-user", "4"]  # no -c: the planner chooses it
    lockstep = [*args, "--backend", "sglang", "--requests-per-user", "4"]  # every wave a first wave
    for argv in (steady, plan, lockstep):
        assert main(argv) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "--requests-per-user" in err and "(got 4" in err
    assert "give --mixed-chunk" in err
    assert cli_json(capsys, *lockstep, "--mixed-chunk")["first_wave_share"] == 0.25
    assert cli_json(capsys, *dis, "--backend", "sglang", "--requests-per-user", "4")["first_wave_share"] == 0.25


@pytest.mark.parametrize(("gpu", "system"), [
    ("b200_sxm", "dgx-b200"), ("gb200_sxm", "gb200-nvl72"), ("gb300_sxm", "gb300-nvl72"), ("b300_sxm", "dgx-b300"),
    ("h200_sxm", "hgx-h200"), ("h100_sxm", "dgx-h100"), ("h20_sxm", "hgx-h20"),
])
def test_gpu_named_as_measured_data_sets_name_it(capsys: pytest.CaptureFixture[str], gpu: str, system: str) -> None:
    """--gpu takes the system column of a measured-serving data set as written (b200_sxm, gb200_sxm)."""
    d = cli_json(capsys, "serve", "-m", "llama-3.1-8b", "-g", gpu, "--tp", "1", "--isl", "100", "--osl", "10",
                 "-c", "4")
    assert d["system"] == system


def test_backend_defaults_to_the_vendors_engine(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-m", "llama-3.1-8b", "--tp", "1", "--isl", "1000", "--osl", "100", "-c", "8"]
    assert cli_json(capsys, "serve", "-g", "mi300x", *args)["backend"] == "vllm"
    assert cli_json(capsys, "serve", "-g", "h100-sxm", *args)["backend"] == "trtllm"


def test_capacity_plan(capsys: pytest.CaptureFixture[str]) -> None:
    d = cli_json(capsys, "serve", "--model", "llama-3.3-70b", "--gpu", "h200-sxm", "--isl", "2000", "--osl", "500",
                 "--rps", "20", "--ttft-ms", "1500", "--tpot-ms", "40")
    assert set(d) >= PLAN_KEYS
    assert d["ttft_ms"] <= 1500 and d["tpot_ms"] <= 40 and d["gpus"] >= 1
    assert d["systems"] == -(-d["gpus"] // 8)
    agg = cli_json(capsys, "serve", "--model", "llama-3.3-70b", "--gpu", "h200-sxm", "--isl", "2000", "--osl", "500",
                   "--tokens-per-day", str(20 * 500 * 86400 / 1.5), "--ttft-ms", "1500", "--tpot-ms", "40",
                   "--mode", "aggregated")
    assert agg["mode"] == "aggregated" and agg["peak_requests_per_s"] == pytest.approx(20)
    assert agg["gpus"] >= d["gpus"]
    fixed = cli_json(capsys, "serve", "--model", "llama-3.3-70b", "--gpu", "h200-sxm", "--isl", "2000", "--osl", "500",
                     "--rps", "20", "--tp", "4", "--mode", "aggregated")
    assert fixed["config"] == "tp4" and fixed["gpus_per_replica"] == 4


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "llama-3.1-405b", "-g", "h100-sxm", "--tp", "2"], "needs >= 8 x h100-sxm at fp8"),
    # enough GPUs, but attention DP keeps a whole copy of the attention and dense weights on each rank
    (["-m", "glm-5", "-g", "h20", "--tp", "1", "--attention-dp", "8", "--ep", "8"],
     "needs >= 8 x h20 at fp8 with every weight split over them (--tp 8 --ep 8); this layout keeps the attention "
     "and dense weights whole on each of its 8 attention-DP ranks"),
    # the weights fit one GPU, a 100,000-token sequence's KV cache does not: what it needs counts that sequence
    (["-m", "llama-3.1-70b", "-g", "h100-sxm", "--tp", "1", "--isl", "100000", "--osl", "100", "-c", "1"],
     "does not fit 1 x h100-sxm (72.7 GB of weights per GPU, 85 GB HBM): needs >= 2 x h100-sxm at fp8"),
    (["-m", "llama-3.3-70bb", "-g", "h100-sxm", "--tp", "2"], 'did you mean "llama-3.3-70b"'),
    (["-m", "llama-3.3-70b", "-g", "h100-sxmm", "--tp", "2"], "unknown accelerator or system"),
    (["-m", "llama-3.3-70b", "-g", "h100-sxm", "--tp", "2", "--ep", "2"], "expert parallelism needs a MoE model"),
    (["-m", "llama-3.3-70b", "-g", "h100-sxm"], "a point estimate needs a layout and a load"),
    (["-m", "missing.json", "-g", "h100-sxm", "--tp", "2"], "not found"),
    (["-m", "llama-3.3-70b", "-g", "h100-sxm", "--tp", "3"],
     "64 attention heads (8 key/value) do not split evenly over the tensor-parallel GPUs (got 3; allowed: 1, 2, 4"),
    (["-m", "mixtral-8x7b", "-g", "gb200", "--tp", "2", "--attention-dp", "8", "--ep", "16"],
     "8 routed experts do not split evenly (got 16; allowed: 1, 2, 4, 8; or --redundant-experts 8 with --ep 16 "
     "(16 expert slots, 1 a rank))"),
    (["-m", "llama-3.1-8b", "-g", "h100-sxm", "--tp", "1", "--pp", "40"], "has 32 layers (got 40; allowed: 1 to 32)"),
    (["-m", "llama-3.1-8b", "-g", "h100-sxm", "--tp", "1", "--redundant-experts", "8"],
     "--redundant-experts: redundant expert slots need a MoE model (got 8; allowed: 0 for llama-3.1-8b)"),
    (["-m", "deepseek-r1", "-g", "h200-sxm", "--tp", "8", "--redundant-experts", "8"],
     "--redundant-experts: redundant expert slots spread over expert-parallel ranks (got 8; allowed: 0 "
     "(give --ep > 1))"),
    (["-m", "deepseek-r1", "-g", "gb200", "--tp", "1", "--attention-dp", "32", "--ep", "32",
      "--redundant-experts", "20"],
     "256 routed experts and 20 redundant slots do not split evenly over the expert-parallel ranks (got 20; "
     "allowed: 32, 64, 96, ... (256 + it a multiple of --ep 32))"),
    (["-m", "deepseek-r1", "-g", "gb200", "--attention-dp", "72", "--ep", "72", "-c", "64", "--isl", "1000",
      "--osl", "100"],
     "--ep: deepseek-r1's 256 routed experts do not split evenly (got 72; allowed: 1, 2, 4, 8, 16, 32, 64, 128, "
     "256; or --redundant-experts 32 with --ep 72 (288 expert slots, 4 a rank))"),
    (["-m", "deepseek-r1", "-g", "h200-sxm", "--rps", "5", "--redundant-experts", "8"],
     "--redundant-experts: applies to a layout you give"),
    (["-m", "qwen3-next-80b-a3b", "-g", "gb200", "--tp", "32", "--rps", "5"],
     "16 attention heads (2 key/value) do not split evenly over the tensor-parallel GPUs (got 32;"),
    (["-m", "llama-3.1-70b", "-g", "h200-sxm", "--tp", "4", "--decode-workers", "2"],
     "--decode-workers: describes a disaggregated deployment (allowed: give --prefill-tp with it"),
    (["-m", "llama-3.1-70b", "-g", "h200-sxm", "--tp", "4", "--prefill-tp", "3"],
     "--prefill-tp: llama-3.1-70b's 64 attention heads (8 key/value) do not split evenly"),
    (["-m", "mixtral-8x7b", "-g", "h200-sxm", "--tp", "4", "--prefill-tp", "2", "--prefill-ep", "4"],
     "--prefill-ep: --prefill-ep must divide --prefill-tp x --prefill-attention-dp (got 4"),
    (["-m", "llama-3.1-70b", "-g", "h200-sxm", "--rps", "5", "--prefill-tp", "2"],
     "--prefill-tp: the planner chooses the prefill and decode pools"),
    (["-m", "llama-3.1-70b", "-g", "h200-sxm", "--rps", "5", "--decode-workers", "3"],
     "--decode-workers: the planner chooses the prefill and decode pools"),
    (["-m", "llama-3.1-405b", "-g", "h100-sxm", "--tp", "8", "--prefill-tp", "2"],
     "--prefill-tp: llama-3.1-405b at fp8 does not fit 2 x h100-sxm"),
    (["-m", "llama-3.1-8b", "-g", "h100", "--rps", "0"],
     "--rps: demand must be positive (got 0.0; allowed: more than 0)"),
    (["-m", "llama-3.1-8b", "-g", "h100", "--tokens-per-day", "0"],
     "--tokens-per-day: demand must be positive (got 0.0; allowed: more than 0)"),
    (["-m", "llama-3.1-8b", "-g", "mi300x", "--tp", "1", "--backend", "trtllm"],
     "--backend: trtllm does not run on AMD mi300x (got 'trtllm'; allowed: vllm, sglang)"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    extra = [] if "-c" in args or "--isl" in args else ["--isl", "1000", "--osl", "100"]
    extra += ["-c", "8"] if "--tp" in args and "--rps" not in args else []
    code = main(["serve", *args, *extra])
    err = capsys.readouterr().err
    assert code in (2, 3) and message in " ".join(err.split()) and "Traceback" not in err


def test_unreachable_sla(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "-m", "llama-3.3-70b", "-g", "h100-sxm", "--isl", "2000", "--osl", "500", "--rps", "5",
                 "--tpot-ms", "0.5"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 3 and "best reachable" in err


def test_bad_enum_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "-m", "llama-3.3-70b", "-g", "h100-sxm", "--tp", "2", "--isl", "1", "--osl", "1",
                 "-c", "1", "--backend", "tgi"])
    assert code == 2 and "tgi" in capsys.readouterr().err


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "-m", "qwen3-32b", "-g", "h100-sxm", "--tp", "2", "--isl", "1000", "--osl", "200",
                 "-c", "8"]) == 0
    out = capsys.readouterr().out
    assert "ttft_ms" in out and "tpot_ms" in out


def test_validate_inference(capsys: pytest.CaptureFixture[str]) -> None:
    d = cli_json(capsys, "validate", "inference")
    mape = d["published"]["mape"]
    assert set(mape) >= {"output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_ms"}
    assert mape["output_tokens_per_s"]["n"] >= 10
    assert all(r["predicted"] > 0 for r in d["published"]["rows"])
    assert any("ShareGPT" in s["reason"] for s in d["published"]["skipped"])
    assert main(["validate", "inference"]) == 0
    assert "MAPE" in capsys.readouterr().out


def test_validate_inference_data_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    lines = src.read_text(encoding="utf-8").splitlines()
    sample = tmp_path / "points.csv"
    sample.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    d = cli_json(capsys, "validate", "inference", "--data", str(sample))
    assert d["data"]["points"] == 39 and d["data"]["mape"]["tpot_ms"]["n"] == 39
    # the throughput each point's TTFT and TPOT imply is scored too, and every figure has its median
    thr = d["data"]["mape"]["output_tokens_per_s"]
    assert thr["n"] == 39 and 0 < thr["median_ape_pct"] <= 2 * thr["mape_pct"]
    assert set(d["data"]["by_gpu"]) == {"ttft_ms", "tpot_ms", "output_tokens_per_s"}
    # by how the replica splits its work and by weight precision: the first 39 rows are DeepSeek-V3
    # and MiniMax-M2.5 FP8 points without attention data parallelism
    assert set(d["data"]["by_layout"]["tpot_ms"]) == {"tensor"}
    assert d["data"]["by_layout"]["tpot_ms"]["tensor"]["n"] == 39
    assert set(d["data"]["by_weights"]["tpot_ms"]) == {"fp8"}
    band = d["data"]["within_band"]  # how many measurements fall inside the band serve reports
    assert set(band) == {"ttft_ms", "tpot_ms", "output_tokens_per_s"}
    assert all(v["n"] == 39 and 0 <= v["share_pct"] <= 100 for v in band.values())
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["validate", "inference", "--data", str(bad)]) == 2
    assert "not a measured-points file" in " ".join(capsys.readouterr().err.split())


def test_validate_inference_band_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    """On the calibration set the band serve reports holds 8 in 10 measurements by construction
    (its engine's 10th-90th percentile); the summary says so, so that on another file it shows
    whether the band still holds."""
    d = cli_json(capsys, "validate", "inference", "--measured")["measured"]["within_band"]
    assert {m: v["n"] for m, v in d.items()} == {"ttft_ms": 1593, "tpot_ms": 1593, "output_tokens_per_s": 1593}
    assert all(77.0 <= v["share_pct"] <= 83.0 for v in d.values())
    # and by GPU, which on a file of other parts says whether the Hopper band holds there
    by_gpu = cli_json(capsys, "validate", "inference", "--measured")["measured"]["within_band_by_gpu"]
    assert set(by_gpu) == {"h100-sxm", "h200-sxm"}
    assert sum(g["tpot_ms"]["n"] for g in by_gpu.values()) == 1593
    assert all(60.0 <= f["share_pct"] <= 95.0 for g in by_gpu.values() for f in g.values())


def test_validate_inference_gpu_scaling(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A file with the same configuration measured on two GPUs reports how each figure changed from
    one to the other, measured and predicted (the campaign's own effects cancel in the ratio)."""
    import csv

    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    with src.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    head = rows[0]
    first = next(r for r in rows[1:] if r[head.index("system")] == "h100_sxm" and r[head.index("silicon_tpot_ms")])
    twin = list(first)
    twin[head.index("id")] += "_twin"
    twin[head.index("system")] = "h200_sxm"
    twin[head.index("silicon_tpot_ms")] = str(float(first[head.index("silicon_tpot_ms")]) * 0.8)
    blackwell = list(twin)
    blackwell[head.index("id")] += "_b200"
    blackwell[head.index("system")] = "b200_sxm"
    sample = tmp_path / "points.csv"
    with sample.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([head, first, twin, blackwell])
    scaling = cli_json(capsys, "validate", "inference", "--data", str(sample))["data"]["gpu_scaling"]
    # every pair, the earlier part first (by year, then BF16 peak), not by name
    assert list(scaling) == ["h100-sxm -> h200-sxm", "h100-sxm -> b200", "h200-sxm -> b200"]
    assert scaling["h200-sxm -> b200"]["tpot_ms"]["measured_ratio_median"] == pytest.approx(1.0)
    assert scaling["h200-sxm -> b200"]["tpot_ms"]["predicted_ratio_median"] < 0.9  # 8.0 against 4.8 TB/s
    tpot = scaling["h100-sxm -> h200-sxm"]["tpot_ms"]
    assert tpot["pairs"] == 1 and tpot["measured_ratio_median"] == pytest.approx(0.8)
    assert 0.5 < tpot["predicted_ratio_median"] < 1.0  # more HBM bandwidth, same compute
    assert main(["validate", "inference", "--data", str(sample)]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "same configuration on two GPUs, h100-sxm -> h200-sxm (1 configuration)" in text
    assert "tpot_ms x0.80 measured" in text


def test_validate_inference_unusable_measurements(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A measurement that is not a positive number skips its row with the field and the value; a
    blank one leaves the row to the other measurement."""
    import csv

    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    with src.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))[:8]
    rows[1][-2:] = ["", "12.5"]  # TPOT only
    rows[2][-2:] = ["-5", "10"]
    rows[3][-2:] = ["300", "nan"]
    rows[4][-2:] = ["", ""]
    rows[5][rows[0].index("isl")] = "long"
    rows[6][rows[0].index("tp_size")] = "2.5"
    rows[7][rows[0].index("moe_quant_mode")] = "awq_marlin"  # a kernel, not a format: not guessed
    sample = tmp_path / "points.csv"
    with sample.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    d = cli_json(capsys, "validate", "inference", "--data", str(sample))["data"]
    assert d["points"] == 1 and d["mape"]["tpot_ms"]["n"] == 1 and "ttft_ms" not in d["mape"]
    assert d["skipped_reasons"] == {
        "silicon_ttft_ms '-5' is not a positive number": 1,
        "silicon_tpot_ms 'nan' is not a positive number": 1,
        "neither silicon_ttft_ms nor silicon_tpot_ms is given": 1,
        "isl 'long' is not a positive number": 1,
        "tp_size '2.5' is not a whole number": 1,
        "moe_quant_mode 'awq_marlin' names no known format (bf16/fp16/none, fp8, fp8_block, nvfp4, mxfp4, int4_wo, "
        "w4aN_*)": 1,
    }


def test_validate_inference_points_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--out writes each point measured and predicted, and each skipped row with its reason."""
    import csv

    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    lines = src.read_text(encoding="utf-8").splitlines()
    unknown_gpu = lines[2].replace(",h200_sxm,", ",a30,").replace(",h100_sxm,", ",a30,")
    sample = tmp_path / "points.csv"
    sample.write_text("\n".join([lines[0], lines[1], unknown_gpu]) + "\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    d = cli_json(capsys, "validate", "inference", "--data", str(sample), "--out", str(out))
    assert d["data"]["skipped_reasons"] == {"system a30 not in the catalog": 1}
    assert set(d["data"]["by_gpu"]["tpot_ms"]) == {"h200-sxm"}
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["skipped"] for r in rows] == ["", "system a30 not in the catalog"]
    first = rows[0]
    measured, predicted = float(first["tpot_ms"]), float(first["predicted_tpot_ms"])
    assert float(first["tpot_error_pct"]) == pytest.approx((predicted - measured) / measured * 100)
    assert float(first["output_tokens_per_s"]) > 0 and first["fits"] == "True"
    assert main(["validate", "inference", "--data", str(sample), "--out", str(tmp_path / "out.txt")]) == 2
    assert "allowed: .csv" in " ".join(capsys.readouterr().err.split())


def test_validate_inference_models_from_config_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A model the catalog lacks is read from <org>--<name>_config.json in --configs."""
    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    lines = src.read_text(encoding="utf-8").splitlines()
    rows = [line.replace("Qwen/Qwen3-32B", "Qwen/Qwen2-72B") for line in lines if "Qwen/Qwen3-32B" in line][:5]
    sample = tmp_path / "points.csv"
    sample.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "Qwen--Qwen2-72B_config.json").write_text(
        (CONFIGS / "Qwen--Qwen2-72B_config.json").read_text(encoding="utf-8"), encoding="utf-8")
    without = cli_json(capsys, "validate", "inference", "--data", str(sample))
    assert without["data"]["points"] == 0 and without["data"]["skipped"] == 5
    d = cli_json(capsys, "validate", "inference", "--data", str(sample), "--configs", str(configs))
    assert d["data"]["points"] == 5 and d["data"]["mape"]["tpot_ms"]["n"] == 5


def test_validate_inference_disaggregated_rows(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A disaggregated row (prefill_*/decode_* columns, worker counts) is predicted by the closed-loop
    prefill/decode model; an unknown serving mode is skipped with its reason."""
    import csv

    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    with src.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, row = list(reader.fieldnames or []), next(r for r in reader if "Llama-3.1-70B" in r["model_path"])
    dis = {**row, "id": "dis", "mode": "disagg", "prefill_tp_size": "2", "prefill_num_workers": "2",
           "prefill_batch_size": "1", "decode_tp_size": "4", "decode_num_workers": "1", "decode_batch_size": "64"}
    odd = {**row, "id": "odd", "mode": "spec"}
    sample = tmp_path / "points.csv"
    with sample.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows([dis, odd])
    out = tmp_path / "out.csv"
    d = cli_json(capsys, "validate", "inference", "--data", str(sample), "--out", str(out))
    assert d["data"]["points"] == 1 and d["data"]["skipped_reasons"] == {"serving mode 'spec' (agg or disagg)": 1}
    with out.open(encoding="utf-8") as fh:
        first = next(csv.DictReader(fh))
    assert (first["id"], first["tp"]) == ("dis", "4")  # the decode workers' parallelism
    assert (first["mode"], first["prefill_tp"], first["prefill_workers"], first["decode_workers"]) == (
        "disagg", "2", "2", "1")
    assert set(d["data"]["by_mode"]["tpot_ms"]) == {"disagg"}
    assert set(d["data"]["by_layout"]["tpot_ms"]) == {"disaggregated"}
    assert 0 < float(first["predicted_ttft_ms"]) < 5_000 and 0 < float(first["predicted_tpot_ms"]) < 100


def test_validate_inference_by_layout(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The data set's errors by how each replica splits its work: attention data parallelism (DeepSeek
    rows with eight attention ranks) apart from tensor parallelism."""
    import csv

    src = Path(__file__).parents[1] / "src" / "factoryplan" / "validation" / "data" / "serving_measured_hopper.csv"
    with src.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if "DeepSeek-R1" in r["model_path"] and r["backend"] == "trtllm"]
    sample = tmp_path / "points.csv"
    with sample.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    d = cli_json(capsys, "validate", "inference", "--data", str(sample))
    layouts = d["data"]["by_layout"]["ttft_ms"]
    adp = sum(1 for r in rows if int(r["attention_dp_size"] or 1) > 1)
    assert 0 < adp < len(rows) and layouts["attention-dp"]["n"] == adp
    assert layouts["tensor"]["n"] == len(rows) - adp
    # and by engine version (a campaign's engine release), '?' where the row gives none
    engines = d["data"]["by_engine"]["ttft_ms"]
    versions = collections.Counter(f"trtllm {r['backend_version'] or '?'}" for r in rows)
    assert {e: v["n"] for e, v in engines.items()} == dict(versions) and len(versions) > 1


def test_activation_precision_option(capsys: pytest.CaptureFixture[str]) -> None:
    """W4A8 on Blackwell: FP4 weights, FP8 activations, the FP8 tensor-core rate; the JSON says so."""
    base = ["serve", "-m", "gpt-oss-120b", "-g", "b200", "--tp", "1", "--precision", "fp4", "--isl", "8000",
            "--osl", "500", "-c", "64"]
    w4a4 = cli_json(capsys, *base)
    w4a8 = cli_json(capsys, *base, "--activation-precision", "fp8")
    assert (w4a4["activation_precision"], w4a4["compute_precision"]) == ("fp4", "fp4")
    assert (w4a8["activation_precision"], w4a8["compute_precision"]) == ("fp8", "fp8")
    assert w4a4["peak_tflops"] == pytest.approx(2 * w4a8["peak_tflops"])  # B200: FP4 9,000, FP8 4,500 dense
    assert w4a8["ttft_ms"] > w4a4["ttft_ms"] and w4a8["memory_per_gpu_gib"] == w4a4["memory_per_gpu_gib"]


def test_attention_dp_balance_wait_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """TensorRT-LLM holds an attention-DP rank's prompts until every rank has one: the point estimate
    says how long; vLLM, which does not, has no such figure."""
    args = ("serve", "-m", "deepseek-r1", "-g", "h200", "--tp", "1", "--attention-dp", "8", "--ep", "8",
            "--isl", "1024", "--osl", "1024", "-c", "128")
    trt = cli_json(capsys, *args)
    assert 0 < trt["attention_dp_balance_wait_ms"] < trt["ttft_ms_steady"]
    assert "attention_dp_balance_wait_ms" not in cli_json(capsys, *args, "--backend", "vllm")
    assert "attention_dp_balance_wait_ms" not in cli_json(capsys, *args[:5], "--tp", "8", "--ep", "8", *args[11:])
