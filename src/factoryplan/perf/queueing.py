"""Queueing formulas of the serving engine: waiting-time tails of single-server queues under Poisson
arrivals, the mean wait of a closed loop's prompts at the busy share the loop reaches, and the mean
wait of a prefill worker that batches the prompts waiting at each pass.

Pure vectorized functions of busy shares, service times and percentiles; :mod:`factoryplan.perf.serving`
applies them to a replica's prompt iterations (open-loop TTFT percentiles) and a disaggregated
prefill pool, :mod:`factoryplan.perf.capacity_disagg` to a prefill replica's batched passes.
"""

from __future__ import annotations

import functools

import numpy as np

from factoryplan.perf.inference import Array, FloatOrArray


def mg1_tail(busy: FloatOrArray, service_s: FloatOrArray, cv: float) -> tuple[Array, Array, Array]:
    """(busy share ``ρ`` held in [1e-9, 0.98], residue ``C``, decay rate ``θ``) of the exponential tail
    ``P(W > t) ≈ C·e^{-θt}`` of the Pollaczek-Khinchine waiting time of an M/G/1 queue whose service
    times have mean ``D`` and follow a gamma distribution of coefficient of variation ``cv`` (0: fixed,
    M/D/1): ``x = θD > 0`` solves ``ρ(M(x) - 1) = x`` with ``M`` the service time's moment-generating
    function in units of ``D`` (``e^x`` when fixed, ``(1 - x·cv²)^(-1/cv²)`` for the gamma), and
    ``C = (1 - ρ)/(ρ·M'(x) - 1)`` (Cramér-Lundberg). Fixed: Newton's steps from the right of the root
    (where the convex function is positive) descend to it. Gamma: bisection below the fixed root
    (the gamma's ``M`` is the larger, so its root the smaller); where none lies short of the pole
    ``1/cv²`` (very spread lengths at light load) the wait's tail is the service time's own, of rate
    ``1/(cv²·D)``, its residue taken as ``ρ``."""
    rho = np.clip(np.asarray(busy, dtype=float), 1e-9, 0.98)
    c = float(cv) ** 2
    x = 2.0 * np.log(1.0 / rho) + 2.0
    for _ in range(40):
        ex = np.exp(x)
        x = x - (rho * (ex - 1.0) - x) / (rho * ex - 1.0)
    if c <= 0.0:
        residue = (1.0 - rho) / (rho * np.exp(x) - 1.0)
        return rho, residue, x / np.asarray(service_s, dtype=float)
    pole = 1.0 / c

    def f(v: Array) -> Array:
        return np.asarray(rho * ((1.0 - v * c) ** (-pole) - 1.0) - v, dtype=np.float64)

    hi = np.minimum(x, pole * (1.0 - 1e-9))
    found = f(hi) >= 0.0
    lo = np.zeros_like(hi) + 1e-12
    for _ in range(60):
        mid = (lo + hi) / 2.0
        right = f(mid) >= 0.0
        lo, hi = np.where(right, lo, mid), np.where(right, mid, hi)
    x = np.where(found, hi, pole)
    slope = (1.0 - np.minimum(x, pole * (1.0 - 1e-9)) * c) ** (-pole - 1.0)
    residue = np.where(found, (1.0 - rho) / (rho * slope - 1.0), rho)
    return rho, np.clip(residue, 0.0, 1.0), x / np.asarray(service_s, dtype=float)


