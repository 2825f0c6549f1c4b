"""`factoryplan validate inference`: predicted vs published serving results, with the MAPE.

By default the inference rows of ``published_runs.csv`` (TensorRT-LLM max-throughput tables, a NIM
concurrency sweep, vLLM CI latency tests); ``--measured`` adds the measured H100/H200 serving
points; ``--data FILE`` checks a file in the same measured-points layout (any GPU). ``--out FILE.csv``
writes every point of those sets, measured and predicted side by side, and every skipped row with
its reason.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from factoryplan.commands import OutputFormat

if TYPE_CHECKING:
    from factoryplan.catalog.load import Catalog
    from factoryplan.validation.inference import Point, Prediction

METRICS = ("output_tokens_per_s", "ttft_ms", "tpot_ms", "e2e_ms")


def _rows(points: list[Point], preds: list[Prediction], implied: bool = False) -> list[dict[str, Any]]:
    """One row per measured figure of each point; ``implied``: a point without a throughput has the
    one its TTFT and TPOT imply (measured serving points, as the calibration reports them)."""
    from factoryplan.validation.inference import implied_output_tokens_per_s

    out = []
    for p, q in zip(points, preds, strict=True):
        for metric in METRICS:
            meas = getattr(p, metric)
            if implied and metric == "output_tokens_per_s" and meas is None:
                meas = implied_output_tokens_per_s(p)
            pred = getattr(q, metric)
            if meas and pred is not None and math.isfinite(pred):
                out.append({
                    "id": p.id, "model": p.model, "gpu": p.accelerator, "backend": p.backend, "mode": _mode(p),
                    "engine": f"{p.backend} {p.version.strip() or '?'}",
                    "layout": _layout(p), "weights": p.weights,
                    "tp": p.par.tp, "isl": p.isl, "osl": p.osl, "concurrency": p.concurrency or "max",
                    "metric": metric, "published": meas, "predicted": pred, "error_pct": (pred - meas) / meas * 100,
                })
    return out


def _mode(p: Point) -> str:
    """``agg`` or, for a prefill/decode deployment, ``disagg``."""
    return "disagg" if p.disagg is not None else "agg"


def _layout(p: Point) -> str:
    """How a point's replica splits its work: ``disaggregated``, ``attention-dp`` (aggregated, several
    attention data-parallel ranks), ``pipeline`` or ``tensor`` (one rank of tensor-parallel GPUs)."""
    if p.disagg is not None:
        return "disaggregated"
    if float(p.par.dp) > 1:
        return "attention-dp"
    return "pipeline" if float(p.par.pp) > 1 else "tensor"


POINT_COLUMNS = (
    "set", "id", "model", "gpu", "system", "backend", "version", "mode", "weights", "experts", "activations", "kv",
    "tp", "dp", "moe_tp", "ep", "pp", "prefill_tp", "prefill_dp", "prefill_ep", "prefill_workers", "decode_workers",
    "isl", "osl", "range_ratio", "prefix", "requests_per_user", "concurrency", "repair", "ttft_ms", "predicted_ttft_ms",
    "ttft_error_pct", "tpot_ms", "predicted_tpot_ms", "tpot_error_pct", "output_tokens_per_s",
    "predicted_output_tokens_per_s", "output_tokens_per_s_error_pct", "fits", "skipped",
)


def _error(pred: float, meas: float | None) -> float | str:
    return "" if not meas or not math.isfinite(pred) else (pred - meas) / meas * 100


def _point_row(name: str, p: Point, q: Prediction) -> dict[str, Any]:
    from factoryplan.validation.inference import implied_output_tokens_per_s

    thr = implied_output_tokens_per_s(p)
    row: dict[str, Any] = {
        "set": name, "id": p.id, "model": p.model, "gpu": p.accelerator, "system": p.system, "backend": p.backend,
        "version": p.version, "weights": p.weights, "experts": p.experts,
        "activations": p.activations or "weights'", "kv": p.kv or "default", "tp": p.par.tp,
        "dp": p.par.dp, "moe_tp": p.par.moe_tp, "ep": p.par.ep, "pp": p.par.pp, "isl": p.isl, "osl": p.osl,
        "range_ratio": p.range_ratio, "prefix": p.prefix, "requests_per_user": p.requests_per_user or "",
        "concurrency": p.concurrency or "max",
        "repair": p.repair, "fits": q.fits, "skipped": "",
        "mode": _mode(p),
    }
    if p.disagg is not None:  # ``tp``..``pp`` are then the decode workers'
        pre = p.disagg.prefill
        row.update({"prefill_tp": pre.tp, "prefill_dp": pre.dp, "prefill_ep": pre.ep,
                    "prefill_workers": p.disagg.prefill_workers, "decode_workers": p.disagg.decode_workers})
    for metric, meas, pred in (("ttft_ms", p.ttft_ms, q.ttft_ms), ("tpot_ms", p.tpot_ms, q.tpot_ms),
                               ("output_tokens_per_s", thr, q.output_tokens_per_s)):
        error = f"{metric.removesuffix('_ms')}_error_pct"
        row.update({metric: meas, f"predicted_{metric}": pred, error: _error(pred, meas)})
    return row


def write_points_csv(path: Path, sets: list[tuple[str, Any, list[Prediction]]]) -> None:
    """One line per point of each set (measured and predicted figures, error in %), then one per
    skipped row with its reason. ``sets``: (name, Loaded, predictions)."""
    from factoryplan.errors import FactoryplanError

    if path.suffix.lower() != ".csv":
        raise FactoryplanError("unknown output type", field="--out", value=str(path), allowed=".csv")
    try:
        fh = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise FactoryplanError(f"cannot write: {exc.strerror}", field="--out", value=str(path)) from None
    with fh:
        w = csv.DictWriter(fh, fieldnames=POINT_COLUMNS)
        w.writeheader()
        for name, loaded, preds in sets:
            w.writerows(_point_row(name, p, q) for p, q in zip(loaded.points, preds, strict=True))
            w.writerows({"set": name, "id": row_id, "skipped": reason} for row_id, reason in loaded.skipped)


def _mape(rows: list[dict[str, Any]], key: str = "metric") -> dict[str, dict[str, float]]:
    import statistics  # here, not at import: every command's start-up would pay for it

    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(str(r[key]), []).append(abs(r["error_pct"]))
    return {g: {"mape_pct": sum(v) / len(v), "median_ape_pct": statistics.median(v), "n": len(v)}
            for g, v in sorted(groups.items())}


def _within_band(cat: Catalog, rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per figure, the share of measurements inside the error band ``serve`` reports around the
    prediction on the row's GPU (their engine's 10th-90th percentile of measured/predicted on the
    calibration set, so about 80% there; on a GPU it has not measured, the band of its GPUs predicted
    without their own points); on other data it says whether that band holds."""
    from factoryplan.perf.inference_constants import error_band

    keys = {(str(r["backend"]), str(r["gpu"])) for r in rows}
    bands = {key: error_band(cat, *key) for key in keys}
    figure = {"ttft_ms": "ttft", "tpot_ms": "tpot", "output_tokens_per_s": "throughput"}
    inside: dict[str, list[bool]] = {}
    for r in rows:
        band = bands[(str(r["backend"]), str(r["gpu"]))]
        if band is None or r["metric"] not in figure:
            continue
        lo, hi = getattr(band, figure[r["metric"]])
        inside.setdefault(r["metric"], []).append(lo <= r["published"] / r["predicted"] <= hi)
    return {m: {"share_pct": 100.0 * sum(v) / len(v), "n": len(v)} for m, v in inside.items()}


