"""The training engine as one call: a model on N GPUs of a system, one configuration or a search,
and, given a token budget, the whole run. Used by ``factoryplan train``, the plan and the benchmarks.

The single-configuration path is the vectorized engine with arrays of length 1; degrees that do
not divide raise a :class:`~factoryplan.errors.FactoryplanError` naming the rule. A search fixes
the degrees it is given and searches the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.errors import FactoryplanError
from factoryplan.perf import goodput
from factoryplan.perf.flops import model_flops_per_token, model_shape
from factoryplan.perf.memory import RECOMPUTE
from factoryplan.perf.search import check_one, search
from factoryplan.perf.training import (
    DEFAULT_BACKEND,
    PRECISIONS,
    Configs,
    Evaluation,
    Job,
    efficiencies,
    evaluate,
    hardware,
)
from factoryplan.units import GIB, SECONDS_PER_HOUR, SECONDS_PER_YEAR

if TYPE_CHECKING:
    from factoryplan.assumptions import AssumptionSet
    from factoryplan.catalog.load import Catalog

DEFAULTS = {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "ep": 1, "mb": 1, "recompute": 0, "zero": 1}
RUN_ASSUMPTIONS = (
    "interruptions_per_gpu_year", "training_restart_time", "training_checkpoint_write_bandwidth",
    "average_power_fraction",
)


@dataclass(frozen=True)
class TrainingRequest:
    """A training job and the parallel degrees the user fixed (``recompute`` as 0/1/2)."""

    arch: ModelArch
    accelerator: Accelerator
    system: System
    gpus: int
    seq_len: int
    global_batch: int  # sequences
    precision: str = "bf16"
    fixed: dict[str, int] = field(default_factory=dict)
    search: bool = False
    tokens: float | None = None
    backend: str = DEFAULT_BACKEND


def run_assumptions(values: dict[str, float]) -> goodput.RunAssumptions:
    """:class:`~factoryplan.perf.goodput.RunAssumptions` from assumption values (internal units)."""
    return goodput.RunAssumptions(
        interruptions_per_gpu_s=values["interruptions_per_gpu_year"],
        restart_s=values["training_restart_time"],
        checkpoint_bytes_s_per_gpu=values["training_checkpoint_write_bandwidth"],
        power_fraction=values["average_power_fraction"],
    )


def catalog_run_assumptions(catalog: Catalog, asm: AssumptionSet | None = None) -> goodput.RunAssumptions:
    """The run assumptions from a scenario's :class:`AssumptionSet` (recording their use) or the catalog."""
    get = asm.get if asm is not None else catalog.assumption
    return run_assumptions({name: get(name) for name in RUN_ASSUMPTIONS})


def _validate(req: TrainingRequest) -> None:
    if req.precision not in PRECISIONS:
        raise FactoryplanError("unknown precision", field="--precision", value=req.precision,
                               allowed=", ".join(PRECISIONS))
    for name, value in (("--gpus", req.gpus), ("--seq-len", req.seq_len), ("--global-batch", req.global_batch)):
        if value < 1:
            raise FactoryplanError("must be a positive integer", field=name, value=value)
    for name, value in req.fixed.items():
        low = 0 if name in ("recompute", "zero") else 1
        high = 2 if name == "recompute" else 3 if name == "zero" else None
        if value < low or (high is not None and value > high):
            raise FactoryplanError("out of range", field=f"--{name}", value=value,
                                   allowed=f">= {low}" + (f" and <= {high}" if high is not None else ""))
    if req.accelerator.dense_flops(req.precision) is None:
        raise FactoryplanError(
            f"{req.accelerator.id} has no {req.precision} tensor cores", field="--precision", value=req.precision,
            allowed=", ".join(req.accelerator.precisions()),
        )


