"""Scenario -> Plan: the one place where the stages are wired together.

Data flows one way: workloads are sized on each candidate system (perf), the systems become
pools, racks and a power chain (infra), the owned deployment is costed (economics), the same
workloads are priced in the cloud and as API tokens (economics.alternatives), and every option is
checked against the sovereignty rules (sovereignty). The cheapest candidate that fits the power
budget is chosen. Every assumption read on the way is listed in the plan with its source.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from factoryplan import plan_costs, plan_phases
from factoryplan.assumptions import AssumptionSet, AssumptionUse
from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import check_context, params_active, params_total, resolve_model
from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.economics.alternatives import Alternative
from factoryplan.economics.risk import Progress, SensitivityItem, Uncertainty
from factoryplan.economics.tco import Costs, owned_costs, validate_cost_assumptions
from factoryplan.errors import FactoryplanError, InfeasibleError, ScenarioError
from factoryplan.infra.bom import BomItem
from factoryplan.infra.cluster import Pool, Power, build_pool
from factoryplan.infra.deployment import Deployment, plan_deployment
from factoryplan.infra.fabric import Fabric
from factoryplan.infra.site import Cooling
from factoryplan.perf import capacity, inference, training, training_plan, training_run
from factoryplan.perf.goodput import RunAssumptions
from factoryplan.perf.inference_constants import error_band, serving_engine
from factoryplan.perf.serving import cached_tokens
from factoryplan.scenario import InferenceWorkload, Scenario, TrainingWorkload, Workload, check_references
from factoryplan.sovereignty.policy import Verdict, WorkloadData, assess_all
from factoryplan.sovereignty.premium import Premium, premium

DEFAULT_CANDIDATES = ("gb200", "b200", "h200-sxm", "h100-sxm")


class WorkloadResult(BaseModel):
    """How one workload is served on the chosen hardware."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str
    model: str
    params_total: float
    params_active: float
    accelerator: str
    system: str
    gpus: int
    precision: str
    data_class: str
    sector: str
    method: str
    details: dict[str, float | int | str]
    usd_per_million_tokens: float | None = None
    usd_per_run: float | None = None  # training: the run's GPU-hours at its pool's $/GPU-hour
    warnings: list[str] = []
    frontier: list[dict[str, float]] = []  # inference: Pareto points (tokens/s per user vs per GPU, per MW)
    frontier_disaggregated: list[dict[str, float]] = []  # the same for prefill and decode pools


class ClusterSummary(BaseModel):
    """The whole deployment; ``accelerator``/``system`` name the largest pool."""

    model_config = ConfigDict(frozen=True)

    accelerator: str
    system: str
    gpus: int
    systems: int
    racks: int
    scalable_units: float
    pools: list[Pool]
    fabric: Fabric
    cooling: Cooling
    floor_m2: float
    halls: int
    buildings: int


class HardwareOption(BaseModel):
    """One candidate system as evaluated for the whole scenario."""

    model_config = ConfigDict(frozen=True)

    system: str
    accelerator: str
    feasible: bool
    gpus: int
    facility_mw: float
    annualized_usd_per_year: float
    within_budget: bool
    chosen: bool
    reason: str


class Plan(BaseModel):
    """Everything factoryplan says about a scenario. Serialised as the stable JSON output."""

    model_config = ConfigDict(frozen=True)

    schema_version: str = "1"
    scenario: str
    description: str
    region: str
    workloads: list[WorkloadResult]
    cluster: ClusterSummary
    power: Power
    bom: list[BomItem]
    costs: Costs
    alternatives: list[Alternative]
    sensitivity: list[SensitivityItem] = []
    uncertainty: Uncertainty | None = None
    sovereignty: list[Verdict]
    sovereignty_premium: Premium
    phasing: plan_phases.Phasing | None = None
    hardware_options: list[HardwareOption]
    assumptions: list[AssumptionUse]
    warnings: list[str]


