"""Prefix caching: leading prompt tokens the engine's cache already holds are not prefilled.

The attention pairs of the new tokens over a cached prefix, a step's prompt work with and
without the cache, serving (TTFT falls, memory per sequence does not), disaggregated serving, the
capacity plan, the CLI flag and the scenario field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.cli import main
from factoryplan.perf import capacity
from factoryplan.perf.inference import Parallel, attended_pairs, iteration
from factoryplan.perf.serving import cached_prompt, cached_tokens, closed_loop_disaggregated, serve

from .conftest import FP8, cli_json, plan_workload, serving_setup


def test_attended_pairs() -> None:
    """N new tokens after P cached ones attend to N·(P + N/2) keys; with a window W each to at
    most W; no cache is the whole prompt's causal S²/2 (S·W - W²/2 with a window)."""
    assert attended_pairs(0.0, 1000.0) == 500_000.0
    assert attended_pairs(3000.0, 1000.0) == 1000 * (3000 + 500)
    assert attended_pairs(0.0, 1000.0, 4096.0) == 500_000.0  # shorter than the window
    assert attended_pairs(0.0, 8000.0, 4096.0) == 8000 * 4096 - 4096**2 / 2
    assert attended_pairs(6000.0, 1000.0, 4096.0) == 1000 * 4096  # every new token sees a full window
    assert attended_pairs(3000.0, 2000.0, 4096.0) == (4096**2 - 3000**2) / 2 + 4096 * 904
    # the cached prefix and the new tokens add up to the whole prompt
    assert attended_pairs(0.0, 3000.0) + attended_pairs(3000.0, 1000.0) == attended_pairs(0.0, 4000.0)


def test_cached_tokens_cost_attention_only(catalog: Catalog) -> None:
    """A pass prefilling 1,000 new tokens after 7,000 cached ones costs less than the whole 8,000-token
    prompt and more than a 1,000-token prompt alone (its queries attend to the cache)."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    par = Parallel(tp=4)

    def step(length: float, prefix: float = 0.0) -> Any:
        return iteration(s, hw, par, FP8, k, decode_seqs=0.0, ctx=8000.0, prompts=1.0, prompt_len=length,
                         prompt_prefix=prefix)

    whole, cached, short = step(8000.0), step(1000.0, 7000.0), step(1000.0)
    assert float(short.total) < float(cached.total) < float(whole.total)
    assert float(cached.gemm) == pytest.approx(float(short.gemm))  # the projections see the new tokens only
    assert float(cached.attention) > float(short.attention)


def test_serving_with_a_prefix_cache(catalog: Catalog) -> None:
    """No cached tokens is the default; a cache cuts TTFT and the prompt's pass, raises throughput,
    and leaves each sequence's KV cache (and so the users that fit) as it was."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    conc = np.array([4.0, 32.0, 128.0])

    def run(prefix: float) -> Any:
        return serve(s, hw, Parallel(tp=2), FP8, k, concurrency=conc, isl=8000.0, osl=500.0, prefix=prefix)

    base = serve(s, hw, Parallel(tp=2), FP8, k, concurrency=conc, isl=8000.0, osl=500.0)
    none, half, most = run(0.0), run(4000.0), run(7200.0)
    assert np.array_equal(np.asarray(base.ttft_s), np.asarray(none.ttft_s))
    assert np.all(np.asarray(most.ttft_s) < np.asarray(half.ttft_s))
    assert np.all(np.asarray(half.ttft_s) < np.asarray(none.ttft_s))
    assert float(np.asarray(most.prefill_s)) < 0.3 * float(np.asarray(none.prefill_s))
    assert np.all(np.asarray(most.output_tokens_per_s) > np.asarray(none.output_tokens_per_s))
    assert np.array_equal(np.asarray(most.mem.max_concurrency), np.asarray(none.mem.max_concurrency))
    # a prefix as long as the prompt still prefills its last token
    whole = serve(s, hw, Parallel(tp=2), FP8, k, concurrency=4.0, isl=8000.0, osl=500.0, prefix=1e9)
    assert math.isfinite(float(np.asarray(whole.ttft_s))) and float(np.asarray(whole.ttft_s)) > 0


def test_disaggregated_prefill_workers_skip_the_cache(catalog: Catalog) -> None:
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    def run(prefix: float) -> Any:
        return closed_loop_disaggregated(s, hw, Parallel(tp=2), Parallel(tp=4), FP8, k, concurrency=64.0,
                                         isl=8000.0, osl=500.0, prefill_workers=1.0, decode_workers=1.0,
                                         prefix=prefix)

    cold, warm = run(0.0), run(6000.0)
    assert float(np.asarray(warm.ttft_s)) < float(np.asarray(cold.ttft_s))
    assert float(np.asarray(warm.output_tokens_per_s)) >= float(np.asarray(cold.output_tokens_per_s))


