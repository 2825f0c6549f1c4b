"""Reproduce NVIDIA's DGX SuperPOD reference-architecture (RA) switch tables and the GB200 SU power.

Tables (copied with their sources into tests/data/reference_architectures.csv from the shared
reference set):
- DGX H100 SuperPOD RA, network-fabrics page, Table 4: compute leaf/spine switches and cables for
  1-4 scalable units (SUs) of 32 DGX H100 on 64-port QM9700 switches;
- DGX B200 SuperPOD RA, architecture page: leaf/spine/core for 2-64 SUs (3 tiers above 8 SUs);
- DGX B300 Quantum-X800 (XDR) SuperPOD RA, architecture page: 8 leaf and 4 spine per SU of 72 DGX
  B300 on 144-port Q3400, 18 SU = 144 leaf / 72 spine, 4 and 8 SU with 18 and 36 spines;
- DGX B300 Spectrum-X SuperPOD RA: 16 leaf and 8 spine per SU of 64 DGX B300, twin-plane 2 x 400G.
- DGX GB200 SuperPOD RA, architecture page: one SU of 8 NVL72 racks has a TDP of ~1.2 MW.

Every switch cell is reproduced exactly. The plain fat-tree formula (spine = N/k) misses three
cells (H100 3 SU, B300 XDR 4 and 8 SU); the equal-uplink rule (the spine count divides each leaf's
uplinks) gets them. The one documented exception is the H100 node-leaf cable count, 4 below N in
every row: SU1 holds 31 DGX (one slot goes to the UFM appliance, whose 4 ports are cabled), which
the planner does not model.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.infra.cluster import ClusterOptions, design_cluster

DATA = Path(__file__).resolve().parents[1] / "data" / "reference_architectures.csv"
with DATA.open(encoding="utf-8") as _fh:
    ROWS = [r for r in csv.DictReader(_fh) if r["system"]]
H100_UFM_PORTS = 4  # RA SU1: 31 DGX (-8 NIC ports) plus the UFM appliance (+4 ports)


def _design(cat: Catalog, system: str, sus: int, **opts: object) -> object:
    s = cat.systems[system]
    return design_cluster(cat, AssumptionSet(cat), cat.regions["us"], system,
                          gpus=sus * s.scalable_unit_systems * s.gpus, opts=ClusterOptions(**opts))  # type: ignore[arg-type]


@pytest.mark.parametrize("row", [r for r in ROWS if "Spectrum-X" not in r["platform"]],
                         ids=lambda r: f"{r['system']}-{r['scalable_units']}SU")
def test_compute_switch_counts_match_the_ra_tables(row: dict[str, str], catalog: Catalog) -> None:
    d = _design(catalog, row["system"], int(row["scalable_units"]))
    f = d.fabric  # type: ignore[attr-defined]
    assert (f.leaf_switches, f.spine_switches, f.core_switches) == (int(row["leaf"]), int(row["spine"]),
                                                                      int(row["core"]))
    assert f.tiers == (3 if int(row["core"]) else 2)
    assert f.planes == 1 and f.pods == 1


@pytest.mark.parametrize("row", [r for r in ROWS if r["leaf_spine_links"]], ids=lambda r: f"{r['scalable_units']}SU")
def test_h100_cable_counts_and_the_ufm_exception(row: dict[str, str], catalog: Catalog) -> None:
    f = _design(catalog, row["system"], int(row["scalable_units"])).fabric  # type: ignore[attr-defined]
    assert f.links["leaf-spine"] == int(row["leaf_spine_links"])
    # documented exception: the RA's node-leaf count is ours - 8 (one DGX fewer) + 4 (UFM ports)
    assert f.links["node-leaf"] - 8 + H100_UFM_PORTS == int(row["node_leaf_links"])


def test_plain_formula_misses_the_cells_the_equal_uplink_rule_explains() -> None:
    """Spine = N/k gives 12, 16 and 32 where the RAs list 16, 18 and 36."""
    from factoryplan.infra.fabric import fat_tree

    for endpoints, radix, listed in ((3 * 256, 64, 16), (4 * 576, 144, 18), (8 * 576, 144, 36)):
        assert endpoints // radix != listed
        assert int(fat_tree(endpoints, radix).spines) == listed


def test_b300_spectrum_x_twin_plane(tmp_path: Path) -> None:
    """An SU of 64 DGX B300 on SN5600 run as 128 x 400G in two planes: 16 leaf and 8 spine switches."""
    overlay = tmp_path / "b300-spectrum-x.yaml"
    overlay.write_text(
        "systems:\n"
        "  - id: dgx-b300-spectrum-x\n    name: DGX B300 on Spectrum-X (RA SU of 64)\n"
        "    accelerator: b300\n    gpus: 8\n    scaleup_domain_gpus: 8\n    power_kw: 14.5\n"
        "    nics_per_gpu: 1\n    nic_gbit_s: 800\n    compute_fabric: spectrum-x-sn5600\n"
        "    systems_per_rack: 4\n    cooling: air\n    price_usd: 500000\n    scalable_unit_systems: 64\n"
        "    fabric_planes_max: 2\n    host_transceiver: osfp-800g-dr4-host\n"
        "    source: NVIDIA DGX SuperPOD B300 Spectrum-X RA (64-node SU, twin-plane 2 x 400G per GPU)\n"
        "    as_of: 2025\n    basis: derived\n",
        encoding="utf-8",
    )
    cat = load_catalog([overlay])
    row = next(r for r in ROWS if "Spectrum-X" in r["platform"])
    f = _design(cat, "dgx-b300-spectrum-x", 1, planes=2).fabric  # type: ignore[attr-defined]
    assert (f.leaf_switches, f.spine_switches, f.planes, f.radix) == (int(row["leaf"]), int(row["spine"]), 2, 128)


def test_gb200_scalable_unit_draws_about_1_2_mw_it(catalog: Catalog) -> None:
    """GB200 RA: an SU of 8 NVL72 racks (576 GPUs) has a TDP of ~1.2 MW; within 10%.

    Measured: 1.145 MW (-4.6%) for one SU on its own (8 x 132 kW racks, 18 leaf and 16 spine
    QM9700, host optics, storage and in-band and management networks, storage nodes, control plane).
    """
    d = _design(catalog, "gb200-nvl72", 1)
    it_mw = d.power.it_mw  # type: ignore[attr-defined]
    assert it_mw == pytest.approx(1.2, rel=0.10)
    assert d.power.systems_mw == pytest.approx(8 * 0.132)  # type: ignore[attr-defined]
    assert it_mw > d.power.systems_mw  # type: ignore[attr-defined]


def test_gb200_su_power_holds_at_scale(catalog: Catalog) -> None:
    """In a 64-SU (3-tier) deployment, IT power per SU stays within 10% of 1.2 MW."""
    d = _design(catalog, "gb200-nvl72", 64)
    assert d.power.it_mw / 64 == pytest.approx(1.2, rel=0.10)  # type: ignore[attr-defined]