class Candidate(BaseModel):
    """One candidate system evaluated for a scenario: sized workloads, pools, power, materials, costs."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    workloads: list[WorkloadResult]
    pools: list[Pool]
    power: Power
    bom: list[BomItem]
    costs: Costs
    site: Deployment  # the physical design the pools, power and materials come from


def peak_requests_per_s(w: InferenceWorkload, asm: AssumptionSet) -> float:
    """Average demand times the peak-to-average factor (the workload's, else the catalog's)."""
    factor = w.peak_to_average if w.peak_to_average is not None else asm.get("serving_peak_to_average")
    return w.average_requests_per_s() * factor


def size_workload(
    w: Workload, arch: ModelArch, acc: Accelerator, system: System, asm: AssumptionSet
) -> WorkloadResult:
    """GPUs for one workload on one system: the training engine's deadline sizing or the inference
    engine's capacity plan."""
    warnings: list[str] = []
    frontier: list[dict[str, float]] = []
    disagg: list[dict[str, float]] = []
    if isinstance(w, TrainingWorkload):
        d = _size_training(w, arch, acc, system, asm)
    else:
        sized = _size_inference(w, arch, acc, system, asm)
        d, frontier, warnings = {**sized.details, "gpus": sized.gpus}, sized.frontier, sized.warnings
        disagg = sized.frontier_disaggregated
    gpus = int(d.pop("gpus"))
    method = str(d.pop("method"))
    precision = str(d.pop("precision", w.precision))
    return WorkloadResult(
        name=w.name, kind=w.kind, model=arch.id, params_total=params_total(arch), params_active=params_active(arch),
        accelerator=acc.id, system=system.id, gpus=gpus, precision=precision, data_class=w.data_class,
        sector=w.sector, method=method, details=d, warnings=warnings, frontier=frontier,
        frontier_disaggregated=disagg,
    )


def _size_training(
    w: TrainingWorkload, arch: ModelArch, acc: Accelerator, system: System, asm: AssumptionSet
) -> dict[str, float | int | str]:
    """The training engine's fewest GPUs (whole systems, or scalable units beyond one) that finish
    the run by the deadline, with the configuration its search found and the run's figures."""
    if acc.dense_flops(w.precision) is None:
        raise InfeasibleError(f"{acc.id} has no {w.precision} tensor cores", field="precision", value=w.precision,
                              allowed=", ".join(acc.precisions()))
    batch = w.global_batch_tokens if w.global_batch_tokens is not None else asm.get("training_global_batch")
    sized = _sized_training(
        arch, acc, system, training.efficiencies(asm.catalog, acc, w.precision), w.tokens, w.deadline_days,
        w.precision, w.seq_len, batch, training_run.catalog_run_assumptions(asm.catalog, asm),
    )
    method = ("training engine: fewest GPUs meeting the deadline; parallel configuration searched; step time "
              "from FLOPs, memory traffic and collectives at calibrated efficiencies; goodput from failures "
              "and checkpoints (Young)")
    return {**sized.details, "gpus": sized.gpus, "method": method}


@functools.lru_cache(maxsize=256)
def _sized_training(
    arch: ModelArch, acc: Accelerator, system: System, eff: training.Efficiencies, tokens: float,
    deadline_days: float, precision: str, seq_len: int, batch_tokens: float, run_asm: RunAssumptions,
) -> training_plan.Sized:
    """Cached: the plan sizes the same workload on the same system for every cloud offer."""
    return training_plan.size_for_deadline(
        arch, acc, system, eff, tokens=tokens, deadline_days=deadline_days, precision=precision, seq_len=seq_len,
        global_batch_tokens=batch_tokens, run_asm=run_asm,
    )


