"""SLA-driven capacity planning and the Pareto frontier."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.errors import InfeasibleError
from factoryplan.perf.capacity import (
    Demand,
    band_gpus,
    disaggregated_frontier,
    evaluate_grid,
    layouts,
    min_gpus_to_fit,
    pareto_frontier,
    plan_capacity,
    size_inference,
)
from factoryplan.perf.inference import (
    Constants,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    iteration,
    shape_of,
    splits_evenly,
)
from factoryplan.perf.serving import serve

from .conftest import FP8, serving_setup


def setup(catalog: Catalog, model: str, acc: str) -> tuple[ModelShape, Hardware, Constants]:
    return serving_setup(catalog, model, acc)


def test_layouts_cover_tp_ep_dp(catalog: Catalog) -> None:
    dense = layouts(shape_of(catalog.models["llama-3.1-70b"]), 8, max_pp=1)
    assert sorted(dense.tp.tolist()) == [1, 2, 4, 8] and np.all(dense.dp == 1)
    moe = layouts(shape_of(catalog.models["deepseek-r1"]), 72, max_pp=1)
    gpus = moe.tp * moe.dp
    assert np.all(gpus == moe.moe_tp * moe.ep)  # experts use the same GPUs as attention
    assert gpus.max() == 64 and {"tp1 dp8 ep8", "tp8 ep8"} <= {moe.describe(i) for i in range(len(moe))}
    # every expert-parallel layout also with a load balancer's slot more per rank; none for dense models
    balanced = moe.redundant > 0
    assert np.all(moe.redundant[balanced] == moe.ep[balanced]) and np.all(dense.redundant == 0)
    assert balanced.sum() == ((moe.ep > 1) & ~balanced).sum()
    assert "tp1 dp32 ep32 redundant32" in {moe.describe(i) for i in range(len(moe))}


def test_layouts_split_heads_experts_and_layers_evenly(catalog: Catalog) -> None:
    mixtral = shape_of(catalog.models["mixtral-8x7b"])  # 32 heads, 8 key/value heads, 8 experts
    lay = layouts(mixtral, 72, max_pp=1)
    assert lay.ep.max() == 8 and lay.tp.max() == 32 and len(lay) > 0
    assert np.all(8 % lay.ep == 0) and np.all(32 % lay.tp == 0)
    small = layouts(shape_of(catalog.models["llama-3.1-8b"]), 8, max_pp=64)  # 32 layers
    assert small.pp.max() == 32
    assert splits_evenly(mixtral, np.array([1.0, 3.0, 16.0, 64.0])).tolist() == [True, False, True, False]


def test_plan_meets_targets_with_fewest_gpus(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    d = Demand(requests_per_s=10, isl=2000, osl=400, ttft_s=1.0, tpot_s=0.040)
    plan = plan_capacity(s, hw, FP8, k, d, modes=("aggregated",))
    assert plan.ttft_s <= d.ttft_s and plan.tpot_s <= d.tpot_s
    assert plan.gpus == plan.replicas * plan.gpus_per_replica
    # the chosen replica serves its share of the peak within targets when re-evaluated directly
    tp = int(plan.config.split()[0][2:])
    r = serve(s, hw, Parallel(tp=tp), FP8, k, concurrency=plan.concurrency_per_replica, isl=2000, osl=400)
    assert float(r.requests_per_s) * plan.replicas >= d.requests_per_s
    # no layout with fewer GPUs meets the targets: every cheaper option fails one of them
    grid = evaluate_grid(s, hw, FP8, k, layouts(s, 8), 2000, 400)
    meets = grid.ok & (grid.ttft_s <= d.ttft_s) & (grid.tpot_s <= d.tpot_s)
    gpus = np.ceil(d.requests_per_s / grid.requests_per_s) * grid.gpus
    assert plan.gpus == int(np.min(gpus[meets]))


def test_error_band_edges_bracket_the_plan(catalog: Catalog) -> None:
    """The plan redone at the fast and slow edges of an error band brackets its GPUs; a slow edge is
    the plan for a demand scaled by the throughput ratio and a target divided by the TPOT ratio; no
    band (ratios 1) gives the plan itself; an edge where nothing meets TPOT gives None."""
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    d = Demand(requests_per_s=10, isl=2000, osl=400, ttft_s=1.5, tpot_s=0.040)
    lay = layouts(s, 8)
    grid = evaluate_grid(s, hw, FP8, k, lay, 2000, 400)
    gpus = plan_capacity(s, hw, FP8, k, d, lay=lay, grid=grid).gpus
    assert band_gpus(s, hw, FP8, k, d, (1.0, 1.0), (1.0, 1.0), lay=lay, grid=grid) == (gpus, gpus)
    lo, hi = band_gpus(s, hw, FP8, k, d, (0.8, 1.25), (0.8, 1.25), lay=lay, grid=grid)
    assert lo is not None and hi is not None and lo < gpus < hi
    slow = plan_capacity(s, hw, FP8, k, Demand(10 / 0.8, 2000, 400, 1.5, 0.040 / 1.25), lay=lay, grid=grid)
    assert hi == slow.gpus
    best_tpot = float(np.min(grid.tpot_s[grid.ok]))
    assert band_gpus(s, hw, FP8, k, d, (1.0, 0.040 / best_tpot * 1.1), (1.0, 1.0), lay=lay, grid=grid)[1] is None


def test_tighter_latency_costs_gpus(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "qwen3-32b", "h100-sxm")
    loose = plan_capacity(s, hw, FP8, k, Demand(20, 1000, 500, 2.0, 0.060))
    tight = plan_capacity(s, hw, FP8, k, Demand(20, 1000, 500, 0.3, 0.015))
    assert tight.gpus > loose.gpus
    double = plan_capacity(s, hw, FP8, k, Demand(40, 1000, 500, 2.0, 0.060))
    assert loose.gpus < double.gpus <= 2 * loose.gpus + loose.gpus_per_replica


def test_disaggregation_is_considered(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    d = Demand(requests_per_s=50, isl=8000, osl=300, ttft_s=1.5, tpot_s=0.030)
    plan = plan_capacity(s, hw, FP8, k, d)
    assert set(plan.alternatives) <= {"aggregated", "disaggregated"} and plan.alternatives
    assert plan.gpus == min(plan.alternatives.values())
    dis = plan_capacity(s, hw, FP8, k, d, modes=("disaggregated",))
    assert dis.mode == "disaggregated" and dis.prefill_gpus + dis.decode_gpus == dis.gpus
    assert dis.ttft_s <= d.ttft_s and dis.tpot_s <= d.tpot_s


def test_prefill_pool_batches_short_prompts(catalog: Catalog) -> None:
    """Short prompts share a prefill pass (up to the token budget): the pool needs fewer GPUs than
    one prompt per pass at 90% busy would; TTFT carries the engine's per-request latency, as
    aggregated serving does."""
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    d = Demand(requests_per_s=100, isl=1000, osl=300, ttft_s=2.0, tpot_s=0.050)
    dis = plan_capacity(s, hw, FP8, k, d, modes=("disaggregated",))
    tp = int(dis.config.split()[1][2:])
    one = float(iteration(s, hw, Parallel(tp=tp), FP8, k, decode_seqs=0.0, ctx=1000.0, prompts=1.0,
                          prompt_len=1000.0).total)
    assert dis.prefill_gpus < math.ceil(d.requests_per_s * one / 0.9) * tp
    assert dis.ttft_s >= k.request_overhead_s + one


def test_infeasible_targets_name_the_best_reachable(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-70b", "h100-sxm")
    with pytest.raises(InfeasibleError, match="best reachable"):
        plan_capacity(s, hw, FP8, k, Demand(1, 1000, 100, 1.0, 0.001))
    sized = size_inference(s, hw, FP8, k, Demand(1, 1000, 100, 1.0, 0.001), backend="trtllm")
    assert sized.warnings and "unreachable" in sized.warnings[0] and sized.gpus >= 1


def test_model_that_fits_nowhere_names_what_it_needs(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-405b", "h100-sxm")
    assert min_gpus_to_fit(s, hw, FP8, k) == 8
    bf16 = Precision("bf16", "bf16", "bf16")
    assert min_gpus_to_fit(s, hw, bf16, k) == 16  # 811 GB of BF16 weights: two HGX nodes
    lay = layouts(s, 8, max_pp=1).select(np.array([True, True, True, False]))
    with pytest.raises(InfeasibleError, match="needs >= 8 x h100-sxm at fp8"):
        plan_capacity(s, hw, FP8, k, Demand(1, 1000, 100, 5.0, 0.1), lay=lay)


def test_moe_model_needs_its_experts_split(catalog: Catalog) -> None:
    """A MoE model's experts are split over the GPUs too: DeepSeek-V3 at FP8 (671 GB) fits 16 H100
    (two nodes) or 8 H200, Qwen3-235B at FP8 4 H100 — not the 64 a replicated-experts count would say."""
    for model, acc, need in (("deepseek-v3", "h100-sxm", 16), ("deepseek-v3", "h200-sxm", 8),
                             ("qwen3-235b-a22b", "h100-sxm", 4)):
        s, hw, k = setup(catalog, model, acc)
        assert min_gpus_to_fit(s, hw, FP8, k) == need, (model, acc)


def test_pareto_frontier_is_non_dominated(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "deepseek-r1", "h200-sxm")
    grid = evaluate_grid(s, hw, FP8, k, layouts(s, 8), 2000, 500)
    front = pareto_frontier(grid, hw)
    assert len(front) >= 5
    x = np.array([p["tokens_per_s_per_user"] for p in front])
    y = np.array([p["tokens_per_s_per_gpu"] for p in front])
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) < 0)  # faster per user costs throughput per GPU
    gx, gy = grid.tokens_per_s_per_user[grid.ok], grid.tokens_per_s_per_gpu[grid.ok]
    # no point of the grid beats a frontier point on both axes ...
    ge = (gx[None, :] >= x[:, None]) & (gy[None, :] >= y[:, None])
    beaten = ge & ((gx[None, :] > x[:, None]) | (gy[None, :] > y[:, None]))
    assert not beaten.any()
    # ... and every point of the grid is matched or beaten by one on the frontier
    covered = (x[None, :] >= gx[:, None]) & (y[None, :] >= gy[:, None])
    assert covered.any(axis=1).all()
    per_gpu_w = float(hw.system_w) / float(hw.system_gpus)
    assert front[0]["tokens_per_s_per_mw"] == pytest.approx(front[0]["tokens_per_s_per_gpu"] / per_gpu_w * 1e6)


def test_disaggregated_frontier(catalog: Catalog) -> None:
    """Disaggregated points are non-dominated among themselves; a point's throughput per GPU is its
    decode pool's own divided by (1 + prefill:decode GPUs); without prompts in the decode iterations
    it beats aggregated serving at high speed per user (Llama-3.1-70B, 2,000/500 tokens, H200)."""
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    lay = layouts(s, 8)
    dis = disaggregated_frontier(s, hw, FP8, k, lay, 2000, 500)
    agg = pareto_frontier(evaluate_grid(s, hw, FP8, k, lay, 2000, 500), hw)
    assert len(dis) >= 5
    x = np.array([p["tokens_per_s_per_user"] for p in dis])
    y = np.array([p["tokens_per_s_per_gpu"] for p in dis])
    assert np.all(np.diff(x) > 0) and np.all(np.diff(y) < 0)
    for p in dis:
        decode_only = p["concurrency"] / (p["gpus"] * p["tpot_ms"] / 1e3)
        assert p["tokens_per_s_per_gpu"] * (1 + p["prefill_to_decode_gpus"]) == pytest.approx(decode_only, rel=1e-9)
        assert p["tokens_per_s_per_user"] == pytest.approx(1e3 / p["tpot_ms"])
    ax = np.array([p["tokens_per_s_per_user"] for p in agg])
    ay = np.array([p["tokens_per_s_per_gpu"] for p in agg])
    fast = (ax >= 40) & (ax <= 120)  # at batch 1 both run the same decode step
    assert fast.any() and np.all(np.interp(ax[fast], x, y) > 1.3 * ay[fast])
