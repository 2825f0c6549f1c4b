"""Terminal tables of the physical design, shared by `factoryplan cluster` and the plan's deployment table."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from factoryplan.infra.bom import BomItem
from factoryplan.infra.cluster import ClusterDesign
from factoryplan.infra.fabric import Fabric
from factoryplan.infra.power import Power
from factoryplan.infra.site import Cooling
from factoryplan.report.fmt import mw, num, usd


def _counts(d: dict[str, int]) -> str:
    return f"{num(sum(d.values()))}: " + ", ".join(f"{k} {num(v)}" for k, v in d.items()) if d else "none"


def fabric_rows(f: Fabric) -> list[tuple[str, str]]:
    """(item, value) rows describing every network."""
    rows = [("compute fabric", f"{f.topology} of {f.switch} ({f.radix} x {f.link_gbit_s:g}G per plane)")]
    if f.tiers:
        rows.append(("leaf / spine / core switches",
                     f"{num(f.leaf_switches)} / {num(f.spine_switches)} / {num(f.core_switches)}"))
        rows.append(("links node-leaf / leaf-spine / spine-core",
                     " / ".join(num(f.links.get(k, 0)) for k in ("node-leaf", "leaf-spine", "spine-core"))))
    s, m = f.storage_network, f.management_network
    rows.append(("storage and in-band network", f"{s.switch}: {s.tiers} tier(s), {num(s.leaf_switches)} leaf / "
                 f"{num(s.spine_switches)} spine / {num(s.core_switches)} core for {num(s.endpoints)} ports"))
    rows.append(("out-of-band management", f"{num(m.leaf_switches)} x {m.switch} for {num(m.endpoints)} ports"))
    if f.nvlink_switch_trays:
        rows.append(("NVLink", f"{num(f.nvlink_switch_trays)} switch trays, {num(f.nvlink_links)} GPU links "
                     "(copper, inside the racks)"))
    rows.append(("transceivers", _counts(f.transceivers)))
    rows.append(("cables", _counts(f.cables)))
    return rows


def power_rows(p: Power) -> list[tuple[str, str]]:
    """(item, value) rows of the power chain."""
    budget = f" (budget {mw(p.budget_mw)})" if p.budget_mw else ""
    return [
        ("GPU TDP -> systems -> IT", f"{mw(p.gpu_mw)} -> {mw(p.systems_mw)} -> {mw(p.it_mw)}"),
        ("IT besides systems", f"network {mw(p.network_mw)}, storage {mw(p.storage_mw)}, "
                               f"management {mw(p.management_mw)}"),
        ("facility at the meter", f"{mw(p.facility_mw)} at PUE {p.pue:.2f}{budget}"),
        ("average draw / energy", f"{mw(p.average_facility_mw)} ({p.average_fraction:.0%} of nameplate) / "
                                  f"{num(p.annual_energy_mwh)} MWh per year"),
    ]


def site_rows(cooling: Cooling, racks: int, floor_m2: float, halls: int, buildings: int) -> list[tuple[str, str]]:
    """(item, value) rows of cooling and space."""
    return [
        ("cooling", f"{cooling.mode}: {cooling.reason}"),
        ("racks / floor", f"{num(racks)} racks, {num(round(floor_m2))} m2 of white space"),
        ("halls / buildings", f"{num(halls)} / {num(buildings)}"),
    ]


def table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    """A two-column table."""
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column("item")
    t.add_column("value", overflow="fold")
    for k, v in rows:
        t.add_row(k, v)
    return t


def bom_table(items: Sequence[BomItem], limit: int = 14) -> Table:
    """The most expensive items of the bill of materials, and the total."""
    t = Table(title="Bill of materials (largest items)", title_justify="left")
    for col in ("item", "category", "count", "unit price", "total"):
        t.add_column(col, overflow="fold")
    for i in sorted(items, key=lambda i: -i.total_usd)[:limit]:
        t.add_row(i.item, i.category, num(i.count), usd(i.unit_price_usd), usd(i.total_usd))
    t.add_row("all items", "", "", "", usd(sum(i.total_usd for i in items)))
    return t


def cluster_tables(d: ClusterDesign) -> list[Table]:
    """The `cluster` command's output."""
    rows = [
        ("hardware", f"{d.accelerator} in {d.system}"),
        ("GPUs / systems / racks", f"{num(d.gpus)} / {num(d.systems)} / {num(d.racks)} "
                                   f"({num(d.compute_racks)} compute)"),
        ("scalable units", f"{num(d.scalable_units)} of {d.scalable_unit_systems} systems ({num(d.scalable_unit_gpus)} "
                           "GPUs)"),
        *fabric_rows(d.fabric),
        ("storage / control plane", f"{num(d.storage_nodes)} storage nodes, {num(d.control_plane_nodes)} servers"),
        *power_rows(d.power),
        ("per GPU: chip / system / IT / facility",
         " / ".join(f"{d.per_gpu_w[k]:,.0f} W" for k in ("chip", "system", "it", "facility"))),
        ("GPUs per GW at the meter", num(round(d.gpus_per_gw))),
        *site_rows(d.cooling, d.racks, d.floor_m2, d.halls, d.buildings),
        *(("note", n) for n in d.notes),
    ]
    out = [table(f"Cluster: {num(d.gpus)} x {d.accelerator}", rows)]
    if d.phases:
        t = Table(title="Power phases", title_justify="left")
        for col in ("phase", "power at the meter", "scalable units", "GPUs", "facility power"):
            t.add_column(col)
        for p in d.phases:
            t.add_row(str(p.phase), mw(p.power_mw), num(p.scalable_units), num(p.gpus), mw(p.facility_mw))
        out.append(t)
    out.append(bom_table(d.bom))
    return out
