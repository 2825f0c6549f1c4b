"""A discrete-event check of :func:`factoryplan.perf.serving.serve`: one replica, iteration by iteration.

:func:`~factoryplan.perf.serving.serve` predicts TTFT and TPOT of ``C`` closed-loop users in closed
form: it counts the iterations per cycle that carry prompt chunks (arrivals spread uniformly), adds
an M/D/1 wait scaled by the engine's ``prefill_queue_factor`` (derived from this simulation) and,
for burst-started runs, blends in the first wave's staircase with the fitted ``burst_share``.
:func:`simulate` runs the same engine one iteration at a time, with the same step time
(:func:`~factoryplan.perf.inference.iteration`), the same engine constants and the same KV-cache
capacity (:func:`~factoryplan.perf.serving.memory`), so that only the scheduling and queueing
approximations differ.

**Engine.** One attention-data-parallel rank serves ``c = C/dp`` users; the other ``dp - 1`` ranks
are taken to do the same at the same time (serve()'s treatment of ranks that prefill together,
as an engine that balances prompts over them makes them; serve() counts the prompt iterations of
every rank for engines whose ranks schedule alone, which this simulation does not follow), so an
iteration of ``n`` decodes and ``P`` prompt tokens on the rank costs
``iteration(decode_seqs = n·dp, prompts = P/ISL·dp, prompt_len = ISL, ctx = mean context)``.
Pipeline parallelism is not simulated (``pp = 1`` only). At most ``min(c, C_max/dp)`` requests
are admitted (``C_max`` the KV-cache capacity :func:`~factoryplan.perf.serving.memory` gives);
others wait for a finished one's slot. Each iteration:

* engines that mix prompts into decode iterations (``mixes_prefill``: TensorRT-LLM, vLLM): every
  decoding sequence (one token each) plus prompt chunks taken first-come first-served from the
  admitted prompts until ``token_budget - n_decoding`` tokens are used; a longer prompt is chunked
  over iterations;
* engines that pause decoding for prompts (SGLang): a prefill-only iteration of up to
  ``token_budget`` prompt tokens (first-come first-served, chunked) while prompts wait, else a
  decode-only iteration.

A prompt's first token is out at the end of the iteration that runs its last chunk; the sequence
then decodes one token per decoding iteration and finishes (frees its slot) at its ``OSL``-th
token. The decoding sequences attend to their actual context (``ISL`` + tokens so far); serve()
uses the mean ``ISL + OSL/2`` for every one of them.

**What is and is not modelled; TTFT as compared.** serve()'s steady-state TTFT is
``base + K·t_p + W`` with ``base = t_req + f·t_dec`` (the engine's per-request latency and the
fitted ``f = first_token_steps`` decode iterations: "the iteration in flight at arrival, one to
return the token"), ``K·t_p`` the prompt's own iterations and ``W`` the M/D/1 wait behind other
prompts. The simulator has no HTTP, tokenizer or output path and does not model ``f``: ``base`` is
taken from serve() as a plain latency between a user's last token and the engine seeing the next
request (so the cycle, and with it the load, is the closed form's) and is added to the simulated
TTFT unchanged. What the simulator measures is the engine part, ``ttft_engine_s``: from the
request reaching the engine to the end of its last prompt iteration (the wait for a slot, the wait
behind other prompts, its own chunks and their sharing of iterations with other prompts and
decodes). One piece is left out of it: when the request arrives during a decode-only iteration, the
rest of that iteration (``residual_s``, at most one ``t_dec``) is what serve() counts within ``f``;
the rest of an iteration carrying prompts is kept (it is part of the prefill queue, as the residual
service time is part of the Pollaczek-Khinchine wait). So ``ttft_s = base + ttft_engine_s``
compares with serve()'s ``ttft_s``, and ``ttft_engine_s`` with serve()'s ``ttft_s - base``
(``K·t_p + W``, plus the wait for a slot beyond ``C_max``).

TPOT of a request is ``(finish - first token) / (OSL - 1)``, averaged over requests; throughput is
output tokens per second of the replica (all ``dp`` ranks): in steady state by Little's law,
``c·dp·OSL`` over the mean cycle (latency + reaching the engine to the last token) of the measured
requests; in a burst run all output tokens over the time the last one ends.

**Runs.** Steady state: the users' first requests are staggered uniformly over one closed-form
cycle; ``warmup_cycles`` cycles are discarded and the requests reaching the engine in the next
``cycles`` cycles are measured (the users keep sending until they are done). Burst: every user
starts at ``t = 0`` and sends ``requests_per_user`` requests; statistics over all of them, as a
benchmark client that does not warm up reports them (``first_wave_ttft_s``: the users' first
requests only). Lengths are fixed and the engine deterministic; ``jitter`` draws each request's
latency within ``±jitter`` of ``base``. Requests whose prompts end in the same iteration decode
together and, with a fixed ``OSL``, end together and come back together: only the token budget
splits such a cohort, so closed-loop runs keep (burst) or grow (steady state, engines that pause
decoding for prompts) groups of users in step, unless the latency jitter is wide enough to part them.

**Open loop.** With ``requests_per_s`` the requests arrive as a Poisson process instead (production
traffic, nobody waiting for an answer to send the next), admitted up to the KV cache's capacity;
``benchmarks/serving_open_loop.py`` checks the capacity planner's closed-loop sizing with it.

Step times are cached per (decoding sequences, context bucket) as a row over prompt-token buckets
(``token_round`` and ``ctx_round`` tokens), so 10^5 iterations take seconds.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from factoryplan.errors import FactoryplanError
from factoryplan.perf.inference import Constants, Hardware, ModelShape, Parallel, Precision
from factoryplan.perf.serving import cached_prompt, decode_iteration, decode_iterations, serve

PERCENTILES = (50.0, 90.0, 95.0, 99.0)  # of each request's TTFT and TPOT a run reports


@dataclass(frozen=True)
class SimResult:
    """Means over the measured requests of one simulated run (seconds, tokens/s)."""

    ttft_s: float  # base + ttft_engine_s: compares with serve()'s ttft_s
    ttft_engine_s: float  # reaching the engine -> first token out, less residual_s
    residual_s: float  # rest of a decode-only iteration in flight at arrival (serve() counts it in f)
    tpot_s: float
    output_tokens_per_s: float  # the replica (all dp ranks)
    base_s: float  # serve()'s t_req + f·t_dec, the latency outside the engine
    first_wave_ttft_s: float  # burst runs: the users' first requests (nan in steady state)
    requests: int  # measured requests
    iterations: int  # iterations simulated
    prompt_iterations_per_cycle: float  # prompt-carrying iterations per c requests (serve()'s n_p; nan open loop)
    mean_decoding: float  # time-mean decoding sequences on the rank (serve() takes all c)
    ttft_percentiles_s: dict[float, float] = field(default_factory=dict)  # percentile -> TTFT of the requests
    tpot_percentiles_s: dict[float, float] = field(default_factory=dict)  # percentile -> TPOT of the requests


class StepTable:
    """Iteration times of one configuration, cached by (decoding sequences, context bucket): each
    entry is a row over prompt-token buckets, filled by one vectorized
    :func:`~factoryplan.perf.serving.decode_iteration` call (``prefix`` cached prompt tokens,
    ``draft_tokens`` of speculative decoding, as :func:`~factoryplan.perf.serving.serve`)."""

    def __init__(
        self, s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, isl: int,
        token_round: int = 64, ctx_round: int = 64, prefix: int = 0, draft_tokens: int = 0,
    ) -> None:
        self._args = (s, hw, par, prec, k)
        self._isl, self._dp = float(isl), float(np.asarray(par.dp))
        self._prefix, self._drafts = float(cached_prompt(prefix, isl)), float(draft_tokens)
        self._new = self._isl - self._prefix
        self._tr, self._cr = token_round, ctx_round
        buckets = math.ceil(k.token_budget / token_round) + 1
        self._prompts = np.arange(buckets, dtype=float) * token_round / self._new * self._dp
        self._rows: dict[tuple[int, int], list[float]] = {}

    def time(self, decoding: int, prompt_tokens: int, ctx: float) -> float:
        """Seconds of an iteration of ``decoding`` sequences at mean context ``ctx`` and
        ``prompt_tokens`` prompt tokens (any positive count is at least one bucket)."""
        pb = 0 if prompt_tokens <= 0 else max(1, round(prompt_tokens / self._tr))
        cb = 0 if decoding == 0 else round(ctx / self._cr)
        row = self._rows.get((decoding, cb))
        if row is None:
            s, hw, par, prec, k = self._args
            t = decode_iteration(s, hw, par, prec, k, seqs=decoding * self._dp,
                                 ctx=cb * self._cr if decoding else self._isl, prompts=self._prompts,
                                 prompt_len=self._new, prompt_prefix=self._prefix, draft_tokens=self._drafts)
            row = np.asarray(t, dtype=float).tolist()
            self._rows[(decoding, cb)] = row
        return row[pb]


@dataclass
class _Run:
    """How one run is driven: sizes, latency, stop rule and measurement window."""

    users: int
    slots: int
    isl: int
    osl: int
    new: int  # prompt tokens prefilled (the rest are in the prefix cache)
    decode_iterations: int  # decoding iterations after the first token (OSL - 1 over the tokens an iteration yields)
    latency: float
    burst: bool
    per_user: int  # burst: requests each user sends
    window: tuple[float, float]  # steady state: engine arrivals measured
    stagger: float  # steady state: first arrivals spread over this time
    jitter: float  # each request's latency is latency·(1 + jitter·U(-1, 1))
    rng: np.random.Generator
    rate: float = 0.0  # open loop: Poisson arrivals per second on the rank (0: closed-loop users)
    isl_cv: float = 0.0  # prompt lengths drawn from a gamma distribution of mean ``new`` and this CV (0: fixed)

    def prompt_tokens(self) -> int:
        """Tokens one request prefills: ``new``, or a gamma draw of mean ``new`` and CV ``isl_cv``."""
        if self.isl_cv <= 0:
            return self.new
        shape = 1.0 / self.isl_cv**2
        return max(1, round(float(self.rng.gamma(shape, self.new / shape))))


@dataclass
class _State:
    """The engine's state between iterations."""

    t: float = 0.0
    decode_count: int = 0  # decoding iterations run
    decoding: int = 0
    start_sum: int = 0  # sum over decoding sequences of decode_count when they started
    used: int = 0  # admitted sequences (prefilling or decoding)
    iterations: int = 0
    prompt_iterations: int = 0
    decoding_time: float = 0.0  # integral of decoding sequences over time
    pending: int = 0  # measured requests not yet finished
    last_prompt: bool = False  # the iteration that just ended carried prompt tokens
    arrivals: list[tuple[float, int, int]] = field(default_factory=list)  # (time, order, user) heap
    waiting: deque[int] = field(default_factory=deque)  # requests waiting for a slot
    prompts: deque[list[int]] = field(default_factory=deque)  # [request, prompt tokens left]
    finishing: dict[int, list[int]] = field(default_factory=dict)  # decode_count -> requests
    arrival: list[float] = field(default_factory=list)
    boundary: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    finish: list[float] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    user: list[int] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # requests each user has sent


