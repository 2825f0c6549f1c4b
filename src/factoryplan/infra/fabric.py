"""Networks of a deployment: the compute fabric (fat trees, planes, pods), storage/in-band and management.

Compute fabric (east-west). Every scale-out NIC port is an endpoint. Systems are cabled in scalable
units (SUs) as in NVIDIA's DGX SuperPOD reference architectures (RAs); once a deployment needs more
than one switch, the leaf switches and leaf-spine links of every started SU are installed whole (GB200
RA, network-fabrics page: "the fabric should be designed to support the full SU"). The fabric is a
folded Clos network (fat tree; Leiserson 1985, Al-Fares et al. 2008) of k-port switches:

- a leaf has d = floor(k·r/(1+r)) ports down and u = k − d up (r: oversubscription, 1 = non-blocking);
- 1 tier  when N ≤ k: one switch;
- 2 tiers when N ≤ k·d: leaves ⌈N/d⌉; spines the smallest divisor of u that is ≥ ⌈leaves·u/k⌉, so that
  every leaf has the same number of links to every spine (equal-uplink rule);
- 3 tiers when N ≤ d·k²/2: leaves ⌈N/d⌉, spines ⌈leaves·u/(k/2)⌉, cores ⌈spines/2⌉.

At r = 1 these are the textbook counts (2 tiers: N/(k/2) leaves, N/k spines; 3 tiers: N/(k/2) leaves
and spines, N/k cores). The equal-uplink rule reproduces the RA cells the plain formula misses: H100
3 SU lists 16 spines (not 12) and B300 XDR 4 and 8 SU list 18 and 36 (not 16 and 32).

Planes: a NIC of speed B may split into p ports of B/p on p independent planes (NVIDIA multi-plane,
as the DGX B300 Spectrum-X RA's twin-plane 2 x 400G). Each plane is a fat tree of all N endpoints whose
switches run each port broken out (s·p/B)-ways, so a plane's radix is k·s·p/B. The planner takes the
fewest tiers, then the fewest planes, within the NIC's and the switch's limits. Beyond what three
tiers reach with the most planes, the deployment becomes several independent fabrics ("pods") of
whole SUs, unless one fabric is required, which is then an error.

Optics: each NIC port gets a host module (a twin-port module serves two), each switch port in use a
share of a switch module (``ports_per_cage`` ports per module at native speed, times the breakout),
and each link one fiber patch cable. The top tier of a fabric spread over several halls uses long-reach
modules. A one-switch fabric in the same rack as its systems uses copper (DAC). Switch power in the
catalog includes its own modules, so only host-side modules and active cables add power.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.schema import Link, Switch, System
from factoryplan.errors import CatalogError, FactoryplanError, InfeasibleError

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Counts = dict[str, Ints]
FIBER = "fiber-mpo12-sm"
OOB_CABLE = "rj45-cat6-patch"
MAX_TIERS = 3


def cdiv(a: Ints | int, b: Ints | int) -> Ints:
    """Ceiling of a / b for non-negative integers (arrays or scalars)."""
    return -(-np.asarray(a, dtype=np.int64) // np.asarray(b, dtype=np.int64))


def leaf_split(radix: int, oversubscription: float) -> tuple[int, int]:
    """(ports down, ports up) of a leaf at ``oversubscription`` (down:up); 1 is non-blocking."""
    if not oversubscription >= 1:
        raise FactoryplanError("oversubscription is down:up bandwidth at the leaf", field="oversubscription",
                               value=oversubscription, allowed=">= 1 (1 = non-blocking)")
    down = int(radix * oversubscription / (1.0 + oversubscription) + 1e-9)
    if down < 1 or down >= radix:
        raise FactoryplanError("leaves would have no ports left", field="oversubscription", value=oversubscription,
                               allowed=f"1 to {radix - 1}")
    return down, radix - down


def max_endpoints(radix: int, tiers: int, oversubscription: float = 1.0) -> int:
    """Endpoints a fat tree of ``radix``-port switches reaches in ``tiers`` tiers (k, k·d, d·k²/2)."""
    down, _ = leaf_split(radix, oversubscription)
    return {1: radix, 2: radix * down, 3: down * radix * (radix // 2)}[tiers]


@functools.lru_cache(maxsize=64)
def _divisors(n: int) -> Ints:
    return np.array([d for d in range(1, n + 1) if n % d == 0], dtype=np.int64)


@dataclass(frozen=True)
class Tree:
    """Switch and link counts of one fat tree, per element of the endpoint array (tiers 4: beyond reach)."""

    tiers: Ints
    leaves: Ints
    spines: Ints
    cores: Ints
    leaf_spine_links: Ints
    spine_core_links: Ints


def fat_tree(endpoints: Ints | int, radix: int, oversubscription: float = 1.0) -> Tree:
    """Switches of a fat tree of ``radix``-port switches for ``endpoints`` hosts (see the module docstring).

    Works on arrays. 0 endpoints give tiers 0 and no switches; more than three tiers reach gives
    tiers 4 and zero counts, which callers must treat as infeasible.
    """
    n = np.asarray(endpoints, dtype=np.int64)
    down, up = leaf_split(radix, oversubscription)
    half = radix // 2
    tiers = np.select([n <= 0, n <= radix, n <= radix * down, n <= down * radix * half], [0, 1, 2, 3], 4)
    leaves = np.where(tiers == 1, 1, np.where((tiers >= 2) & (tiers <= MAX_TIERS), cdiv(n, down), 0))
    divs = _divisors(up)
    need = cdiv(leaves * up, radix)
    spines2 = divs[np.minimum(np.searchsorted(divs, need, side="left"), len(divs) - 1)]
    spines3 = cdiv(leaves * up, half)
    spines = np.select([tiers == 2, tiers == 3], [spines2, spines3], 0)
    cores = np.where(tiers == 3, cdiv(spines3, 2), 0)
    return Tree(
        tiers=tiers.astype(np.int64), leaves=leaves, spines=spines, cores=cores,
        leaf_spine_links=np.where((tiers == 2) | (tiers == 3), leaves * up, 0),
        spine_core_links=np.where(tiers == 3, spines * half, 0),
    )


@dataclass(frozen=True)
class PlaneOption:
    """One way to attach a NIC to the fabric: p planes at ``link_bit_s``, switch ports broken out."""

    planes: int
    link_bit_s: float
    breakout: int
    radix: int


def plane_options(nic_bit_s: float, switch: Switch, planes_max: int, planes: int | None = None) -> list[PlaneOption]:
    """Plane counts (powers of two up to ``planes_max``) whose link speed the switch ports can run."""
    out = []
    p = 1
    while p <= max(planes_max, planes or 1):
        link = nic_bit_s / p
        ratio = switch.port_bit_s / link
        b = round(ratio)
        if abs(ratio - b) < 1e-9 and 1 <= b <= switch.max_breakout and b & (b - 1) == 0:
            out.append(PlaneOption(p, link, b, switch.ports * b))
        p *= 2
    if planes is not None:
        out = [o for o in out if o.planes == planes]
        if not out or planes > planes_max:
            raise FactoryplanError(
                f"a {nic_bit_s / 1e9:g}G NIC on {switch.id} ({switch.port_bit_s / 1e9:g}G ports, breakout up to "
                f"{switch.max_breakout}) cannot run {planes} planes", field="planes", value=planes,
                allowed=f"1 to {planes_max} where the plane speed divides the port speed",
            )
    if not out:
        raise CatalogError(
            f"a {nic_bit_s / 1e9:g}G NIC cannot attach to {switch.id} ({switch.port_bit_s / 1e9:g}G ports, "
            f"breakout up to {switch.max_breakout})", field="compute_fabric", value=switch.id,
        )
    return out


@dataclass(frozen=True)
class FabricArrays:
    """The compute fabric chosen for each element of a systems-count array (totals over planes and pods)."""

    tiers: Ints
    planes: Ints
    pods: Ints
    radix: Ints
    breakout: Ints
    link_bit_s: npt.NDArray[np.float64]
    endpoints: Ints
    provisioned_endpoints: Ints
    leaves: Ints
    spines: Ints
    cores: Ints
    node_leaf_links: Ints
    leaf_spine_links: Ints
    spine_core_links: Ints
    feasible: Bools
    pod_reach_endpoints: int


@dataclass(frozen=True)
class _Chosen:
    tiers: Ints
    option: Ints  # index into the option list
    leaves: Ints
    spines: Ints
    cores: Ints
    ls: Ints
    sc: Ints


def _choose(prov: Ints, actual: Ints, options: list[PlaneOption], r: float) -> _Chosen:
    """Per element, the option with the fewest tiers, then the fewest planes; counts times planes."""
    trees = [fat_tree(np.where(actual <= o.radix, actual, prov), o.radix, r) for o in options]
    key = np.stack([t.tiers * 64 + i for i, t in enumerate(trees)])
    best = np.argmin(key, axis=0)
    planes = np.array([o.planes for o in options], dtype=np.int64)[best]

    def pick(name: str) -> Ints:
        stacked = np.stack([getattr(t, name) for t in trees])
        return np.asarray(np.take_along_axis(stacked, best[None, :], axis=0)[0], dtype=np.int64)

    return _Chosen(
        tiers=pick("tiers"), option=best, leaves=pick("leaves") * planes, spines=pick("spines") * planes,
        cores=pick("cores") * planes, ls=pick("leaf_spine_links") * planes, sc=pick("spine_core_links") * planes,
    )


def compute_fabric(
    systems: Ints, nics_per_system: int, su_systems: int, options: list[PlaneOption], oversubscription: float = 1.0,
    pods: int | None = None, max_pod_systems: int | None = None,
) -> FabricArrays:
    """The compute fabric for each systems count: tiers, planes, pods and switch/link totals.

    ``pods`` None splits into the fewest equal pods of whole SUs when three tiers cannot reach;
    a number forces that many fabrics (``feasible`` is False where they cannot reach). One
    system needs no fabric (tiers 0).
    """
    systems = np.asarray(systems, dtype=np.int64)
    su_endpoints = su_systems * nics_per_system
    reach = max(max_endpoints(o.radix, MAX_TIERS, oversubscription) for o in options)
    su_per_pod = reach // su_endpoints
    if max_pod_systems is not None:
        su_per_pod = min(su_per_pod, max(1, max_pod_systems // su_systems))
    if su_per_pod < 1:
        raise InfeasibleError(f"one scalable unit ({su_endpoints:,} endpoints) exceeds a 3-tier fabric ({reach:,})")
    if pods is not None and pods < 1:
        raise FactoryplanError("must be at least 1", field="pods", value=pods)
    su = cdiv(systems, su_systems)
    endpoints = np.where(systems > 1, systems * nics_per_system, 0)
    n_pods = np.maximum(1, cdiv(su, su_per_pod)) if pods is None else np.maximum(1, np.minimum(pods, su))
    q, rem = su // n_pods, su % n_pods
    small = _choose(q * su_endpoints, np.where(n_pods == 1, endpoints, q * su_endpoints), options, oversubscription)
    big = _choose((q + 1) * su_endpoints, (q + 1) * su_endpoints, options, oversubscription)
    n_small = n_pods - rem  # >= 1: the pods of q SUs; the other rem pods have q + 1
    tiers = np.maximum(small.tiers, np.where(rem > 0, big.tiers, 0))
    planes = np.array([o.planes for o in options], dtype=np.int64)[small.option]

    def total(name: str) -> Ints:
        return np.asarray(n_small * getattr(small, name) + rem * getattr(big, name), dtype=np.int64)

    return FabricArrays(
        tiers=tiers, planes=planes, pods=np.where(tiers > 0, n_pods, 0),
        radix=np.array([o.radix for o in options], dtype=np.int64)[small.option],
        breakout=np.array([o.breakout for o in options], dtype=np.int64)[small.option],
        link_bit_s=np.array([o.link_bit_s for o in options], dtype=np.float64)[small.option],
        endpoints=endpoints, provisioned_endpoints=np.where(tiers >= 2, su * su_endpoints, endpoints),
        leaves=total("leaves"), spines=total("spines"), cores=total("cores"),
        node_leaf_links=np.where(tiers > 0, endpoints * planes, 0), leaf_spine_links=total("ls"),
        spine_core_links=total("sc"), feasible=tiers <= MAX_TIERS, pod_reach_endpoints=su_per_pod * su_endpoints,
    )


def add_counts(counts: Counts, key: str, value: Ints) -> None:
    """Add ``value`` to ``counts[key]`` (creating it)."""
    counts[key] = counts.get(key, np.zeros_like(value)) + value


def _by_speed(links: dict[str, Link], kind: str, speed_bit_s: npt.NDArray[np.float64]) -> npt.NDArray[np.str_]:
    """Per element, the id of a ``kind`` link at exactly that speed ('' when the catalog has none)."""
    by_speed = {ln.speed_bit_s: ln.id for ln in links.values() if ln.kind == kind}
    return np.array([by_speed.get(float(s), "") for s in speed_bit_s], dtype=np.str_)


def compute_optics(
    fab: FabricArrays, host: Link, host_ports_per_module: int, switch: Switch, links: dict[str, Link],
    in_rack: Bools, long_top: Bools,
) -> tuple[Counts, Counts, Ints]:
    """(transceivers, cables, host modules) by link id for the compute fabric."""
    modules: Counts = {}
    cables: Counts = {}
    dac = _by_speed(links, "dac", fab.link_bit_s)
    copper = in_rack & (fab.tiers == 1) & (fab.planes == 1) & (dac != "")
    nics = np.where(fab.tiers > 0, fab.endpoints, 0)
    for link_id in sorted({str(i) for i in dac.tolist() if i}):
        add_counts(cables, link_id, np.where(copper & (dac == link_id), nics, 0))
    host_modules = np.where(copper, 0, cdiv(nics, host_ports_per_module))
    add_counts(modules, host.id, host_modules)
    leaf_down = np.where(copper, 0, fab.node_leaf_links)
    ls2, sc2 = 2 * fab.leaf_spine_links, 2 * fab.spine_core_links
    top = np.where(fab.tiers == 2, ls2, np.where(fab.tiers == 3, sc2, 0))
    long_id = switch.long_reach_transceiver or switch.transceiver
    long_ports = np.where(long_top & (long_id != switch.transceiver), top, 0)
    per_module = switch.ports_per_cage * fab.breakout
    add_counts(modules, switch.transceiver, cdiv(leaf_down + ls2 + sc2 - long_ports, per_module))
    if long_id != switch.transceiver:
        add_counts(modules, long_id, cdiv(long_ports, per_module))
    add_counts(cables, FIBER, leaf_down + fab.leaf_spine_links + fab.spine_core_links)
    return modules, cables, host_modules


@dataclass(frozen=True)
class SideNetworks:
    """Storage/in-band (north-south) fabric and out-of-band management network, per element."""

    ns_tree: Tree
    ns_radix: int
    ns_breakout: int
    ns_endpoints: Ints
    oob_switches: Ints
    oob_endpoints: Ints


def side_networks(ns_endpoints: Ints, ns_switch: Switch, ns_link_bit_s: float, oob_switch: Switch,
                  managed_devices: Ints) -> SideNetworks:
    """A non-blocking fat tree for the north-south ports; OOB switches for every managed device.

    ``managed_devices`` counts the devices with a management port other than the north-south
    switches and the OOB switches themselves, which are added here.
    """
    ratio = ns_switch.port_bit_s / ns_link_bit_s
    b = round(ratio)
    if abs(ratio - b) > 1e-9 or not 1 <= b <= ns_switch.max_breakout:
        raise CatalogError(f"{ns_link_bit_s / 1e9:g}G north-south ports cannot attach to {ns_switch.id}",
                           field="ns_fabric", value=ns_switch.id)
    tree = fat_tree(ns_endpoints, ns_switch.ports * b)
    if np.any(tree.tiers > MAX_TIERS):
        raise InfeasibleError("the storage and in-band fabric needs more than three tiers", field="ns_fabric")
    managed = managed_devices + tree.leaves + tree.spines + tree.cores
    oob = cdiv(managed, oob_switch.ports - 1)  # one port of each OOB switch manages the switch itself
    return SideNetworks(ns_tree=tree, ns_radix=ns_switch.ports * b, ns_breakout=b, ns_endpoints=ns_endpoints,
                        oob_switches=np.where(managed > 0, oob, 0), oob_endpoints=managed + oob)


def side_optics(side: SideNetworks, ns_switch: Switch, ns_host: Link) -> tuple[Counts, Counts]:
    """(transceivers, cables) of the north-south and management networks."""
    t = side.ns_tree
    switch_ports = 2 * (t.leaf_spine_links + t.spine_core_links)
    modules: Counts = {ns_switch.transceiver: cdiv(switch_ports, ns_switch.ports_per_cage * side.ns_breakout)}
    cables: Counts = {ns_host.id: side.ns_endpoints, FIBER: t.leaf_spine_links + t.spine_core_links,
                      OOB_CABLE: side.oob_endpoints}
    return modules, cables


class Network(BaseModel):
    """A storage/in-band or management network, summarised."""

    model_config = ConfigDict(frozen=True)

    switch: str
    tiers: int
    endpoints: int
    leaf_switches: int
    spine_switches: int
    core_switches: int


class Fabric(BaseModel):
    """Every network of a deployment: the compute fabric in detail, the others summarised.

    ``transceivers`` and ``cables`` count every network's modules and cables by catalog id.
    """

    model_config = ConfigDict(frozen=True)

    switch: str
    topology: str
    tiers: int
    planes: int
    pods: int
    oversubscription: float
    radix: int
    link_gbit_s: float
    endpoints: int
    provisioned_endpoints: int
    max_endpoints_per_pod: int
    leaf_switches: int
    spine_switches: int
    core_switches: int
    links: dict[str, int]
    transceivers: dict[str, int]
    cables: dict[str, int]
    storage_network: Network
    management_network: Network
    nvlink_switch_trays: int
    nvlink_links: int
    notes: list[str]

    @property
    def compute_switches(self) -> int:
        """Leaf, spine and core switches of the compute fabric."""
        return self.leaf_switches + self.spine_switches + self.core_switches


def topology_name(tiers: int, planes: int, pods: int, rails: int) -> str:
    """'rail-optimised 2-tier fat tree, 2 planes' and the like."""
    if tiers == 0:
        return "none: one system (scale-up domain only)"
    if tiers == 1:
        return "one switch"
    name = f"{'rail-optimised ' if rails > 1 else ''}{tiers}-tier fat tree"
    if planes > 1:
        name += f", {planes} planes"
    if pods > 1:
        name += f", {pods} independent pods"
    return name


def link(catalog: Catalog, link_id: str, owner: str, field_name: str) -> Link:
    """A link entry an entry names, or a CatalogError naming the owner and field."""
    if link_id not in catalog.links:
        raise CatalogError(f"unknown link {link_id!r}", where=owner, field=field_name,
                           allowed=", ".join(sorted(catalog.links)))
    return catalog.links[link_id]


def switch(catalog: Catalog, switch_id: str, owner: str, field_name: str) -> Switch:
    """A switch entry an entry names, or a CatalogError naming the owner and field."""
    if switch_id not in catalog.switches:
        raise CatalogError(f"unknown switch {switch_id!r}", where=owner, field=field_name,
                           allowed=", ".join(sorted(catalog.switches)))
    return catalog.switches[switch_id]


def host_link(catalog: Catalog, system: System) -> Link:
    """The NIC-side module of ``system``'s compute fabric (by id, else by NIC speed)."""
    if system.host_transceiver:
        return link(catalog, system.host_transceiver, f"systems[{system.id}]", "host_transceiver")
    for candidate in catalog.links.values():
        if candidate.kind == "transceiver" and candidate.speed_bit_s == system.nic_bit_s:
            return candidate
    raise CatalogError("no transceiver at the NIC speed", where=f"systems[{system.id}]", field="host_transceiver")
