"""The economics part of the plan's wiring: unit costs, alternatives, sensitivity and uncertainty.

``plan.py`` calls these after it has chosen the hardware; they take the chosen deployment's
workloads, pools, power and bill of materials and return plain values for the ``Plan``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from factoryplan.assumptions import AssumptionSet
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import params_total
from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.economics.alternatives import Alternative, OwnBasis, ServiceTokens, api_alternative, cloud_alternative
from factoryplan.economics.breakeven import break_even_month
from factoryplan.economics.risk import (
    Progress,
    SensitivityItem,
    Uncertainty,
    UnitSpec,
    attach_sobol,
    cost_figures,
    distributions,
    monte_carlo,
    one_at_a_time,
    sobol_indices,
)
from factoryplan.economics.tco import Costs, assumption_values, cost_assumptions, cost_inputs, owned_costs
from factoryplan.economics.unitcost import HOURS_PER_YEAR, ServiceCost, cost_shares, run_cost, service_cost
from factoryplan.errors import FactoryplanError
from factoryplan.infra.bom import BomItem
from factoryplan.infra.cluster import Pool, Power
from factoryplan.scenario import InferenceWorkload, Scenario, TrainingWorkload, Workload
from factoryplan.sovereignty.premium import OptionCost
from factoryplan.units import SECONDS_PER_YEAR

if TYPE_CHECKING:
    from factoryplan.plan import WorkloadResult

SizeFn = Callable[[Workload, ModelArch, Accelerator, System, AssumptionSet], "WorkloadResult"]
VerdictFn = Callable[[str, Sequence[str]], tuple[bool, list[str]]]
OWN_OPTION = {"own-build": "own-build", "colocation": "colocation-domestic"}


def _price_per_gpu(catalog: Catalog, system_id: str) -> float:
    system = catalog.systems[system_id]
    return system.price_usd / system.gpus


def workload_shares(catalog: Catalog, results: Sequence[WorkloadResult], pools: Sequence[Pool]) -> dict[str, float]:
    """Each workload's share of the deployment's cost: GPUs x price per GPU over all pools'."""
    total = sum(p.gpus * _price_per_gpu(catalog, p.system) for p in pools)
    weights = {r.name: r.gpus * _price_per_gpu(catalog, r.system) for r in results}
    return {k: v / total for k, v in weights.items()} if total > 0 else cost_shares(weights)


def _tokens(w: InferenceWorkload) -> tuple[float, float]:
    rate = w.average_requests_per_s() * SECONDS_PER_YEAR
    return rate * w.input_tokens, rate * w.output_tokens


def _pool_of(pools: Sequence[Pool], r: WorkloadResult) -> Pool:
    return next((p for p in pools if p.system == r.system), pools[0])


def unit_costs(
    costs: Costs, scenario: Scenario, catalog: Catalog, results: Sequence[WorkloadResult], pools: Sequence[Pool],
    power: Power,
) -> tuple[Costs, list[WorkloadResult], UnitSpec]:
    """$/Mtok per service, $ per training run; the workloads with their unit costs; the sampling spec."""
    shares = workload_shares(catalog, results, pools)
    pool_total = sum(p.gpus * _price_per_gpu(catalog, p.system) for p in pools)
    services: list[ServiceCost] = []
    runs = []
    spec_services: dict[str, tuple[float, float]] = {}
    spec_runs: dict[str, tuple[float, float, float]] = {}
    out = []
    for r, w in zip(results, scenario.workloads, strict=True):
        update: dict[str, float | None] = {}
        if isinstance(w, InferenceWorkload):
            tin, tout = _tokens(w)
            svc = service_cost(r.name, r.gpus, shares[r.name], costs.annualized_usd_per_year, tin, tout, r.details,
                               w.output_tokens, power.facility_mw * shares[r.name])
            services.append(svc)
            spec_services[r.name] = (shares[r.name], tin + tout)
            update["usd_per_million_tokens"] = svc.usd_per_million_tokens
        elif isinstance(w, TrainingWorkload):
            pool = _pool_of(pools, r)
            pool_share = pool.gpus * _price_per_gpu(catalog, pool.system) / pool_total if pool_total else 1.0
            per_hour = costs.annualized_usd_per_year * pool_share / (pool.gpus * HOURS_PER_YEAR * costs.utilization)
            run = run_cost(r.name, r.gpus, r.details, per_hour)
            if run is not None:
                runs.append(run)
                spec_runs[r.name] = (pool_share, float(pool.gpus), run.gpu_hours)
                update["usd_per_run"] = run.usd
        out.append(r.model_copy(update=update) if update else r)
    costs = costs.model_copy(update={
        "services": services, "training_runs": runs,
        "usd_per_million_tokens": {s.name: s.usd_per_million_tokens for s in services},
    })
    return costs, out, UnitSpec(services=spec_services, runs=spec_runs)


