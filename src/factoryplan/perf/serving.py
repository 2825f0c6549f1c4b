"""Serving under in-flight batching: concurrency -> TTFT, TPOT, throughput, memory; disaggregation.

A replica serves ``C`` users in a closed loop (each sends its next request when the previous one
ends), every request ``ISL`` prompt tokens and ``OSL`` output tokens. In steady state a cycle of
the replica holds ``C`` prefills and ``OSL`` decode iterations, so

* ``t_dec`` is one decode iteration of the ``C_run = min(C, C_max)`` running sequences at mean
  context ``ISL + OSL/2`` (:func:`factoryplan.perf.inference.iteration`);
* ``P`` is the work one prefill adds: the extra time of an iteration that carries the prompt
  (engines that mix prompt chunks into decode iterations) or the prefill pass itself (engines that
  pause decoding for it); ``dp`` attention-data-parallel ranks prefill ``dp`` prompts side by side,
  so the work per prompt is that of ``dp`` prompts over ``dp``; prompts longer than the engine's
  token budget take several iterations;
* in a closed loop with equal lengths, users that finish together come back together: requests
  reach the scheduler in groups of ``G = 1 + (C_run-1) / (1 + (C_run-1)/G0)`` (``G0`` the engine's
  calibrated scale of such groups; one user is a group of one). ``n = max(1, budget/ISL)`` prompts
  fit one iteration (per attention-DP rank), so the group is prefilled over ``ceil(G/n)``
  iterations and a request waits on average ``(G + min(G, n))/2`` prefills,
  ``TTFT = t_dec·(1/2 + chunks) + P_1 + P·((G + min(G, n))/2 - 1)`` with ``P_1`` the request's
  own prefill (plus the decode parts of the group's mixed iterations);
* the other ``C_run - (G + min(G, n))/2`` prefills of a cycle land inside the request's decode
  phase: ``TPOT = t_dec + (C_run - (G + min(G, n))/2)·P / (OSL - 1)``;
* the cycle ``TTFT + (OSL-1)·TPOT ≈ C_run·P + OSL·t_dec`` gives the request rate
  ``C_run / cycle`` (Little's law), output tokens/s ``= rate·OSL``.

Users beyond ``C_max`` wait for a free slot: ``(C - C_run)/C_run`` cycles. ``C_max`` is what the
KV cache holds at ``ISL + r·OSL`` tokens per sequence (``r = 1`` for engines that reserve the
whole output at admission, less for engines that allocate as tokens arrive), capped by the
engine's batch limit.

Disaggregated serving (DistServe, Zhong et al. 2024; Splitwise, Patel et al. 2024) runs prompts
on a prefill pool and decoding on a decode pool; see :func:`disaggregated`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from factoryplan.perf.inference import (
    BoolArray,
    Constants,
    FloatOrArray,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    iteration,
    kv_bytes_per_sequence_per_gpu,
    weight_bytes_per_gpu,
)
from factoryplan.units import GIB


@dataclass(frozen=True)
class Memory:
    """Memory of one GPU of a replica, and the concurrency its KV cache holds."""

    weights_bytes: FloatOrArray
    kv_room_bytes: FloatOrArray  # KV cache capacity per GPU
    kv_per_sequence_bytes: FloatOrArray  # one sequence as the engine reserves it
    max_concurrency: FloatOrArray  # sequences one replica holds (all attention-DP ranks)
    fits: BoolArray  # weights fit with room for one sequence


def memory(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, isl: FloatOrArray,
    osl: FloatOrArray,
) -> Memory:
    """Weights, KV room and the largest concurrency of one replica.

    ``room = f·HBM - reserved - weights`` per GPU (``f`` the engine's memory fraction; vLLM's
    ``gpu_memory_utilization``, SGLang's ``mem_fraction_static``) or ``f·(HBM - reserved - weights)``
    for engines whose fraction applies to the free memory (TensorRT-LLM's
    ``free_gpu_memory_fraction``);
    ``C_max = floor(room / kv(ISL + r·OSL))`` per attention-DP rank, capped by the engine's batch
    limit, times the ``dp`` ranks (and the ``pp`` micro-batches).
    """
    weights = weight_bytes_per_gpu(s, par, prec)
    hbm = np.asarray(hw.hbm_bytes, dtype=float)
    if k.fraction_of_free:
        room = k.memory_fraction * (hbm - k.reserved_bytes - weights)
    else:
        room = k.memory_fraction * hbm - k.reserved_bytes - weights
    context = np.asarray(isl, dtype=float) + k.kv_reserve * np.asarray(osl, dtype=float)
    per_seq = kv_bytes_per_sequence_per_gpu(s, par, prec.kv, context)
    per_rank = np.minimum(np.floor(np.maximum(room, 0.0) / per_seq), k.max_batch)
    max_conc = per_rank * np.asarray(par.dp, dtype=float) * np.asarray(par.pp, dtype=float)
    return Memory(
        weights_bytes=weights, kv_room_bytes=np.maximum(room, 0.0), kv_per_sequence_bytes=per_seq,
        max_concurrency=max_conc, fits=np.asarray(per_rank >= 1.0, dtype=np.bool_),
    )


@dataclass(frozen=True)
class Serving:
    """Steady-state figures of one replica at a concurrency (seconds, tokens/s, bytes)."""

    ttft_s: FloatOrArray
    tpot_s: FloatOrArray
    requests_per_s: FloatOrArray  # one replica
    output_tokens_per_s: FloatOrArray  # one replica
    output_tokens_per_s_per_gpu: FloatOrArray
    tokens_per_s_per_user: FloatOrArray  # 1 / TPOT
    running: FloatOrArray  # sequences decoding together (<= max_concurrency)
    decode_step_s: FloatOrArray  # one pure decode iteration
    prefill_s: FloatOrArray  # one prompt alone (latency of an idle replica)
    memory_per_gpu_bytes: FloatOrArray
    mem: Memory


def _chunks(isl: FloatOrArray, k: Constants) -> FloatOrArray:
    """Iterations a prompt needs beyond the first at the engine's token budget."""
    return np.maximum(np.ceil(np.asarray(isl, dtype=float) / k.token_budget) - 1.0, 0.0)


def serve(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *,
    concurrency: FloatOrArray, isl: FloatOrArray, osl: FloatOrArray,
) -> Serving:
    """TTFT, TPOT and throughput of one replica serving ``concurrency`` users (module docstring)."""
    mem = memory(s, hw, par, prec, k, isl, osl)
    conc = np.maximum(np.asarray(concurrency, dtype=float), 1.0)
    run = np.maximum(np.minimum(conc, mem.max_concurrency), 1.0)
    pp = np.asarray(par.pp, dtype=float)
    isl_f, osl_f = np.asarray(isl, dtype=float), np.maximum(np.asarray(osl, dtype=float), 1.0)
    ctx = isl_f + osl_f / 2.0
    micro = run / pp  # pipeline stages work on pp micro-batches at once
    dec_stage = iteration(s, hw, par, prec, k, decode_seqs=micro, ctx=ctx).total
    t_dec = dec_stage * pp
    dp = np.asarray(par.dp, dtype=float)
    alone = iteration(s, hw, par, prec, k, decode_seqs=0.0, ctx=ctx, prompts=1.0, prompt_len=isl_f).total
    if k.mixes_prefill:
        one = iteration(s, hw, par, prec, k, decode_seqs=micro, ctx=ctx, prompts=1.0, prompt_len=isl_f).total
        ranks = iteration(s, hw, par, prec, k, decode_seqs=micro, ctx=ctx, prompts=dp, prompt_len=isl_f).total
        first = np.maximum(one - dec_stage, 0.0)
        work = np.maximum(ranks - dec_stage, 0.0) / dp  # dp ranks prefill dp prompts side by side
    else:
        ranks = iteration(s, hw, par, prec, k, decode_seqs=0.0, ctx=ctx, prompts=dp, prompt_len=isl_f).total
        first, work = alone, ranks / dp
    chunks = _chunks(isl_f, k)
    per_iter = np.maximum(np.floor(k.token_budget / isl_f), 1.0) * dp
    group = 1.0 + (run - 1.0) / (1.0 + (run - 1.0) / k.arrival_group)
    ahead = (group + np.minimum(group, per_iter)) / 2.0
    mixed_iters = (np.ceil(group / per_iter) + 1.0) / 2.0 if k.mixes_prefill else 0.0
    ttft_run = t_dec * (0.5 + chunks + mixed_iters) + first + np.maximum(ahead - 1.0, 0.0) * work
    ttft_run = ttft_run + alone * (pp - 1.0)
    tpot = t_dec + np.maximum(run - ahead, 0.0) * work / np.maximum(osl_f - 1.0, 1.0)
    cycle = ttft_run + (osl_f - 1.0) * tpot
    rate = run / cycle
    wait = (conc - run) / run * cycle
    out = rate * osl_f
    kv_used = run / (np.asarray(par.dp, dtype=float) * pp) * mem.kv_per_sequence_bytes
    return Serving(
        ttft_s=ttft_run + wait, tpot_s=tpot, requests_per_s=rate, output_tokens_per_s=out,
        output_tokens_per_s_per_gpu=out / par.gpus(), tokens_per_s_per_user=1.0 / tpot, running=run,
        decode_step_s=t_dec, prefill_s=alone * pp,
        memory_per_gpu_bytes=mem.weights_bytes + kv_used + k.reserved_bytes, mem=mem,
    )


def memory_gib(x: FloatOrArray) -> FloatOrArray:
    """Bytes to GiB (reports show GPU memory in GiB, the unit the tools print)."""
    return np.asarray(x, dtype=float) / GIB


@dataclass(frozen=True)
class Disaggregated:
    """A prefill pool and a decode pool sized for a request rate."""

    prefill_replicas: FloatOrArray
    decode_replicas: FloatOrArray
    gpus: FloatOrArray
    ttft_s: FloatOrArray
    tpot_s: FloatOrArray
    decode_batch: FloatOrArray
    prefill_utilization: FloatOrArray
    output_tokens_per_s_per_gpu: FloatOrArray


def disaggregated(
    s: ModelShape, hw: Hardware, prefill_par: Parallel, decode_par: Parallel, prec: Precision,
    kp: Constants, kd: Constants, *, requests_per_s: FloatOrArray, isl: FloatOrArray, osl: FloatOrArray,
    decode_batch: FloatOrArray, max_prefill_utilization: float = 0.7,
) -> Disaggregated:
    """Pools for ``requests_per_s``: prefill replicas at most ``max_prefill_utilization`` busy,
    decode replicas each running ``decode_batch`` sequences.

    Prefill: one prompt takes ``P`` alone; a replica is busy ``λ_r·P`` of the time and a prompt
    waits ``ρ·P / (2(1-ρ))`` on average (M/D/1, Pollaczek-Khinchine). The KV cache moves to the
    decode pool over the scale-out network (``kv / NIC bandwidth``). Decode: ``TPOT = t_dec(batch)``
    with no prefill interference; a replica completes ``batch / (OSL·TPOT)`` requests/s.
    """
    isl_f, osl_f = np.asarray(isl, dtype=float), np.maximum(np.asarray(osl, dtype=float), 1.0)
    lam = np.asarray(requests_per_s, dtype=float)
    p = iteration(s, hw, prefill_par, prec, kp, decode_seqs=0.0, ctx=isl_f, prompts=1.0, prompt_len=isl_f).total
    p = p * np.asarray(prefill_par.pp, dtype=float)
    n_p = np.maximum(np.ceil(lam * p / max_prefill_utilization), 1.0)
    rho = lam * p / n_p
    kv_seq = kv_bytes_per_sequence_per_gpu(s, prefill_par, prec.kv, isl_f)
    transfer = kv_seq / hw.nic_bytes_s
    ttft = p + rho * p / (2.0 * (1.0 - rho)) + transfer
    micro = np.asarray(decode_batch, dtype=float) / np.asarray(decode_par.pp, dtype=float)
    t_dec = iteration(s, hw, decode_par, prec, kd, decode_seqs=micro, ctx=isl_f + osl_f / 2.0).total
    t_dec = t_dec * np.asarray(decode_par.pp, dtype=float)
    per_replica = np.asarray(decode_batch, dtype=float) / (osl_f * t_dec)
    n_d = np.maximum(np.ceil(lam / per_replica), 1.0)
    gpus = n_p * prefill_par.gpus() + n_d * decode_par.gpus()
    return Disaggregated(
        prefill_replicas=n_p, decode_replicas=n_d, gpus=gpus, ttft_s=ttft, tpot_s=t_dec,
        decode_batch=np.asarray(decode_batch, dtype=float), prefill_utilization=rho,
        output_tokens_per_s_per_gpu=lam * osl_f / gpus,
    )