def closed_loop_wait(
    scale: FloatOrArray, service_s: FloatOrArray, work_s: FloatOrArray, rest_s: FloatOrArray
) -> tuple[Array, Array]:
    """(mean wait, busy share) of a closed loop's prompts at the prefill server: the wait ``W`` that a
    scaled Pollaczek-Khinchine (M/D/1) mean gives at the busy share the loop itself reaches.

    Each user's cycle is ``rest_s`` (``Z``: everything but the wait; its own prompt iterations, the
    decode iterations, the per-request latency) plus ``W``, and puts ``work_s`` (``P·D``: the prompt
    iterations of a cycle, ``D = service_s`` each) on the server, so the server is busy
    ``u = P·D/(Z + W)`` of the time: a longer wait stretches the cycle and thins the arrivals. With
    ``W = f·u·D/(2(1 - u))`` (``f = scale``) the two give the quadratic
    ``(2Z - f·D)·u² - 2(P·D + Z)·u + 2·P·D = 0``, positive at ``u = 0`` and ``-f·D`` at ``u = 1``: one
    root in (0, 1), taken in the form that stays exact as its leading term vanishes. Light load: ``u``
    is the offered ``P·D/Z`` and ``W`` the M/D/1 mean; past the server's capacity (``P·D > Z``) ``u``
    tends to 1 and ``W`` to ``P·D - Z``, the cycle the server needs, which the M/D/1 mean at the
    offered load (held below 1) overstates, as far as the clip lets it. ``scale`` 0: no wait."""
    f = np.asarray(scale, dtype=float)
    d = np.asarray(service_s, dtype=float)
    pd = np.maximum(np.asarray(work_s, dtype=float), 0.0)
    z = np.maximum(np.asarray(rest_s, dtype=float), 1e-12)
    b = 2.0 * (pd + z)
    with np.errstate(invalid="ignore", over="ignore"):  # an endless prompt (inf) gives an endless wait
        disc = np.maximum(b * b - 8.0 * (2.0 * z - f * d) * pd, 0.0)
        u = np.where(np.isfinite(pd), np.clip(4.0 * pd / np.maximum(b + np.sqrt(disc), 1e-300), 0.0, 1.0 - 1e-9),
                     1.0 - 1e-9)
        wait = f * u * d / (2.0 * (1.0 - u))
    return np.asarray(wait, dtype=np.float64), np.asarray(u, dtype=np.float64)


def md1_wait_quantile(busy: FloatOrArray, service_s: FloatOrArray, percentile: FloatOrArray) -> Array:
    """The wait that ``percentile`` per cent of the customers of an M/D/1 queue (Poisson arrivals, service
    time ``D``, busy ``ρ`` of the time) do not exceed.

    ``P(W > t) ≈ C·e^{-θt}``, the exact exponential tail of the Pollaczek-Khinchine waiting time
    (:func:`mg1_tail`); no wait at all when ``ρ <= 1 - p`` (a share ``1 - ρ`` of arrivals finds the
    server idle). Against a Lindley-recursion simulation of M/D/1 the 90th and 99th percentiles are
    within 3% for ``ρ`` 0.3-0.9 (7% low at ``ρ`` = 0.95, P99). Just above ``ρ = 1 - p`` the tail's
    ``C > ρ`` starts the quantile at up to half a service time where the true one starts at zero
    (conservative). ``ρ`` is held below 0.98.
    """
    rho, c, theta = mg1_tail(busy, service_s, 0.0)
    q = np.asarray(percentile, dtype=float) / 100.0
    t = np.log(c / (1.0 - q)) / theta
    return np.asarray(np.where(rho <= 1.0 - q, 0.0, np.maximum(t, 0.0)), dtype=np.float64)


@functools.cache
def _normal_nodes(nodes: int) -> Array:
    """Standard normal quantiles at the midpoints of ``nodes`` equally likely slices."""
    from statistics import NormalDist  # here: only variable prompt lengths need it

    return np.array([NormalDist().inv_cdf((i + 0.5) / nodes) for i in range(nodes)])


def length_nodes(cv: FloatOrArray, nodes: int = 64) -> Array:
    """Prompt lengths over their mean at the midpoints of ``nodes`` equally likely slices of a gamma
    distribution of coefficient of variation ``cv`` (Wilson-Hilferty's cube of a normal quantile,
    scaled to mean 1), along a last axis added to ``cv``'s: an average over them is an expectation
    over the prompts. All 1 where the lengths are fixed."""
    z = _normal_nodes(nodes)
    v = np.maximum(np.asarray(cv, dtype=float), 1e-6)[..., None]
    x = np.maximum(1.0 - v**2 / 9.0 + z * v / 3.0, 0.0) ** 3  # shape k = 1/cv²: 1/(9k) = cv²/9, 1/(3√k) = cv/3
    return np.asarray(x / x.mean(axis=-1, keepdims=True), dtype=np.float64)