def _model_class(arch: ModelArch, w: InferenceWorkload) -> str:
    if w.api_model_class:
        return w.api_model_class
    total = params_total(arch)
    return "small" if total < 15e9 else "medium-open" if total < 150e9 else "large-open"


def _serving_utilization(costs: Costs, results: Sequence[WorkloadResult]) -> float:
    """GPU-weighted share of the serving GPUs' capacity that the average demand uses."""
    used = total = 0.0
    for svc in costs.services:
        r = next(x for x in results if x.name == svc.name)
        per_gpu = r.details.get("output_tokens_per_s_per_gpu")
        if isinstance(per_gpu, int | float) and per_gpu > 0:
            u = min(1.0, svc.output_tokens_per_year / SECONDS_PER_YEAR / (r.gpus * float(per_gpu)))
        else:
            u = costs.utilization
        used += u * r.gpus
        total += r.gpus
    return used / total if total else costs.utilization


def _own_alternatives(
    scenario: Scenario, catalog: Catalog, pools: Sequence[Pool], power: Power, bom: Sequence[BomItem],
    costs: Costs, asm: AssumptionSet, verdict: VerdictFn,
) -> list[Alternative]:
    """The plan's own deployment and the other way of housing the same hardware (build vs colocation)."""
    names = [w.name for w in scenario.workloads]
    region = catalog.regions[scenario.region]
    dep = scenario.facility.deployment
    kinds = {"own-build": "own", "colocation": "colo"}
    gpus = sum(p.gpus for p in pools)
    out = []
    other = "colocation" if dep == "own-build" else "own-build"
    other_costs = owned_costs(bom, pools, power, region, other, asm, scenario.horizon_years)
    build, colo = (costs, other_costs) if dep == "own-build" else (other_costs, costs)
    month = break_even_month(build.capex_usd, build.opex_usd_per_year, colo.capex_usd, colo.opex_usd_per_year)
    note = ("own build pays back against colocation " + (f"after {month:.0f} months" if month is not None else "never"))
    for d, k in ((dep, costs), (other, other_costs)):
        ok, reasons = verdict(OWN_OPTION[d], names)
        label = f"own hardware, {'own building' if d == 'own-build' else 'domestic colocation'} ({pools[0].system})"
        out.append(Alternative(
            option=label + (" [plan]" if d == dep else ""), option_id=OWN_OPTION[d], kind=kinds[d], offer=None,
            provider_kind=None, pricing="owned", accelerator=pools[0].accelerator, gpus=gpus, scope="all",
            annual_usd=k.annualized_usd_per_year, tco_usd=k.tco_usd, usd_per_gpu_hour=k.usd_per_gpu_hour,
            usd_per_million_tokens=None, break_even_month=month if d != dep else None, note=note if d != dep else "",
            feasible=ok, reasons=reasons,
        ))
    return out


def alternatives(
    scenario: Scenario, catalog: Catalog, archs: Sequence[ModelArch], results: Sequence[WorkloadResult],
    pools: Sequence[Pool], power: Power, bom: Sequence[BomItem], costs: Costs, asm: AssumptionSet,
    size: SizeFn, verdict: VerdictFn,
) -> tuple[list[Alternative], list[str]]:
    """Own build vs colocation, every cloud offer and every API option, for the same workloads; and
    a note for each GPU whose offers could not be priced because a workload cannot run on it."""
    horizon = costs.horizon_years
    names = [w.name for w in scenario.workloads]
    inference_share = sum(s.cost_share for s in costs.services)
    own = OwnBasis(
        annual_usd=costs.annualized_usd_per_year, capex_usd=costs.capex_usd, opex_usd_per_year=costs.opex_usd_per_year,
        inference_share=inference_share, serving_utilization=_serving_utilization(costs, results),
    )
    alts = _own_alternatives(scenario, catalog, pools, power, bom, costs, asm, verdict)
    sized: dict[str, int | None] = {}
    notes: list[str] = []
    for price in catalog.cloud_prices.values():
        if price.accelerator not in sized:
            acc = catalog.accelerators[price.accelerator]
            system = catalog.systems[acc.default_system]
            try:
                sized[price.accelerator] = sum(
                    size(w, a, acc, system, asm).gpus for w, a in zip(scenario.workloads, archs, strict=True))
            except FactoryplanError as exc:
                sized[price.accelerator] = None
                notes.append(f"cloud offers of {acc.id} not priced: {exc.message}")
        cloud_gpus = sized[price.accelerator]
        if cloud_gpus is None:
            continue
        ok, reasons = verdict(price.option, names)
        alts.append(cloud_alternative(price, cloud_gpus, costs.utilization, horizon, ok, reasons, own))
    services = [
        ServiceTokens(name=w.name, model_class=_model_class(a, w), input_tokens_per_year=_tokens(w)[0],
                      output_tokens_per_year=_tokens(w)[1])
        for w, a in zip(scenario.workloads, archs, strict=True) if isinstance(w, InferenceWorkload)
    ]
    training = [w.name for w in scenario.workloads if isinstance(w, TrainingWorkload)]
    for option_id in sorted({p.option for p in catalog.api_prices.values()}):
        ok, reasons = verdict(option_id, [s.name for s in services])
        if training:
            reasons = [*reasons, f"covers inference only; {', '.join(training)} still need own or rented GPUs"]
        alt = api_alternative(option_id, list(catalog.api_prices.values()), services, horizon, ok, reasons, own)
        if alt is not None:
            alts.append(alt)
    return alts, notes


