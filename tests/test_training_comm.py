"""Collective times on a scale-up domain and a scale-out fabric, and the goodput of a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factoryplan.perf import comm, goodput
from factoryplan.units import SECONDS_PER_YEAR

HGX = comm.Links(domain_gpus=8, scaleup_bytes_s=400e9, scaleout_bytes_s=50e9, scaleup_latency_s=1e-6,
                 scaleout_latency_s=1e-5)
NVL72 = comm.Links(domain_gpus=72, scaleup_bytes_s=800e9, scaleout_bytes_s=50e9, scaleup_latency_s=1e-6,
                   scaleout_latency_s=1e-5)


def test_one_rank_costs_nothing() -> None:
    assert float(comm.ring_time(1e9, 1.0, 1.0, HGX)) == 0.0
    assert float(comm.alltoall_time(1e9, 1.0, 1.0, HGX)) == 0.0


def test_ring_inside_the_domain() -> None:
    # (n-1)/n * X / bw + (n-1) * alpha
    assert float(comm.ring_time(8e9, 8.0, 1.0, HGX)) == pytest.approx(7 / 8 * 8e9 / 400e9 + 7e-6)
    ring = float(comm.ring_time(8e9, 8.0, 1.0, HGX))
    assert float(comm.allreduce_time(8e9, 8.0, 1.0, HGX)) == pytest.approx(2 * ring)


def test_groups_across_nodes_share_the_nics() -> None:
    # stride 8: one rank per node, each held to its NIC; stride 1 over 2 nodes: 8 NICs per ring
    assert float(comm.group_bandwidth(16.0, 8.0, HGX)) == 50e9
    assert float(comm.group_bandwidth(16.0, 1.0, HGX)) == 400e9
    assert float(comm.group_bandwidth(16.0, 4.0, HGX)) == 100e9
    alone = comm.Links(**{**HGX.__dict__, "nic_aggregation": False})
    assert float(comm.group_bandwidth(16.0, 1.0, alone)) == 50e9


def test_nvl72_domain_keeps_large_groups_on_nvlink() -> None:
    assert not bool(comm.within_domain(64.0, 1.0, 8))
    assert bool(comm.within_domain(8.0, 1.0, 72))
    assert not bool(comm.within_domain(64.0, 1.0, 72))  # a 64-GPU group straddles 72-GPU racks
    assert float(comm.ring_time(1e9, 8.0, 8.0, NVL72)) < float(comm.ring_time(1e9, 8.0, 8.0, HGX)) / 5


def test_alltoall_across_nodes_is_nic_bound() -> None:
    inside = float(comm.alltoall_time(1e9, 8.0, 1.0, HGX))
    across = float(comm.alltoall_time(1e9, 32.0, 1.0, HGX))
    assert inside == pytest.approx(1e9 * 7 / 8 / 400e9 + 1e-6)
    assert across == pytest.approx(1e9 * 24 / 32 / 50e9 + 4 * 1e-5)


def test_exposed_communication() -> None:
    assert float(comm.exposed(1.0, 10.0, 0.0)) == 1.0
    assert float(comm.exposed(1.0, 10.0, 1.0)) == 0.0
    assert float(comm.exposed(1.0, 10.0, 0.8)) == pytest.approx(0.2)
    assert float(comm.exposed(5.0, 2.0, 0.8)) == pytest.approx(3.0)
    assert np.allclose(comm.exposed(np.array([1.0, 5.0]), np.array([10.0, 2.0]), 0.8), [0.2, 3.0])


def test_young_interval_and_goodput() -> None:
    assert float(goodput.young_interval(60.0, 3600.0)) == pytest.approx(math.sqrt(2 * 60 * 3600))
    useful, tau = goodput.goodput(3600.0, 600.0, 60.0)
    assert tau == pytest.approx(math.sqrt(2 * 60 * 3600))
    assert useful == pytest.approx(tau / (tau + 60) * (1 - (600 + (tau + 60) / 2) / 3600))
    assert goodput.goodput(math.inf, 600.0, 60.0) == (1.0, math.inf)
    assert goodput.goodput(100.0, 600.0, 60.0)[0] == 0.0  # fails faster than it restarts


def test_llama3_failure_rate_gives_an_interruption_every_three_hours() -> None:
    # 0.17 unexpected interruptions per GPU-year on 16,384 H100 (Llama 3 paper): about every 3 hours
    mtbf = float(goodput.mean_time_between_failures(16384.0, 0.17 / SECONDS_PER_YEAR))
    assert mtbf / 3600 == pytest.approx(3.1, abs=0.2)
    assert math.isinf(float(goodput.mean_time_between_failures(8.0, 0.0)))


def test_run_figures() -> None:
    asm = goodput.RunAssumptions(interruptions_per_gpu_s=0.17 / SECONDS_PER_YEAR, restart_s=600.0,
                                 checkpoint_bytes_s_per_gpu=1e9, power_fraction=0.75)
    r = goodput.run(1e12, 1e6, 2.0, 1024, 70e9, 1400.0, asm)
    assert r.steps == 1_000_000
    assert r.compute_s == 2e6
    assert 0.9 < r.goodput < 1.0
    wall = r.compute_s / r.goodput
    assert r.wall_clock_days == pytest.approx(wall / 86400)
    assert r.gpu_hours == pytest.approx(1024 * wall / 3600)
    assert r.energy_mwh == pytest.approx(1024 * wall * 1400 * 0.75 / 3.6e9)
    more = goodput.run(1e12, 1e6, 2.0, 16384, 70e9, 1400.0, asm)
    assert more.goodput < r.goodput  # more GPUs fail more often