def _size_inference(
    w: InferenceWorkload, arch: ModelArch, acc: Accelerator, system: System, asm: AssumptionSet
) -> capacity.Sized:
    """The inference engine's fewest-GPU plan for the workload's peak demand (with the headroom
    kept free at peak) and latency targets, on the workload's serving-engine profile."""
    backend = serving_engine(asm.catalog, acc, w.serving_engine, field="serving_engine")
    k = inference.constants_from_catalog(asm.catalog, backend)
    prec, basis = inference.serving_formats(arch, acc, k, w.precision, w.moe_precision, w.activation_precision or "",
                                            w.kv_precision)
    peak = peak_requests_per_s(w, asm) / (1.0 - asm.get("serving_headroom"))
    cached = cached_tokens(w.prefix_hit, w.input_tokens)
    demand = capacity.Demand(requests_per_s=peak, isl=w.input_tokens, osl=w.output_tokens,
                             ttft_s=w.ttft_ms / 1e3, tpot_s=w.tpot_ms / 1e3, prefix=float(cached),
                             draft_tokens=float(w.draft_tokens), acceptance=w.draft_acceptance or 0.0,
                             ttft_percentile=w.ttft_percentile, isl_cv=w.input_tokens_cv)
    band = error_band(asm.catalog, backend, acc.id)
    sized = capacity.size_inference(inference.shape_of(arch), inference.hardware_of(acc, system), prec, k, demand,
                                    backend=backend, band=band)
    formats_used = {"precision": prec.weights, "moe_precision": prec.experts, "kv_precision": prec.kv,
                    "activation_precision": prec.activation_format(), "precision_basis": basis}
    sized = dataclasses.replace(sized, details={**sized.details, **formats_used})
    if band is None or "gpus_low" not in sized.details:
        return sized
    basis = band.gpus_basis(acc.id, reachable="gpus_high" in sized.details)
    return dataclasses.replace(sized, details={**sized.details, "gpus_band_basis": basis})


def _mw(value: float | None) -> str:
    """Megawatts for messages: one decimal from 10 MW, three significant figures below."""
    if value is None:
        return "no limit"
    return f"{value:,.1f} MW" if value >= 10 else f"{value:.3g} MW"


