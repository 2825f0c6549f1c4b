"""Bill of materials: every item with its count, unit price and source.

Items come from the physical design: compute systems, the switches of every network, transceivers
and cables by catalog id, storage nodes and control-plane servers (priced by stated assumptions).
NVLink switch trays of rack-scale systems are part of the rack's price and are not listed again.
The economics stage prices capex from these items; categories group them in the cost breakdown.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, computed_field

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import System

CATEGORIES = ("compute", "network", "optics", "storage", "other")
CSV_COLUMNS = ("item", "description", "category", "count", "unit_price_usd", "total_usd", "source")


class BomItem(BaseModel):
    """One line of the bill of materials."""

    model_config = ConfigDict(frozen=True)

    item: str  # catalog id, or a name for items priced by rule
    description: str
    category: str  # one of CATEGORIES
    count: float
    unit_price_usd: float
    source: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_usd(self) -> float:
        return self.count * self.unit_price_usd


@dataclass(frozen=True)
class BomParts:
    """What one pool's design installs, by catalog id."""

    system: System
    systems: int
    switches: dict[str, int]
    transceivers: dict[str, int]
    cables: dict[str, int]
    storage_nodes: int
    control_nodes: int


def _order(items: Iterable[BomItem]) -> list[BomItem]:
    return sorted(items, key=lambda i: (CATEGORIES.index(i.category), -i.total_usd, i.item))


def build_bom(parts: Sequence[BomParts], catalog: Catalog, asm: AssumptionSet) -> list[BomItem]:
    """Every item of every pool, merged by id, in category order (then by cost)."""
    counts: dict[tuple[str, str], float] = {}

    def add(category: str, item: str, n: float) -> None:
        if n > 0:
            counts[(category, item)] = counts.get((category, item), 0.0) + n

    for p in parts:
        add("compute", p.system.id, p.systems)
        for sid, n in p.switches.items():
            add("network", sid, n)
        for lid, n in [*p.transceivers.items(), *p.cables.items()]:
            add("optics", lid, n)
        add("storage", "storage_node", p.storage_nodes)
        add("other", "control_plane_server", p.control_nodes)
    return _order(_item(category, item, n, catalog, asm) for (category, item), n in counts.items())


def _item(category: str, item: str, n: float, catalog: Catalog, asm: AssumptionSet) -> BomItem:
    if category == "compute":
        e = catalog.systems[item]
        return BomItem(item=item, description=e.name, category=category, count=n, unit_price_usd=e.price_usd,
                       source=e.source)
    if category == "network":
        sw = catalog.switches[item]
        return BomItem(item=item, description=sw.name, category=category, count=n, unit_price_usd=sw.price_usd,
                       source=sw.source)
    if category == "optics":
        ln = catalog.links[item]
        return BomItem(item=item, description=ln.name, category=category, count=n, unit_price_usd=ln.price_usd,
                       source=ln.source)
    name, text = (("storage_node_price", "storage node (all-flash, parallel file system)") if category == "storage"
                  else ("control_node_price", "control-plane server (cluster manager, scheduler, fabric manager)"))
    return BomItem(item=item, description=text, category=category, count=n, unit_price_usd=asm.get(name),
                   source=f"assumption {name}: {asm.entry(name).source}")


def merge_bom(lists: Iterable[Sequence[BomItem]]) -> list[BomItem]:
    """Several bills of materials as one: counts of the same item added, category order kept."""
    merged: dict[tuple[str, str], BomItem] = {}
    for items in lists:
        for i in items:
            key = (i.category, i.item)
            if key in merged:
                merged[key] = merged[key].model_copy(update={"count": merged[key].count + i.count})
            else:
                merged[key] = i
    return _order(merged.values())


def bom_csv(items: Iterable[BomItem]) -> str:
    """The bill of materials as CSV text (one row per item, a header row first)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in items:
        writer.writerow([i.item, i.description, i.category, f"{i.count:g}", f"{i.unit_price_usd:.2f}",
                         f"{i.total_usd:.2f}", " ".join(i.source.split())])
    return buf.getvalue()
