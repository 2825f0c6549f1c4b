"""A discrete-event check of :func:`factoryplan.perf.serving.closed_loop_disaggregated`.

:func:`~factoryplan.perf.serving.closed_loop_disaggregated` predicts ``n_p`` prefill and ``n_d``
decode workers serving ``C`` closed-loop users in closed form: a fixed point over the cycle with an
M/D/1 wait per prefill worker (scaled by ``pool_queue_factor``, derived from this simulation), the
prompts that arrive during a pass batched into the next, the decode batch by Little's law and the
wait at the bottleneck pool. :func:`simulate_disaggregated` runs the same deployment event by event with the
same pass and step times (:func:`~factoryplan.perf.inference.iteration`), the same KV-cache
capacity (:func:`~factoryplan.perf.serving.memory`) and the same KV transfer, so that only the
queueing approximations differ.

**Deployment.** Requests reach one first-come first-served prefill queue (a disaggregated router's
shared queue: whichever prefill worker is free pulls next). A free prefill worker takes up to
``floor(budget/ISL)·dp`` waiting prompts (within its batch limit) into one pass of ``t_p(b)``;
their first tokens are out when the pass ends (the TTFT). Each sequence's KV cache then travels to a decode worker (the
closed form's transfer time, over the NIC) and joins the worker with the fewest sequences, running
or waiting. A decode worker iterates while it has sequences: at the start of an iteration it admits
waiting ones up to its capacity (KV cache and batch limit), the iteration takes ``t_dec(n)`` at the
mean context ``ISL + OSL/2`` (as the closed form), and a sequence ends at its ``OSL``-th token. The
user's next request reaches the prefill queue ``t_req`` (the engine's per-request latency) after the
last token; TTFT is ``t_req`` plus queueing plus the pass, TPOT ``(end - first token)/(OSL - 1)``.

**Runs.** The users' first requests are staggered uniformly over one closed-form cycle;
``warmup_cycles`` cycles are discarded, and the requests reaching the queue in the next ``cycles``
cycles are measured. Lengths are fixed and the workers deterministic; ``jitter`` draws each
request's latency within ``±jitter`` of ``t_req``. Pipeline parallelism is not simulated.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factoryplan.errors import FactoryplanError
from factoryplan.perf.inference import (
    Constants,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    iteration,
    kv_bytes_per_sequence_per_gpu,
)
from factoryplan.perf.serving import (
    cached_prompt,
    closed_loop_disaggregated,
    decode_iteration,
    decode_iterations,
    memory,
)


@dataclass(frozen=True)
class DisaggSimResult:
    """Means over the measured requests of one simulated run (seconds, tokens/s)."""

    ttft_s: float
    tpot_s: float
    output_tokens_per_s: float  # the deployment
    decode_batch: float  # time-mean sequences running on a decode worker
    prefill_utilization: float  # share of time the prefill workers are busy
    prompts_per_pass: float  # mean prompts a prefill pass carries
    requests: int  # measured requests


@dataclass(frozen=True)
class _Times:
    """Pass and step times of the deployment, by batch size."""

    prefill: list[float]  # index b: a pass of b prompts (0 unused)
    decode: list[float]  # index n: an iteration of n decoding sequences
    transfer: float
    per_pass: int
    cap: int


def _times(
    s: ModelShape, hw: Hardware, pre: Parallel, dec: Parallel, prec: Precision, k: Constants, isl: int, osl: int,
    decode_batch_max: float, prefill_batch_max: float = math.inf, prefix: int = 0, draft_tokens: int = 0,
) -> _Times:
    cached = int(cached_prompt(prefix, isl))
    new = isl - cached
    per_rank = max(min(int(k.token_budget // new), prefill_batch_max), 1)
    per_pass = int(per_rank) * int(np.asarray(pre.dp))
    mem_d = memory(s, hw, dec, prec, k, float(isl), float(osl))
    cap = int(max(min(float(np.asarray(mem_d.max_concurrency)), decode_batch_max * float(np.asarray(dec.dp))), 1.0))
    b = np.arange(per_pass + 1, dtype=float)
    t_p = iteration(s, hw, pre, prec, k, decode_seqs=0.0, ctx=float(isl), prompts=b, prompt_len=float(new),
                    prompt_prefix=float(cached)).total
    n = np.arange(cap + 1, dtype=float)
    t_d = decode_iteration(s, hw, dec, prec, k, seqs=np.maximum(n, 1.0), ctx=isl + osl / 2.0,
                           draft_tokens=float(draft_tokens))
    transfer = float(np.asarray(kv_bytes_per_sequence_per_gpu(s, pre, prec.kv, float(isl)) / hw.nic_bytes_s))
    return _Times(prefill=np.asarray(t_p, dtype=float).tolist(), decode=np.asarray(t_d, dtype=float).tolist(),
                  transfer=transfer, per_pass=per_pass, cap=cap)


class _Deployment:
    """Prefill and decode workers driven by one event queue."""

    def __init__(self, times: _Times, users: int, osl: int, latency: float, window: tuple[float, float],
                 stagger: float, jitter: float, prefill_workers: int, decode_workers: int, seed: int,
                 decode_iterations: int) -> None:
        self.tm, self.osl, self.latency, self.window, self.jitter = times, osl, latency, window, jitter
        self.iterations = decode_iterations  # a sequence's decode iterations (OSL - 1 over the tokens each yields)
        self.rng = np.random.default_rng(seed)
        self.events: list[tuple[float, int, str, int]] = []
        self.order = 0
        self.queue: deque[int] = deque()  # prompts waiting for a prefill worker
        self.idle_prefill = prefill_workers
        self.running: list[list[int]] = [[] for _ in range(decode_workers)]  # [request] per worker
        self.waiting: list[deque[int]] = [deque() for _ in range(decode_workers)]
        self.stepping = [False] * decode_workers
        self.tokens: dict[int, int] = {}  # request -> decode tokens still to produce
        self.arrival: list[float] = []
        self.first: list[float] = []
        self.finish: list[float] = []
        self.user: list[int] = []
        self.busy_prefill = 0.0
        self.passes = 0
        self.prefilled = 0
        self.batch_time = 0.0
        self.pending = 0
        for u in range(users):
            self._push(u * stagger / users + self._latency(), "arrive", u)

    def _latency(self) -> float:
        return self.latency * (1.0 + self.jitter * (2.0 * self.rng.random() - 1.0) if self.jitter else 1.0)

    def _push(self, at: float, kind: str, what: int) -> None:
        self.order += 1
        heapq.heappush(self.events, (at, self.order, kind, what))

    def _start_passes(self, t: float) -> None:
        while self.idle_prefill and self.queue:
            b = min(len(self.queue), self.tm.per_pass)
            batch = [self.queue.popleft() for _ in range(b)]
            self.idle_prefill -= 1
            self.passes += 1
            self.prefilled += b
            dt = self.tm.prefill[b]
            for rid in batch:
                self._push(t + dt, "first", rid)
            self._push(t + dt, "free", b)

    def _step(self, w: int, t: float) -> None:
        """Start worker ``w``'s next iteration if it has sequences."""
        run, wait = self.running[w], self.waiting[w]
        while wait and len(run) < self.tm.cap:
            run.append(wait.popleft())
        self.stepping[w] = bool(run)
        if run:
            dt = self.tm.decode[len(run)]
            self.batch_time += len(run) * dt
            self._push(t + dt, "step", w)

    def _event(self, t: float, kind: str, what: int) -> None:
        if kind == "arrive":
            rid = len(self.arrival)
            self.arrival.append(t)
            self.first.append(math.nan)
            self.finish.append(math.nan)
            self.user.append(what)
            self.pending += self.window[0] <= t < self.window[1]
            self.queue.append(rid)
        elif kind == "free":  # a pass of ``what`` prompts ended
            self.idle_prefill += 1
            self.busy_prefill += self.tm.prefill[what]
        elif kind == "first":
            self.first[what] = t
            if self.osl <= 1:
                self._end(what, t)
            else:
                self._push(t + self.tm.transfer, "ready", what)
        elif kind == "ready":
            w = min(range(len(self.running)), key=lambda i: len(self.running[i]) + len(self.waiting[i]))
            self.tokens[what] = self.iterations
            self.waiting[w].append(what)
            if not self.stepping[w]:
                self._step(w, t)
        else:  # a decode iteration of worker ``what`` ended
            run = self.running[what]
            for rid in list(run):
                self.tokens[rid] -= 1
                if self.tokens[rid] == 0:
                    run.remove(rid)
                    self._end(rid, t)
            self._step(what, t)
        self._start_passes(t)

    def _end(self, rid: int, t: float) -> None:
        self.finish[rid] = t
        self.pending -= self.window[0] <= self.arrival[rid] < self.window[1]
        self._push(t + self._latency(), "arrive", self.user[rid])

    def run(self) -> float:
        """Process events until every measured request has finished; the time reached."""
        t = 0.0
        while self.events:
            t, _, kind, what = heapq.heappop(self.events)
            if t >= self.window[1] and self.pending == 0:
                break
            self._event(t, kind, what)
        return t