def exponential_wait_quantile(mean_s: FloatOrArray, busy: FloatOrArray, percentile: FloatOrArray) -> Array:
    """The wait that ``percentile`` per cent of arrivals do not exceed when a share ``1 - ρ`` finds no
    queue and the others wait an exponentially distributed time of mean ``W/ρ`` (``W`` the mean over
    all): ``(W/ρ)·ln(ρ/(1 - p))``, 0 when ``ρ <= 1 - p``. The tail of a prefill replica that batches
    the prompts waiting at the start of each pass (:func:`batched_prefill_wait`'s mean), checked against
    its event-by-event simulation (``benchmarks/disagg_sim.py``)."""
    rho = np.clip(np.asarray(busy, dtype=float), 1e-9, 1.0)
    q = np.asarray(percentile, dtype=float) / 100.0
    t = np.asarray(mean_s, dtype=float) / rho * np.log(rho / (1.0 - q))
    return np.asarray(np.where(rho <= 1.0 - q, 0.0, np.maximum(t, 0.0)), dtype=np.float64)


def length_sum_quantile(
    own: FloatOrArray, tail: tuple[Array, Array, Array], cv: FloatOrArray, percentile: FloatOrArray
) -> Array:
    """The ``percentile`` of ``own·L + W``: a prompt's length-dependent time (``own`` at the mean length,
    ``L`` a gamma of coefficient of variation ``cv``, :func:`length_nodes`) plus a wait whose tail is
    ``P(W > w) = min(ρ, C·e^{-θw})`` (``tail`` = (ρ, C, θ)); by bisection on the survival function."""
    q = np.asarray(percentile, dtype=float) / 100.0
    nodes = length_nodes(cv)
    rho, c, theta = tail
    shape = np.broadcast(np.asarray(own), rho, c, theta, q).shape
    lo = np.zeros(shape)
    hi = np.asarray(own, dtype=float) * nodes.max(axis=-1) + np.maximum(
        np.log(np.maximum(c, 1e-12) / (1.0 - q)), 0.0) / theta
    hi = np.broadcast_to(hi, shape).copy()
    for _ in range(30):  # to 1e-9 of the upper bound
        mid = (lo + hi) / 2.0
        above = sum_survival(mid, own, tail, nodes) > 1.0 - q
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return hi


def sum_survival(t: FloatOrArray, own: FloatOrArray, tail: tuple[Array, Array, Array], nodes: Array) -> Array:
    """P(own·L + W > t) of :func:`length_sum_quantile`, averaged over the lengths ``nodes``
    (:func:`length_nodes`, along the last axis)."""
    rho, c, theta = (np.asarray(a, dtype=float)[..., None] for a in tail)
    w = np.asarray(t, dtype=float)[..., None] - np.asarray(own, dtype=float)[..., None] * nodes
    above = np.minimum(rho, c * np.exp(-theta * np.maximum(w, 0.0)))
    return np.asarray(np.where(w < 0.0, 1.0, above).mean(axis=-1), dtype=np.float64)


def batched_prefill_wait(
    t_pass: FloatOrArray, t_full: FloatOrArray, busy: FloatOrArray, load: FloatOrArray, full: FloatOrArray
) -> Array:
    """Mean wait of a prompt before its pass on a prefill worker that takes every waiting prompt, up
    to ``B = full``, into one pass (``t_pass`` the pass it gets, ``t_full`` a full one), Poisson arrivals.

    ``W = (1 - 1/B)·ρ·t_pass/2 + r·t_full/(2B(1 - r))``: the rest of the pass in flight (busy share
    ``ρ``) and the prompts left over when passes fill, whose count in heavy traffic is Kingman's
    ``r/(2(1 - r))`` for a queue that serves ``B`` per pass (per-pass arrivals of variance ``r·B``,
    drift ``-B(1 - r)``; ``r`` the load against full passes, at most 0.95). ``B = 1`` gives M/D/1.
    Checked against an event-by-event simulation of one worker
    (:func:`factoryplan.perf.disagg_sim.simulate_prefill_replica`, ``benchmarks/disagg_sim.py``).
    """
    b = np.maximum(np.asarray(full, dtype=float), 1.0)
    r = np.clip(np.asarray(load, dtype=float), 0.0, 0.95)
    return np.asarray((1.0 - 1.0 / b) * busy * t_pass / 2.0 + r * t_full / (2.0 * b * (1.0 - r)), dtype=np.float64)
