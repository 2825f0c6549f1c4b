"""Serving under in-flight batching: concurrency -> TTFT, TPOT, throughput, memory; disaggregation.

A replica serves ``C`` users in a closed loop (each sends its next request when the previous one
ends), every request ``ISL`` prompt tokens and ``OSL`` output tokens. ``C_run = min(C, C_max)``
sequences decode together; ``c = C_run/dp`` on each attention-data-parallel rank.

**Iterations.** ``t_dec`` is one decode iteration of the running sequences at mean context
``ISL + OSL/2`` (:func:`factoryplan.perf.inference.iteration`). A prompt is prefilled in
``K = ceil(ISL / free)`` iterations, ``free = budget - c`` the token budget left after the decodes
(engines that mix prompt chunks into decode iterations; the whole budget for engines that pause
decoding for prefill). Each of the ``m = c·K`` prompt chunks of a cycle lands in some iteration:
with the ``S = OSL - 1`` decode iterations of a cycle as slots and arrivals spread over them,
``n_p = S·(1 - exp(-m/S))`` iterations carry prompt chunks (at least ``m·ISL/(K·free)``, the
budget's limit), ``q = m/n_p`` chunks each (many users finishing per iteration batch their
prompts). Such an iteration takes ``t_p`` (:func:`iteration` with the decodes and ``q`` chunks);
it adds ``t_p - t_dec/pp`` to a decode iteration (mixed engines) or ``t_p`` (engines that pause
decoding).

**Steady state** (arrivals staggered, as real users and warmed-up benchmarks see them):

* ``TPOT = t_dec + min(n_p, S)·(t_p - t_dec)·(c - 1)/c / S``: the other users' prompts slow one's
  decode (the measured ``(e2e - TTFT)/(OSL - 1)``);
* ``TTFT = t_req + f·t_dec + K·t_p + max(W, (n_p - S)·t_p)``: the engine's per-request latency
  (HTTP, tokenizer, scheduler), ``f`` decode iterations until the first token is out (the iteration
  in flight at arrival, one to return the token), the prompt's own iterations, and the wait behind
  other prompts, ``W = a·ρ·t_p / (2(1-ρ))`` with ``ρ = n_p·t_p / (Z + W)`` the share of time the
  engine is prefilling, ``Z`` the cycle without the wait (M/D/1, Pollaczek-Khinchine, at the busy
  share the closed loop reaches: a longer wait stretches every user's cycle and thins the arrivals,
  so past the engine's prefill capacity ``W`` tends to ``n_p·t_p - Z``, the cycle the prompts need,
  :func:`~factoryplan.perf.queueing.closed_loop_wait`; scaled by ``a``: closed-loop arrivals are
  smoother than Poisson ones, and an engine that pauses decoding for prompts groups its users into
  cohorts that arrive together; each engine's ``a`` is what the iteration-by-iteration simulation of
  its scheduler shows, ``benchmarks/serving_sim.py``; the values are in
  calibrations.inference.yaml), at most the other users' prompt iterations of one cycle,
  ``(c-1)/c·n_p·t_p`` (a closed loop holds no more prompts than its users: a lone user never waits
  behind another's prompt, and a few users per rank with large batched passes cannot queue as an
  unbounded stream would near ``ρ = 1``). When a cycle needs more prompt iterations than one request decodes
  through (``n_p > S``: prefill-bound, e.g. 8k-token prompts, 128-token answers, hundreds of users),
  a request sees at most ``S`` of them while decoding and waits out the rest in the queue, which
  then replaces the M/D/1 wait (checked against the iteration-by-iteration simulation of
  :mod:`factoryplan.perf.serving_sim`). Attention-DP ranks step together (the experts'
  collectives), each iteration as long as its busiest rank. An engine that balances prompts over
  the ranks (``adp_timeout_iterations > 0``: TensorRT-LLM's attention-DP balancing) has them
  prefill together, ``n_p`` per rank as above, and holds a prompt, and again each later chunk of
  it, until they do (:func:`_balance_wait`); ranks that schedule their prompts on their own (vLLM,
  SGLang) carry prompts in every iteration where any rank has one: ``n_p`` over all ``dp·c``
  users' chunks, at least one chunk on the busiest rank, and a decode is slowed by every rank's
  prompts (for an engine that pauses decoding for prompts, another rank's prompt costs the whole
  prompt iteration: slightly more than the overlap it has). No measured rows have SGLang attention DP; vLLM's (one
  campaign, 19 points) are predicted 44% low in TPOT this way, 53% low aligned.

**Prefix cache and speculative decoding.** Tokens of a prompt the prefix cache holds are not
prefilled (the others attend to them); with ``d`` draft tokens an iteration verifies ``1 + d``
tokens a sequence and runs the draft ``d`` times, and yields ``E = 1 + a + ... + a^d`` tokens
(:func:`tokens_per_step`): ``S/E`` iterations a request, TPOT the iteration time over ``E``.

**Burst harness.** Benchmark clients that start all ``C`` users at ``t = 0`` and average over a run
of a few requests per user measure a blend: the first wave queues its prompts in
``Kb = ceil(c / floor(budget/ISL))`` full iterations (a staircase: mean ``(Kb + 1)/2`` iterations
to the first token), later waves the steady state. ``serve(..., burst=True)`` weighs the staircase
with the calibrated ``burst_share``: a property of the harness, not of the serving engine (about
one request in the number of requests each user sends; runs that warm up first see none of it).
Engines whose prefill-first scheduling keeps a wave in lockstep for the whole run (some SGLang
versions) see more; one share for every engine predicts other GPUs and models better than one per
engine fitted to those runs (hold-out fits in ``benchmarks/calibrate_inference.py``).

**Throughput.** The cycle ``TTFT + (OSL - 1)·TPOT`` gives the request rate ``C_run / cycle``
(Little's law), output tokens/s ``= rate·OSL``. Users beyond ``C_max`` wait for a free slot:
``(C - C_run)/C_run`` cycles. ``C_max`` is what the KV cache holds at ``ISL + r·OSL`` tokens per
sequence (``r = 1`` for engines that reserve the whole output at admission, less for engines that
allocate as tokens arrive), capped by the engine's batch limit.

Pipeline parallelism: ``pp`` micro-batches keep the stages busy; a token passes every stage in turn.

Disaggregated serving (DistServe, Zhong et al. 2024; Splitwise, Patel et al. 2024) runs prompts
on a prefill pool and decoding on a decode pool: :func:`closed_loop_disaggregated` predicts a
deployment of given worker counts under closed-loop users (measured disaggregated points); the
capacity planner sizes the pools for a request rate (:mod:`factoryplan.perf.capacity`).

The queueing formulas (waiting-time tails, the batched prefill wait) are in
:mod:`factoryplan.perf.queueing`; :func:`open_loop_ttft` applies them to a replica's steady state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from factoryplan.perf.blocks import has_arrays, in_blocks
from factoryplan.perf.inference import (
    Array,
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
from factoryplan.perf.queueing import (
    batched_prefill_wait,
    closed_loop_wait,
    length_nodes,
    length_sum_quantile,
    md1_wait_quantile,
    mg1_tail,
    sum_survival,
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
    kv_concurrency: FloatOrArray  # sequences the KV cache alone holds (before the engine's batch limit)


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
    held = np.floor(np.maximum(room, 0.0) / per_seq)
    per_rank = np.minimum(held, k.max_batch)
    ranks = np.asarray(par.dp, dtype=float) * np.asarray(par.pp, dtype=float)
    return Memory(
        weights_bytes=weights, kv_room_bytes=np.maximum(room, 0.0), kv_per_sequence_bytes=per_seq,
        max_concurrency=per_rank * ranks, fits=np.asarray(per_rank >= 1.0, dtype=np.bool_),
        kv_concurrency=held * ranks,
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
    queue_s: FloatOrArray = 0.0  # steady state: mean wait behind other prompts (within ttft_s)
    prefill_busy: FloatOrArray = 0.0  # steady state: share of time the engine is prefilling (rho)
    prefill_service_s: FloatOrArray = 0.0  # steady state: prompt iterations' time per prompt (rho = arrivals x this)
    prompt_variable_s: FloatOrArray = 0.0  # steady state, prompts of varying length: the part of a prompt's own
    # iterations (within ttft_s) that grows with its length
    isl_cv: float = 0.0  # the prompts' lengths' coefficient of variation (0: fixed)
    balance_s: FloatOrArray = 0.0  # steady state: mean wait for the attention-DP ranks to prefill together


def _prefill_passes(
    c: FloatOrArray, chunks: FloatOrArray, steps: FloatOrArray, isl: FloatOrArray, free: FloatOrArray
) -> FloatOrArray:
    """Iterations per cycle that carry prompt chunks: ``S·(1 - exp(-m/S))`` for ``m = c·K`` chunks
    over ``S`` decode iterations, at least what the budget admits (``m·ISL/(K·free)``), within
    ``[1, m]``. Few users per iteration: one chunk each; many: every iteration carries some."""
    m = np.maximum(np.asarray(c, dtype=float) * chunks, 1.0)
    n = steps * -np.expm1(-m / steps)
    n = np.maximum(n, m * (isl / chunks) / free)
    return np.asarray(np.clip(n, 1.0, m), dtype=np.float64)


def tokens_per_step(draft_tokens: FloatOrArray, acceptance: FloatOrArray) -> FloatOrArray:
    """Output tokens a decode iteration yields with ``d`` draft tokens, each accepted with
    probability ``a`` when the ones before it were: ``1 + a + ... + a^d`` (the verified token is
    always kept; Leviathan, Kalman and Matias 2023, "Fast Inference from Transformers via
    Speculative Decoding", Sec. 3.1). 1 without drafts."""
    d = np.asarray(draft_tokens, dtype=float)
    a = np.clip(np.asarray(acceptance, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        geometric = (1.0 - a ** (d + 1.0)) / (1.0 - a)
    return np.asarray(np.where(a >= 1.0, d + 1.0, geometric), dtype=np.float64)


def with_requests_per_user(k: Constants, requests_per_user: float | None) -> Constants:
    """``k`` for a burst-started benchmark run in which each user sends ``requests_per_user`` requests:
    the first of each queues as the first wave, so ``burst_share = 1/N`` (None or 0: the calibrated
    share, ``k`` unchanged)."""
    if not requests_per_user:
        return k
    return replace(k, burst_share=1.0 / requests_per_user)


def first_wave_share(k: Constants) -> float:
    """The share of a burst-started run's requests that queue as a first wave: ``burst_share`` where
    prompt chunks ride in decode iterations (the users drift apart after it); 1 where the engine
    prefills apart from decoding, ahead of it: it prefills every wave whole before any of it decodes,
    so its users finish together and start the next wave together (lockstep)."""
    return k.burst_share if k.mixes_prefill else 1.0


def iterations_per_token(osl: FloatOrArray, draft_tokens: FloatOrArray, acceptance: FloatOrArray) -> FloatOrArray:
    """Decode iterations per output token after the first: ``max((OSL - 1)/E, 1)/(OSL - 1)``, ``1/E``
    for long outputs (:func:`tokens_per_step`), 1 without drafts; a request needs at least one
    iteration however many tokens it could yield."""
    steps = np.maximum(np.asarray(osl, dtype=float) - 1.0, 1.0)
    return np.asarray(np.maximum(steps / tokens_per_step(draft_tokens, acceptance), 1.0) / steps, dtype=np.float64)


def decode_iterations(osl: int, draft_tokens: float, acceptance: float) -> int:
    """Whole decode iterations a request of ``osl`` output tokens takes after its first token:
    ``ceil((OSL - 1)/E)`` (:func:`tokens_per_step`), at least one; none for a one-token answer."""
    if osl <= 1:
        return 0
    return max(math.ceil((osl - 1) / float(tokens_per_step(draft_tokens, acceptance)) - 1e-9), 1)


def cached_prompt(prefix: FloatOrArray, isl: FloatOrArray) -> Array:
    """Prompt tokens the prefix cache serves: ``prefix`` within ``[0, ISL - 1]`` (at least one
    token of each prompt is prefilled, the one whose logits give the first output token)."""
    top = np.asarray(isl, dtype=float) - 1.0
    return np.asarray(np.clip(np.asarray(prefix, dtype=float), 0.0, top), dtype=np.float64)


def cached_tokens(hit: float, isl: int) -> int:
    """Whole prompt tokens a prefix-cache hit share ``hit`` of an ``isl``-token prompt serves
    (:func:`cached_prompt`'s bounds)."""
    return int(cached_prompt(round(hit * isl), isl))


def draft_shape(s: ModelShape) -> ModelShape:
    """The draft of speculative decoding: one layer of the model with its LM head (DeepSeek-V3's
    multi-token-prediction module, arXiv:2412.19437 Sec. 2.2; EAGLE's one-layer head): an MoE layer
    for MoE models, full attention."""
    moe = 1 if s.moe_layers else 0
    return replace(s, layers=1, dense_layers=1 - moe, moe_layers=moe, full_layers=1, linear_layers=0,
                   block_layers=1.0)


def decode_iteration(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *, seqs: FloatOrArray,
    ctx: FloatOrArray, draft_tokens: FloatOrArray = 0.0, prompts: FloatOrArray = 0.0,
    prompt_len: FloatOrArray = 0.0, prompt_prefix: FloatOrArray = 0.0,
) -> Array:
    """One iteration of one pipeline stage decoding ``seqs`` sequences (with ``prompts`` prompt
    chunks when given): the model verifies each sequence's token and its ``d`` drafts together, and
    the draft proposes the next ``d``, one pass of :func:`draft_shape` each, on the last stage (its
    time is spread over the stages here, so ``pp`` stages add up to one iteration)."""
    d = np.asarray(draft_tokens, dtype=float)
    main = iteration(s, hw, par, prec, k, decode_seqs=seqs, ctx=ctx, prompts=prompts, prompt_len=prompt_len,
                     prompt_prefix=prompt_prefix, decode_tokens=1.0 + d)
    if not np.any(d > 0):
        return np.asarray(main.total, dtype=np.float64)
    pp = np.asarray(par.pp, dtype=float)
    draft = iteration(draft_shape(s), hw, replace(par, pp=1.0), prec, k, decode_seqs=np.asarray(seqs) * pp,
                      ctx=ctx)
    one = draft.gemm + draft.moe + draft.attention + draft.comm + k.layer_overhead_s + k.moe_layer_overhead_s * (
        1.0 if s.moe_layers else 0.0)
    drafting = np.where(np.asarray(seqs) > 0, d * one / pp, 0.0)
    # the host's work overlaps the GPU's whole iteration, the draft's passes included
    return np.asarray(main.total - main.cpu + np.maximum(drafting, main.cpu), dtype=np.float64)


def serve(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *,
    concurrency: FloatOrArray, isl: FloatOrArray, osl: FloatOrArray, burst: bool | FloatOrArray = False,
    prefix: FloatOrArray = 0.0, draft_tokens: FloatOrArray = 0.0, acceptance: FloatOrArray = 0.0,
    isl_cv: float = 0.0,
) -> Serving:
    """TTFT, TPOT and throughput of one replica serving ``concurrency`` users (module docstring).

    ``burst``: the users start together and the figures average over a benchmark run
    (measurement harnesses); default the steady state. Where prompt chunks ride in decode iterations
    (``mixes_prefill``) the first wave queues and the users then drift apart (``burst_share`` of the
    run is first wave); an engine that prefills apart from decoding keeps them in lockstep, every
    wave prefilled whole, then decoded together (:func:`first_wave_share`; ``perf.serving_sim``
    shows both). ``prefix``: leading tokens of each prompt that the engine's prefix cache already
    holds (a shared system prompt, the earlier turns of a conversation): only the other
    ``isl - prefix`` are prefilled, attending to the whole prompt;
    each sequence still holds its whole context in the KV cache. ``draft_tokens`` ``d`` and
    ``acceptance`` ``a``: speculative decoding (:func:`decode_iteration`); an iteration yields
    :func:`tokens_per_step` tokens, so a request decodes in ``(OSL - 1)/E`` iterations and TPOT is
    the iteration time over ``E``. ``isl_cv``: the prompts' lengths vary (a gamma distribution of
    mean ``isl`` and this coefficient of variation; 0: all ``isl`` long, as benchmarks send them):
    the wait behind other prompts is the Pollaczek-Khinchine mean for service times that vary as the
    prompts do, ``(1 + CV²)`` times the fixed-length one; the other figures are the mean length's.
    """
    per_config = {"concurrency": concurrency, "isl": isl, "osl": osl, "burst": burst, "prefix": prefix,
                  "draft_tokens": draft_tokens, "acceptance": acceptance}
    if not has_arrays(s, hw, prec, k):  # a sweep: a block of configurations at a time (perf.blocks)
        layout = {f"par.{f.name}": getattr(par, f.name) for f in fields(par)}

        def block(v: dict[str, Any]) -> Serving:
            p = Parallel(**{name[4:]: x for name, x in v.items() if name.startswith("par.")})
            return _serve(s, hw, p, prec, k, **{name: v[name] for name in per_config}, isl_cv=isl_cv)

        swept = in_blocks(block, {**per_config, **layout})
        if swept is not None:
            return swept
    return _serve(s, hw, par, prec, k, **per_config, isl_cv=isl_cv)


def _serve(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *,
    concurrency: FloatOrArray, isl: FloatOrArray, osl: FloatOrArray, burst: bool | FloatOrArray,
    prefix: FloatOrArray, draft_tokens: FloatOrArray, acceptance: FloatOrArray, isl_cv: float,
) -> Serving:
    """:func:`serve` in one pass over its configurations."""
    mem = memory(s, hw, par, prec, k, isl, osl)
    conc = np.maximum(np.asarray(concurrency, dtype=float), 1.0)
    run = np.maximum(np.minimum(conc, mem.max_concurrency), 1.0)
    pp, dp = np.asarray(par.pp, dtype=float), np.asarray(par.dp, dtype=float)
    isl_f, osl_f = np.asarray(isl, dtype=float), np.maximum(np.asarray(osl, dtype=float), 1.0)
    cached = cached_prompt(prefix, isl_f)
    new = isl_f - cached  # prompt tokens each request prefills
    ctx = isl_f + osl_f / 2.0
    micro = run / pp  # pipeline stages work on pp micro-batches at once
    dec_stage = decode_iteration(s, hw, par, prec, k, seqs=micro, ctx=ctx, draft_tokens=draft_tokens)
    t_dec = dec_stage * pp
    c = np.maximum(run / dp, 1.0)
    steps = np.maximum(osl_f - 1.0, 1.0)
    iters = steps * iterations_per_token(osl_f, draft_tokens, acceptance)  # decode iterations of one request
    mixed = k.mixes_prefill
    free = np.maximum(k.token_budget - (c if mixed else 0.0), k.token_budget / 4.0)
    chunks = np.maximum(np.ceil(new / free - 1e-9), 1.0)
    passes = _prefill_passes(c, chunks, iters, new, free)
    # ranks that schedule their prompts on their own (no balancing) still run every iteration together
    # (the experts' collectives): an iteration carries prompts when any rank has one, at least one
    # chunk on the busiest rank
    alone_ranks = (dp > 1.0) & (k.adp_timeout_iterations <= 0)
    passes = np.where(alone_ranks, np.maximum(_prefill_passes(c * dp, chunks, iters, new / dp, free), passes), passes)
    per_pass = np.where(alone_ranks, np.maximum(c * chunks / passes, 1.0), c * chunks / passes)
    t_p = decode_iteration(s, hw, par, prec, k, seqs=micro if mixed else 0.0, ctx=ctx, draft_tokens=draft_tokens,
                           prompts=per_pass / chunks * dp, prompt_len=new, prompt_prefix=cached)
    added = np.maximum(t_p - (dec_stage if mixed else 0.0), 0.0)
    own = chunks * t_p + (pp - 1.0) * t_p
    own_variable: FloatOrArray = 0.0
    if isl_cv > 0.0:  # the part of a prompt's own iterations that grows with its length: over what the same
        # iteration costs without prompt tokens (the decodes it carries, or the step's fixed costs)
        floor = dec_stage if mixed else decode_iteration(s, hw, par, prec, k, seqs=0.0, ctx=ctx)
        own_variable = np.maximum(t_p - floor, 0.0) * (chunks + pp - 1.0)
    base = k.request_overhead_s + k.first_token_steps * t_dec
    # a request decodes through at most S of the prompt iterations; beyond S a cycle (prefill-bound
    # load) it waits for the others in the queue instead
    others = np.where(alone_ranks, (c * dp - 1.0) / (c * dp), (c - 1.0) / c)  # prompts not one's own
    tpot_s = (iters * t_dec + np.minimum(passes, iters) * added * others) / steps
    rest = base + own + steps * tpot_s  # a cycle without the wait behind other prompts
    # the wait at the busy share the loop reaches (a longer wait thins the arrivals)
    mdl, _ = closed_loop_wait(k.prefill_queue_factor * (1.0 + isl_cv**2), t_p, passes * t_p, rest)
    # a closed loop queues at most the other users' prompts of a cycle
    queue = np.maximum(np.minimum(mdl, others * passes * t_p), (passes - iters) * t_p)
    align = _balance_wait(k, dp, run, base + own + queue + steps * tpot_s, dec_stage, chunks)
    ttft_s = base + own + queue + align
    rho = np.clip(passes * t_p / (ttft_s + steps * tpot_s), 0.0, 0.95)  # prefilling share of the steady cycle
    share = np.asarray(burst, dtype=float) * first_wave_share(k)  # users started together: first waves
    ttft, tpot = ttft_s, tpot_s
    if np.any(share > 0.0):  # the first wave: c prompts at once, per_iter of them per iteration
        per_iter = np.maximum(np.floor(k.token_budget / new), 1.0)
        waves = np.ceil(c / per_iter) * np.maximum(np.ceil(new / k.token_budget - 1e-9), 1.0)
        t_b = iteration(s, hw, par, prec, k, decode_seqs=0.0, ctx=isl_f, prompts=c / waves * dp,
                        prompt_len=new, prompt_prefix=cached).total
        ttft = (1.0 - share) * ttft_s + share * (base + t_b * ((waves + 1.0) / 2.0 + pp - 1.0))
        tpot = (1.0 - share) * tpot_s + share * ((iters * t_dec + (waves - 1.0) / 2.0 * t_b) / steps)
    cycle = ttft + steps * tpot
    rate = run / cycle
    wait = (conc - run) / run * cycle
    out = rate * osl_f
    alone = iteration(s, hw, par, prec, k, decode_seqs=0.0, ctx=isl_f, prompts=1.0, prompt_len=new,
                      prompt_prefix=cached).total
    kv_used = run / (dp * pp) * mem.kv_per_sequence_bytes
    return Serving(
        ttft_s=ttft + wait, tpot_s=tpot, requests_per_s=rate, output_tokens_per_s=out,
        output_tokens_per_s_per_gpu=out / par.gpus(), tokens_per_s_per_user=1.0 / tpot, running=run,
        decode_step_s=t_dec, prefill_s=alone * pp,
        memory_per_gpu_bytes=mem.weights_bytes + kv_used + k.reserved_bytes, mem=mem, queue_s=queue, prefill_busy=rho,
        prefill_service_s=passes * t_p / np.where(alone_ranks, c * dp, c), balance_s=align,
        prompt_variable_s=own_variable, isl_cv=isl_cv,
    )


def _balance_wait(
    k: Constants, dp: FloatOrArray, running: FloatOrArray, cycle: FloatOrArray, t_iter: FloatOrArray,
    chunks: FloatOrArray = 1.0,
) -> Array:
    """Mean wait of a prompt for the attention-DP ranks to take prompts together (steady state).

    Engines that balance prompts across attention-DP ranks (``adp_timeout_iterations`` ``T`` > 0:
    TensorRT-LLM with ``enable_balance``) hold a rank's prompts until every rank has one, or until a
    counter that runs every iteration reaches ``T``: a prompt waits for the other ``dp - 1`` ranks'
    next arrivals, ``G = (dp - 1)/λ`` at the replica's request rate ``λ = C/cycle``, or for the
    counter's next release, whichever comes first; on average half of ``min(G, T·t_iter)``. The
    ranks then prefill together, as :func:`serve` counts their prompt iterations. A prompt of
    ``K > 1`` chunks is held again before each later chunk: the engine counts a rank as having a
    prompt while any chunk of one is left (``PyExecutor._balance_adp_requests`` compares the
    scheduled context requests, continuing chunks among them, and resets the counter at each
    release), so a prompt released by the counter, with other ranks idle, waits a whole
    ``min(G, T·t_iter)`` for each later chunk; ranks that took their prompts together carry their
    later chunks together and wait nothing more, the share of ``G`` below ``T·t_iter`` (the same
    minimum: ``(K - 1/2)·min(G, T·t_iter)`` in all). A burst's first wave has prompts on every rank
    at once and does not wait; neither do prefill-only workers.
    """
    dp_a = np.asarray(dp, dtype=float)
    if k.adp_timeout_iterations <= 0:
        return np.zeros(np.broadcast(dp_a, np.asarray(running)).shape)
    gather = (dp_a - 1.0) * np.asarray(cycle, dtype=float) / np.maximum(np.asarray(running, dtype=float), 1.0)
    held = np.minimum(gather, k.adp_timeout_iterations * np.asarray(t_iter, dtype=float))
    wait = (np.maximum(np.asarray(chunks, dtype=float), 1.0) - 0.5) * held
    return np.asarray(np.where(dp_a > 1.0, wait, 0.0), dtype=np.float64)


def open_loop_ttft(res: Serving, load: FloatOrArray, percentile: FloatOrArray) -> Array:
    """TTFT at ``percentile`` (per cent) of the requests of a replica whose requests arrive as a Poisson
    process (production traffic) at ``load`` times the request rate of ``res``'s closed loop (the
    steady state of :func:`serve`).

    The latency outside the queue (per-request overhead, first-token iterations, the prompt's own
    iterations) is ``res``'s; the wait behind other prompts is :func:`md1_wait_quantile`'s at busy
    ``load·ρ`` with a prompt's share of the prompt iterations as the service time (``ρ`` over the
    arrival rate: prompts that share an iteration are served together). When the prompts' lengths
    vary (``res.isl_cv``) so do their own iterations' length-dependent part and the service times:
    the percentile is that of the sum, the own part's distribution (:func:`length_nodes`) convolved
    with the M/G/1 wait's tail (:func:`mg1_tail`), found by bisection. ``res`` is a steady state
    within the KV cache's capacity (no burst, no users queueing for a slot). Checked against the
    iteration-by-iteration simulation under Poisson arrivals (``benchmarks/serving_open_loop.py``).
    """
    fixed, spread = _outside_queue(res, percentile)
    busy = np.asarray(load, dtype=float) * np.asarray(res.prefill_busy, dtype=float)
    service = np.asarray(res.prefill_service_s, dtype=float)
    if res.isl_cv <= 0.0:
        return np.asarray(fixed + spread + md1_wait_quantile(busy, service, percentile), dtype=np.float64)
    own = np.asarray(res.prompt_variable_s, dtype=float)
    tail = mg1_tail(busy, service, res.isl_cv)
    return np.asarray(fixed + spread + length_sum_quantile(own, tail, res.isl_cv, percentile), dtype=np.float64)


def open_loop_ttft_exceeds(res: Serving, load: FloatOrArray, percentile: float, ttft_s: float) -> BoolArray:
    """Whether more than ``100 - percentile`` per cent of the requests see a TTFT above ``ttft_s`` at
    ``load`` (:func:`open_loop_ttft`'s model, without its bisection when the prompts' lengths vary)."""
    if res.isl_cv <= 0.0:
        return np.asarray(open_loop_ttft(res, load, percentile) > ttft_s, dtype=bool)
    fixed, spread = _outside_queue(res, percentile)
    busy = np.asarray(load, dtype=float) * np.asarray(res.prefill_busy, dtype=float)
    left = ttft_s - fixed - spread
    tail = mg1_tail(busy, np.asarray(res.prefill_service_s, dtype=float), res.isl_cv)
    surv = sum_survival(left, np.asarray(res.prompt_variable_s, dtype=float), tail, length_nodes(res.isl_cv))
    return np.asarray((left < 0.0) | (surv > 1.0 - percentile / 100.0), dtype=bool)


def _outside_queue(res: Serving, percentile: FloatOrArray) -> tuple[Array, Array]:
    """(TTFT less the wait behind other prompts, the balancing wait and, when the prompts' lengths
    vary, their own iterations' length-dependent part; the attention-DP balancing wait at
    ``percentile``: uniform on [0, 2·mean])."""
    balance = np.asarray(res.balance_s, dtype=float)
    fixed = np.asarray(res.ttft_s, dtype=float) - np.asarray(res.queue_s, dtype=float) - balance
    if res.isl_cv > 0.0:
        fixed = fixed - np.asarray(res.prompt_variable_s, dtype=float)
    return fixed, 2.0 * balance * np.asarray(percentile, dtype=float) / 100.0


def memory_gib(x: FloatOrArray) -> FloatOrArray:
    """Bytes to GiB (reports show GPU memory in GiB, the unit the tools print)."""
    return np.asarray(x, dtype=float) / GIB


@dataclass(frozen=True)
class DisaggregatedLoop:
    """A disaggregated deployment serving ``C`` closed-loop users (seconds, tokens/s)."""

    ttft_s: FloatOrArray
    tpot_s: FloatOrArray
    output_tokens_per_s: FloatOrArray
    decode_batch: FloatOrArray  # sequences one decode worker runs
    prefill_utilization: FloatOrArray
    fits: BoolArray  # both workers hold their weights and at least one sequence


def closed_loop_disaggregated(
    s: ModelShape, hw: Hardware, prefill_par: Parallel, decode_par: Parallel, prec: Precision, k: Constants, *,
    concurrency: FloatOrArray, isl: FloatOrArray, osl: FloatOrArray, prefill_workers: FloatOrArray,
    decode_workers: FloatOrArray, decode_batch_max: FloatOrArray = np.inf, burst: bool | FloatOrArray = False,
    prefill_batch_max: FloatOrArray = np.inf, iterations: int = 40, prefix: FloatOrArray = 0.0,
    draft_tokens: FloatOrArray = 0.0, acceptance: FloatOrArray = 0.0,
) -> DisaggregatedLoop:
    """TTFT, TPOT and throughput of ``n_p`` prefill and ``n_d`` decode workers serving ``C`` users
    who each send their next request when the last one ends (a measured disaggregated point).

    A fixed point over the cycle ``T = TTFT + (OSL-1)·TPOT`` of one request, ``λ = C/T``:

    * prefill: each worker sees ``λ_w = λ/n_p`` prompts/s; a pass takes the ``b = λ_w·t_p(b)``
      that arrived during the last one (at least 1, at most ``B``: the token budget's worth, within
      ``prefill_batch_max``, on each attention-DP rank); ``ρ = λ_w·t_p(b)/b`` the share of time it
      is busy. A prompt waits for the pass in flight and, as full batches fill, for more
      (:func:`batched_prefill_wait`, M/D/1 when ``B = 1``), scaled by ``pool_queue_factor`` (what
      the event-by-event simulation of the workers shows, ``benchmarks/disagg_sim.py``: prompts that
      users send as their answers end arrive more evenly than a Poisson stream; a prefill-only worker
      has no decodes to group its users into cohorts, so not the aggregated engine's factor), and
      capped at what a closed loop can queue: the wait that
      saturates the prefill pool, ``C/μ_p`` less the rest of the cycle (``μ_p`` full batches), or
      one pass below that. ``TTFT = t_req + t_p(b) + wait`` (the prefill worker returns the first
      token);
    * decode: ``λ·(OSL-1)·TPOT`` users are decoding, ``b_d`` of them on each decode worker (at most
      its KV capacity and batch limit; the others wait for a slot); ``TPOT = t_dec(b_d)`` with no
      prompt in the iterations, plus the KV-cache transfer over the GPU's NIC spread over the output;
    * burst-started runs (measurement harnesses) blend in the first wave, ``C`` prompts queueing at
      the prefill workers, with the calibrated ``burst_share``; the run's mean cycle grows by what
      the first wave adds to TTFT, so its throughput falls with it (as :func:`serve`'s);
    * ``prefix`` cached prompt tokens are not prefilled (as :func:`serve`); the whole prompt's KV
      cache still crosses to the decode worker; ``draft_tokens`` and ``acceptance``: speculative
      decoding on the decode workers (as :func:`serve`).

    Checked against an event-by-event simulation of the same workers
    (:mod:`factoryplan.perf.disagg_sim`, ``benchmarks/disagg_sim.py``, 1,536 deployments): throughput
    and TPOT agree within a few per cent; TTFT is 4% higher at light load, 2% lower on average at
    saturation, and 7% higher at 50-95% prefill utilisation, the spread there 24% (fixed lengths let
    a simulated closed loop space its arrivals evenly; measured runs vary more). Where the two pools'
    capacities are within a few per cent, the simulated queue may sit at the pool the closed form
    does not name.
    """
    conc = np.maximum(np.asarray(concurrency, dtype=float), 1.0)
    isl_f, osl_f = np.asarray(isl, dtype=float), np.maximum(np.asarray(osl, dtype=float), 1.0)
    n_p, n_d = np.maximum(np.asarray(prefill_workers, dtype=float), 1.0), np.maximum(
        np.asarray(decode_workers, dtype=float), 1.0)
    steps = np.maximum(osl_f - 1.0, 1.0)
    cached = cached_prompt(prefix, isl_f)
    new = isl_f - cached
    mem_p = memory(s, hw, prefill_par, prec, k, isl_f, 1.0)
    mem_d = memory(s, hw, decode_par, prec, k, isl_f, osl_f)
    cap = np.maximum(np.minimum(mem_d.max_concurrency, np.asarray(decode_batch_max, dtype=float)
                                * np.asarray(decode_par.dp, dtype=float)), 1.0)
    per_rank = np.minimum(np.maximum(np.floor(k.token_budget / new), 1.0), np.asarray(prefill_batch_max, dtype=float))
    per_pass = np.maximum(per_rank, 1.0) * np.asarray(prefill_par.dp, dtype=float)
    pp_p, pp_d = np.asarray(prefill_par.pp, dtype=float), np.asarray(decode_par.pp, dtype=float)

    def prefill(b: FloatOrArray) -> Array:
        t = iteration(s, hw, prefill_par, prec, k, decode_seqs=0.0, ctx=isl_f, prompts=b, prompt_len=new,
                      prompt_prefix=cached).total
        return np.asarray(t * pp_p, dtype=np.float64)

    per_token = iterations_per_token(osl_f, draft_tokens, acceptance)

    def decode(b: FloatOrArray) -> Array:  # decoding time per output token
        micro = np.maximum(b, 1.0) / pp_d
        t = decode_iteration(s, hw, decode_par, prec, k, seqs=micro, ctx=isl_f + osl_f / 2.0,
                             draft_tokens=draft_tokens)
        return np.asarray(t * pp_d * per_token, dtype=np.float64)

    transfer = kv_bytes_per_sequence_per_gpu(s, prefill_par, prec.kv, isl_f) / hw.nic_bytes_s
    alone, full = prefill(1.0), prefill(per_pass)
    mu_p = n_p * per_pass / full  # prefill workers passing full batches
    mu_d = n_d * cap / (steps * decode(cap))  # decode workers full
    tpot = decode(1.0)
    cycle = k.request_overhead_s + alone + steps * tpot
    t_p = alone
    for _ in range(iterations):
        lam = conc / cycle / n_p  # prompts/s reaching one prefill worker
        b = np.clip(lam * t_p, 1.0, per_pass)  # a pass takes the prompts that arrived during the last
        t_p = prefill(b)
        rho = np.clip(lam * t_p / b, 0.0, 1.0)  # share of time the worker is busy
        # the batched-pass wait, scaled as aggregated serving's; a closed loop's queue holds at most its
        # users: no longer than the wait that saturates the prefill pool (C/mu_p less the rest of the
        # cycle), or one pass below that
        rest = k.request_overhead_s + t_p + steps * tpot
        ceiling = np.maximum(conc / mu_p - rest, k.pool_queue_factor * t_p)
        wait = np.minimum(k.pool_queue_factor * batched_prefill_wait(t_p, full, rho, lam * full / per_pass,
                                                                     per_pass), ceiling)
        ttft = k.request_overhead_s + t_p + wait
        batch = np.clip(conc / cycle * steps * tpot / n_d, 1.0, cap)  # Little's law over the decode phase
        tpot = decode(batch) + transfer / steps
        busy = ttft + steps * tpot
        cycle = 0.5 * cycle + 0.5 * conc / np.minimum(np.minimum(conc / busy, mu_p), mu_d)
    extra = np.maximum(cycle - busy, 0.0)  # waiting at the bottleneck: for a prefill or for a decode slot
    prefill_bound = mu_p <= mu_d
    ttft = ttft + np.where(prefill_bound, extra, 0.0)
    tpot = tpot + np.where(prefill_bound, 0.0, extra / steps)
    share = np.asarray(burst, dtype=float) * k.burst_share
    waves = np.ceil(conc / (n_p * per_pass))
    first = k.request_overhead_s + prefill(np.minimum(conc / n_p, per_pass)) * (waves + 1.0) / 2.0
    blended = (1.0 - share) * ttft + share * np.maximum(first, ttft)
    cycle = cycle + (blended - ttft)  # the first wave's wait lengthens the run's mean cycle
    return DisaggregatedLoop(
        ttft_s=blended, tpot_s=tpot, output_tokens_per_s=conc * osl_f / cycle, decode_batch=batch,
        prefill_utilization=rho, fits=np.asarray(mem_p.fits & mem_d.fits, dtype=np.bool_),
    )
