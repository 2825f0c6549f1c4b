"""GPUs -> systems -> racks -> SUs -> fabric -> power -> site, the `cluster` command and the plan's use of it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.cli import main
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.infra.bom import CATEGORIES, bom_csv
from factoryplan.infra.cluster import ClusterOptions, design_arrays, design_cluster, resolve_parts

from .conftest import EXAMPLES

SYSTEMS = ("dgx-h100", "hgx-h200", "dgx-b200", "dgx-b300", "gb200-nvl72", "gb300-nvl72", "hgx-a100-40gb",
           "mi300x-platform", "gaudi3-server", "hgx-h100-pcie")
COUNTED = ("systems", "gpus", "scalable_units", "storage_nodes", "control_nodes", "compute_racks", "racks", "halls",
           "buildings")


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> object:
    assert main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "cluster", "--system", "dgx-h100", "--gpus", "1024")
    assert isinstance(out, dict)
    for key in ("gpus", "systems", "racks", "scalable_units", "fabric", "power", "cooling", "floor_m2", "buildings",
                "bom"):
        assert key in out, key
    for key in ("tiers", "planes", "leaf_switches", "spine_switches", "core_switches", "transceivers", "cables"):
        assert key in out["fabric"], key
    for key in ("it_kw", "facility_kw", "pue", "annual_energy_mwh"):
        assert key in out["power"], key
    assert (out["gpus"], out["systems"], out["scalable_units"]) == (1024, 128, 4)
    assert (out["fabric"]["leaf_switches"], out["fabric"]["spine_switches"]) == (32, 16)
    assert out["power"]["facility_kw"] == pytest.approx(out["power"]["it_kw"] * out["power"]["pue"])
    assert {b["category"] for b in out["bom"]} <= set(CATEGORIES)


def test_cli_power_budget_and_bom_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bom = tmp_path / "bom.csv"
    out = _json(capsys, "cluster", "--system", "gb200-nvl72", "--power-mw", "55", "--region", "kr",
                "--phases", "20,55", "--bom", str(bom))
    assert isinstance(out, dict)
    assert out["power"]["facility_kw"] <= 55_000 and out["gpus"] % 576 == 0
    assert [p["power_mw"] for p in out["phases"]] == [20, 55]
    with bom.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["item"] for r in rows} >= {"gb200-nvl72", "quantum-qm9700", "storage_node"}
    assert sum(float(r["total_usd"]) for r in rows) == pytest.approx(sum(b["total_usd"] for b in out["bom"]))
    assert all(r["source"] and float(r["unit_price_usd"]) > 0 for r in rows)
    as_json = tmp_path / "bom.json"
    assert main(["cluster", "--system", "gb200-nvl72", "--gpus", "576", "--bom", str(as_json)]) == 0
    assert json.loads(as_json.read_text())[0]["item"] == "gb200-nvl72"


def test_cli_assumption_overrides(capsys: pytest.CaptureFixture[str]) -> None:
    base = _json(capsys, "cluster", "--system", "gb200-nvl72", "--power-mw", "1000")
    wider = _json(capsys, "cluster", "--system", "gb200-nvl72", "--power-mw", "1000", "--set",
                  "building_max_power_mw=200", "--set", "racks_per_hall=400")
    assert isinstance(base, dict) and isinstance(wider, dict)
    assert wider["buildings"] == -(-base["buildings"] // 2) and wider["halls"] < base["halls"]
    assert main(["cluster", "--system", "dgx-h100", "--gpus", "8", "--set", "racks_per_hall"]) != 0
    assert "NAME=NUMBER" in capsys.readouterr().err


def test_cli_compares_systems_within_a_budget(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, "cluster", "--system", "all", "--power-mw", "200")
    assert isinstance(rows, list)
    by = {r["system"]: r for r in rows}
    assert by["dgx-h100"]["gpus_per_gw"] > by["gb200-nvl72"]["gpus_per_gw"]
    assert all(r["facility_mw"] <= 200 for r in rows if "error" not in r)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--system", "dgx-h1000", "--gpus", "8"], "unknown accelerator or system 'dgx-h1000'"),
        (["--system", "dgx-h100"], "exactly one of --gpus or --power-mw"),
        (["--system", "dgx-h100", "--gpus", "8", "--power-mw", "5"], "exactly one of --gpus or --power-mw"),
        (["--system", "gb200-nvl72", "--power-mw", "0.5"], "below one scalable unit"),
        (["--system", "dgx-h100", "--gpus", "600000", "--pods", "1"], "more than a 3-tier fat tree"),
        (["--system", "dgx-h100", "--gpus", "64", "--planes", "2"], "cannot run 2 planes"),
        (["--system", "gb200-nvl72", "--gpus", "72", "--cooling", "air"], "cannot be air-cooled"),
        (["--system", "dgx-h100", "--gpus", "8", "--region", "mars"], "unknown region"),
        (["--system", "dgx-h100", "--gpus", "8", "--bom", "x.xlsx"], "unknown bill-of-materials type"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cluster", *args])
    err = capsys.readouterr().err
    assert code != 0 and message in " ".join(err.split()) and "Traceback" not in err


def test_impossible_single_fabric_names_the_limit(catalog: Catalog) -> None:
    with pytest.raises(InfeasibleError) as exc:
        design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "dgx-h100", gpus=600_000,
                       opts=ClusterOptions(pods=1))
    text = exc.value.render()
    assert "600,000 GPUs" in text and "65,536" in text and "64-port quantum-qm9700" in text


def test_multi_plane_reaches_further_with_fewer_tiers(catalog: Catalog) -> None:
    """20 SUs of DGX B300 (11,520 GPUs) exceed one XDR plane in 2 tiers (10,368); two 400G planes do not."""
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "dgx-b300", gpus=20 * 576)
    assert (d.fabric.tiers, d.fabric.planes, d.fabric.radix) == (2, 2, 288)
    assert d.fabric.core_switches == 0
    single = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "dgx-b300", gpus=20 * 576,
                            opts=ClusterOptions(planes=1))
    assert single.fabric.tiers == 3
    assert d.fabric.compute_switches < single.fabric.compute_switches


def test_rack_scale_system_counts(catalog: Catalog) -> None:
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "gb200-nvl72", gpus=576)
    assert (d.systems, d.compute_racks, d.scalable_units) == (8, 8, 1)
    assert (d.fabric.nvlink_switch_trays, d.fabric.nvlink_links) == (72, 576 * 18)
    assert d.fabric.endpoints == 576 and d.fabric.leaf_switches == 18  # 576 / 32
    one = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "gb200-nvl72", gpus=72)
    assert one.fabric.tiers == 0 and one.fabric.compute_switches == 0  # a single NVL72 needs no scale-out fabric


def test_gpus_round_up_to_whole_systems(catalog: Catalog) -> None:
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "h100-sxm", gpus=100)
    assert d.system == "dgx-h100" and d.gpus == 104 and any("rounded up" in n for n in d.notes)
    with pytest.raises(FactoryplanError, match="at least 1"):
        design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "dgx-h100", gpus=0)


def test_bom_matches_the_design(catalog: Catalog) -> None:
    d = design_cluster(catalog, AssumptionSet(catalog), catalog.regions["us"], "dgx-b200", gpus=4096)
    by = {b.item: b for b in d.bom}
    assert by["dgx-b200"].count == d.systems and by["dgx-b200"].unit_price_usd == catalog.systems["dgx-b200"].price_usd
    assert by["quantum-qm9700"].count == d.fabric.compute_switches
    for link_id, n in {**d.fabric.transceivers, **d.fabric.cables}.items():
        assert by[link_id].count == n and by[link_id].category == "optics"
    assert by["storage_node"].count == d.storage_nodes
    network = sum(b.total_usd for b in d.bom if b.category in ("network", "optics"))
    compute = by["dgx-b200"].total_usd
    assert 0.05 < network / compute < 0.35  # reference: network 10-20% of compute capex (Epoch 19% of hardware)
    text = bom_csv(d.bom)
    assert text.splitlines()[0].startswith("item,description,category,count")


@settings(max_examples=40, deadline=None)
@given(system=st.sampled_from(SYSTEMS), a=st.integers(1, 30_000), b=st.integers(1, 30_000))
@example(system="dgx-b300", a=145, b=289)  # one tier of two planes, then two tiers of one plane
def test_counts_never_decrease_as_gpus_grow(system: str, a: int, b: int) -> None:
    cat = load_catalog()
    asm = AssumptionSet(cat)
    s = cat.systems[system]
    lo, hi = sorted((-(-a // s.gpus), -(-b // s.gpus)))
    parts = resolve_parts(s, cat, asm, ClusterOptions())  # one cooling decision for both
    d = design_arrays(parts, np.array([lo, hi]), asm, cat.regions["us"], ClusterOptions())
    f = d.fabric
    assert bool(f.feasible.all())
    for name in COUNTED:
        v = getattr(d, name)
        assert v[0] <= v[1], name
    for name in ("tiers", "pods", "leaves", "spines", "cores", "endpoints", "leaf_spine_links", "spine_core_links"):
        v = getattr(f, name)
        assert v[0] <= v[1], name
    # node-leaf links are endpoints x planes: a fabric small enough for one tier of a multi-plane
    # option (each NIC split over planes) can have more of them than a larger one-plane, two-tier
    # fabric (dgx-b300: 19 systems x 8 NICs x 2 planes = 304 > 37 x 8 x 1 = 296); per plane and in
    # total (with the links above the leaves) they still grow
    per_plane = f.node_leaf_links // np.maximum(f.planes, 1)
    assert per_plane[0] <= per_plane[1]
    links = f.node_leaf_links + f.leaf_spine_links + f.spine_core_links
    assert links[0] <= links[1]
    for name, counts in (("transceivers", d.transceivers), ("cables", d.cables)):
        total = sum(counts.values())
        assert total[0] <= total[1], name
    for name in ("gpu", "systems", "network", "storage", "management", "it", "facility"):
        assert d.watts[name][0] <= d.watts[name][1] * (1 + 1e-12), name
    # every NIC port has a switch port in every plane: one switch, or leaves with half their ports down
    down = np.where(f.tiers == 1, f.radix, f.radix // 2)
    assert (f.leaves * down >= f.endpoints * f.planes)[f.tiers >= 1].all()


def test_plan_reports_the_physical_design(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, "plan", str(EXAMPLES / "sovereign-ai-factory-1gw.yaml"))
    assert isinstance(out, dict)
    c = out["cluster"]
    for key in ("fabric", "cooling", "floor_m2", "buildings", "halls"):
        assert key in c, key
    assert c["fabric"]["leaf_switches"] > 0 and c["racks"] >= sum(p["racks"] for p in c["pools"])
    items = {b["item"] for b in out["bom"]}
    switch = load_catalog().systems[c["system"]].compute_fabric
    assert {switch, "storage_node"} <= items  # the real bill of materials, not shares
    assert out["power"]["network_mw"] > 0 and out["power"]["within_budget"]


def test_plan_must_fit_the_power_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (EXAMPLES / "research-lab-training.yaml").read_text(encoding="utf-8")
    small = tmp_path / "small.yaml"
    small.write_text(text + "power_budget_mw: 0.5\n", encoding="utf-8")
    assert main(["plan", str(small)]) != 0
    err = " ".join(capsys.readouterr().err.split())
    assert "over the power budget of 0.5 MW" in err
