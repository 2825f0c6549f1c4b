"""`factoryplan validate training`: predicted vs published training throughput, row by row, with the MAPE.

Every training row of ``published_runs.csv`` with a throughput figure is run through the engine
(degrees the row leaves open are searched); the table shows the published and predicted tokens/s
per GPU and the error, the summary the MAPE and the largest error over the calibration rows and
over the other rows, and a CSV with every row is written.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from factoryplan.commands import OutputFormat
from factoryplan.consoles import stdout as console

if TYPE_CHECKING:
    from factoryplan.validation.training import Prediction


def _rows(preds: list[Prediction]) -> list[dict[str, Any]]:
    out = []
    for p in preds:
        c = p.case
        out.append({
            "row_id": c.row_id, "model": c.model, "accelerator": c.accelerator, "gpus": c.gpus,
            "precision": c.precision, "calibration": c.calibration, "source": c.source_kind,
            "config": " ".join(f"{k}={v}" for k, v in p.config.items()),
            "published": c.published_text,
            "published_tokens_per_s_per_gpu": round(c.published_tokens_per_s_per_gpu, 3),
            "predicted_tokens_per_s_per_gpu": round(p.tokens_per_s_per_gpu, 3),
            "predicted_model_tflops_per_gpu": round(p.model_tflops_per_gpu, 1),
            "error_pct": round(100 * p.error, 2), "fits": p.fits, "memory_gib": round(p.memory_gib, 1),
            "mapping": "; ".join(c.notes),
        })
    return out


def training(
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file of every row.")] = Path("validation-training.csv"),
    data: Annotated[Path | None, typer.Option("--data", help="Another CSV in the layout of published_runs.csv "
                                              "(default: the shipped one).")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")] = OutputFormat.table,
    catalog: Annotated[list[Path] | None, typer.Option("--catalog", help="Catalog overlay file (repeatable).")] = None,
) -> None:
    """Predicted vs published training throughput for every training row with a throughput figure.

    Example: factoryplan validate training --out training.csv
    """
    from factoryplan.catalog.load import load_catalog
    from factoryplan.errors import FactoryplanError
    from factoryplan.validation.training import RUNS_CSV, load_cases_report, predict, summary

    cat = load_catalog(catalog or [])
    source = data or RUNS_CSV
    if not source.is_file():
        raise FactoryplanError("file not found", where=str(source), field="--data")
    cases, skipped = load_cases_report(cat, source)
    if not cases:
        raise FactoryplanError("no training row with a throughput figure", where=str(source), field="--data")
    preds = []
    for case in cases:
        try:
            preds.append(predict(case, cat))
        except FactoryplanError as exc:
            skipped.append((str(case.row_id), exc.render()))
    rows = _rows(preds)
    with out.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stats = summary(preds)
    if fmt is OutputFormat.json:
        report = {"summary": stats, "rows": rows, "skipped": [{"row_id": r, "reason": why} for r, why in skipped],
                  "csv": str(out)}
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    from rich.table import Table

    t = Table(title="Training throughput: predicted vs published (tokens/s per GPU)", title_justify="left")
    for col in ("row", "model", "GPUs", "prec", "set", "configuration", "published", "predicted", "error"):
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(str(r["row_id"]), r["model"][:32], f"{r['gpus']:,} {r['accelerator']}", r["precision"],
                  "calib" if r["calibration"] else "check", r["config"],
                  f"{r['published_tokens_per_s_per_gpu']:,.1f}", f"{r['predicted_tokens_per_s_per_gpu']:,.1f}",
                  f"{r['error_pct']:+.1f}%")
    console().print(t)
    console().print(
        f"calibration rows: {stats['calibration_rows']:.0f}, MAPE {100 * stats['calibration_mape']:.1f}%, "
        f"largest error {100 * stats['calibration_max_error']:.1f}%; other rows: {stats['other_rows']:.0f}, "
        f"MAPE {100 * stats['other_mape']:.1f}%, largest {100 * stats['other_max_error']:.1f}%"
    )
    for row_id, why in skipped:
        console().print(f"skipped row {row_id}: {why}")
    console().print(f"written: {out}")


def register(validate_app: typer.Typer) -> None:
    """Add the command to ``factoryplan validate``."""
    validate_app.command("training")(training)


__all__ = ["register", "training"]
