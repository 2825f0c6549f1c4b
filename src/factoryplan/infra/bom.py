"""Bill of materials: every item with its count, unit price and source.

The economics stage prices capex from these items; categories group them in the cost breakdown.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, computed_field

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.infra.cluster import Pool

CATEGORIES = ("compute", "network", "optics", "storage", "other")


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


def bom_first_order(pools: Sequence[Pool], catalog: Catalog, asm: AssumptionSet) -> list[BomItem]:
    """Systems from the catalog; network and storage as stated fractions of the systems' cost."""
    items = []
    for p in pools:
        system = catalog.systems[p.system]
        items.append(BomItem(item=system.id, description=system.name, category="compute", count=p.systems,
                             unit_price_usd=system.price_usd, source=system.source))
    compute = sum(i.total_usd for i in items)
    for name, category in (("network_capex_fraction", "network"), ("storage_capex_fraction", "storage")):
        entry = asm.entry(name)
        items.append(BomItem(item=name, description=f"{category} at a stated share of compute capex",
                             category=category, count=1, unit_price_usd=compute * asm.get(name), source=entry.source))
    return items