class Sizer:
    """``size_workload`` remembered for one plan: the plan sizes the same workload on the same system
    for the chosen design, the cloud alternatives and the sovereignty premium."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str, str], WorkloadResult] = {}

    def __call__(
        self, w: Workload, arch: ModelArch, acc: Accelerator, system: System, asm: AssumptionSet
    ) -> WorkloadResult:
        key = (w.model_dump_json(), arch.model_dump_json(), acc.id, system.id)
        if key not in self._seen:
            self._seen[key] = size_workload(w, arch, acc, system, asm)
        return self._seen[key]


def _evaluate(
    scenario: Scenario, catalog: Catalog, archs: Sequence[ModelArch], hw: tuple[Accelerator, System],
    asm: AssumptionSet, size: Sizer,
) -> Candidate:
    region = catalog.regions[scenario.region]
    results = []
    for w, arch in zip(scenario.workloads, archs, strict=True):
        acc, system = catalog.hardware(w.hardware[0]) if w.hardware else hw
        results.append(size(w, arch, acc, system, asm))
    by_system: dict[str, list[WorkloadResult]] = {}
    for r in results:
        by_system.setdefault(r.system, []).append(r)
    pools = [
        build_pool(
            catalog.systems[sid], catalog.accelerators[rs[0].accelerator], sum(r.gpus for r in rs),
            [r.name for r in rs], scenario.facility.cooling,
        )
        for sid, rs in by_system.items()
    ]
    site = plan_deployment(pools, catalog, asm, region, scenario.facility.cooling, scenario.power_budget_mw)
    pools, power, bom = site.pools, site.power, site.bom
    if not power.within_budget:
        raise InfeasibleError(
            f"needs {_mw(power.facility_mw)} at the meter, over the power budget of "
            f"{_mw(scenario.power_budget_mw)}", field="power_budget_mw",
        )
    costs = owned_costs(bom, pools, power, region, scenario.facility.deployment, asm, scenario.horizon_years)
    return Candidate(workloads=results, pools=pools, power=power, bom=bom, costs=costs, site=site)


def _choose(
    scenario: Scenario, catalog: Catalog, archs: Sequence[ModelArch], asm: AssumptionSet, size: Sizer,
) -> tuple[Candidate, list[HardwareOption]]:
    ids = scenario.hardware or [h for h in DEFAULT_CANDIDATES if h in catalog.accelerators]
    evaluated: list[tuple[str, tuple[Accelerator, System], Candidate | None, str]] = []
    for hw_id in ids:
        hw = catalog.hardware(hw_id)
        try:
            evaluated.append((hw_id, hw, _evaluate(scenario, catalog, archs, hw, asm, size), ""))
        except InfeasibleError as exc:
            evaluated.append((hw_id, hw, None, exc.render()))
    feasible = [(c.power.within_budget, c.costs.annualized_usd_per_year, i) for i, (_, _, c, _) in enumerate(evaluated)
                if c is not None]
    if not feasible:
        reasons = "; ".join(f"{h}: {r}" for h, _, _, r in evaluated)
        raise InfeasibleError(f"no candidate hardware can run the workloads: {reasons}", field="hardware")
    best = min(feasible, key=lambda t: (not t[0], t[1]))[2]
    options = []
    for i, (_, (acc, system), cand, reason) in enumerate(evaluated):
        options.append(
            HardwareOption(
                system=system.id, accelerator=acc.id, feasible=cand is not None,
                gpus=sum(p.gpus for p in cand.pools) if cand else 0,
                facility_mw=cand.power.facility_mw if cand else 0.0,
                annualized_usd_per_year=cand.costs.annualized_usd_per_year if cand else 0.0,
                within_budget=cand.power.within_budget if cand else False,
                chosen=i == best, reason=reason,
            )
        )
    chosen = evaluated[best][2]
    assert chosen is not None  # best indexes a feasible candidate
    return chosen, options


def _verdicts(scenario: Scenario, catalog: Catalog) -> list[Verdict]:
    region = catalog.regions[scenario.region]
    plan_jur = scenario.sovereignty.jurisdiction or region.jurisdiction
    workloads = [
        WorkloadData(
            name=w.name, jurisdiction=w.jurisdiction or plan_jur, data_class=w.data_class, sector=w.sector,
            transfer_basis=list(w.transfer_basis), minimum_level=w.minimum_level,
        )
        for w in scenario.workloads
    ]
    return assess_all(
        catalog.options.values(), workloads, list(catalog.rules.values()), plan_jurisdiction=plan_jur,
        minimum_level=scenario.sovereignty.minimum_level, enforce=scenario.sovereignty.enforce,
    )


def _option_verdict(verdicts: Sequence[Verdict], option_id: str, workloads: Sequence[str]) -> tuple[bool, list[str]]:
    reasons: list[str] = []
    for v in verdicts:
        if v.option == option_id and v.workload in workloads and not v.feasible:
            reasons.extend(f"{v.workload}: {r}" for r in v.reasons)
    return not reasons, reasons


def _alternatives(
    scenario: Scenario, catalog: Catalog, archs: Sequence[ModelArch], chosen: Candidate, verdicts: Sequence[Verdict],
    asm: AssumptionSet, size: Sizer,
) -> tuple[list[Alternative], list[str]]:
    """Own build vs colocation, cloud offers and LLM APIs for the same workloads (see plan_costs)."""
    return plan_costs.alternatives(
        scenario, catalog, archs, chosen.workloads, chosen.pools, chosen.power, chosen.bom, chosen.costs, asm,
        size, lambda option_id, names: _option_verdict(verdicts, option_id, names),
    )


def _models(scenario: Scenario, catalog: Catalog, where: str) -> list[ModelArch]:
    """Each workload's architecture; an unknown model names the workload it belongs to."""
    archs = []
    for i, w in enumerate(scenario.workloads):
        try:
            archs.append(resolve_model(catalog, w.model))
        except FactoryplanError as exc:
            raise ScenarioError(exc.message, where=where, field=f"workloads[{i}].model", allowed=exc.allowed) from None
        if isinstance(w, InferenceWorkload):
            try:
                check_context(archs[-1], w.input_tokens, w.output_tokens, field=f"workloads[{i}].input_tokens")
            except FactoryplanError as exc:
                raise ScenarioError(exc.message, where=where, field=exc.field, allowed=exc.allowed) from None
    return archs