def simulate_disaggregated(
    s: ModelShape, hw: Hardware, prefill_par: Parallel, decode_par: Parallel, prec: Precision, k: Constants, *,
    concurrency: int, isl: int, osl: int, prefill_workers: int, decode_workers: int,
    decode_batch_max: float = math.inf, prefill_batch_max: float = math.inf, warmup_cycles: float = 3.0,
    cycles: float = 5.0, jitter: float = 0.0, seed: int = 0, prefix: int = 0, draft_tokens: int = 0,
    acceptance: float = 0.0,
) -> DisaggSimResult:
    """Simulate ``concurrency`` closed-loop users of a disaggregated deployment (module docstring);
    ``decode_batch_max``/``prefill_batch_max``: the workers' batch limits per attention-DP rank;
    ``prefix`` cached prompt tokens are not prefilled; with ``draft_tokens`` a decode iteration
    verifies drafts and a sequence ends after ``ceil((OSL - 1)/E)`` of them (the mean tokens an
    iteration yields, :func:`~factoryplan.perf.serving.tokens_per_step`)."""
    for name, value in (("concurrency", concurrency), ("isl", isl), ("osl", osl),
                        ("prefill_workers", prefill_workers), ("decode_workers", decode_workers)):
        if value < 1:
            raise FactoryplanError("must be a positive whole number", field=name, value=value)
    for name, par in (("prefill_par", prefill_par), ("decode_par", decode_par)):
        if float(np.asarray(par.pp)) != 1.0:
            raise FactoryplanError("the disaggregated simulation runs pp = 1 only", field=name, value=par.pp,
                                   allowed="1")
    ref = closed_loop_disaggregated(
        s, hw, prefill_par, decode_par, prec, k, concurrency=float(concurrency), isl=float(isl), osl=float(osl),
        prefill_workers=float(prefill_workers), decode_workers=float(decode_workers),
        decode_batch_max=decode_batch_max, prefill_batch_max=prefill_batch_max, prefix=float(prefix),
        draft_tokens=float(draft_tokens), acceptance=acceptance)
    if not bool(np.asarray(ref.fits)):
        raise FactoryplanError("the model does not fit the prefill or decode workers", field="par")
    times = _times(s, hw, prefill_par, decode_par, prec, k, isl, osl, decode_batch_max, prefill_batch_max, prefix,
                   draft_tokens)
    iters = decode_iterations(osl, draft_tokens, acceptance)
    cycle = concurrency * osl / float(np.asarray(ref.output_tokens_per_s))
    start = k.request_overhead_s + warmup_cycles * cycle
    dep = _Deployment(times, concurrency, osl, k.request_overhead_s, (start, start + cycles * cycle), cycle, jitter,
                      prefill_workers, decode_workers, seed, iters)
    end = dep.run()
    arrival, first, finish = np.asarray(dep.arrival), np.asarray(dep.first), np.asarray(dep.finish)
    sel = (arrival >= start) & (arrival < start + cycles * cycle) & np.isfinite(finish)
    steps = max(osl - 1, 1)
    latency = k.request_overhead_s
    return DisaggSimResult(
        ttft_s=latency + float(np.mean(first[sel] - arrival[sel])),
        tpot_s=float(np.mean(finish[sel] - first[sel])) / steps,
        output_tokens_per_s=concurrency * osl / (latency + float(np.mean(finish[sel] - arrival[sel]))),
        decode_batch=dep.batch_time / end / decode_workers if end > 0 else 0.0,
        prefill_utilization=dep.busy_prefill / end / prefill_workers if end > 0 else 0.0,
        prompts_per_pass=dep.prefilled / max(dep.passes, 1),
        requests=int(sel.sum()),
    )