def test_capacity_needs_fewer_gpus_with_a_warm_cache(catalog: Catalog) -> None:
    """Long agent prompts, 90% of each cached: far fewer GPUs than prefilling them whole."""
    s, hw, k = serving_setup(catalog, "llama-3.3-70b", "h200-sxm")
    cold = capacity.Demand(requests_per_s=10.0, isl=30000.0, osl=800.0, ttft_s=3.0, tpot_s=0.04)
    warm = capacity.Demand(requests_per_s=10.0, isl=30000.0, osl=800.0, ttft_s=3.0, tpot_s=0.04, prefix=27000.0)
    n_cold = capacity.plan_capacity(s, hw, FP8, k, cold).gpus
    n_warm = capacity.plan_capacity(s, hw, FP8, k, warm).gpus
    assert n_warm < 0.5 * n_cold


def test_cli_prefix_hit(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("serve", "-m", "llama-3.3-70b", "-g", "h200", "--isl", "8000", "--osl", "500")
    cold = cli_json(capsys, *args, "--tp", "2", "-c", "32")
    warm = cli_json(capsys, *args, "--tp", "2", "-c", "32", "--prefix-hit", "0.9")
    assert (cold["cached_prompt_tokens"], warm["cached_prompt_tokens"]) == (0, 7200)
    assert warm["ttft_ms"] < 0.5 * cold["ttft_ms"] and warm["fits"]
    plan = cli_json(capsys, *args, "--rps", "10", "--prefix-hit", "0.9")
    assert plan["cached_prompt_tokens"] == 7200 and plan["gpus"] < cli_json(capsys, *args, "--rps", "10")["gpus"]
    assert main([*args, "--tp", "2", "-c", "32", "--prefix-hit", "1"]) == 2
    assert "--prefix-hit" in capsys.readouterr().err


def test_scenario_prefix_hit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = ("name: agents\nregion: kr\nhardware: [h200-sxm]\nworkloads:\n  - name: coding\n    kind: inference\n"
                "    model: llama-3.3-70b\n    requests_per_s: 10\n    input_tokens: 30000\n    output_tokens: 800\n"
                "    ttft_ms: 3000\n    tpot_ms: 40\n")
    gpus = [plan_workload(capsys, tmp_path / f"s{hit}.yaml", scenario + f"    prefix_hit: {hit}\n")["gpus"]
            for hit in ("0", "0.9")]
    assert gpus[1] < 0.5 * gpus[0]
    report = tmp_path / "r.html"
    assert main(["plan", str(tmp_path / "s0.9.yaml"), "--out", str(report)]) == 0
    capsys.readouterr()
    assert "27,000 prompt tokens of each request in the prefix cache" in report.read_text(encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(scenario + "    prefix_hit: 1.2\n")
    assert main(["plan", str(bad)]) == 2
    assert "workloads[0].prefix_hit" in capsys.readouterr().err


def test_measured_rows_with_a_prefix_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A measured file's optional prefix column (cached prompt tokens) is predicted with the cache;
    a prefix that is not a whole number below the prompt is refused with the reason."""
    import csv

    from factoryplan.catalog.load import load_catalog
    from factoryplan.validation.inference import MEASURED, load_measured, predict

    with MEASURED.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [*(reader.fieldnames or []), "prefix"]
        row = next(r for r in reader if r["isl"] == "8192" and r["mode"] == "agg")
    path = tmp_path / "points.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for i, prefix in enumerate(("", "6144", "8192", "12.5")):
            writer.writerow({**row, "id": f"r{i}", "prefix": prefix})
    cat = load_catalog()
    loaded = load_measured(cat, path)
    assert [p.prefix for p in loaded.points] == [0.0, 6144.0]
    assert [reason.split(" is ")[0] for _, reason in loaded.skipped] == ["prefix '8192'", "prefix '12.5'"]
    cold, warm = predict(cat, loaded.points)
    assert warm.ttft_ms < cold.ttft_ms


def test_at_least_one_prompt_token_is_prefilled() -> None:
    assert cached_tokens(0.5, 1000) == 500
    assert cached_tokens(0.9999, 1000) == 999  # rounds to 1000, kept one short
    assert cached_tokens(0.0, 1000) == 0
    assert cached_prompt(np.array([-5.0, 300.0, 5000.0]), 1000).tolist() == [0.0, 300.0, 999.0]