def _cluster_summary(chosen: Candidate) -> ClusterSummary:
    main_pool = max(chosen.pools, key=lambda p: p.gpus)
    site = chosen.site
    return ClusterSummary(
        accelerator=main_pool.accelerator, system=main_pool.system, gpus=sum(p.gpus for p in chosen.pools),
        systems=sum(p.systems for p in chosen.pools), racks=site.racks,
        scalable_units=sum(p.scalable_units for p in chosen.pools), pools=chosen.pools, fabric=site.fabric,
        cooling=site.cooling, floor_m2=site.floor_m2, halls=site.halls, buildings=site.buildings,
    )


def build_plan(
    scenario: Scenario, catalog: Catalog, *, where: str = "scenario", sensitivity: bool = True, sobol: int = 0,
    monte_carlo: int = 0, seed: int = 0, progress: Progress | None = None,
) -> Plan:
    """Run every stage once and return the plan.

    ``sensitivity``: one-at-a-time sensitivity of the cost figures (cheap); ``sobol``: base samples
    for Sobol indices (0: none); ``monte_carlo``: draws for P10/P50/P90 (0: none); ``seed`` makes
    both reproducible; ``progress(done, total)`` is called as Monte Carlo chunks finish.
    """
    check_references(scenario, catalog, where=where)
    asm = AssumptionSet.from_scenario(catalog, scenario.assumptions, where=where)
    validate_cost_assumptions(asm, where=where)
    archs = _models(scenario, catalog, where)
    size = Sizer()
    chosen, hw_options = _choose(scenario, catalog, archs, asm, size)
    phasing = plan_phases.build_phasing(
        scenario, archs, asm, lambda sub, sub_archs: _choose(sub, catalog, sub_archs, asm, size)[0], where=where
    )
    verdicts = _verdicts(scenario, catalog)
    costs, workloads, spec = plan_costs.unit_costs(
        chosen.costs, scenario, catalog, chosen.workloads, chosen.pools, chosen.power)
    chosen = chosen.model_copy(update={"costs": costs, "workloads": workloads})
    alternatives, unpriced = _alternatives(scenario, catalog, archs, chosen, verdicts, asm, size)
    sov_premium = premium(
        plan_costs.option_costs(scenario, catalog, archs, chosen.workloads, chosen.pools, alternatives, chosen.costs,
                                asm, size),
        verdicts,
    )
    sens, uncertainty = plan_costs.risk(
        costs, scenario, catalog, chosen.pools, chosen.power, chosen.bom, asm, spec, sensitivity=sensitivity,
        sobol=sobol, draws=monte_carlo, seed=seed, progress=progress,
    )
    warnings = [wn for r in chosen.workloads for wn in r.warnings] + unpriced
    warnings += [
        f"assumption {name} was given but no stage of this plan uses it"
        for name in asm.overrides
        if name not in asm.used
    ]
    return Plan(
        scenario=scenario.name, description=scenario.description, region=scenario.region,
        workloads=chosen.workloads, cluster=_cluster_summary(chosen), power=chosen.power, bom=chosen.bom,
        costs=chosen.costs,
        alternatives=alternatives, sensitivity=sens, uncertainty=uncertainty, sovereignty=verdicts,
        sovereignty_premium=sov_premium, phasing=phasing,
        hardware_options=hw_options, assumptions=asm.report(),
        warnings=warnings,
    )