class _Engine:
    """One attention-DP rank iterating until the run's requests are done."""

    def __init__(self, table: StepTable, k: Constants, run: _Run) -> None:
        self.table, self.k, self.run = table, k, run
        self.st = _State(sent=[0] * run.users)
        if run.rate > 0:  # open loop: arrivals drawn up front, nobody waits for an answer to send
            gaps = run.rng.exponential(1.0 / run.rate, int(run.rate * run.window[1] * 1.5) + 16)
            for i, at in enumerate(np.cumsum(gaps)):
                if at >= run.window[1]:
                    break
                heapq.heappush(self.st.arrivals, (float(at), i, -1))
            return
        for u in range(run.users):
            self._send(u, 0.0 if run.burst else u * run.stagger / run.users)

    def _send(self, user: int, after: float) -> None:
        """The user's next request reaches the engine one latency after ``after``."""
        st, run = self.st, self.run
        if user < 0 or (run.burst and st.sent[user] >= run.per_user):
            return
        st.sent[user] += 1
        at = after + run.latency * (1.0 + run.jitter * (2.0 * run.rng.random() - 1.0) if run.jitter else 1.0)
        heapq.heappush(st.arrivals, (at, len(st.arrival) + len(st.arrivals), user))

    def _admit(self) -> None:
        st = self.st
        while st.arrivals and st.arrivals[0][0] <= st.t:
            at, _, user = heapq.heappop(st.arrivals)
            rid = len(st.arrival)
            st.arrival.append(at)
            st.boundary.append(at if st.last_prompt else st.t)  # a prompt iteration in flight is queueing
            st.first.append(math.nan)
            st.finish.append(math.nan)
            st.start.append(0)
            st.user.append(user)
            if not self.run.burst and self.run.window[0] <= at < self.run.window[1]:
                st.pending += 1
            st.waiting.append(rid)
        while st.waiting and st.used < self.run.slots:
            st.prompts.append([st.waiting.popleft(), self.run.prompt_tokens()])
            st.used += 1

    def _take(self, room: int) -> tuple[int, list[int]]:
        """Prompt chunks first-come first-served into ``room`` tokens: (tokens, prompts completed)."""
        st, taken, done = self.st, 0, []
        while st.prompts and taken < room:
            entry = st.prompts[0]
            chunk = min(entry[1], room - taken)
            entry[1] -= chunk
            taken += chunk
            if entry[1] == 0:
                done.append(st.prompts.popleft()[0])
        return taken, done

    def _iterate(self) -> None:
        st, budget = self.st, int(self.k.token_budget)
        if self.k.mixes_prefill:
            decode, room = st.decoding > 0, budget - st.decoding
        else:
            decode = st.decoding > 0 and not st.prompts
            room = 0 if decode else budget
        taken, done = self._take(room)
        n = st.decoding if decode else 0
        ctx = self.run.isl + st.decode_count + 1 - st.start_sum / n if n else 0.0
        dt = self.table.time(n, taken, ctx)
        st.t += dt
        st.iterations += 1
        st.prompt_iterations += taken > 0
        st.last_prompt = taken > 0
        st.decoding_time += n * dt
        if decode:
            st.decode_count += 1
            for rid in st.finishing.pop(st.decode_count, []):
                st.decoding -= 1
                st.start_sum -= st.start[rid]
                self._finish(rid)
        for rid in done:
            self._first_token(rid)

    def _first_token(self, rid: int) -> None:
        st = self.st
        st.first[rid] = st.t
        if self.run.osl <= 1:
            self._finish(rid)
            return
        st.decoding += 1
        st.start[rid] = st.decode_count
        st.start_sum += st.decode_count
        st.finishing.setdefault(st.decode_count + self.run.decode_iterations, []).append(rid)

    def _finish(self, rid: int) -> None:
        st = self.st
        st.finish[rid] = st.t
        st.used -= 1
        if not self.run.burst and self.run.window[0] <= st.arrival[rid] < self.run.window[1]:
            st.pending -= 1
        self._send(st.user[rid], st.t)

    def _done(self) -> bool:
        st = self.st
        return not self.run.burst and st.t >= self.run.window[1] and st.pending == 0

    def run_all(self) -> _State:
        """Iterate until the run is over; the final state."""
        st = self.st
        while not self._done():
            self._admit()
            if not st.prompts and st.decoding == 0:
                if not st.arrivals:
                    break
                st.t = max(st.t, st.arrivals[0][0])
                continue
            self._iterate()
        return st


