"""The vectorized step-time and memory engine: one code path for arrays and single configurations."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.errors import CatalogError
from factoryplan.perf.flops import model_shape
from factoryplan.perf.search import grid
from factoryplan.perf.training import Configs, Job, efficiencies, evaluate, hardware, stage_layers


def _setup(catalog: Catalog, model: str, gpu: str, precision: str = "fp8"):  # type: ignore[no-untyped-def]
    acc = catalog.accelerators[gpu]
    return (model_shape(catalog.models[model]), hardware(acc, catalog.systems[acc.default_system]),
            efficiencies(catalog, acc, precision))


def test_array_and_single_configuration_agree(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-70b", "h100-sxm")
    job = Job(seq_len=8192, global_batch=256, gpus=256, precision="fp8")
    cfg, code, _ = grid(shape, hw, job, {})
    valid = cfg.take(code[: len(cfg)] == 0)
    many = evaluate(shape, hw, eff, job, valid)
    for i in np.linspace(0, len(valid) - 1, 25).astype(int):
        one = evaluate(shape, hw, eff, job, valid.take([int(i)]))
        assert float(one.step_time_s[0]) == pytest.approx(float(many.step_time_s[i]), rel=1e-12)
        assert float(one.memory["total"][0]) == pytest.approx(float(many.memory["total"][i]), rel=1e-12)


def test_throughput_identities(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-8b", "h100-sxm", "bf16")
    job = Job(seq_len=4096, global_batch=64, gpus=8, precision="bf16")
    ev = evaluate(shape, hw, eff, job, Configs.one(tp=1, pp=1, vpp=1, cp=1, ep=1, dp=8, mb=1, recompute=0, zero=1))
    assert float(ev.tokens_per_s[0]) == pytest.approx(64 * 4096 / float(ev.step_time_s[0]))
    assert float(ev.tokens_per_s_per_gpu[0]) == pytest.approx(float(ev.tokens_per_s[0]) / 8)
    assert float(ev.mfu[0]) == pytest.approx(float(ev.model_tflops_per_gpu[0]) * 1e12 / hw.bf16_flops)
    assert 0.3 < float(ev.mfu[0]) < 0.7
    parts = sum(float(v[0]) for v in ev.time.values())
    assert parts == pytest.approx(float(ev.step_time_s[0]), rel=0.02)


def test_recompute_trades_time_for_memory(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-70b", "h100-sxm")
    job = Job(seq_len=8192, global_batch=128, gpus=64, precision="fp8")
    rc = np.array([0, 1, 2], dtype=np.int64)
    n = len(rc)
    cfg = Configs(tp=np.full(n, 4), pp=np.full(n, 8), vpp=np.full(n, 5), cp=np.ones(n, np.int64),
                  ep=np.ones(n, np.int64), dp=np.full(n, 2), mb=np.ones(n, np.int64), recompute=rc,
                  zero=np.ones(n, np.int64))
    ev = evaluate(shape, hw, eff, job, cfg)
    assert list(np.argsort(ev.step_time_s)) == [0, 1, 2]
    assert list(np.argsort(ev.memory["activations"])) == [2, 1, 0]


def test_more_micro_batches_shrink_the_bubble(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-70b", "h100-sxm")
    one = Configs.one(tp=8, pp=8, vpp=1, cp=1, ep=1, dp=1, mb=1, recompute=0, zero=1)
    small = evaluate(shape, hw, eff, Job(8192, 8, 64, "fp8"), one)
    large = evaluate(shape, hw, eff, Job(8192, 128, 64, "fp8"), one)
    # (m + p - 1) micro-batch times: the bubble is 7/8 of the work at 8 micro-batches, 7/128 at 128
    assert float(small.time["pipeline_bubble"][0] / small.step_time_s[0]) > 0.4
    assert float(large.time["pipeline_bubble"][0] / large.step_time_s[0]) < 0.06
    assert float(large.tokens_per_s_per_gpu[0]) > 1.5 * float(small.tokens_per_s_per_gpu[0])


def test_a_larger_scaleup_domain_speeds_up_the_context_parallel_ring(catalog: Catalog) -> None:
    shape, _, eff = _setup(catalog, "llama-3.1-405b", "b200")
    b200 = catalog.accelerators["b200"]
    hgx = hardware(b200, catalog.systems["dgx-b200"])
    rack = replace(hgx, domain_gpus=72)
    cfg = Configs.one(tp=8, pp=1, vpp=1, cp=4, ep=1, dp=8, mb=1, recompute=2, zero=3)
    job = Job(8192, 64, 256, "fp8")
    slow, fast = evaluate(shape, hgx, eff, job, cfg), evaluate(shape, rack, eff, job, cfg)
    assert float(fast.time["cp_comm"][0]) < float(slow.time["cp_comm"][0])


def test_last_stage_holds_the_lm_head_and_fewer_layers() -> None:
    mid, last = stage_layers(126, np.array([8, 7, 1]), np.array([8, 1, 1]))
    assert list(mid) == [16.0, 18.0, 126.0]
    assert list(last) == [15.0, 18.0, 126.0]
    # uneven stages (61-layer DeepSeek-V3 on 4 stages): 16 layers on the middle ones, 13 on the last
    mid, last = stage_layers(61, np.array([4]), np.array([1]))
    assert (float(mid[0]), float(last[0])) == (16.0, 13.0)


def test_moe_expert_parallelism_across_nodes_costs_all_to_all(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "qwen3-235b-a22b", "h100-sxm")
    job = Job(4096, 2048, 256, "fp8")
    inside = Configs.one(tp=2, pp=8, vpp=4, cp=1, ep=8, dp=16, mb=1, recompute=0, zero=1)
    across = Configs.one(tp=2, pp=8, vpp=4, cp=1, ep=32, dp=16, mb=1, recompute=0, zero=1)
    a, b = evaluate(shape, hw, eff, job, inside), evaluate(shape, hw, eff, job, across)
    assert float(b.time["ep_comm"][0]) > 2 * float(a.time["ep_comm"][0])
    assert float(b.memory["weights"][0]) < float(a.memory["weights"][0])  # experts spread over more GPUs


def test_calibrations_merge_general_then_specific(tmp_path) -> None:  # type: ignore[no-untyped-def]
    overlay = tmp_path / "cal.yaml"
    overlay.write_text(
        "calibrations:\n"
        "  - {id: h100-gemm, name: t, engine: training, applies_to: [h100-sxm], precision: fp8,\n"
        "     values: {gemm_efficiency: 0.9}, source: test overlay, as_of: 2026, basis: assumption}\n"
    )
    cat = load_catalog([overlay])
    assert efficiencies(cat, cat.accelerators["h100-sxm"], "fp8").gemm_efficiency == 0.9
    assert efficiencies(cat, cat.accelerators["b200"], "fp8").gemm_efficiency != 0.9
    assert efficiencies(cat, cat.accelerators["h100-sxm"], "bf16").gemm_efficiency != 0.9
    legacy = efficiencies(cat, cat.accelerators["a100-sxm-80gb"], "bf16", "megatron-2021")
    assert legacy.comm_overlap == 0 and legacy.fused_attention == 0


def test_missing_constant_is_a_catalog_error(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="no training calibration"):
        efficiencies(catalog, catalog.accelerators["h100-sxm"], "fp8", "no-such-framework")
