"""`factoryplan cluster`: the physical design of one system type, for a GPU count or a power budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from factoryplan.commands import OutputFormat
from factoryplan.consoles import stdout as console
from factoryplan.errors import FactoryplanError


def _phases(text: str | None) -> list[float]:
    if not text:
        return []
    try:
        return [float(p.replace("_", "")) for p in text.split(",") if p.strip()]
    except ValueError:
        raise FactoryplanError("not a list of numbers", field="--phases", value=text,
                               allowed="cumulative MW at the meter, e.g. 55,100,200") from None


def _overrides(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise FactoryplanError("expected NAME=NUMBER", field="--set", value=item,
                                   allowed="e.g. building_max_power_mw=150") from None
        if not sep:
            raise FactoryplanError("expected NAME=NUMBER", field="--set", value=item)
    return out


def cluster(
    system: Annotated[str, typer.Option("--system", "-s", help="System id (gb200-nvl72, dgx-h100, ...) or an "
                                        "accelerator id; 'all' with --power-mw compares every system.")],
    gpus: Annotated[int | None, typer.Option("--gpus", help="GPUs to deploy (rounded up to whole systems).")] = None,
    power_mw: Annotated[float | None, typer.Option("--power-mw", help="Power budget at the meter (MW): the largest "
                                                   "deployment in whole scalable units that fits.")] = None,
    oversubscription: Annotated[float, typer.Option(help="Leaf down:up ratio; 1 is non-blocking.")] = 1.0,
    planes: Annotated[int | None, typer.Option(help="Fabric planes per NIC (default: fewest tiers, then "
                                               "fewest planes).")] = None,
    pods: Annotated[int | None, typer.Option(help="Independent compute fabrics; 1 requires one fabric (default: "
                                             "split only beyond three tiers).")] = None,
    max_fabric_gpus: Annotated[int | None, typer.Option(help="Largest compute fabric (pod) in GPUs.")] = None,
    cooling: Annotated[str, typer.Option(help="auto, air or liquid.")] = "auto",
    region: Annotated[str, typer.Option(help="Site region (PUE by cooling type).")] = "us",
    phases: Annotated[str | None, typer.Option(help="Cumulative power steps at the meter in MW, e.g. "
                                               "55,100,200: what each phase energises.")] = None,
    assumption: Annotated[list[str] | None, typer.Option(
        "--set", metavar="NAME=VALUE",
        help="Override an assumption, best with its unit suffix: --set building_max_power_mw=150 (repeatable).",
    )] = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")] = OutputFormat.table,
    bom: Annotated[Path | None, typer.Option("--bom", help="Write the bill of materials: .csv or .json.")] = None,
    catalog: Annotated[list[Path] | None, typer.Option("--catalog", help="Catalog overlay file (repeatable).")] = None,
) -> None:
    """Design the installation: systems, racks, scalable units, fabric, optics, power, cooling, floor, buildings.

    Example: factoryplan cluster --system gb200-nvl72 --power-mw 1000 --bom bom.csv
    """
    from factoryplan.assumptions import AssumptionSet
    from factoryplan.catalog.load import load_catalog
    from factoryplan.errors import unknown
    from factoryplan.infra.cluster import ClusterOptions, design_cluster

    if bom is not None and bom.suffix.lower() not in (".csv", ".json"):
        raise FactoryplanError("unknown bill-of-materials type", field="--bom", value=str(bom), allowed=".csv, .json")
    cat = load_catalog(catalog or [])
    if region not in cat.regions:
        raise unknown("region", region, cat.regions, field="--region")
    asm = AssumptionSet.from_scenario(cat, _overrides(assumption or []), where="--set")
    opts = ClusterOptions(oversubscription=oversubscription, planes=planes, pods=pods, cooling=cooling,
                          max_fabric_gpus=max_fabric_gpus)
    if system == "all":
        if power_mw is None or gpus is not None:
            raise FactoryplanError("--system all compares systems within a power budget", field="--system",
                                   allowed="--system all --power-mw P")
        _compare(cat, asm, region, power_mw, opts, fmt)
        return
    if (gpus is None) == (power_mw is None):
        raise FactoryplanError("give exactly one of --gpus or --power-mw", field="--gpus/--power-mw")
    design = design_cluster(cat, asm, cat.regions[region], system, gpus=gpus, power_mw=power_mw, opts=opts,
                            phases_mw=_phases(phases))
    if bom is not None:
        _write_bom(design.bom, bom)
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(design.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
        return
    from factoryplan.report.infra_text import cluster_tables

    for table in cluster_tables(design):
        console().print(table)
    if bom is not None:
        console().print(f"bill of materials written to {bom}")


def _write_bom(items: Any, path: Path) -> None:
    from factoryplan.infra.bom import bom_csv

    if path.suffix.lower() == ".csv":
        path.write_text(bom_csv(items), encoding="utf-8")
    else:
        path.write_text(json.dumps([i.model_dump(mode="json") for i in items], indent=2), encoding="utf-8")


def _compare(cat: Any, asm: Any, region: str, power_mw: float, opts: Any, fmt: OutputFormat) -> None:
    """Every catalog system within the budget: GPUs, GPUs per GW and power per GPU."""
    from factoryplan.infra.cluster import design_cluster

    rows: list[dict[str, Any]] = []
    for sid in cat.systems:
        try:
            d = design_cluster(cat, asm, cat.regions[region], sid, power_mw=power_mw, opts=opts)
        except FactoryplanError as exc:
            rows.append({"system": sid, "error": exc.render()})
            continue
        rows.append({"system": sid, "accelerator": d.accelerator, "gpus": d.gpus, "scalable_units": d.scalable_units,
                     "facility_mw": d.power.facility_mw, "pue": d.power.pue, "cooling": d.cooling.mode,
                     "gpus_per_gw": d.gpus_per_gw, "per_gpu_w": d.per_gpu_w})
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    t = Table(title=f"Largest deployment of each system within {power_mw:,.0f} MW at the meter ({region})",
              title_justify="left")
    for col in ("system", "GPUs", "SUs", "facility MW", "cooling", "W/GPU chip/system/IT/facility", "GPUs per GW"):
        t.add_column(col, overflow="fold")
    for r in rows:
        if "error" in r:
            t.add_row(r["system"], "-", "-", "-", "-", r["error"], "-")
            continue
        w = r["per_gpu_w"]
        t.add_row(r["system"], f"{r['gpus']:,}", str(r["scalable_units"]), f"{r['facility_mw']:,.1f}", r["cooling"],
                  f"{w['chip']:,.0f} / {w['system']:,.0f} / {w['it']:,.0f} / {w['facility']:,.0f}",
                  f"{r['gpus_per_gw']:,.0f}")
    console().print(t)


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("cluster")(cluster)
