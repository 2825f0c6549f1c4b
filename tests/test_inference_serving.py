"""Serving under in-flight batching: the closed-loop identities, KV capacity and queueing, disaggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.perf.inference import (
    Constants,
    Hardware,
    ModelShape,
    Parallel,
    constants_from_catalog,
    kv_bytes_per_sequence_per_gpu,
    weight_bytes_per_gpu,
)
from factoryplan.perf.serving import _prefill_passes, memory, serve

from .conftest import FP8, serving_setup

CONC = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=float)


setup = serving_setup


def test_closed_loop_identity(catalog: Catalog) -> None:
    """Little's law: requests/s = C / (TTFT + (OSL-1)·TPOT) for the running users."""
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    r = serve(s, hw, Parallel(tp=2), FP8, k, concurrency=CONC, isl=2000, osl=500)
    cycle = np.asarray(r.ttft_s) + 499 * np.asarray(r.tpot_s)
    assert np.allclose(np.asarray(r.requests_per_s), CONC / cycle)
    assert np.allclose(np.asarray(r.output_tokens_per_s), np.asarray(r.requests_per_s) * 500)
    assert np.allclose(np.asarray(r.output_tokens_per_s_per_gpu), np.asarray(r.output_tokens_per_s) / 2)
    assert np.allclose(np.asarray(r.tokens_per_s_per_user), 1 / np.asarray(r.tpot_s))


def test_batching_trades_latency_for_throughput(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "qwen3-32b", "h100-sxm")
    r = serve(s, hw, Parallel(tp=2), FP8, k, concurrency=CONC, isl=1024, osl=512)
    assert np.all(np.diff(np.asarray(r.tpot_s)) > 0)
    assert np.all(np.diff(np.asarray(r.ttft_s)) >= 0)
    tput = np.asarray(r.output_tokens_per_s)
    assert np.all(np.diff(tput) > 0)
    assert tput[-1] / tput[0] > 20  # decode is weight-bound at one user; 128 users share the read


