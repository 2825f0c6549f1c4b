"""The plan sizes inference workloads with the serving engine and reports the Pareto frontier."""

from __future__ import annotations

from pathlib import Path

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.errors import InfeasibleError
from factoryplan.plan import build_plan
from factoryplan.report.html import render_html
from factoryplan.scenario import load_scenario, parse_scenario

from .conftest import EXAMPLES


def scenario(ttft_ms: float, tpot_ms: float, rps: float = 10.0) -> dict[str, object]:
    return {
        "name": "serving", "region": "kr", "hardware": ["h200-sxm"],
        "workloads": [{"name": "chat", "kind": "inference", "model": "llama-3.3-70b", "requests_per_s": rps,
                       "peak_to_average": 2, "input_tokens": 2000, "output_tokens": 400, "ttft_ms": ttft_ms,
                       "tpot_ms": tpot_ms, "precision": "fp8"}],
    }


def test_inference_workload_meets_targets(catalog: Catalog) -> None:
    plan = build_plan(parse_scenario(scenario(1500, 40)), catalog)
    w = plan.workloads[0]
    assert w.method.startswith("inference engine")
    d = w.details
    assert d["mode"] in ("aggregated", "disaggregated") and isinstance(d["config"], str)
    assert float(d["ttft_ms"]) <= 1500 and float(d["tpot_ms"]) <= 40
    assert float(d["peak_requests_per_s"]) > 20  # 10 rps x peak 2 / (1 - headroom)
    assert w.gpus >= 1 and not w.warnings
    assert len(w.frontier) >= 5 and all(p["tokens_per_s_per_mw"] > 0 for p in w.frontier)


def test_inference_workload_gives_gpus_across_the_error_band(catalog: Catalog) -> None:
    """The plan's inference sizing also gives the GPUs at the edges of its engine's error band."""
    w = build_plan(parse_scenario(scenario(1500, 40, rps=20)), catalog).workloads[0]
    low, high = w.details["gpus_low"], w.details["gpus_high"]
    assert isinstance(low, int) and isinstance(high, int) and low < w.gpus < high
    assert "trtllm calibration points" in str(w.details["gpus_band_basis"])
    assert "measured on" not in str(w.details["gpus_band_basis"])  # the band's points include H200
    sc = scenario(1500, 40, rps=20)
    sc["hardware"] = ["gb200"]
    gb = build_plan(parse_scenario(sc), catalog).workloads[0]
    assert "measured on h100-sxm and h200-sxm only: on gb200" in str(gb.details["gpus_band_basis"])


def test_tighter_targets_and_more_demand_cost_gpus(catalog: Catalog) -> None:
    base = build_plan(parse_scenario(scenario(1500, 40)), catalog).workloads[0].gpus
    tight = build_plan(parse_scenario(scenario(400, 15)), catalog).workloads[0].gpus
    busy = build_plan(parse_scenario(scenario(1500, 40, rps=40)), catalog).workloads[0].gpus
    assert tight > base and busy > base


def test_unreachable_targets_warn(catalog: Catalog) -> None:
    plan = build_plan(parse_scenario(scenario(1500, 2)), catalog)
    assert any("unreachable" in w for w in plan.workloads[0].warnings)
    assert any("unreachable" in w for w in plan.warnings)


def test_html_report_has_the_frontier(catalog: Catalog, tmp_path: Path) -> None:
    plan = build_plan(load_scenario(EXAMPLES / "enterprise-private-llm.yaml"), catalog)
    html = render_html(plan)
    assert "<h2>Serving</h2>" in html and "Serving Pareto frontier" in html
    assert "tokens/s per GPU" in html
    served = [w for w in plan.workloads if w.kind == "inference"]
    assert served and all(w.frontier_disaggregated for w in served)
    assert ", disaggregated</h3>" in html and "prefill : decode GPUs" in html
    w = served[0]
    assert f"{w.details['gpus_low']}&ndash;{w.details['gpus_high']} across the error band" in html
    assert f'title="{w.details["gpus_band_basis"]}"' in html  # where the band comes from, on hover


