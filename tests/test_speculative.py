"""Speculative decoding: a one-layer draft proposes tokens that the model verifies together.

Tokens per iteration, the cost of an iteration that verifies drafts (the KV cache is read once),
serving and disaggregated serving with drafts, the capacity plan at a tight TPOT, and the CLI and
scenario fields with their refusals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.cli import main
from factoryplan.perf import capacity
from factoryplan.perf.inference import Parallel, Precision, iteration
from factoryplan.perf.serving import (
    closed_loop_disaggregated,
    decode_iteration,
    decode_iterations,
    serve,
    tokens_per_step,
)

from .conftest import FP8, cli_json, plan_workload, serving_setup


def test_tokens_per_step() -> None:
    """1 + a + ... + a^d: the verified token always counts, each draft when the ones before it did."""
    assert float(tokens_per_step(0, 0.0)) == 1.0
    assert float(tokens_per_step(0, 0.9)) == 1.0
    assert float(tokens_per_step(1, 0.85)) == pytest.approx(1.85)
    assert float(tokens_per_step(3, 0.8)) == pytest.approx(1 + 0.8 + 0.64 + 0.512)
    assert float(tokens_per_step(3, 1.0)) == 4.0
    assert float(tokens_per_step(3, 0.0)) == 1.0


def test_verifying_drafts_reads_the_cache_once(catalog: Catalog) -> None:
    """An iteration verifying 4 tokens a sequence costs far less than 4 iterations at long context
    (weights and KV cache read once), more than one; without drafts it is the plain iteration."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    par = Parallel(tp=4)
    plain = float(iteration(s, hw, par, FP8, k, decode_seqs=16.0, ctx=32000.0).total)
    assert float(decode_iteration(s, hw, par, FP8, k, seqs=16.0, ctx=32000.0)) == plain
    spec = float(decode_iteration(s, hw, par, FP8, k, seqs=16.0, ctx=32000.0, draft_tokens=3.0))
    assert plain < spec < 2.0 * plain
    verify = iteration(s, hw, par, FP8, k, decode_seqs=16.0, ctx=32000.0, decode_tokens=4.0)
    one = iteration(s, hw, par, FP8, k, decode_seqs=16.0, ctx=32000.0)
    assert float(verify.attention) < 2.0 * float(one.attention)  # memory-bound: the KV cache is read once
    assert spec > float(verify.total)  # the drafts' own passes come on top


def test_serving_with_drafts(catalog: Catalog) -> None:
    """No drafts is the default; with drafts a user gets tokens faster at low load, and TPOT is
    the iteration over the tokens it yields when no prompt interferes."""
    s, hw, k = serving_setup(catalog, "deepseek-r1", "h200-sxm")
    par = Parallel(tp=8, ep=8)
    base = serve(s, hw, par, FP8, k, concurrency=1.0, isl=1000.0, osl=4000.0)
    none = serve(s, hw, par, FP8, k, concurrency=1.0, isl=1000.0, osl=4000.0, draft_tokens=0.0, acceptance=0.9)
    mtp = serve(s, hw, par, FP8, k, concurrency=1.0, isl=1000.0, osl=4000.0, draft_tokens=3.0, acceptance=0.8)
    assert float(np.asarray(none.tpot_s)) == float(np.asarray(base.tpot_s))
    assert float(np.asarray(mtp.tpot_s)) < 0.5 * float(np.asarray(base.tpot_s))
    gain = float(tokens_per_step(3.0, 0.8))
    assert float(np.asarray(mtp.tpot_s)) == pytest.approx(float(np.asarray(mtp.decode_step_s)) / gain, rel=1e-3)
    assert float(np.asarray(mtp.ttft_s)) == pytest.approx(float(np.asarray(base.ttft_s)), rel=0.05)


def test_disaggregated_decode_workers_with_drafts(catalog: Catalog) -> None:
    s, hw, k = serving_setup(catalog, "deepseek-r1", "h200-sxm")

    def run(drafts: float) -> Any:
        return closed_loop_disaggregated(s, hw, Parallel(tp=8, ep=8), Parallel(tp=1, dp=8, ep=8), FP8, k,
                                         concurrency=64.0, isl=2000.0, osl=1000.0, prefill_workers=1.0,
                                         decode_workers=1.0, draft_tokens=drafts, acceptance=0.8)

    plain, mtp = run(0.0), run(2.0)
    assert float(np.asarray(mtp.tpot_s)) < float(np.asarray(plain.tpot_s))
    assert float(np.asarray(mtp.output_tokens_per_s)) > float(np.asarray(plain.output_tokens_per_s))