def simulate_prefill_replica(
    pass_s: Sequence[float], full: int, rate: float, *, requests: int = 20_000, seed: int = 0
) -> tuple[float, float, float]:
    """One prefill replica under Poisson arrivals of ``rate`` prompts/s: (mean wait before a prompt's
    pass, mean pass time, busy share). A free replica takes every waiting prompt, up to ``full``, into
    a pass of ``pass_s[b]`` seconds; an idle one starts on the next arrival. The first tenth of the
    requests is discarded as warm-up. The open-loop check of the capacity planner's prefill queue."""
    waits, passes, busy = _prefill_replica_run(pass_s, full, rate, requests, seed)
    return float(np.mean(waits)), float(np.mean(passes)), busy


def prefill_replica_percentiles(
    pass_s: Sequence[float], full: int, rate: float, percentiles: Sequence[float], *, requests: int = 20_000,
    seed: int = 0, isl_cv: float = 0.0,
) -> dict[float, float]:
    """Percentile (per cent) -> the wait plus pass that share of the prompts of
    :func:`simulate_prefill_replica`'s replica does not exceed. ``isl_cv``: the prompts' lengths are
    drawn from a gamma distribution of mean 1 (in units of the mean prompt) and this coefficient of
    variation; a pass then takes waiting prompts first come first served while their lengths add up
    to at most ``full`` (at least one prompt), and lasts ``pass_s`` at that sum (interpolated; a
    prompt longer than ``full`` takes that many full passes' time)."""
    waits, passes, _ = _prefill_replica_run(pass_s, full, rate, requests, seed, isl_cv)
    return {p: float(np.percentile(waits + passes, p)) for p in percentiles}


