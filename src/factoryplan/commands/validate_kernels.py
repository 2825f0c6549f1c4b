"""`factoryplan validate kernels`: the inference physics against kernels timed on a GPU.

By default the shipped runs of ``benchmarks/device/gpu_microbench.py`` on one H200; ``--data FILE``
(repeatable) checks other runs, e.g. on a GPU the catalog has only datasheet figures for. For each
family of kernels (dense GEMMs per precision, prefill and decode attention, MoE grouped GEMMs, whole
decode steps, prefills and chunked-prefill steps of a Llama-3.1-8B-shaped model) it prints how far the
engine's formulas with the catalog constants land from the measured times (MAPE, median, mean signed
error), then the constants each file's measurements give on their own, beside the catalog's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from factoryplan.commands import OutputFormat


def kernels(
    data: Annotated[list[Path] | None, typer.Option("--data", help="A gpu_microbench.py output file (repeatable); "
                                                    "default: the ten shipped H200 files.")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Accelerator id the files were measured on, where they "
                                            "do not say (their 'accelerator' key).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="Serving engine whose calibrated constants to check "
                                         "(the physics is shared; the MoE kernel factor is not used).")] = "vllm",
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")] = OutputFormat.table,
    cases: Annotated[bool, typer.Option("--cases", help="Also list every timed kernel, measured and predicted.")]
    = False,
    catalog: Annotated[list[Path] | None, typer.Option("--catalog", help="Catalog overlay file (repeatable).")] = None,
) -> None:
    """Check the inference engine's kernel physics against microbenchmarks measured on a GPU.

    Example: factoryplan validate kernels --data b200_microbench.json --gpu b200
    """
    from factoryplan.catalog.load import load_catalog
    from factoryplan.perf.inference import BACKENDS, YAML_NAMES, constants_from_catalog
    from factoryplan.validation.kernels import SHIPPED, implied_constants, kernel_cases, load_bench, summary

    cat = load_catalog(catalog or [])
    if backend not in BACKENDS:
        from factoryplan.errors import unknown

        raise unknown("serving engine", backend, BACKENDS, field="--backend")
    k = constants_from_catalog(cat, backend)
    benches = [load_bench(cat, p, gpu) for p in (data or list(SHIPPED))]
    all_cases = [c for b in benches for c in kernel_cases(cat, b, k)]
    names = {v: f for f, v in YAML_NAMES.items()}
    result: dict[str, Any] = {
        "files": [{"path": str(b.path), "accelerator": b.accelerator, "not_checked": b.unread()} for b in benches],
        "backend": backend,
        "families": summary(all_cases),
        "implied": {str(b.path.name): implied_constants(cat, b) for b in benches},
        "catalog": {**{key: float(getattr(k, names[key])) for key in _CONSTANT_KEYS},
                    # the engine streams expert weights at the dense rate times its MoE kernels' factor
                    "moe_stream_fraction": k.hbm_efficiency * k.moe_kernel_efficiency},
    }
    if cases:
        result["cases"] = [{"family": c.family, "case": c.case, "measured_s": c.measured_s,
                            "predicted_s": c.predicted_s, "error_pct": c.error_pct} for c in all_cases]
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _print(result)


_CONSTANT_KEYS = ("gemm_efficiency_fraction", "hbm_efficiency_fraction", "low_precision_efficiency_ratio",
                  "kv_efficiency_fraction", "attention_efficiency_fraction", "moe_efficiency_ratio")


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table

    from factoryplan.consoles import stdout

    console = stdout()
    for i, f in enumerate(result["files"], 1):
        unread = ", ".join(f"{n} x {key}" for key, n in f["not_checked"].items())
        console.print(f"file {i}: {f['path']} ({f['accelerator']})" + (f"; not checked: {unread}" if unread else ""))
    if "cases" in result:
        t = Table(title="every timed kernel", title_justify="left")
        for col in ("family", "case", "measured", "predicted", "error"):
            t.add_column(col, justify="left" if col in ("family", "case") else "right")
        for c in result["cases"]:
            t.add_row(c["family"], c["case"], f"{c['measured_s'] * 1e6:,.1f} us", f"{c['predicted_s'] * 1e6:,.1f} us",
                      f"{c['error_pct']:+.0f}%")
        console.print(t)
    t = Table(title=f"inference physics ({result['backend']} constants, engine overheads excluded) vs measured",
              title_justify="left")
    for col in ("family", "kernels", "MAPE", "median", "mean error"):
        t.add_column(col, justify="left" if col == "family" else "right")
    for family, v in result["families"].items():
        t.add_row(family, str(v["n"]), f"{v['mape_pct']:.1f}%", f"{v['median_ape_pct']:.1f}%", f"{v['bias_pct']:+.1f}%")
    console.print(t)
    console.print("(mean error +: predicted slower than measured)")
    t = Table(title="constants the measurements give, beside the catalog's", title_justify="left")
    t.add_column("constant")
    for i in range(1, len(result["implied"]) + 1):
        t.add_column(f"file {i}", justify="right")
    t.add_column("catalog", justify="right")
    for key in (*_CONSTANT_KEYS, "moe_stream_fraction", "decode_other_kernels_per_layer_s"):
        cat_value = result["catalog"].get(key)
        t.add_row(key, *(_fmt(key, v.get(key)) for v in result["implied"].values()), _fmt(key, cat_value))
    console.print(t)


def _fmt(key: str, value: float | None) -> str:
    if value is None or value != value:  # absent or NaN
        return "-"
    return f"{value * 1e6:.1f} us" if key.endswith("_s") else f"{value:.3f}"


def register(validate_app: typer.Typer) -> None:
    """Add the command to ``factoryplan validate``."""
    validate_app.command("kernels")(kernels)
