"""A plan's whole site: each pool designed as its own cluster, then combined.

Each pool (one system type serving some workloads) gets its own compute fabric, racks and halls;
the site adds their power (one power chain), bills of materials, networks and space, and counts
buildings from the total IT power.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import Region
from factoryplan.infra import fabric as fb
from factoryplan.infra.bom import BomItem, merge_bom
from factoryplan.infra.cluster import ClusterDesign, ClusterOptions, Pool, design_cluster
from factoryplan.infra.power import Power, PowerLoad, power_chain
from factoryplan.infra.site import Cooling, buildings_for


@dataclass(frozen=True)
class Deployment:
    """Every pool of a plan designed, with the site's power, materials, networks and space."""

    designs: list[ClusterDesign]
    pools: list[Pool]
    power: Power
    bom: list[BomItem]
    fabric: fb.Fabric
    cooling: Cooling
    racks: int
    floor_m2: float
    halls: int
    buildings: int


def plan_deployment(
    pools: Sequence[Pool], catalog: Catalog, asm: AssumptionSet, region: Region, cooling: str,
    budget_mw: float | None,
) -> Deployment:
    """Design each pool (its own fabric, racks and halls) and combine them into one site."""
    opts = ClusterOptions(cooling=cooling)
    designs = [design_cluster(catalog, asm, region, p.system, gpus=p.gpus, opts=opts, workloads=p.workloads)
               for p in pools]
    loads = [PowerLoad(gpu_w=d.power.gpu_mw * 1e6, systems_w=d.power.systems_mw * 1e6,
                       network_w=d.power.network_mw * 1e6, storage_w=d.power.storage_mw * 1e6,
                       management_w=d.power.management_mw * 1e6, cooling=d.cooling.mode) for d in designs]
    power = power_chain(loads, region, asm, budget_mw)
    return Deployment(
        designs=designs, pools=[d.pool for d in designs], power=power, bom=merge_bom(d.bom for d in designs),
        fabric=merge_fabrics([d.fabric for d in designs]), cooling=merge_cooling([d.cooling for d in designs]),
        racks=sum(d.racks for d in designs), floor_m2=sum(d.floor_m2 for d in designs),
        halls=sum(d.halls for d in designs),
        buildings=int(buildings_for(np.array([power.it_mw * 1e6]), asm.get("building_max_power"))[0]),
    )


def _sum_counts(dicts: Sequence[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


def _merge_networks(nets: Sequence[fb.Network]) -> fb.Network:
    return fb.Network(
        switch=" + ".join(sorted({n.switch for n in nets})), tiers=max(n.tiers for n in nets),
        endpoints=sum(n.endpoints for n in nets), leaf_switches=sum(n.leaf_switches for n in nets),
        spine_switches=sum(n.spine_switches for n in nets), core_switches=sum(n.core_switches for n in nets),
    )


def merge_fabrics(fabrics: Sequence[fb.Fabric]) -> fb.Fabric:
    """Several pools' networks as one summary: counts added, the deepest tiers and most planes kept."""
    if len(fabrics) == 1:
        return fabrics[0]
    added = ("endpoints", "provisioned_endpoints", "leaf_switches", "spine_switches", "core_switches",
             "nvlink_switch_trays", "nvlink_links")
    return fabrics[0].model_copy(update={
        "switch": " + ".join(sorted({f.switch for f in fabrics})),
        "topology": "; ".join(f"{f.switch}: {f.topology}" for f in fabrics),
        "tiers": max(f.tiers for f in fabrics), "planes": max(f.planes for f in fabrics),
        "pods": sum(f.pods for f in fabrics), **{k: sum(getattr(f, k) for f in fabrics) for k in added},
        "links": _sum_counts([f.links for f in fabrics]),
        "transceivers": _sum_counts([f.transceivers for f in fabrics]),
        "cables": _sum_counts([f.cables for f in fabrics]),
        "storage_network": _merge_networks([f.storage_network for f in fabrics]),
        "management_network": _merge_networks([f.management_network for f in fabrics]),
        "notes": [n for f in fabrics for n in f.notes],
    })


def merge_cooling(parts: Sequence[Cooling]) -> Cooling:
    """Several pools' cooling as one: 'mixed' when they differ; racks added."""
    if len(parts) == 1:
        return parts[0]
    modes = {c.mode for c in parts}
    return Cooling(
        mode=modes.pop() if len(modes) == 1 else "mixed", systems_per_rack=max(c.systems_per_rack for c in parts),
        rack_kw=max(c.rack_kw for c in parts), air_limit_kw=parts[0].air_limit_kw,
        air_racks=sum(c.air_racks for c in parts), liquid_racks=sum(c.liquid_racks for c in parts),
        reason="; ".join(c.reason for c in parts),
    )