def _prefill_replica_run(
    pass_s: Sequence[float], full: int, rate: float, requests: int, seed: int, isl_cv: float = 0.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(wait, pass) of each measured prompt and the busy share of :func:`simulate_prefill_replica`'s run."""
    if rate <= 0 or full < 1 or requests < 10:
        raise FactoryplanError("a positive rate, batch limit and at least 10 requests", field="rate", value=rate)
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, requests)).tolist()
    shape = 1.0 / isl_cv**2 if isl_cv > 0 else 0.0
    sizes = (rng.gamma(shape, 1.0 / shape, requests) if isl_cv > 0 else np.ones(requests)).tolist()
    table = np.asarray(pass_s, dtype=float)
    queue: deque[int] = deque()
    waits, passes = [0.0] * requests, [0.0] * requests
    t = busy = 0.0
    i = 0  # arrivals queued; served first come, first served
    while i < requests or queue:
        if not queue:
            t = max(t, arrivals[i])
        while i < requests and arrivals[i] <= t:
            queue.append(i)
            i += 1
        batch = [queue.popleft()]
        load = sizes[batch[0]]
        while queue and len(batch) < full and load + sizes[queue[0]] <= full:
            load += sizes[queue[0]]
            batch.append(queue.popleft())
        if isl_cv <= 0:
            dt = float(table[len(batch)])
        elif load <= len(table) - 1:
            dt = float(np.interp(load, np.arange(len(table)), table))
        else:  # one prompt longer than a full pass: as many full passes as it fills
            dt = float(table[-1]) * load / (len(table) - 1)
        for r in batch:
            waits[r], passes[r] = t - arrivals[r], dt
        busy += dt
        t += dt
    skip = requests // 10
    return np.asarray(waits[skip:]), np.asarray(passes[skip:]), busy / t