def test_single_user_latency_is_prefill_plus_decode(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-8b", "h100-sxm")
    r = serve(s, hw, Parallel(tp=1), FP8, k, concurrency=1, isl=2000, osl=200)
    assert float(r.tpot_s) == pytest.approx(float(r.decode_step_s))  # nobody else's prefill interferes
    # the engine's per-request latency, its own prompt, and the iterations until the token is out
    floor = k.request_overhead_s + float(r.prefill_s)
    assert floor < float(r.ttft_s) < floor + (k.first_token_steps + 1.0) * float(r.decode_step_s)


def test_burst_start_queues_the_first_wave(catalog: Catalog) -> None:
    """A harness that starts every user at once: the first wave's prompts queue for full
    iterations, so the run's mean TTFT exceeds the steady state's, more so with more users; one
    user has no wave to queue behind."""
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    steady = serve(s, hw, Parallel(tp=8), FP8, k, concurrency=CONC, isl=1024, osl=1024)
    burst = serve(s, hw, Parallel(tp=8), FP8, k, concurrency=CONC, isl=1024, osl=1024, burst=True)
    extra = np.asarray(burst.ttft_s) - np.asarray(steady.ttft_s)
    assert np.all(extra[3:] > 0) and np.all(np.diff(extra[3:]) > 0)
    assert np.asarray(burst.ttft_s)[-1] > 1.5 * np.asarray(steady.ttft_s)[-1]
    one_s = serve(s, hw, Parallel(tp=8), FP8, k, concurrency=1, isl=1024, osl=1024)
    one_b = serve(s, hw, Parallel(tp=8), FP8, k, concurrency=1, isl=1024, osl=1024, burst=True)
    assert float(one_b.ttft_s) == pytest.approx(float(one_s.ttft_s), rel=0.05)


def test_prompts_share_iterations_when_many_users_finish_per_step() -> None:
    """m = c·K prompt chunks over S decode iterations: few users, one chunk per iteration; many,
    every iteration carries some (S·(1 - e^(-m/S))), never fewer than the budget admits."""
    few = float(_prefill_passes(4.0, 1.0, 1023.0, 1024.0, 8000.0))
    assert few == pytest.approx(4.0, rel=0.01)
    many = float(_prefill_passes(512.0, 1.0, 99.0, 1000.0, 7680.0))
    assert many == pytest.approx(99.0 * (1 - math.exp(-512 / 99)))
    budget = float(_prefill_passes(512.0, 1.0, 99.0, 4000.0, 7680.0))
    assert budget == pytest.approx(512 * 4000 / 7680)  # the token budget, not the iterations, limits
    assert float(_prefill_passes(1.0, 1.0, 10.0, 100.0, 8000.0)) == 1.0


def test_kv_capacity_sets_max_concurrency(catalog: Catalog) -> None:
    """C_max = floor(room / kv(ISL + r·OSL)); the engine's batch limit caps it."""
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    m = memory(s, hw, Parallel(tp=1), FP8, k, 1024, 8192)
    weights = float(weight_bytes_per_gpu(s, Parallel(tp=1), FP8))
    room = k.memory_fraction * (float(hw.hbm_bytes) - k.reserved_bytes - weights)  # TensorRT-LLM: of free memory
    per_seq = float(kv_bytes_per_sequence_per_gpu(s, Parallel(tp=1), "fp8", 1024 + 8192))
    assert float(m.max_concurrency) == np.floor(room / per_seq)
    assert 30 < float(m.max_concurrency) < 64  # measured: 32 users run, 64 queue (TTFT 80 s)
    small = memory(s, hw, Parallel(tp=8), FP8, k, 128, 128)
    assert float(small.max_concurrency) == k.max_batch
    vllm = constants_from_catalog(catalog, "vllm")
    assert float(memory(s, hw, Parallel(tp=8), FP8, vllm, 128, 128).max_concurrency) == vllm.max_batch


def test_users_beyond_capacity_queue(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    r = serve(s, hw, Parallel(tp=1), FP8, k, concurrency=np.array([32.0, 128.0]), isl=1024, osl=8192)
    ttft, tpot, run = (np.asarray(x) for x in (r.ttft_s, r.tpot_s, r.running))
    assert run[1] < 128 and run[0] == 32
    assert ttft[1] > 50 * ttft[0]  # waiting for a KV slot: minutes, not milliseconds
    assert tpot[1] == pytest.approx(tpot[0], rel=0.5)  # the running batch is capped, TPOT is not


def test_does_not_fit_is_flagged(catalog: Catalog) -> None:
    s, hw, k = setup(catalog, "llama-3.1-405b", "h100-sxm")
    assert not bool(np.asarray(memory(s, hw, Parallel(tp=2), FP8, k, 1000, 1000).fits))
    assert bool(np.asarray(memory(s, hw, Parallel(tp=8), FP8, k, 1000, 1000).fits))


def test_attention_dp_spreads_prefill(catalog: Catalog) -> None:
    """Eight attention-DP ranks prefill eight prompts side by side: at high load the per-prompt
    work that interferes with decoding is far less than one rank's prefill of one prompt."""
    s, hw, k = setup(catalog, "deepseek-r1", "h200-sxm")
    adp = serve(s, hw, Parallel(tp=1, dp=8, moe_tp=1, ep=8), FP8, k, concurrency=256, isl=1024, osl=1024)
    tpot_minus_step = float(adp.tpot_s) - float(adp.decode_step_s)
    assert tpot_minus_step < 255 * float(adp.prefill_s) / 1023 / 2


def test_sglang_pauses_decoding_for_prefill(catalog: Catalog) -> None:
    s, hw, _ = setup(catalog, "qwen3-32b", "h100-sxm")
    k = constants_from_catalog(catalog, "sglang")
    assert not k.mixes_prefill
    r = serve(s, hw, Parallel(tp=4), FP8, k, concurrency=64, isl=4096, osl=256)
    assert float(r.tpot_s) > float(r.decode_step_s)


def _steps(s: ModelShape, hw: Hardware, k: Constants, par: Parallel, isl: float, ctx: float,
           prompts: float = 0.0, seqs: float = 0.0) -> float:
    from factoryplan.perf.inference import iteration

    return float(iteration(s, hw, par, FP8, k, decode_seqs=seqs, ctx=ctx, prompts=prompts, prompt_len=isl).total)


def test_closed_loop_disaggregated_single_user(catalog: Catalog) -> None:
    """One user: TTFT is the engine's request latency plus one prompt on a prefill worker; TPOT one
    decode step of one sequence plus the KV-cache transfer spread over the output; X = OSL / cycle."""
    from factoryplan.perf.serving import closed_loop_disaggregated

    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    pre, dec = Parallel(tp=2), Parallel(tp=4)
    r = closed_loop_disaggregated(s, hw, pre, dec, FP8, k, concurrency=1, isl=2000, osl=500, prefill_workers=1,
                                  decode_workers=1)
    prefill = _steps(s, hw, k, pre, 2000, 2000, prompts=1.0)
    transfer = float(kv_bytes_per_sequence_per_gpu(s, pre, "fp8", 2000.0)) / hw.nic_bytes_s
    assert float(r.ttft_s) == pytest.approx(k.request_overhead_s + prefill, rel=0.02)
    assert float(r.tpot_s) == pytest.approx(_steps(s, hw, k, dec, 2000, 2250, seqs=1.0) + transfer / 499, rel=1e-6)
    assert float(r.output_tokens_per_s) == pytest.approx(500 / (float(r.ttft_s) + 499 * float(r.tpot_s)), rel=0.01)


def test_closed_loop_disaggregated_bottlenecks(catalog: Catalog) -> None:
    """Many users: one prefill worker caps the request rate at its prompt throughput (more users only
    queue for it, in TTFT); with prefill to spare the decode workers' batch limit caps it (users wait
    for a decode slot, in TPOT). Doubling the bottleneck about doubles the throughput."""
    from factoryplan.perf.serving import closed_loop_disaggregated

    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    pre, dec = Parallel(tp=2), Parallel(tp=4)
    conc = np.array([256.0, 1024.0])

    def run(n_p: float, n_d: float, cap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = closed_loop_disaggregated(s, hw, pre, dec, FP8, k, concurrency=conc, isl=2000, osl=500,
                                      prefill_workers=n_p, decode_workers=n_d, decode_batch_max=cap)
        return np.asarray(r.output_tokens_per_s), np.asarray(r.ttft_s), np.asarray(r.tpot_s)

    per_pass = math.floor(k.token_budget / 2000)
    capacity = per_pass / _steps(s, hw, k, pre, 2000, 2000, prompts=per_pass) * 500  # output tokens/s, 1 worker
    x1, ttft1, _ = run(1, 4, 256)
    assert np.all(x1 <= capacity * 1.001) and x1[1] == pytest.approx(capacity, rel=0.02)
    assert ttft1[1] > 3 * ttft1[0]  # four times the users, the same rate: they wait for the prefill worker
    x2, _, _ = run(2, 4, 256)
    assert x2[1] == pytest.approx(2 * x1[1], rel=0.05)
    y1, _, tpot1 = run(16, 1, 32)
    decode_rate = 32 / (499 * _steps(s, hw, k, dec, 2000, 2250, seqs=32.0)) * 500
    assert y1[1] == pytest.approx(decode_rate, rel=0.02)
    assert tpot1[1] > 3 * tpot1[0] * 0.9 and tpot1[1] > tpot1[0]
    y2, _, _ = run(16, 2, 32)
    assert y2[1] == pytest.approx(2 * y1[1], rel=0.05)


def test_closed_loop_disaggregated_beats_aggregated_tpot(catalog: Catalog) -> None:
    """The same decode GPUs without prompts in their iterations: a lower TPOT than aggregated serving
    at the same concurrency (the reason to disaggregate), and TTFT grows with load."""
    from factoryplan.perf.serving import closed_loop_disaggregated

    s, hw, k = setup(catalog, "llama-3.1-70b", "h200-sxm")
    agg = serve(s, hw, Parallel(tp=4), FP8, k, concurrency=CONC[3:], isl=2000, osl=500)
    dis = closed_loop_disaggregated(s, hw, Parallel(tp=4), Parallel(tp=4), FP8, k, concurrency=CONC[3:], isl=2000,
                                    osl=500, prefill_workers=2, decode_workers=1)
    assert np.all(np.asarray(dis.tpot_s) < np.asarray(agg.tpot_s))
    assert np.all(np.diff(np.asarray(dis.ttft_s)) >= 0)


def test_attention_dp_balancing_holds_prompts(catalog: Catalog) -> None:
    """TensorRT-LLM's attention-DP balancing: a prompt waits for every rank to have one, or for the
    counter's release every T iterations: on average half of min(G, T·t_iter); TPOT and the first wave
    (prompts on every rank at once) are unchanged, and an engine that does not balance adds nothing."""
    import dataclasses

    s, hw, k = setup(catalog, "deepseek-r1", "h200-sxm")
    assert k.adp_timeout_iterations == 60
    par = Parallel(tp=1, dp=8, moe_tp=1, ep=8)
    kw = {"concurrency": np.array([64.0, 256.0]), "isl": 1024.0, "osl": 1024.0}
    held = serve(s, hw, par, FP8, k, **kw)
    at_once = dataclasses.replace(k, adp_timeout_iterations=1e-12)  # aligned, released at once
    free = serve(s, hw, par, FP8, at_once, **kw)
    wait = np.asarray(held.balance_s)
    assert np.all(wait > 0) and np.allclose(np.asarray(held.ttft_s) - np.asarray(free.ttft_s), wait)
    assert np.allclose(np.asarray(held.tpot_s), np.asarray(free.tpot_s))
    cycle = np.asarray(free.ttft_s) + 1023 * np.asarray(free.tpot_s)
    gather = 7 * cycle / kw["concurrency"]
    assert np.all(wait <= 0.5 * np.minimum(gather, 60 * np.asarray(held.decode_step_s)) + 1e-12)
    burst_held = serve(s, hw, par, FP8, k, burst=True, **kw)
    burst_free = serve(s, hw, par, FP8, at_once, burst=True, **kw)
    assert np.allclose(np.asarray(burst_held.ttft_s) - np.asarray(burst_free.ttft_s), (1 - k.burst_share) * wait)
    one_rank = serve(s, hw, Parallel(tp=8, moe_tp=1, ep=8), FP8, k, **kw)
    assert np.all(np.asarray(one_rank.balance_s) == 0)
    vllm = constants_from_catalog(catalog, "vllm")
    assert vllm.adp_timeout_iterations == 0
    assert np.all(np.asarray(serve(s, hw, par, FP8, vllm, **kw).balance_s) == 0)


def test_attention_dp_balancing_holds_each_later_chunk(catalog: Catalog) -> None:
    """A prompt longer than the token budget left after the decodes runs in K chunks; TensorRT-LLM's
    balancing counts a rank with a chunk left as having a prompt, so when the counter released the
    first chunk (other ranks idle) each later one is held for a whole min(G, T·t_iter) again:
    (K - 1/2)·min(G, T·t_iter) in all, three times the one-chunk wait for two chunks."""
    s, hw, k = setup(catalog, "deepseek-r1", "h200-sxm")
    par = Parallel(tp=1, dp=8, moe_tp=1, ep=8)
    c = np.array([64.0, 256.0])
    one = serve(s, hw, par, FP8, k, concurrency=c, isl=8000.0, osl=1024.0)  # 8,000 + 8 or 32 decodes fit 8,192
    two = serve(s, hw, par, FP8, k, concurrency=c, isl=8192.0, osl=1024.0)  # 8,192 + decodes do not: 2 chunks
    for res, isl, chunks in ((one, 8000.0, 1.0), (two, 8192.0, 2.0)):
        cycle = np.asarray(res.ttft_s) - np.asarray(res.balance_s) + 1023 * np.asarray(res.tpot_s)  # before the wait
        held = np.minimum(7 * cycle / c, 60 * np.asarray(res.decode_step_s))
        assert np.allclose(np.asarray(res.balance_s), (chunks - 0.5) * held, rtol=1e-9), isl
    # the counter's timeout binds at these loads: the two-chunk prompt waits about three times as long
    ratio = np.asarray(two.balance_s) / np.asarray(one.balance_s)
    assert np.all((ratio > 2.7) & (ratio < 3.3))


def test_ranks_scheduling_alone_share_each_others_prompt_iterations(catalog: Catalog) -> None:
    """Attention-DP ranks that schedule their prompts on their own (vLLM, SGLang) still step together
    (the experts' collectives): an iteration carries prompts when any rank has one, so a decode is
    slowed by every rank's prompts, not its own rank's alone; balanced ranks prefill together."""
    import dataclasses

    s, hw, k = setup(catalog, "qwen3-235b-a22b", "h200-sxm", "vllm")
    kw = {"concurrency": np.array([8.0, 32.0, 128.0]), "isl": 2000.0, "osl": 500.0}
    par = Parallel(tp=1, dp=4, moe_tp=4)
    alone = serve(s, hw, par, FP8, k, **kw)
    aligned = serve(s, hw, par, FP8, dataclasses.replace(k, adp_timeout_iterations=1e-12), **kw)
    assert np.all(np.asarray(alone.tpot_s) > np.asarray(aligned.tpot_s))
    assert np.all(np.asarray(alone.prefill_busy) >= np.asarray(aligned.prefill_busy))
    # one rank: nothing to align
    one = Parallel(tp=4, moe_tp=4)
    assert np.allclose(np.asarray(serve(s, hw, one, FP8, k, **kw).tpot_s),
                       np.asarray(serve(s, hw, one, FP8, dataclasses.replace(k, adp_timeout_iterations=60.0),
                                        **kw).tpot_s))


def test_closed_loop_wait_is_md1_at_light_load_and_the_needed_cycle_past_capacity() -> None:
    """The wait behind other prompts at the busy share a closed loop reaches: the scaled M/D/1 mean at
    the offered load when the prefill server is lightly used; past its capacity the cycle it needs
    (P·D - Z), where the M/D/1 mean at the offered load has no bound; and always the fixed point
    u = P·D/(Z + W)."""
    from factoryplan.perf.queueing import closed_loop_wait

    d, z = 0.1, 1.0
    light, u_light = closed_loop_wait(1.0, d, 0.01, z)
    rho = 0.01 / z
    assert float(light) == pytest.approx(rho * d / (2.0 * (1.0 - rho)), rel=0.02)
    assert float(u_light) == pytest.approx(rho, rel=0.01)
    over, u_over = closed_loop_wait(0.86, d, 20.0, z)
    assert float(over) == pytest.approx(20.0 - z, rel=0.01)
    assert 0.99 < float(u_over) < 1.0
    work = np.array([0.01, 0.3, 0.9, 1.0, 2.0, 8.0])
    for scale in (0.41, 0.86, 2.7):
        wait, u = closed_loop_wait(scale, d, work, z)
        assert np.allclose(wait, work / u - z, rtol=1e-7, atol=1e-12)
        assert np.all(np.diff(wait) > 0) and np.all((u > 0) & (u < 1))
    none, u0 = closed_loop_wait(0.0, d, work, z)
    assert np.all(none == 0.0) and np.allclose(u0, np.minimum(work / z, 1.0 - 1e-9))
    # a larger scale waits longer at every load
    assert np.all(closed_loop_wait(2.7, d, work, z)[0] > closed_loop_wait(0.86, d, work, z)[0])
    # a prompt that never ends (weights that do not fit) waits without end, quietly
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        endless, u_end = closed_loop_wait(1.0, np.inf, np.inf, z)
    assert float(endless) == np.inf and float(u_end) < 1.0
