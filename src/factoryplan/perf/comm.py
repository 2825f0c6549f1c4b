"""Collective communication times on a two-level network: a scale-up domain and a scale-out fabric.

GPUs are placed in rank order with tensor parallelism innermost, then context, data (or expert)
and pipeline parallelism outermost (Megatron-LM's ``tp-cp-ep-dp-pp`` order). A group of ``n``
ranks spaced ``stride`` apart spans ``n * stride`` consecutive GPUs; it stays inside one NVLink /
NVSwitch domain of ``D`` GPUs when ``n * stride <= D`` and otherwise crosses the scale-out fabric,
where each GPU has its own NIC(s) (rail-optimised).

Bandwidths are per GPU and per direction, in bytes/s, already multiplied by the achievable
fraction of the link rate. Latencies are per ring step, in seconds (Hockney's alpha-beta model,
as in Thakur, Rabenseifner and Gropp 2005 and NCCL's tuning model): a ring all-gather or
reduce-scatter of a tensor of ``X`` bytes over ``n`` ranks takes
``(n-1)/n * X / bw + steps * alpha``. Every function accepts floats or numpy arrays and returns 0
where a group has one rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
FloatOrArray = float | npt.NDArray[Any]  # any numeric array (degrees are integer arrays)


@dataclass(frozen=True)
class Links:
    """The network one GPU sees: bandwidth per direction (bytes/s, effective) and step latency (s)."""

    domain_gpus: int  # GPUs in one scale-up (NVLink) domain
    scaleup_bytes_s: float
    scaleout_bytes_s: float
    scaleup_latency_s: float
    scaleout_latency_s: float
    nic_aggregation: bool = True  # rings spread a domain's boundary traffic over its NICs


def ranks_per_domain(n: FloatOrArray, stride: FloatOrArray, domain: int) -> Array:
    """Ranks of a group that share one scale-up domain: ``clip(D // stride, 1, n)``."""
    n_a = np.asarray(n, dtype=np.float64)
    per = np.floor(domain / np.maximum(np.asarray(stride, dtype=np.float64), 1.0))
    return np.asarray(np.clip(per, 1.0, np.maximum(n_a, 1.0)), dtype=np.float64)


def within_domain(n: FloatOrArray, stride: FloatOrArray, domain: int) -> npt.NDArray[np.bool_]:
    """Whether every group of ``n`` ranks spaced ``stride`` apart lies inside one scale-up domain:
    its span ``n * stride`` must divide the domain (a 64-GPU group in 72-GPU NVL72 racks straddles
    two racks for most of its placements)."""
    span = np.asarray(n, dtype=np.float64) * np.asarray(stride, dtype=np.float64)
    return np.asarray((span <= domain) & (np.mod(domain, np.maximum(span, 1.0)) == 0), dtype=np.bool_)


def group_bandwidth(n: FloatOrArray, stride: FloatOrArray, links: Links) -> Array:
    """Ring bandwidth per rank of a group: the scale-up link when all ``n*stride`` GPUs share one
    domain; otherwise ``min(scale-up, g * NIC)`` with ``g`` ranks per domain. A ring crosses each
    domain boundary once per channel, and the ``stride`` groups that share a domain split its
    ``D`` NICs, so each group moves its boundary traffic over ``g`` NICs (NCCL's multi-channel rings
    with PXN; an all-reduce over whole 8-GPU nodes reaches about 8 NICs' worth of bus bandwidth).
    Without that aggregation (``links.nic_aggregation`` false) each rank is held to its own NIC."""
    g = ranks_per_domain(n, stride, links.domain_gpus) if links.nic_aggregation else 1.0
    across = np.minimum(links.scaleup_bytes_s, g * links.scaleout_bytes_s)
    return np.where(within_domain(n, stride, links.domain_gpus), links.scaleup_bytes_s, across)


def ring_latency(n: FloatOrArray, stride: FloatOrArray, links: Links) -> Array:
    """Latency of one ring pass: ``(g-1)`` scale-up steps plus ``(n/g - 1)`` scale-out steps, with
    ``g`` the ranks per domain (hierarchical rings, as NCCL builds them)."""
    n_a = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    g = ranks_per_domain(n_a, stride, links.domain_gpus)
    return (g - 1.0) * links.scaleup_latency_s + (n_a / g - 1.0) * links.scaleout_latency_s


def ring_time(tensor_bytes: FloatOrArray, n: FloatOrArray, stride: FloatOrArray, links: Links) -> Array:
    """All-gather or reduce-scatter of a tensor of ``tensor_bytes`` (the full, unsharded size):
    ``(n-1)/n * X / bw + latency``; 0 when ``n == 1``."""
    n_a = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    bw = group_bandwidth(n_a, stride, links)
    t = (n_a - 1.0) / n_a * np.asarray(tensor_bytes, dtype=np.float64) / bw + ring_latency(n_a, stride, links)
    return np.where(n_a > 1.0, t, 0.0)


def allreduce_time(tensor_bytes: FloatOrArray, n: FloatOrArray, stride: FloatOrArray, links: Links) -> Array:
    """Ring all-reduce: a reduce-scatter followed by an all-gather, ``2 * ring_time``."""
    return 2.0 * ring_time(tensor_bytes, n, stride, links)


def alltoall_time(send_bytes: FloatOrArray, n: FloatOrArray, stride: FloatOrArray, links: Links) -> Array:
    """All-to-all where each rank sends ``send_bytes`` spread evenly over the ``n`` ranks.

    A share ``(g-1)/n`` goes to ranks in the same domain over the scale-up links and ``(n-g)/n``
    leaves the domain through the GPU's own NIC (every GPU of a domain sends at once, so the NICs
    are not shared); the two proceed in parallel, so the time is the slower of the two plus one
    latency per destination domain. 0 when ``n == 1``.
    """
    n_a = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    x = np.asarray(send_bytes, dtype=np.float64)
    inside = within_domain(n_a, stride, links.domain_gpus)
    g = np.where(inside, n_a, np.minimum(ranks_per_domain(n_a, stride, links.domain_gpus), n_a / 2.0))
    g = np.maximum(g, 1.0)
    intra = x * (g - 1.0) / n_a / links.scaleup_bytes_s
    inter = x * (n_a - g) / n_a / links.scaleout_bytes_s
    latency = np.where(n_a > g, links.scaleout_latency_s * (n_a / g), links.scaleup_latency_s)
    return np.where(n_a > 1.0, np.maximum(intra, inter) + latency, 0.0)


def p2p_time(message_bytes: FloatOrArray, crosses_domain: npt.NDArray[np.bool_], links: Links) -> Array:
    """One point-to-point send (pipeline stages): over NVLink inside a domain, else the NIC."""
    bw = np.where(crosses_domain, links.scaleout_bytes_s, links.scaleup_bytes_s)
    lat = np.where(crosses_domain, links.scaleout_latency_s, links.scaleup_latency_s)
    return np.asarray(message_bytes, dtype=np.float64) / bw + lat


def exposed(comm_s: FloatOrArray, window_s: FloatOrArray, overlap: FloatOrArray) -> Array:
    """Communication left on the critical path when at most a share ``overlap`` of it can run
    concurrently with ``window_s`` of independent compute: ``max(comm - window, (1 - overlap) * comm)``.
    ``overlap = 0``: all of it is exposed; ``overlap = 1``: only what exceeds the window."""
    c = np.asarray(comm_s, dtype=np.float64)
    f = np.asarray(overlap, dtype=np.float64)
    return np.asarray(np.maximum(c - np.asarray(window_s, dtype=np.float64), (1.0 - f) * c), dtype=np.float64)


__all__ = [
    "Links",
    "allreduce_time",
    "alltoall_time",
    "exposed",
    "group_bandwidth",
    "p2p_time",
    "ranks_per_domain",
    "ring_latency",
    "ring_time",
    "within_domain",
]