def inference(
    measured: Annotated[bool, typer.Option("--measured", help="Add the measured H100/H200 points (summary).")] = False,
    data: Annotated[Path | None, typer.Option("--data", help="A CSV of measured points in the same layout "
                                              "(TTFT/TPOT per row).")] = None,
    published_file: Annotated[Path | None, typer.Option("--published", help="A CSV of published results in "
                                                        "published_runs.csv's layout (its inference rows), "
                                                        "instead of the bundled one.")] = None,
    configs: Annotated[Path | None, typer.Option("--configs", help="Folder of <org>--<name>_config.json files "
                                                 "for --data models the catalog lacks.")] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")] = OutputFormat.table,
    out: Annotated[Path | None, typer.Option("--out", help="CSV of every --measured/--data point, measured "
                                             "and predicted, and every skipped row with its reason.")] = None,
    catalog: Annotated[list[Path] | None, typer.Option("--catalog", help="Catalog overlay file (repeatable).")] = None,
) -> None:
    """Run the inference engine on published results and print predicted vs published and the MAPE.

    Example: factoryplan validate inference --measured --out points.csv
    """
    from factoryplan.catalog.load import load_catalog
    from factoryplan.validation.inference import gpu_scaling, load_measured, predict
    from factoryplan.validation.published import PUBLISHED, load_published

    cat = load_catalog(catalog or [])
    published = load_published(cat, published_file or PUBLISHED)
    rows = _rows(published.points, predict(cat, published.points))
    result: dict[str, Any] = {
        "published": {
            "rows": rows, "mape": _mape(rows), "skipped": [{"id": i, "reason": r} for i, r in published.skipped]
        }
    }
    extra = []
    if measured:
        extra.append(("measured", load_measured(cat)))
    if data is not None:
        extra.append(("data", load_measured(cat, data, source="data", configs=configs)))
    predicted = []
    order = {a.id: (float(a.year), a.bf16_dense_flops) for a in cat.accelerators.values()}  # earlier part first
    for name, loaded in extra:
        preds = predict(cat, loaded.points)
        predicted.append((name, loaded, preds))
        mrows = _rows(loaded.points, preds, implied=True)
        result[name] = {
            "points": len(loaded.points), "mape": _mape(mrows), "within_band": _within_band(cat, mrows),
            # whether the band (measured on the calibration GPUs) holds on each GPU of the file
            "within_band_by_gpu": {g: _within_band(cat, [r for r in mrows if r["gpu"] == g])
                                   for g in sorted({str(r["gpu"]) for r in mrows})},
            **{f"by_{key}": {m: _mape([r for r in mrows if r["metric"] == m], key)
                             for m in ("ttft_ms", "tpot_ms", "output_tokens_per_s")}
               for key in ("backend", "engine", "gpu", "model", "mode", "layout", "weights")},
            # the same configuration measured on two GPUs: the hardware physics alone
            "gpu_scaling": gpu_scaling(loaded.points, preds, order),
            "skipped": len(loaded.skipped),
            "skipped_reasons": dict(collections.Counter(reason for _, reason in loaded.skipped).most_common()),
            "columns_not_read": loaded.unread,
        }
    if out is not None:
        write_points_csv(out, predicted)
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _print(result)