def simulate(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *, concurrency: int, isl: int,
    osl: int, burst: bool = False, requests_per_user: int = 8, warmup_cycles: float = 3.0, cycles: float = 5.0,
    latency_s: float | None = None, jitter: float = 0.0, seed: int = 0, table: StepTable | None = None,
    requests_per_s: float | None = None, prefix: int = 0, draft_tokens: int = 0, acceptance: float = 0.0,
    isl_cv: float = 0.0,
) -> SimResult:
    """Simulate ``concurrency`` closed-loop users of one replica (module docstring).

    ``latency_s``: time between a user's last token and the engine seeing the next request, and
    added to the TTFT (default serve()'s ``t_req + f·t_dec``); ``jitter``: each request's latency
    drawn uniformly within ``±jitter`` of it (``seed`` of the draws; 0: deterministic);
    ``table``: a :class:`StepTable` of the same configuration to share between runs.
    ``requests_per_s``: an open loop instead, Poisson arrivals at this rate on the replica (as
    production traffic), admitted up to the KV cache's capacity; ``concurrency`` then only sets the
    warm-up and measurement window (in cycles of that many closed-loop users). ``prefix`` cached
    prompt tokens are not prefilled; ``isl_cv``: each request's tokens to prefill are drawn from a gamma
    distribution of that mean and coefficient of variation (an iteration costed by its prompt tokens,
    the attention at the mean length); with ``draft_tokens`` each iteration verifies drafts and yields
    :func:`~factoryplan.perf.serving.tokens_per_step` tokens on average, so a sequence finishes after
    ``ceil((OSL - 1)/E)`` decoding iterations (the mean, not drawn per iteration).
    """
    dp = float(np.asarray(par.dp))
    if float(np.asarray(par.pp)) != 1.0:
        raise FactoryplanError("the serving simulation runs pp = 1 only", field="pp", value=par.pp, allowed="1")
    for name, value in (("concurrency", concurrency), ("isl", isl), ("osl", osl), ("requests_per_user",
                                                                                  requests_per_user)):
        if value < 1:
            raise FactoryplanError("must be a positive whole number", field=name, value=value)
    if concurrency % dp:
        raise FactoryplanError("concurrency must divide over the attention-DP ranks", field="concurrency",
                               value=concurrency, allowed=f"a multiple of dp = {dp:g}")
    ref = serve(s, hw, par, prec, k, concurrency=float(concurrency), isl=float(isl), osl=float(osl),
                prefix=float(prefix), draft_tokens=float(draft_tokens), acceptance=acceptance)
    if not bool(np.asarray(ref.mem.fits)):
        raise FactoryplanError("the model does not fit this parallelism", field="par", value=par)
    # with it the attention-DP balancing wait (engines that hold prompts until every rank has one), a
    # plain latency here: the simulated ranks take their prompts in step, as serve() counts them
    base = (k.request_overhead_s + k.first_token_steps * float(np.asarray(ref.decode_step_s))
            + float(np.asarray(ref.balance_s)))
    latency = base if latency_s is None else latency_s
    open_loop = requests_per_s is not None
    if open_loop and not (requests_per_s or 0.0) > 0:
        raise FactoryplanError("must be positive", field="requests_per_s", value=requests_per_s)
    users = 0 if open_loop else int(concurrency / dp)
    cap = float(np.asarray(ref.mem.max_concurrency)) if open_loop else min(float(concurrency),
                                                                           float(np.asarray(ref.mem.max_concurrency)))
    slots = max(int(cap / dp), 1)
    cycle = concurrency / float(np.asarray(ref.requests_per_s))  # one user's cycle, the wait for a slot included
    start = latency + warmup_cycles * cycle
    new = isl - int(cached_prompt(prefix, isl))
    iters = decode_iterations(osl, draft_tokens, acceptance)
    run = _Run(users=users, slots=slots, isl=isl, osl=osl, new=new, decode_iterations=iters, latency=latency,
               burst=burst,
               per_user=requests_per_user, window=(start, start + cycles * cycle), stagger=cycle,
               jitter=jitter, rng=np.random.default_rng(seed),
               rate=(requests_per_s or 0.0) / dp if open_loop else 0.0, isl_cv=isl_cv)
    st = _Engine(table or StepTable(s, hw, par, prec, k, isl, prefix=prefix, draft_tokens=draft_tokens), k,
                 run).run_all()
    return _summarise(st, run, base, dp)