def option_costs(
    scenario: Scenario, catalog: Catalog, archs: Sequence[ModelArch], results: Sequence[WorkloadResult],
    pools: Sequence[Pool], alternatives: Sequence[Alternative], costs: Costs, asm: AssumptionSet, size: SizeFn,
) -> list[OptionCost]:
    """What each workload alone costs through each option over the horizon (cheapest offer per option).

    Owned options: the workload's share of the planned deployment, built or colocated (their whole
    costs are the ``own`` and ``colo`` rows of ``alternatives``). Cloud: the workload re-sized on each
    offer's GPU and rented. API: the service's tokens (inference only).
    """
    horizon = costs.horizon_years
    shares = workload_shares(catalog, results, pools)
    kinds = {"own": "own-build", "colo": "colocation"}
    owned = {kinds[a.kind]: a.tco_usd for a in alternatives if a.kind in kinds}
    out: list[OptionCost] = []
    for w, arch in zip(scenario.workloads, archs, strict=True):
        best: dict[str, OptionCost] = {}

        def keep(c: OptionCost, best: dict[str, OptionCost] = best) -> None:
            if c.option_id not in best or c.tco_usd < best[c.option_id].tco_usd:
                best[c.option_id] = c

        for d, tco in owned.items():
            keep(OptionCost(workload=w.name, option_id=OWN_OPTION[d], option=f"own hardware ({d})",
                            kind="own" if d == "own-build" else "colo", tco_usd=tco * shares[w.name]))
        gpus_on: dict[str, int | None] = {}
        for price in catalog.cloud_prices.values():
            if price.accelerator not in gpus_on:
                acc = catalog.accelerators[price.accelerator]
                try:
                    gpus_on[price.accelerator] = size(w, arch, acc, catalog.systems[acc.default_system], asm).gpus
                except FactoryplanError:
                    gpus_on[price.accelerator] = None
            gpus = gpus_on[price.accelerator]
            if gpus is not None:
                alt = cloud_alternative(price, gpus, costs.utilization, horizon, True, [])
                keep(OptionCost(workload=w.name, option_id=price.option, option=alt.option, kind="cloud",
                                tco_usd=alt.tco_usd))
        if isinstance(w, InferenceWorkload):
            tin, tout = _tokens(w)
            svc = ServiceTokens(name=w.name, model_class=_model_class(arch, w), input_tokens_per_year=tin,
                                output_tokens_per_year=tout)
            for option_id in sorted({p.option for p in catalog.api_prices.values()}):
                api = api_alternative(option_id, list(catalog.api_prices.values()), [svc], horizon, True, [])
                if api is not None:
                    keep(OptionCost(workload=w.name, option_id=option_id, option=api.option, kind="api",
                                    tco_usd=api.tco_usd))
        out.extend(best.values())
    return out


def risk(
    costs: Costs, scenario: Scenario, catalog: Catalog, pools: Sequence[Pool], power: Power, bom: Sequence[BomItem],
    asm: AssumptionSet, spec: UnitSpec, *, sensitivity: bool = True, sobol: int = 0, draws: int = 0, seed: int = 0,
    progress: Progress | None = None,
) -> tuple[list[SensitivityItem], Uncertainty | None]:
    """One-at-a-time sensitivity (and Sobol indices), and Monte Carlo percentiles when asked for."""
    dep = scenario.facility.deployment
    q = cost_inputs(bom, pools, power, catalog.regions[scenario.region], dep, asm, costs.horizon_years)
    base = assumption_values(asm, dep)
    dists, fixed = distributions(asm, cost_assumptions(dep))
    figures = cost_figures(q, spec)
    items = one_at_a_time(base, dists, figures) if sensitivity or sobol else []
    if sobol:
        items = attach_sobol(items, sobol_indices(base, dists, figures, sobol, seed=seed))
    uncertainty = None
    if draws:
        uncertainty = monte_carlo(base, dists, fixed, figures, draws, seed=seed, progress=progress)
    return items, uncertainty
