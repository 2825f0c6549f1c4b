"""Fat trees, planes, pods, optics and the side networks (factoryplan.infra.fabric)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from factoryplan.catalog.load import Catalog
from factoryplan.errors import CatalogError, FactoryplanError
from factoryplan.infra import fabric as fb

RADIXES = (40, 64, 128, 144, 256)


@pytest.mark.parametrize(
    ("endpoints", "radix", "expected"),
    [
        (0, 64, (0, 0, 0, 0)),
        (1, 64, (1, 1, 0, 0)),
        (64, 64, (1, 1, 0, 0)),
        (65, 64, (2, 3, 2, 0)),  # 3 leaves x 32 uplinks over spines of 64 ports: 2 spines (2 divides 32)
        (2048, 64, (2, 64, 32, 0)),  # k^2/2: the largest 2-tier fabric
        (2049, 64, (3, 65, 65, 33)),
        (65536, 64, (3, 2048, 2048, 1024)),  # k^3/4: the largest 3-tier fabric
        (65537, 64, (4, 0, 0, 0)),
    ],
)
def test_fat_tree_counts(endpoints: int, radix: int, expected: tuple[int, int, int, int]) -> None:
    t = fb.fat_tree(endpoints, radix)
    assert (int(t.tiers), int(t.leaves), int(t.spines), int(t.cores)) == expected


def test_reach_per_tier() -> None:
    assert [fb.max_endpoints(64, t) for t in (1, 2, 3)] == [64, 2048, 65536]
    assert fb.max_endpoints(144, 2) == 10368  # Q3400: 2-tier fat tree up to 10,368 endpoints (reference row)
    assert fb.max_endpoints(64, 2, oversubscription=3) == 64 * 48  # 48 down, 16 up


def test_oversubscription_trades_spines_for_reach() -> None:
    blocking = fb.fat_tree(1024, 64, oversubscription=3)
    full = fb.fat_tree(1024, 64)
    assert int(blocking.leaves) == 22 and int(full.leaves) == 32  # 48 vs 32 ports down
    assert int(blocking.spines) < int(full.spines)
    with pytest.raises(FactoryplanError, match="oversubscription"):
        fb.leaf_split(64, 0.5)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 400_000), radix=st.sampled_from(RADIXES), r=st.sampled_from([1.0, 2.0, 3.0]))
def test_every_endpoint_has_a_port_and_every_uplink_a_peer(n: int, radix: int, r: float) -> None:
    t = fb.fat_tree(n, radix, r)
    tiers = int(t.tiers)
    if tiers > fb.MAX_TIERS:
        assert n > fb.max_endpoints(radix, 3, r)
        return
    down, up = fb.leaf_split(radix, r)
    leaves, spines, cores = int(t.leaves), int(t.spines), int(t.cores)
    if tiers == 1:
        assert n <= radix and leaves == 1
        return
    assert leaves * down >= n  # every endpoint has a leaf port
    assert int(t.leaf_spine_links) == leaves * up  # every leaf uplink is cabled
    if tiers == 2:
        assert up % spines == 0  # equal links from every leaf to every spine
        assert spines * radix >= leaves * up  # ... and every one lands on a spine port
    else:
        assert spines * (radix // 2) >= leaves * up
        assert cores * radix >= int(t.spine_core_links) == spines * (radix // 2)


@settings(max_examples=200, deadline=None)
@given(a=st.integers(1, 300_000), b=st.integers(1, 300_000), radix=st.sampled_from(RADIXES))
def test_switch_counts_never_decrease_with_endpoints(a: int, b: int, radix: int) -> None:
    lo, hi = sorted((a, b))
    t = fb.fat_tree(np.array([lo, hi]), radix)
    if int(t.tiers[1]) > fb.MAX_TIERS:
        return
    for name in ("tiers", "leaves", "spines", "cores", "leaf_spine_links", "spine_core_links"):
        values = getattr(t, name)
        assert values[0] <= values[1], name


def test_plane_options(catalog: Catalog) -> None:
    q3400 = catalog.switches["quantum-x800-q3400"]
    opts = fb.plane_options(800e9, q3400, planes_max=2)
    assert [(o.planes, o.link_bit_s, o.radix) for o in opts] == [(1, 800e9, 144), (2, 400e9, 288)]
    sn5600 = catalog.switches["spectrum-x-sn5600"]
    assert [o.radix for o in fb.plane_options(200e9, sn5600, 1)] == [256]  # 800G ports broken out 4 ways
    with pytest.raises(FactoryplanError, match="planes"):
        fb.plane_options(400e9, catalog.switches["quantum-qm9700"], planes_max=1, planes=2)
    with pytest.raises(CatalogError, match="cannot attach"):
        fb.plane_options(800e9, catalog.switches["quantum-qm9700"], planes_max=1)


def _qm9700(catalog: Catalog) -> list[fb.PlaneOption]:
    return fb.plane_options(400e9, catalog.switches["quantum-qm9700"], 1)


def test_whole_scalable_units_are_provisioned(catalog: Catalog) -> None:
    """33 DGX (1 SU + 1 system): leaves and leaf-spine links of two full SUs, node links for 33."""
    f = fb.compute_fabric(np.array([33]), 8, 32, _qm9700(catalog))
    assert int(f.leaves[0]) == 16 and int(f.spines[0]) == 8
    assert int(f.provisioned_endpoints[0]) == 512 and int(f.node_leaf_links[0]) == 264


def test_small_deployments(catalog: Catalog) -> None:
    f = fb.compute_fabric(np.array([1, 2, 8, 9]), 8, 32, _qm9700(catalog))
    assert list(f.tiers) == [0, 1, 1, 2]  # one system needs no fabric; up to 64 ports one switch
    assert list(f.leaves) == [0, 1, 1, 8]


def test_pods_beyond_three_tiers(catalog: Catalog) -> None:
    """600k endpoints exceed a 3-tier QM9700 fabric (65,536): split into equal pods of whole SUs."""
    systems = np.array([75_000])
    f = fb.compute_fabric(systems, 8, 32, _qm9700(catalog))
    su_per_pod = 65536 // 256
    assert int(f.pods[0]) == -(-2344 // su_per_pod) == 10
    assert bool(f.feasible[0]) and int(f.tiers[0]) == 3
    assert int(f.leaves[0]) == 2344 * 8  # 8 leaves per SU whatever the pod split
    one = fb.compute_fabric(systems, 8, 32, _qm9700(catalog), pods=1)
    assert not bool(one.feasible[0])


def test_optics_follow_the_published_per_gpu_counts(catalog: Catalog) -> None:
    """fibermall.com (H100, ConnectX-7, QM9700): per GPU 1 x 400G host module plus 1.5 twin-port 800G
    switch modules in 2 tiers, 2.5 in 3 tiers (shared reference_architectures.csv 'Optics' row)."""
    sw = catalog.switches["quantum-qm9700"]
    host = catalog.links["osfp-400g-dr4-mms4x00-ns400"]
    for systems, twin_per_gpu in ((128, 1.5), (512, 2.5)):
        f = fb.compute_fabric(np.array([systems]), 8, 32, _qm9700(catalog))
        no = np.array([False])
        modules, cables, host_modules = fb.compute_optics(f, host, 1, sw, catalog.links, no, no)
        gpus = systems * 8
        assert int(modules[host.id][0]) == int(host_modules[0]) == gpus
        assert int(modules[sw.transceiver][0]) == twin_per_gpu * gpus
        assert int(cables[fb.FIBER][0]) == gpus * (2 if twin_per_gpu == 1.5 else 3)  # one fiber per link


def test_long_reach_modules_on_the_top_tier(catalog: Catalog) -> None:
    sw = catalog.switches["quantum-qm9700"]
    f = fb.compute_fabric(np.array([512]), 8, 32, _qm9700(catalog))  # 3 tiers
    yes = np.array([True])
    modules, _, _ = fb.compute_optics(f, catalog.links["osfp-400g-dr4-mms4x00-ns400"], 1, sw, catalog.links,
                                      np.array([False]), yes)
    assert int(modules[sw.long_reach_transceiver][0]) == 4096  # spine-core: 2 ports per link, 2 per module
    assert int(modules[sw.transceiver][0]) == int(1.5 * 4096)


def test_in_rack_single_switch_uses_copper(catalog: Catalog) -> None:
    sw = catalog.switches["quantum-qm9700"]
    f = fb.compute_fabric(np.array([2]), 8, 32, _qm9700(catalog))
    modules, cables, _ = fb.compute_optics(f, catalog.links["osfp-400g-dr4-mms4x00-ns400"], 1, sw, catalog.links,
                                           np.array([True]), np.array([False]))
    assert int(cables["dac-400g-osfp"][0]) == 16
    assert int(modules["osfp-400g-dr4-mms4x00-ns400"][0]) == 0


def test_side_networks(catalog: Catalog) -> None:
    sn5600, oob = catalog.switches["spectrum-x-sn5600"], catalog.switches["spectrum-sn2201"]
    side = fb.side_networks(np.array([100, 1000]), sn5600, 200e9, oob, np.array([50, 500]))
    assert list(side.ns_tree.tiers) == [1, 2]  # 256 ports of 200G per switch
    managed = np.array([50, 500]) + side.ns_tree.leaves + side.ns_tree.spines
    assert list(side.oob_switches) == list(-(-managed // 47))
    with pytest.raises(CatalogError, match="cannot attach"):
        fb.side_networks(np.array([10]), sn5600, 300e9, oob, np.array([1]))