def test_scenario_precisions_reach_the_engine(catalog: Catalog) -> None:
    """kv_precision and activation_precision of a workload are used and reported, not dropped:
    FP4 weights times BF16 activations (weight-only) need more GPUs on B200 than NVFP4 W4A4."""
    def plan_for(**extra: str) -> dict[str, object]:
        sc = scenario(1500, 40, rps=60)
        sc["hardware"] = ["b200"]
        sc["workloads"][0].update(precision="fp4", **extra)  # type: ignore[index]
        w = build_plan(parse_scenario(sc), catalog).workloads[0]
        return {**w.details, "gpus": w.gpus}

    w4a4 = plan_for()
    w4a16 = plan_for(activation_precision="bf16", kv_precision="bf16")
    assert (w4a4["activation_precision"], w4a4["kv_precision"]) == ("fp4", "fp8")
    assert (w4a16["activation_precision"], w4a16["kv_precision"]) == ("bf16", "bf16")
    assert int(w4a16["gpus"]) > int(w4a4["gpus"])  # type: ignore[call-overload]


def test_fp4_kv_cache_rules_out_parts_without_fp4(catalog: Catalog) -> None:
    """A workload asking for an FP4 KV cache is planned on the candidates that have FP4 units; the
    others are listed as infeasible with the field and the reason."""
    sc = scenario(1500, 40, rps=20)
    sc["hardware"] = ["h200-sxm", "b200"]
    sc["workloads"][0].update(kv_precision="fp4")  # type: ignore[index]
    plan = build_plan(parse_scenario(sc), catalog)
    assert plan.workloads[0].accelerator == "b200" and plan.workloads[0].details["kv_precision"] == "fp4"
    h200 = next(o for o in plan.hardware_options if o.accelerator == "h200-sxm")
    assert not h200.feasible and "kv_precision: an FP4 KV cache needs FP4 hardware" in h200.reason
    sc["hardware"] = ["h200-sxm"]
    with pytest.raises(InfeasibleError, match="kv_precision"):
        build_plan(parse_scenario(sc), catalog)


def test_scenario_serving_engine_profile(catalog: Catalog) -> None:
    """serving_engine picks the calibrated profile the workload is sized with, and the plan says which."""
    sized = {}
    for engine in ("trtllm", "vllm", "sglang"):
        sc = scenario(1500, 40, rps=40)
        sc["workloads"][0]["serving_engine"] = engine  # type: ignore[index]
        w = build_plan(parse_scenario(sc), catalog).workloads[0]
        assert w.details["backend"] == engine and engine in w.method
        sized[engine] = (w.gpus, float(w.details["tpot_ms"]))
    assert len(set(sized.values())) > 1  # the profiles differ in overheads and kernels


def test_serving_engine_follows_the_vendor(catalog: Catalog) -> None:
    """No engine named: TensorRT-LLM on NVIDIA parts, vLLM on AMD; an engine that does not run on the
    part is refused naming the field and the engines that do."""
    sc = scenario(1500, 40)
    sc["hardware"] = ["h200-sxm", "mi300x"]
    plan = build_plan(parse_scenario(sc), catalog)
    options = {o.accelerator: o for o in plan.hardware_options}
    assert options["mi300x"].feasible and options["h200-sxm"].feasible
    amd = build_plan(parse_scenario({**sc, "hardware": ["mi300x"]}), catalog).workloads[0]
    assert amd.details["backend"] == "vllm" and plan.workloads[0].details["backend"] in ("trtllm", "vllm")
    sc["workloads"][0]["serving_engine"] = "trtllm"  # type: ignore[index]
    refused = r"serving_engine: trtllm does not run on AMD mi300x .*allowed: vllm, sglang"
    with pytest.raises(InfeasibleError, match=refused):
        build_plan(parse_scenario({**sc, "hardware": ["mi300x"]}), catalog)