def _print(result: dict[str, Any]) -> None:
    from rich.table import Table

    from factoryplan.consoles import stdout

    console = stdout()
    t = Table(title="inference: published vs predicted", title_justify="left")
    for col in ("id", "model", "gpu", "tp", "isl/osl", "conc.", "metric", "published", "predicted", "error"):
        t.add_column(col, justify="right" if col in ("published", "predicted", "error") else "left")
    for r in result["published"]["rows"]:
        t.add_row(r["id"], r["model"], r["gpu"], f"{r['tp']:g}", f"{r['isl']:g}/{r['osl']:g}", str(r["concurrency"]),
                  r["metric"], f"{r['published']:,.1f}", f"{r['predicted']:,.1f}", f"{r['error_pct']:+.0f}%")
    console.print(t)
    for name, block in result.items():
        summary = ", ".join(f"{m} {v['mape_pct']:.1f}% (median {v['median_ape_pct']:.1f}%, n={v['n']})"
                            for m, v in block["mape"].items())
        console.print(f"{name} MAPE: {summary}")
        if block.get("within_band"):
            shares = ", ".join(f"{m} {v['share_pct']:.0f}%" for m, v in block["within_band"].items())
            console.print(f"  inside the error band serve reports (8 in 10 on the calibration set): {shares}")
            by_gpu = block.get("within_band_by_gpu", {})
            for gpu, figures in by_gpu.items() if len(by_gpu) > 1 else ():
                shares = ", ".join(f"{m} {v['share_pct']:.0f}%" for m, v in figures.items())
                console.print(f"    on {gpu}: {shares}")
        for label in ("by_backend", "by_engine", "by_gpu", "by_model", "by_mode", "by_layout", "by_weights"):
            for metric, groups in block.get(label, {}).items():
                text = ", ".join(f"{g} {v['mape_pct']:.0f}%" for g, v in groups.items())
                console.print(f"  {metric} {label.replace('_', ' ')}: {text}")
        for pair, figures in block.get("gpu_scaling", {}).items():
            n = max(int(v["pairs"]) for v in figures.values())
            text = "; ".join(f"{m} x{v['measured_ratio_median']:.2f} measured, x{v['predicted_ratio_median']:.2f} "
                             f"predicted (ratio error {v['ratio_error_pct']:.1f}%, median "
                             f"{v['median_ratio_error_pct']:.1f}%)" for m, v in figures.items())
            console.print(f"  same configuration on two GPUs, {pair} ({n} configuration{'s' * (n != 1)}): {text}")
        for reason, n in block.get("skipped_reasons", {}).items():
            console.print(f"  skipped {n} x {reason}")
        if block.get("columns_not_read"):
            console.print(f"  columns not read (no rule uses them): {', '.join(block['columns_not_read'])}")
    for s in result["published"]["skipped"]:
        console.print(f"skipped {s['id']}: {s['reason']}")


def register(validate_app: typer.Typer) -> None:
    """Add the command to ``factoryplan validate``."""
    validate_app.command("inference")(inference)
