"""A sweep evaluated a block of configurations at a time (``perf.blocks``) gives what one pass gives."""

from __future__ import annotations

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.perf import serving
from factoryplan.perf.blocks import BLOCK, in_blocks, join
from factoryplan.perf.inference import Parallel, _power

from .conftest import FP8, serving_setup


@pytest.mark.parametrize(("model", "gpu", "engine"), [("deepseek-r1", "gb200", "trtllm"),
                                                       ("llama-3.1-70b", "h100-sxm", "vllm")])
def test_a_sweep_in_blocks_equals_one_pass(catalog: Catalog, model: str, gpu: str, engine: str) -> None:
    s, hw, k = serving_setup(catalog, model, gpu, engine)
    rng = np.random.default_rng(1)
    n = 2 * BLOCK + 1_000  # three blocks, the last one short
    tp = 2.0 ** rng.integers(0, 4, n)
    dp = 2.0 ** rng.integers(0, 2, n) if s.moe_layers else np.ones(n)
    par = Parallel(tp=tp, dp=dp, ep=tp * dp if s.moe_layers else 1.0)
    kw = {"concurrency": np.round(2.0 ** rng.uniform(0, 9, n)), "isl": np.round(2.0 ** rng.uniform(7, 14, n)),
          "osl": 1000.0, "burst": rng.random(n) < 0.5, "prefix": 0.0, "draft_tokens": 0.0, "acceptance": 0.0}
    blocked = serving.serve(s, hw, par, FP8, k, **kw)
    whole = serving._serve(s, hw, par, FP8, k, **kw, isl_cv=0.0)
    for name in ("ttft_s", "tpot_s", "output_tokens_per_s", "prefill_s", "memory_per_gpu_bytes", "balance_s"):
        assert np.shape(getattr(blocked, name)) == (n,)
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(blocked.mem.max_concurrency, whole.mem.max_concurrency)
    np.testing.assert_array_equal(blocked.mem.fits, whole.mem.fits)


def test_blocks_keep_the_inputs_shape_and_single_values() -> None:
    a = np.arange(3 * 7.0).reshape(3, 7)
    b = np.arange(7.0)
    out = in_blocks(lambda v: v["a"] + v["b"] * v["c"], {"a": a, "b": b, "c": 2.0}, block=4)
    np.testing.assert_array_equal(out, a + 2.0 * b)
    assert in_blocks(lambda v: v["a"], {"a": np.ones(8)}, block=4) is None  # two blocks: one pass
    assert in_blocks(lambda v: v["a"], {"a": np.ones(3), "b": np.ones(4)}, block=1) is None  # no common shape
    assert join([1.5, 1.5], (4,), [2, 2]) == 1.5
    np.testing.assert_array_equal(join([1.0, 2.0], (4,), [2, 2]), [1.0, 1.0, 2.0, 2.0])
    with pytest.raises(ValueError):
        join([np.ones(3), np.ones(2)], (4,), [2, 2])


def test_whole_powers_match_the_general_power() -> None:
    base = np.linspace(0.0, 1.0, 101)
    for e in (0.0, 1.0, 6.0, 8.0, 22.0, 64.0):
        np.testing.assert_allclose(_power(base, np.asarray(e)), base**e, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(_power(base, np.asarray(2.5)), base**2.5)
