"""`factoryplan train`: step time, memory and throughput of a training job; with --tokens the whole run.

A fixed configuration is evaluated as given (degrees left out default to 1, no recomputation,
ZeRO-1); with ``--search`` the degrees left out are searched and the fastest configuration that
fits is reported with the runner-ups and the counts of rejected configurations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from factoryplan.commands import OutputFormat
from factoryplan.consoles import stdout as console
from factoryplan.errors import FactoryplanError


def _number(text: str, name: str) -> float:
    scale = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}
    body = text.strip().replace(",", "").replace("_", "")
    factor = scale.get(body[-1:], 1.0)
    body = body[:-1] if body[-1:] in scale else body
    try:
        return float(body) * factor
    except ValueError:
        raise FactoryplanError("not a number", field=name, value=text, allowed="e.g. 15e12, 15T, 2.5B") from None


def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog model id, a Hugging Face config.json path, or "
                                       "the repository name of a catalog architecture.")],
    gpu: Annotated[str, typer.Option("--gpu", help="Accelerator id or alias (its usual system) or system id.")],
    gpus: Annotated[int, typer.Option("--gpus", help="Number of GPUs.")],
    seq_len: Annotated[int, typer.Option("--seq-len", help="Sequence length in tokens.")],
    global_batch: Annotated[int, typer.Option("--global-batch", help="Global batch in sequences.")],
    tp: Annotated[int | None, typer.Option("--tp", help="Tensor parallelism.")] = None,
    pp: Annotated[int | None, typer.Option("--pp", help="Pipeline stages.")] = None,
    vpp: Annotated[int | None, typer.Option("--vpp", help="Virtual stages per pipeline stage.")] = None,
    cp: Annotated[int | None, typer.Option("--cp", help="Context parallelism.")] = None,
    ep: Annotated[int | None, typer.Option("--ep", help="Expert parallelism.")] = None,
    micro_batch: Annotated[int | None, typer.Option("--micro-batch", help="Micro-batch in sequences.")] = None,
    recompute: Annotated[str | None, typer.Option("--recompute", help="none, selective or full.")] = None,
    zero: Annotated[int | None, typer.Option("--zero", help="ZeRO stage 0-3 (1: distributed optimizer, 3: FSDP).")
                    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="bf16, fp8 or fp4.")] = "bf16",
    tokens: Annotated[str | None, typer.Option("--tokens", help="Tokens to train on (e.g. 15T): days, "
                                               "GPU-hours and energy of the run.")] = None,
    do_search: Annotated[bool, typer.Option("--search", help="Search the degrees left out.")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")] = OutputFormat.table,
    catalog: Annotated[list[Path] | None, typer.Option("--catalog", help="Catalog overlay file (repeatable).")] = None,
) -> None:
    """Training step time, memory per GPU, tokens/s and MFU; with --tokens, the run's days and energy.

    Example: factoryplan train --model llama-3.1-405b --gpu h100-sxm --gpus 16384 --seq-len 8192
    --global-batch 2048 --precision fp8 --tokens 15T --search
    """
    from factoryplan.catalog.load import load_catalog
    from factoryplan.catalog.models import resolve_model
    from factoryplan.commands.serve import resolve_gpu
    from factoryplan.perf.training_run import TrainingRequest, catalog_run_assumptions, recompute_code
    from factoryplan.perf.training_run import train as run_train

    cat = load_catalog(catalog or [])
    arch = resolve_model(cat, model)
    acc, system = resolve_gpu(cat, gpu)
    given = {"tp": tp, "pp": pp, "vpp": vpp, "cp": cp, "ep": ep, "mb": micro_batch, "zero": zero,
             "recompute": recompute_code(recompute) if recompute is not None else None}
    req = TrainingRequest(
        arch=arch, accelerator=acc, system=system, gpus=gpus, seq_len=seq_len, global_batch=global_batch,
        precision=precision, fixed={k: v for k, v in given.items() if v is not None}, search=do_search,
        tokens=_number(tokens, "--tokens") if tokens is not None else None,
    )
    report = run_train(cat, req, catalog_run_assumptions(cat))
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _render(report)
    if not report["fits"]:
        _does_not_fit(report)


def _does_not_fit(r: dict[str, Any]) -> None:
    """A configuration that does not fit is reported (above) and then refused: exit status 3."""
    from factoryplan.errors import InfeasibleError

    shown = " ".join(f"{k}={v}" for k, v in r["config"].items())
    raise InfeasibleError(
        f"{r['model']} does not fit {r['gpus']:,} x {r['accelerator']} as {shown}: {r['memory_per_gpu_gib']:.1f} GiB "
        f"a GPU, {r['memory_available_gib']:.1f} usable (needs {r['memory_shortfall_gib']:.1f} more)",
        field="--tp/--pp/--cp/--zero/--recompute/--micro-batch",
        allowed="a configuration that fits: more tensor or pipeline parallelism, a higher ZeRO stage, "
        "recomputation, or --search",
    )


def _render(r: dict[str, Any]) -> None:
    cfg = r["config"]
    from rich.table import Table

    t = Table(title=f"{r['model']} on {r['gpus']:,} x {r['accelerator']} ({r['system']}), {r['precision']}",
              title_justify="left", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("configuration", " ".join(f"{k}={v}" for k, v in cfg.items()))
    t.add_row("step time", f"{r['step_time_s']:.3f} s ({r['global_batch']:,} x {r['seq_len']:,} tokens)")
    t.add_row("tokens/s", f"{r['tokens_per_s']:,.0f} ({r['tokens_per_s_per_gpu']:,.1f} per GPU)")
    t.add_row("model TFLOP/s per GPU", f"{r['model_tflops_per_gpu']:,.0f} (MFU {100 * r['mfu']:.1f}%)")
    mem = ", ".join(f"{k} {v:.1f}" for k, v in r["memory_breakdown_gib"].items())
    fits = "fits" if r["fits"] else f"DOES NOT FIT: needs {r['memory_shortfall_gib']:.1f} GiB more"
    t.add_row("memory per GPU", f"{r['memory_per_gpu_gib']:.1f} of {r['memory_available_gib']:.1f} GiB usable, "
              f"{fits} ({mem})")
    if "wall_clock_days" in r:
        t.add_row("run", f"{r['steps']:,} steps, {r['wall_clock_days']:.1f} days at goodput {100 * r['goodput']:.1f}%, "
                  f"{r['gpu_hours']:,.0f} GPU-hours, {r['energy_mwh']:,.0f} MWh (IT)")
    if "search" in r:
        s = r["search"]
        t.add_row("search", f"{s['evaluated']:,} valid of {s['grid']:,} configurations in {s['seconds'] * 1e3:.0f} ms, "
                  f"{s['fitting']:,} fit")
        for reason, n in s["rejected"].items():
            t.add_row("  rejected", f"{n:,}: {reason}")
        for ru in s["runners_up"]:
            shown = " ".join(f"{k}={v}" for k, v in ru["config"].items())
            rate = f"{ru['tokens_per_s_per_gpu']:,.1f} tok/s/GPU, {ru['memory_per_gpu_gib']:.0f} GiB"
            t.add_row("  runner-up", f"{rate}: {shown}")
    console().print(t)


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("train")(train)


__all__ = ["register", "train"]