def _summarise(st: _State, run: _Run, base: float, dp: float) -> SimResult:
    """Means over the measured requests of a finished run."""
    arrival, boundary = np.asarray(st.arrival), np.asarray(st.boundary)
    first, finish = np.asarray(st.first), np.asarray(st.finish)
    if run.burst:
        sel = np.isfinite(finish)
        tokens_s = float(sel.sum()) * run.osl * dp / float(finish[sel].max())
    else:
        lo, hi = run.window
        sel = (arrival >= lo) & (arrival < hi)
        if run.rate > 0:  # open loop: what arrives is served
            tokens_s = run.rate * dp * run.osl
        else:
            tokens_s = run.users * dp * run.osl / (run.latency + float(np.mean(finish[sel] - arrival[sel])))
    engine = first[sel] - boundary[sel]
    tpot = (finish[sel] - first[sel]) / (run.osl - 1) if run.osl > 1 else np.zeros(int(sel.sum()))
    first_wave = math.nan
    if run.burst:
        firsts: dict[int, int] = {}
        for rid, u in enumerate(st.user):
            firsts.setdefault(u, rid)
        ids = np.fromiter(firsts.values(), dtype=np.int64)
        first_wave = base + float(np.mean(first[ids] - boundary[ids]))
    prefilled = float(np.isfinite(first).sum())  # prompts done (prompt iterations per prompt, times c)
    return SimResult(
        ttft_s=base + float(engine.mean()), ttft_engine_s=float(engine.mean()),
        residual_s=float(np.mean(boundary[sel] - arrival[sel])), tpot_s=float(tpot.mean()),
        output_tokens_per_s=tokens_s, base_s=base, first_wave_ttft_s=first_wave, requests=int(sel.sum()),
        iterations=st.iterations,
        prompt_iterations_per_cycle=st.prompt_iterations / max(prefilled, 1.0) * run.users if run.users else math.nan,
        mean_decoding=st.decoding_time / st.t if st.t > 0 else 0.0,
        ttft_percentiles_s={q: base + float(np.percentile(engine, q)) for q in PERCENTILES},
        tpot_percentiles_s={q: float(np.percentile(tpot, q)) for q in PERCENTILES},
    )
