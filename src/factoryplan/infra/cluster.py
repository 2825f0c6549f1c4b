"""GPUs -> systems -> racks -> scalable units -> fabric -> power -> halls and buildings.

A deployment of one system type is designed in one vectorised pass over an array of system
counts (``design_arrays``): whole systems, scalable units (SUs) as in the system's reference
architecture, the networks (``infra.fabric``), storage nodes and control plane by rule, racks,
halls and buildings (``infra.site``) and the power chain (``infra.power``). ``design_cluster``
returns one ``ClusterDesign``; power-constrained sizing evaluates every whole-SU count the budget
could feed at once and keeps the largest that fits at the meter.

Storage: nodes = ⌈GPUs x read bandwidth per GPU / node read bandwidth⌉ (at least one).
Control plane: a stated number of management servers per compute fabric (pod); a deployment
smaller than that gets one per four systems.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import Accelerator, Link, Region, Switch, System
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.infra import fabric as fb
from factoryplan.infra.bom import BomItem, BomParts, build_bom
from factoryplan.infra.power import Power, PowerLoad, power_chain, pue_for
from factoryplan.infra.site import (
    Cooling,
    Phase,
    buildings_for,
    check_phases,
    halls_for,
    largest_within,
    plan_cooling,
    rack_counts,
)

__all__ = ["ClusterDesign", "ClusterOptions", "Pool", "Power", "build_pool", "design_cluster", "power_chain"]

Floats = npt.NDArray[np.float64]
CONTROL_NODE_U = 1.0  # rack units of one control-plane server
NS_PORTS_PER_CONTROL_NODE = 2
SYSTEMS_PER_CONTROL_NODE = 4  # below a full control plane: one server per four systems


class Pool(BaseModel):
    """One homogeneous group of systems serving some workloads."""

    model_config = ConfigDict(frozen=True)

    accelerator: str
    system: str
    gpus: int
    systems: int
    racks: int  # compute racks
    scalable_units: float  # systems / systems per SU
    cooling: str
    rack_power_kw: float
    gpu_tdp_kw: float
    system_power_kw: float
    workloads: list[str]
    systems_per_rack: int = 0
    whole_scalable_units: int = 0


def build_pool(system: System, acc: Accelerator, gpus_needed: int, workloads: Sequence[str], cooling: str) -> Pool:
    """Whole systems and racks for ``gpus_needed`` GPUs of ``system`` at its reference rack layout."""
    systems = max(1, math.ceil(gpus_needed / system.gpus))
    per_rack = max(1, math.floor(system.systems_per_rack + 1e-9))
    return Pool(
        accelerator=acc.id, system=system.id, gpus=systems * system.gpus, systems=systems,
        racks=math.ceil(systems / per_rack), scalable_units=systems / system.scalable_unit_systems,
        cooling=system.cooling if cooling == "auto" else cooling,
        rack_power_kw=system.power_w * min(per_rack, systems) / 1e3,
        gpu_tdp_kw=systems * system.gpus * acc.tdp_w / 1e3, system_power_kw=systems * system.power_w / 1e3,
        workloads=list(workloads), systems_per_rack=per_rack,
        whole_scalable_units=math.ceil(systems / system.scalable_unit_systems),
    )


@dataclass(frozen=True)
class ClusterOptions:
    """Choices of the physical design (defaults: the reference architecture's)."""

    oversubscription: float = 1.0
    planes: int | None = None  # None: fewest tiers, then fewest planes
    pods: int | None = None  # None: split into pods only when three tiers cannot reach
    cooling: str = "auto"
    max_fabric_gpus: int | None = None


@dataclass(frozen=True)
class Parts:
    """The catalog entries one design uses, and the cooling decided for it."""

    system: System
    acc: Accelerator
    switch: Switch
    options: list[fb.PlaneOption]
    host: Link
    ns_switch: Switch
    ns_host: Link
    oob_switch: Switch
    links: dict[str, Link]
    cooling: str
    systems_per_rack: int
    cooling_reason: str


def resolve_system(catalog: Catalog, system_id: str) -> System:
    """A system by id, or an accelerator id's default system; unknown ids list what exists."""
    return catalog.hardware(system_id, field_name="system")[1]


def resolve_parts(
    system: System, catalog: Catalog, asm: AssumptionSet, opts: ClusterOptions, systems: int | None = None,
) -> Parts:
    """Look up the switches and links ``system`` names; decide cooling and systems per rack.

    ``systems``: how many are deployed (a single part-filled rack may stay air-cooled); None: full racks.
    """
    owner = f"systems[{system.id}]"
    sw = fb.switch(catalog, system.compute_fabric, owner, "compute_fabric")
    nics = system.gpus * system.nics_per_gpu
    if nics < 1 or abs(nics - round(nics)) > 1e-9:
        raise FactoryplanError("gpus x nics_per_gpu must be a whole number of NIC ports", where=owner,
                               field="nics_per_gpu", value=system.nics_per_gpu)
    cooling, per_rack, reason = plan_cooling(system, opts.cooling, asm.get("air_cooling_limit"), systems)
    return Parts(
        system=system, acc=catalog.accelerators[system.accelerator], switch=sw,
        options=fb.plane_options(system.nic_bit_s, sw, system.fabric_planes_max, opts.planes),
        host=fb.host_link(catalog, system), ns_switch=fb.switch(catalog, system.ns_fabric, owner, "ns_fabric"),
        ns_host=fb.link(catalog, system.ns_host_link, owner, "ns_host_link"),
        oob_switch=fb.switch(catalog, system.oob_switch, owner, "oob_switch"), links=catalog.links,
        cooling=cooling, systems_per_rack=per_rack, cooling_reason=reason,
    )


@dataclass
class DesignArrays:
    """One design per element of ``systems`` (all arrays of the same length)."""

    systems: fb.Ints
    gpus: fb.Ints
    scalable_units: fb.Ints
    fabric: fb.FabricArrays
    side: fb.SideNetworks
    storage_nodes: fb.Ints
    control_nodes: fb.Ints
    compute_racks: fb.Ints
    racks: fb.Ints
    halls: fb.Ints
    floor_m2: Floats
    host_modules: fb.Ints
    transceivers: fb.Counts
    cables: fb.Counts
    buildings: fb.Ints = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    watts: dict[str, Floats] = field(default_factory=dict)  # gpu, systems, network, storage, management, it, facility


def _support(parts: Parts, systems: fb.Ints, fab: fb.FabricArrays, asm: AssumptionSet) -> tuple[fb.Ints, ...]:
    """(storage nodes, control-plane nodes, north-south endpoints, managed devices)."""
    s = parts.system
    need = systems * s.gpus * asm.get("storage_read_per_gpu") / asm.get("storage_node_read")
    storage = np.maximum(1, np.ceil(need - 1e-9)).astype(np.int64)
    per_pod = round(asm.get("control_plane_nodes"))
    small = np.minimum(per_pod, fb.cdiv(systems, SYSTEMS_PER_CONTROL_NODE))
    control = np.where(fab.pods > 1, per_pod * fab.pods, small).astype(np.int64)
    ns = systems * s.ns_ports + storage * round(asm.get("storage_node_ports")) + control * NS_PORTS_PER_CONTROL_NODE
    managed = systems * s.oob_ports + fab.leaves + fab.spines + fab.cores + storage + control
    return storage, control, ns.astype(np.int64), managed.astype(np.int64)


def design_arrays(
    parts: Parts, systems: fb.Ints, asm: AssumptionSet, region: Region, opts: ClusterOptions,
) -> DesignArrays:
    """The whole physical design for each element of ``systems`` (vectorised; see the module docstring)."""
    s = parts.system
    systems = np.asarray(systems, dtype=np.int64)
    max_pod_systems = None if opts.max_fabric_gpus is None else max(1, opts.max_fabric_gpus // s.gpus)
    fab = fb.compute_fabric(systems, round(s.gpus * s.nics_per_gpu), s.scalable_unit_systems, parts.options,
                            opts.oversubscription, opts.pods, max_pod_systems)
    storage, control, ns_endpoints, managed = _support(parts, systems, fab, asm)
    side = fb.side_networks(ns_endpoints, parts.ns_switch, s.ns_port_bit_s, parts.oob_switch, managed)
    ns_switches = side.ns_tree.leaves + side.ns_tree.spines + side.ns_tree.cores
    other_u = ((fab.leaves + fab.spines + fab.cores) * parts.switch.rack_u + ns_switches * parts.ns_switch.rack_u
               + side.oob_switches * parts.oob_switch.rack_u + storage * asm.get("storage_node_rack_u")
               + control * CONTROL_NODE_U)
    compute_racks, racks = rack_counts(systems, parts.systems_per_rack, s.rack_u, other_u, asm.get("rack_usable_u"))
    halls = halls_for(racks, asm.get("racks_per_hall"))
    trans, cables, host_modules = fb.compute_optics(
        fab, parts.host, s.host_ports_per_transceiver, parts.switch, parts.links, racks == 1,
        halls > np.maximum(fab.pods, 1),
    )
    side_trans, side_cables = fb.side_optics(side, parts.ns_switch, parts.ns_host)
    for key, value in side_trans.items():
        fb.add_counts(trans, key, value)
    for key, value in side_cables.items():
        fb.add_counts(cables, key, value)
    d = DesignArrays(
        systems=systems, gpus=systems * s.gpus, scalable_units=fb.cdiv(systems, s.scalable_unit_systems),
        fabric=fab, side=side, storage_nodes=storage, control_nodes=control, compute_racks=compute_racks,
        racks=racks, halls=halls, floor_m2=(racks * asm.get("rack_floor_area")).astype(np.float64),
        host_modules=host_modules, transceivers=trans, cables=cables,
    )
    d.watts = _watts(parts, d, asm, region)
    d.buildings = buildings_for(d.watts["it"], asm.get("building_max_power"))
    return d


def _watts(parts: Parts, d: DesignArrays, asm: AssumptionSet, region: Region) -> dict[str, Floats]:
    """Maximum power of each part of the design, and the facility power at the region's PUE."""
    fab, ns = d.fabric, d.side.ns_tree
    aoc = sum((v * parts.links[k].power_w for k, v in d.cables.items() if parts.links[k].kind == "aoc"),
              np.zeros(len(d.systems)))
    network = ((fab.leaves + fab.spines + fab.cores) * parts.switch.power_w
               + (ns.leaves + ns.spines + ns.cores) * parts.ns_switch.power_w
               + d.host_modules * parts.host.power_w + aoc)
    watts = {
        "gpu": d.gpus * parts.acc.tdp_w,
        "systems": d.systems * parts.system.power_w,
        "network": network,
        "storage": d.storage_nodes * asm.get("storage_node_power"),
        "management": d.side.oob_switches * parts.oob_switch.power_w + d.control_nodes * asm.get("control_node_power"),
    }
    out = {k: np.asarray(v, dtype=np.float64) for k, v in watts.items()}
    out["it"] = out["systems"] + out["network"] + out["storage"] + out["management"]
    out["facility"] = out["it"] * pue_for(region, parts.cooling)
    return out


class ClusterDesign(BaseModel):
    """What gets installed for one system type, and what it draws."""

    model_config = ConfigDict(frozen=True)

    system: str
    accelerator: str
    gpus: int
    systems: int
    scalable_units: int
    scalable_unit_systems: int
    scalable_unit_gpus: int
    racks: int
    compute_racks: int
    fabric: fb.Fabric
    power: Power
    cooling: Cooling
    storage_nodes: int
    control_plane_nodes: int
    floor_m2: float
    halls: int
    buildings: int
    per_gpu_w: dict[str, float]  # chip, system, IT and facility power per GPU
    gpus_per_gw: float  # GPUs per GW at the meter at this design's facility power per GPU
    phases: list[Phase]
    bom: list[BomItem]
    pool: Pool
    notes: list[str]


def _at(a: fb.Ints | Floats, i: int) -> int:
    return int(np.asarray(a)[i])


def _fabric_notes(parts: Parts, f: fb.FabricArrays, i: int) -> list[str]:
    notes = []
    s = parts.system
    link_g = float(f.link_bit_s[i]) / 1e9
    if _at(f.tiers, i) >= 2 and _at(f.provisioned_endpoints, i) > _at(f.endpoints, i):
        notes.append(f"leaf switches and leaf-spine links are installed for whole scalable units "
                     f"({_at(f.provisioned_endpoints, i):,} endpoint ports for {_at(f.endpoints, i):,} NIC ports)")
    if _at(f.planes, i) > 1:
        notes.append(f"each {s.nic_bit_s / 1e9:g}G NIC splits into {_at(f.planes, i)} planes of {link_g:g}G; "
                     f"switches run {_at(f.radix, i)} ports of {link_g:g}G")
    if _at(f.pods, i) > 1:
        notes.append(f"{_at(f.endpoints, i):,} endpoints exceed one 3-tier fabric of {parts.switch.id} (up to "
                     f"{f.pod_reach_endpoints:,} in whole SUs): {_at(f.pods, i)} independent fabrics (pods); "
                     f"a job spans one pod at most")
    return notes


def _fabric_model(parts: Parts, d: DesignArrays, i: int, opts: ClusterOptions) -> fb.Fabric:
    f, side, ns = d.fabric, d.side, d.side.ns_tree
    s = parts.system
    tiers, planes, pods = _at(f.tiers, i), _at(f.planes, i), _at(f.pods, i)
    rails = round(s.gpus * s.nics_per_gpu) if s.scaleup_domain_gpus <= 8 else 1
    return fb.Fabric(
        switch=parts.switch.id, topology=fb.topology_name(tiers, planes, pods, rails), tiers=tiers, planes=planes,
        pods=pods, oversubscription=opts.oversubscription, radix=_at(f.radix, i),
        link_gbit_s=float(f.link_bit_s[i]) / 1e9, endpoints=_at(f.endpoints, i),
        provisioned_endpoints=_at(f.provisioned_endpoints, i), max_endpoints_per_pod=f.pod_reach_endpoints,
        leaf_switches=_at(f.leaves, i), spine_switches=_at(f.spines, i), core_switches=_at(f.cores, i),
        links={"node-leaf": _at(f.node_leaf_links, i), "leaf-spine": _at(f.leaf_spine_links, i),
               "spine-core": _at(f.spine_core_links, i)},
        transceivers={k: _at(v, i) for k, v in sorted(d.transceivers.items()) if _at(v, i) > 0},
        cables={k: _at(v, i) for k, v in sorted(d.cables.items()) if _at(v, i) > 0},
        storage_network=fb.Network(switch=parts.ns_switch.id, tiers=_at(ns.tiers, i),
                                   endpoints=_at(side.ns_endpoints, i), leaf_switches=_at(ns.leaves, i),
                                   spine_switches=_at(ns.spines, i), core_switches=_at(ns.cores, i)),
        management_network=fb.Network(switch=parts.oob_switch.id, tiers=1 if _at(side.oob_switches, i) else 0,
                                      endpoints=_at(side.oob_endpoints, i), leaf_switches=_at(side.oob_switches, i),
                                      spine_switches=0, core_switches=0),
        nvlink_switch_trays=_at(d.systems, i) * s.nvlink_switch_trays,
        nvlink_links=_at(d.gpus, i) * s.nvlink_links_per_gpu, notes=_fabric_notes(parts, f, i),
    )


def _bom_parts(parts: Parts, d: DesignArrays, fabric: fb.Fabric, i: int) -> BomParts:
    ns = fabric.storage_network
    switches: dict[str, int] = {}
    for sid, n in ((parts.switch.id, fabric.compute_switches),
                   (parts.ns_switch.id, ns.leaf_switches + ns.spine_switches + ns.core_switches),
                   (parts.oob_switch.id, fabric.management_network.leaf_switches)):
        switches[sid] = switches.get(sid, 0) + n
    return BomParts(system=parts.system, systems=_at(d.systems, i), switches=switches,
                    transceivers=fabric.transceivers, cables=fabric.cables, storage_nodes=_at(d.storage_nodes, i),
                    control_nodes=_at(d.control_nodes, i))


def _check(parts: Parts, d: DesignArrays, i: int, opts: ClusterOptions) -> None:
    f = d.fabric
    if bool(f.feasible[i]):
        return
    best = max(parts.options, key=lambda o: o.radix)
    reach = fb.max_endpoints(best.radix, fb.MAX_TIERS, opts.oversubscription)
    raise InfeasibleError(
        f"{_at(d.gpus, i):,} GPUs need {_at(f.endpoints, i):,} compute-fabric endpoints in "
        f"{opts.pods or 1} fabric(s), more than a 3-tier fat tree of {best.radix}-port {parts.switch.id} "
        f"switches connects ({reach:,} each) with {best.planes} plane(s)",
        field="pods", value=opts.pods,
        allowed="more independent fabrics (leave pods unset to split automatically), more planes where the NIC "
                "allows them, or a higher-radix switch",
    )


def design_one(
    parts: Parts, d: DesignArrays, i: int, asm: AssumptionSet, region: Region, opts: ClusterOptions,
    catalog: Catalog, budget_mw: float | None = None, workloads: Sequence[str] = (),
) -> ClusterDesign:
    """The ``ClusterDesign`` of element ``i`` of a vectorised pass."""
    _check(parts, d, i, opts)
    s = parts.system
    w = {k: float(v[i]) for k, v in d.watts.items()}
    load = PowerLoad(gpu_w=w["gpu"], systems_w=w["systems"], network_w=w["network"], storage_w=w["storage"],
                     management_w=w["management"], cooling=parts.cooling)
    fabric = _fabric_model(parts, d, i, opts)
    systems, gpus, compute_racks = _at(d.systems, i), _at(d.gpus, i), _at(d.compute_racks, i)
    cooling = Cooling(mode=parts.cooling, systems_per_rack=parts.systems_per_rack,
                      rack_kw=parts.systems_per_rack * s.power_w / 1e3, air_limit_kw=asm.get("air_cooling_limit") / 1e3,
                      air_racks=compute_racks if parts.cooling == "air" else 0,
                      liquid_racks=compute_racks if parts.cooling == "liquid" else 0, reason=parts.cooling_reason)
    pool = Pool(
        accelerator=parts.acc.id, system=s.id, gpus=gpus, systems=systems, racks=compute_racks,
        scalable_units=systems / s.scalable_unit_systems, cooling=parts.cooling,
        rack_power_kw=s.power_w * min(parts.systems_per_rack, systems) / 1e3, gpu_tdp_kw=w["gpu"] / 1e3,
        system_power_kw=w["systems"] / 1e3, workloads=list(workloads), systems_per_rack=parts.systems_per_rack,
        whole_scalable_units=_at(d.scalable_units, i),
    )
    per_gpu = {"chip": w["gpu"] / gpus, "system": w["systems"] / gpus, "it": w["it"] / gpus,
               "facility": w["facility"] / gpus}
    return ClusterDesign(
        system=s.id, accelerator=parts.acc.id, gpus=gpus, systems=systems, scalable_units=_at(d.scalable_units, i),
        scalable_unit_systems=s.scalable_unit_systems, scalable_unit_gpus=s.scalable_unit_systems * s.gpus,
        racks=_at(d.racks, i), compute_racks=compute_racks, fabric=fabric,
        power=power_chain([load], region, asm, budget_mw), cooling=cooling, storage_nodes=_at(d.storage_nodes, i),
        control_plane_nodes=_at(d.control_nodes, i), floor_m2=float(d.floor_m2[i]), halls=_at(d.halls, i),
        buildings=_at(d.buildings, i), per_gpu_w=per_gpu, gpus_per_gw=1e9 / per_gpu["facility"], phases=[],
        bom=build_bom([_bom_parts(parts, d, fabric, i)], catalog, asm), pool=pool, notes=list(fabric.notes),
    )


def design_cluster(
    catalog: Catalog, asm: AssumptionSet, region: Region, system_id: str, *, gpus: int | None = None,
    power_mw: float | None = None, opts: ClusterOptions | None = None, phases_mw: Sequence[float] = (),
    workloads: Sequence[str] = (), budget_mw: float | None = None,
) -> ClusterDesign:
    """Design a deployment of ``system_id`` for ``gpus`` GPUs or the most that fit ``power_mw`` at the meter."""
    opts = opts or ClusterOptions()
    if (gpus is None) == (power_mw is None):
        raise FactoryplanError("give exactly one of gpus or power_mw", field="gpus/power_mw")
    s = resolve_system(catalog, system_id)
    notes: list[str] = []
    if gpus is not None:
        if gpus < 1:
            raise FactoryplanError("must be at least 1", field="gpus", value=gpus)
        systems = math.ceil(gpus / s.gpus)
        if systems * s.gpus != gpus:
            notes.append(f"{gpus:,} GPUs rounded up to {systems:,} whole {s.id} systems ({systems * s.gpus:,} GPUs)")
        parts = resolve_parts(s, catalog, asm, opts, systems)
    else:
        assert power_mw is not None  # exactly one of the two, checked above
        parts = resolve_parts(s, catalog, asm, opts)
        systems = systems_for_power(parts, asm, region, opts, power_mw)
        budget_mw = power_mw if budget_mw is None else budget_mw
        notes.append(f"largest deployment in whole scalable units within {power_mw:,.1f} MW at the meter")
    d = design_arrays(parts, np.array([systems]), asm, region, opts)
    design = design_one(parts, d, 0, asm, region, opts, catalog, budget_mw, workloads)
    steps = phases_for(parts, asm, region, opts, phases_mw, systems) if phases_mw else []
    return design.model_copy(update={"phases": steps, "notes": notes + design.notes})


def _whole_su_designs(parts: Parts, asm: AssumptionSet, region: Region, opts: ClusterOptions,
                      power_mw: float) -> tuple[fb.Ints, Floats]:
    """(systems, facility W) for 1, 2, ... whole SUs up to the most the power could possibly feed."""
    s = parts.system
    su_w = s.scalable_unit_systems * s.power_w  # PUE >= 1 and IT >= systems: a lower bound per SU
    most = max(1, math.floor(power_mw * 1e6 / su_w) + 1)
    systems = np.arange(1, most + 1, dtype=np.int64) * s.scalable_unit_systems
    d = design_arrays(parts, systems, asm, region, opts)
    return systems, np.where(d.fabric.feasible, d.watts["facility"], np.inf)


def systems_for_power(parts: Parts, asm: AssumptionSet, region: Region, opts: ClusterOptions, power_mw: float) -> int:
    """Systems in the largest whole-SU deployment whose facility power fits ``power_mw``."""
    if not power_mw > 0:
        raise FactoryplanError("must be positive", field="power_mw", value=power_mw)
    systems, facility = _whole_su_designs(parts, asm, region, opts, power_mw)
    i = largest_within(facility, power_mw * 1e6)
    if i < 0:
        s = parts.system
        one = float(facility[0])
        if not np.isfinite(one):
            raise InfeasibleError("no fabric of the chosen options connects one scalable unit", field="power_mw")
        raise InfeasibleError(
            f"the power budget is below one scalable unit: {s.scalable_unit_systems} x {s.id} "
            f"({s.scalable_unit_systems * s.gpus:,} GPUs) draw {one / 1e6:,.2f} MW at the meter",
            field="power_mw", value=power_mw, allowed=f">= {one / 1e6:,.2f} MW",
        )
    return int(systems[i])


def phases_for(parts: Parts, asm: AssumptionSet, region: Region, opts: ClusterOptions, phases_mw: Sequence[float],
               systems_needed: int) -> list[Phase]:
    """For each cumulative power step, the whole SUs (up to the deployment's) that it energises."""
    steps = check_phases(phases_mw)
    _, facility = _whole_su_designs(parts, asm, region, opts, max(steps))
    s = parts.system
    su_needed = math.ceil(systems_needed / s.scalable_unit_systems)
    out = []
    for n, mw in enumerate(steps, start=1):
        i = min(largest_within(facility, mw * 1e6), su_needed - 1)
        su = i + 1 if i >= 0 else 0
        out.append(Phase(phase=n, power_mw=mw, scalable_units=su,
                         gpus=min(su * s.scalable_unit_systems, systems_needed) * s.gpus,
                         facility_mw=float(facility[i]) / 1e6 if i >= 0 else 0.0))
    return out
