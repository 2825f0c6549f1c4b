"""The configuration search: enumeration, rejection reasons, ranking, fixed degrees, plan sizing."""

from __future__ import annotations

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.perf import training_plan
from factoryplan.perf.flops import model_shape
from factoryplan.perf.search import REASONS, check_one, search
from factoryplan.perf.training import Configs, Job, efficiencies, hardware
from factoryplan.perf.training_run import catalog_run_assumptions


def _setup(catalog: Catalog, model: str, gpu: str, precision: str = "fp8"):  # type: ignore[no-untyped-def]
    acc = catalog.accelerators[gpu]
    return (model_shape(catalog.models[model]), hardware(acc, catalog.systems[acc.default_system]),
            efficiencies(catalog, acc, precision))


def test_405b_on_16k_gpus(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-405b", "h100-sxm")
    r = search(shape, hw, eff, Job(8192, 2048, 16384, "fp8"))
    ev = r.evaluation
    assert len(ev.configs) > 10_000
    assert len(ev.configs) + sum(r.rejected.values()) - r.rejected.get(REASONS[9][1], 0) == r.grid_size
    best = r.best
    fits = np.flatnonzero(ev.fits)
    assert ev.fits[best] and ev.tokens_per_s[best] == ev.tokens_per_s[fits].max()
    cfg = ev.configs.row(best)
    assert int(cfg["tp"]) * int(cfg["pp"]) * int(cfg["cp"]) * int(cfg["dp"]) == 16384
    assert 2048 % (int(cfg["dp"]) * int(cfg["micro_batch"])) == 0
    assert r.rejected[REASONS[9][1]] > 0  # some configurations do not fit in 80 GB
    assert list(ev.tokens_per_s[r.ranking]) == sorted(ev.tokens_per_s[r.ranking], reverse=True)


def test_fixed_degrees_are_kept(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-70b", "h100-sxm")
    r = search(shape, hw, eff, Job(8192, 128, 64, "fp8"), {"tp": 4, "pp": 8, "vpp": 5, "zero": 1})
    c = r.evaluation.configs
    assert set(c.tp) == {4} and set(c.pp) == {8} and set(c.vpp) == {5} and set(c.zero) == {1}
    assert set((c.tp * c.pp * c.cp * c.dp).tolist()) == {64}


def test_moe_searches_expert_parallelism(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "qwen3-235b-a22b", "h100-sxm")
    r = search(shape, hw, eff, Job(4096, 2048, 256, "fp8"), {"tp": 2, "pp": 8, "vpp": 4})
    eps = set(r.evaluation.configs.ep.tolist())
    assert {1, 2, 4, 8, 16, 32} <= eps
    assert all(128 % e == 0 for e in eps)


def test_nothing_fits_is_infeasible_with_the_need(catalog: Catalog) -> None:
    shape, hw, eff = _setup(catalog, "llama-3.1-405b", "h100-sxm")
    r = search(shape, hw, eff, Job(8192, 8, 8, "fp8"))
    with pytest.raises(InfeasibleError, match="GiB per GPU"):
        _ = r.best


@pytest.mark.parametrize(
    ("degrees", "field"),
    [
        ({"tp": 3}, "--tp"),  # 64 heads
        ({"pp": 7}, "--pp"),  # 80 layers, 82
        ({"tp": 8, "pp": 2, "cp": 2, "dp": 1}, "--gpus"),  # 64 GPUs / 32
        ({"mb": 3}, "--global-batch"),
    ],
)
def test_single_configuration_errors_name_the_rule(catalog: Catalog, degrees: dict[str, int], field: str) -> None:
    shape, hw, _ = _setup(catalog, "llama-3.1-70b", "h100-sxm")
    base = {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "ep": 1, "dp": 0, "mb": 1, "recompute": 0, "zero": 1}
    base.update(degrees)
    if not base["dp"]:
        base["dp"] = 64 // (base["tp"] * base["pp"] * base["cp"])
    with pytest.raises(FactoryplanError) as err:
        check_one(shape, hw, Job(8192, 128, 64, "fp8"), Configs.one(**base))
    assert err.value.field == field


def test_usable_counts_divide(catalog: Catalog) -> None:
    shape, hw, _ = _setup(catalog, "llama-3.1-70b", "gb200")
    counts = training_plan.usable_counts(shape, hw, 8192, 2048, 576)
    assert counts and all(0.8 * 576 <= n <= 576 for n in counts)
    assert 576 not in counts  # 576 = 2^6 x 9: no degree of an 80-layer, 64-head model takes the 9


def test_deadline_sizing_is_the_smallest_count(catalog: Catalog) -> None:
    acc = catalog.accelerators["h100-sxm"]
    system = catalog.systems[acc.default_system]
    eff = efficiencies(catalog, acc, "bf16")
    asm = catalog_run_assumptions(catalog)
    arch = catalog.models["llama-3.1-8b"]
    sized = training_plan.size_for_deadline(arch, acc, system, eff, tokens=1e12, deadline_days=30, precision="bf16",
                                            seq_len=8192, global_batch_tokens=4 * 2**20, run_asm=asm)
    assert sized.gpus % system.gpus == 0 and sized.days <= 30
    fewer = training_plan._evaluate(arch, acc, system, eff, 8192, 512, "bf16", 1e12, sized.gpus - system.gpus, asm)
    assert fewer is None or fewer.days > 30
    with pytest.raises(InfeasibleError, match="cannot train"):
        training_plan.size_for_deadline(arch, acc, system, eff, tokens=1e14, deadline_days=0.5, precision="bf16",
                                        seq_len=8192, global_batch_tokens=4 * 2**20, run_asm=asm)