def test_capacity_at_a_tight_tpot(catalog: Catalog) -> None:
    """At a 10 ms TPOT a replica without drafts serves few users; with three drafts many more."""
    s, hw, k = serving_setup(catalog, "deepseek-r1", "b200")
    fp4 = Precision("fp4", "fp4", "fp8")
    plain = capacity.Demand(requests_per_s=20.0, isl=2000.0, osl=1000.0, ttft_s=2.0, tpot_s=0.01)
    mtp = capacity.Demand(requests_per_s=20.0, isl=2000.0, osl=1000.0, ttft_s=2.0, tpot_s=0.01, draft_tokens=3.0,
                          acceptance=0.8)
    assert capacity.plan_capacity(s, hw, fp4, k, mtp).gpus < 0.5 * capacity.plan_capacity(s, hw, fp4, k, plain).gpus


def test_cli_draft_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("serve", "-m", "deepseek-r1", "-g", "b200", "--precision", "fp4", "--tp", "8", "--ep", "8",
            "--isl", "1024", "--osl", "2048", "-c", "1")
    plain = cli_json(capsys, *args)
    mtp = cli_json(capsys, *args, "--draft-tokens", "3", "--acceptance", "0.8")
    assert (plain["tokens_per_step"], plain["draft_tokens"]) == (1.0, 0)
    assert mtp["tokens_per_step"] == pytest.approx(2.952) and mtp["tpot_ms"] < 0.5 * plain["tpot_ms"]
    assert main([*args, "--draft-tokens", "3"]) == 2
    assert "--acceptance" in capsys.readouterr().err
    assert main([*args, "--acceptance", "0.8"]) == 2
    assert "--draft-tokens" in capsys.readouterr().err


def test_scenario_draft_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = ("name: fast\nregion: kr\nhardware: [b200]\nworkloads:\n  - name: chat\n    kind: inference\n"
                "    model: deepseek-r1\n    requests_per_s: 20\n    input_tokens: 2000\n    output_tokens: 1000\n"
                "    ttft_ms: 2000\n    tpot_ms: 10\n    precision: fp4\n")
    gpus = [plan_workload(capsys, tmp_path / f"s{len(extra)}.yaml", scenario + extra)["gpus"]
            for extra in ("", "    draft_tokens: 3\n    draft_acceptance: 0.8\n")]
    assert gpus[1] < 0.5 * gpus[0]
    for extra, text in (("    draft_tokens: 3\n", "draft_acceptance"), ("    draft_acceptance: 0.8\n", "draft_tokens")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(scenario + extra)
        assert main(["plan", str(bad)]) == 2
        assert text in capsys.readouterr().err


def test_a_short_answer_still_takes_an_iteration(catalog: Catalog) -> None:
    """Two output tokens with three drafts: the one token after the first takes a whole iteration;
    TPOT is not divided by the tokens the iteration could have yielded."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    r = serve(s, hw, Parallel(tp=4), FP8, k, concurrency=1.0, isl=1000.0, osl=2.0, draft_tokens=3.0, acceptance=0.8)
    assert float(np.asarray(r.tpot_s)) == pytest.approx(float(np.asarray(r.decode_step_s)), rel=1e-6)


def test_whole_decode_iterations_of_a_request() -> None:
    assert decode_iterations(1, 3, 0.8) == 0  # the first token comes from the prompt pass
    assert decode_iterations(2, 3, 0.8) == 1  # however many tokens the one iteration could yield
    assert decode_iterations(1001, 0, 0.0) == 1000
    assert decode_iterations(1001, 1, 1.0) == 500  # two tokens an iteration, exactly
    assert decode_iterations(1001, 1, 0.5) == 667  # ceil(1000 / 1.5)


def test_host_work_overlaps_the_drafts_too(catalog: Catalog) -> None:
    """The engine's host work per sequence overlaps the GPU's whole iteration, the draft's passes
    included: where it is the longer, drafts add nothing; where the GPU is, they add their passes."""
    from dataclasses import replace

    s, hw, k = serving_setup(catalog, "llama-3.1-8b", "b200")
    slow = replace(k, cpu_sequence_s=200e-6)
    par = Parallel(tp=8)
    with_drafts = float(decode_iteration(s, hw, par, FP8, slow, seqs=512.0, ctx=2000.0, draft_tokens=3.0))
    without = float(decode_iteration(s, hw, par, FP8, slow, seqs=512.0, ctx=2000.0))
    assert with_drafts == pytest.approx(without) == pytest.approx(512 * 200e-6)
    quick = replace(k, cpu_sequence_s=0.0)
    plain = iteration(s, hw, par, FP8, quick, decode_seqs=4.0, ctx=2000.0, decode_tokens=4.0).total
    assert float(decode_iteration(s, hw, par, FP8, quick, seqs=4.0, ctx=2000.0, draft_tokens=3.0)) > float(plain)