def _row(ev: Evaluation, i: int) -> dict[str, Any]:
    cfg = ev.configs.row(i)
    return {
        "config": {k: cfg[k] for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch", "recompute", "zero")},
        "step_time_s": float(ev.step_time_s[i]),
        "tokens_per_s_per_gpu": float(ev.tokens_per_s_per_gpu[i]),
        "mfu": float(ev.mfu[i]),
        "memory_per_gpu_gib": float(ev.memory["total"][i]) / GIB,
    }


def train(catalog: Catalog, req: TrainingRequest, run_asm: goodput.RunAssumptions) -> dict[str, Any]:
    """Evaluate (or search) the job and return the report (plain JSON-ready values)."""
    _validate(req)
    shape = model_shape(req.arch)
    hw = hardware(req.accelerator, req.system)
    eff = efficiencies(catalog, req.accelerator, req.precision, req.backend)
    job = Job(seq_len=req.seq_len, global_batch=req.global_batch, gpus=req.gpus, precision=req.precision)
    extra: dict[str, Any] = {}
    if req.search:
        result = search(shape, hw, eff, job, req.fixed)
        ev, i = result.evaluation, result.best
        extra["search"] = {
            "grid": result.grid_size, "evaluated": len(ev.configs), "fitting": int(ev.fits.sum()),
            "rejected": result.rejected, "seconds": result.total_s, "evaluate_seconds": result.evaluate_s,
            "runners_up": [_row(ev, int(j)) for j in result.ranking[1:]],
        }
    else:
        degrees = {**DEFAULTS, **req.fixed}
        degrees["dp"] = max(req.gpus // max(degrees["tp"] * degrees["pp"] * degrees["cp"], 1), 1)
        cfg = Configs.one(**degrees)
        check_one(shape, hw, job, cfg)
        ev, i = evaluate(shape, hw, eff, job, cfg), 0
    out = _report(req, shape.params_total, ev, i, float(model_flops_per_token(shape, float(req.seq_len))))
    if req.tokens is not None:
        out.update(_run_report(req, shape.params_total, float(ev.step_time_s[i]), hw.system_power_w, run_asm))
    out.update(extra)
    return out


def _report(req: TrainingRequest, params: int, ev: Evaluation, i: int, flops_per_token: float) -> dict[str, Any]:
    mem = {k: float(v[i]) / GIB for k, v in ev.memory.items() if k != "total"}
    total = float(ev.memory["total"][i]) / GIB
    available = ev.memory_available / GIB
    row = _row(ev, i)
    out: dict[str, Any] = {
        "model": req.arch.id, "accelerator": req.accelerator.id, "system": req.system.id, "gpus": req.gpus,
        "precision": req.precision, "seq_len": req.seq_len, "global_batch": req.global_batch,
        "tokens_per_step": req.global_batch * req.seq_len, "params": params,
        "config": row["config"],
        "step_time_s": row["step_time_s"],
        "tokens_per_s": float(ev.tokens_per_s[i]),
        "tokens_per_s_per_gpu": row["tokens_per_s_per_gpu"],
        "model_flops_per_token": flops_per_token,
        "model_tflops_per_gpu": float(ev.model_tflops_per_gpu[i]),
        "mfu": row["mfu"],
        "memory_per_gpu_gib": total,
        "memory_breakdown_gib": mem,
        "memory_available_gib": available,
        "fits": bool(ev.fits[i]),
        "time_breakdown_s": {k: float(v[i]) for k, v in ev.time.items()},
        "method": "factoryplan training engine: FLOPs, memory and step time from the architecture and the "
        "catalog's links, at calibrated efficiencies (model FLOPs: causal attention, no recompute)",
    }
    if not out["fits"]:
        out["memory_shortfall_gib"] = total - available
    return out


def _run_report(
    req: TrainingRequest, params: int, step_s: float, system_power_w: float, asm: goodput.RunAssumptions
) -> dict[str, Any]:
    assert req.tokens is not None  # only called with a token budget
    run = goodput.run(req.tokens, float(req.global_batch * req.seq_len), step_s, req.gpus, float(params),
                      system_power_w / req.system.gpus, asm)
    return {
        "tokens": req.tokens, "steps": run.steps, "goodput": run.goodput,
        "mtbf_hours": run.mtbf_s / SECONDS_PER_HOUR, "checkpoint_s": run.checkpoint_s,
        "checkpoint_interval_min": run.checkpoint_interval_s / 60.0,
        "interruptions_per_gpu_year": asm.interruptions_per_gpu_s * SECONDS_PER_YEAR,
        "wall_clock_days": run.wall_clock_days, "gpu_hours": run.gpu_hours, "energy_mwh": run.energy_mwh,
    }


def recompute_code(name: str) -> int:
    """0/1/2 for none/selective/full; a FactoryplanError for anything else."""
    if name not in RECOMPUTE:
        raise FactoryplanError("unknown recompute mode", field="--recompute", value=name, allowed=", ".join(RECOMPUTE))
    return RECOMPUTE.index(name)


__all__ = [
    "DEFAULTS",
    "RUN_ASSUMPTIONS",
    "TrainingRequest",
    "catalog_run_assumptions",
    "recompute_code",
    "run_assumptions",
    "train",
]
