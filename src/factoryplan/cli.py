"""The `factoryplan` command: a thin layer over the library (typer + rich).

Errors in what the user gave are printed as one short message and exit non-zero; no traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from factoryplan.commands import OutputFormat
from factoryplan.consoles import stderr as err_console
from factoryplan.consoles import stdout as console
from factoryplan.errors import FactoryplanError

# The commands do no dense linear algebra; a BLAS thread pool per process only costs start-up time
# (numpy's OpenBLAS starts one thread per core on import). A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Nor does a command use pydantic plugins (observability hooks found through the installed packages'
# entry points): looking them up costs every start-up ~10 ms of importlib.metadata. Typer itself
# turns them off while it builds its parameter adapters. A user's own setting wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

app = typer.Typer(
    name="factoryplan",
    help="Plan sovereign and on-premise AI factories: workloads -> GPUs -> buildings -> money -> sovereignty.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="Browse the reference catalog (every figure with its source).", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")


CatalogOpt = Annotated[
    list[Path] | None,
    typer.Option("--catalog", help="YAML file that overlays or adds catalog entries (repeatable)."),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")]


def emit_json(data: Any) -> None:
    """Write JSON to stdout (no rich markup, stable key order)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def plan(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    fmt: FormatOpt = OutputFormat.table,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write a report: .html (self-contained), .md or .json.")
    ] = None,
    catalog: CatalogOpt = None,
    monte_carlo: Annotated[
        int, typer.Option("--monte-carlo", metavar="N", help="Monte Carlo draws over assumption ranges (P10/P50/P90).")
    ] = 0,
    sobol: Annotated[
        int, typer.Option("--sobol", metavar="N", help="Base samples for Sobol sensitivity indices (SALib); 0: none.")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the Monte Carlo and Sobol draws.")] = 0,
    sensitivity: Annotated[
        bool, typer.Option("--sensitivity/--no-sensitivity", help="One-at-a-time sensitivity of the cost figures.")
    ] = True,
) -> None:
    """Plan a scenario end to end.

    Example: factoryplan plan examples/enterprise-private-llm.yaml --out report.html --monte-carlo 10000
    """
    from factoryplan.catalog.load import load_catalog
    from factoryplan.plan import build_plan
    from factoryplan.scenario import load_scenario

    if out is not None and out.suffix.lower() not in (".html", ".htm", ".md", ".json"):
        raise FactoryplanError("unknown report type", field="--out", value=str(out), allowed=".html, .md, .json")
    for name, value in (("--monte-carlo", monte_carlo), ("--sobol", sobol)):
        if value < 0:
            raise FactoryplanError("must not be negative", field=name, value=value, allowed=">= 0 (0: off)")
    cat = load_catalog(catalog or [])
    scen = load_scenario(scenario)
    with _progress_bar(monte_carlo) as progress:
        result = build_plan(scen, cat, where=str(scenario), sensitivity=sensitivity, sobol=sobol,
                            monte_carlo=monte_carlo, seed=seed, progress=progress)
    if out is not None:
        _write_report(result, out)
    if fmt is OutputFormat.json:
        emit_json(result.model_dump(mode="json"))
    else:
        from factoryplan.report.terminal import render

        render(result, console())
        if out is not None:
            console().print(f"report written to {out}")


PROGRESS_FROM_DRAWS = 200_000  # below this a Monte Carlo run takes well under a second


@contextmanager
def _progress_bar(draws: int) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr for long Monte Carlo runs (stdout stays clean for JSON)."""
    if draws < PROGRESS_FROM_DRAWS:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task("Monte Carlo draws", total=draws)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _write_report(result: Any, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix in (".html", ".htm"):
        from factoryplan.report.html import write_html

        write_html(result, out)
    elif suffix == ".md":
        from factoryplan.report.markdown import write_markdown

        write_markdown(result, out)
    else:
        out.write_text(json.dumps(result.model_dump(mode="json"), indent=2, ensure_ascii=False), encoding="utf-8")


@catalog_app.command("list")
def catalog_list(
    kind: Annotated[
        str | None, typer.Argument(help="accelerators, systems, switches, links, models, regions, ...")
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
    catalog: CatalogOpt = None,
) -> None:
    """List catalog entries, all kinds or one.

    Example: factoryplan catalog list accelerators
    """
    from factoryplan.catalog.display import friendly_fields
    from factoryplan.catalog.load import load_catalog
    from factoryplan.catalog.schema import KINDS

    cat = load_catalog(catalog or [])
    kinds = [kind] if kind else list(KINDS)
    tables = {k: cat.kind(k) for k in kinds}
    if fmt is OutputFormat.json:
        emit_json({k: [{"kind": k, **friendly_fields(e)} for e in t.values()] for k, t in tables.items()})
        return
    for k, entries in tables.items():
        from rich.table import Table

        t = Table(title=f"{k} ({len(entries)})", title_justify="left")
        for col in ("id", "name", "basis", "as_of", "source"):
            t.add_column(col, overflow="fold")
        for e in entries.values():
            t.add_row(e.id, e.name, e.basis, e.as_of, e.source)
        console().print(t)


@catalog_app.command("show")
def catalog_show(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="An entry id, e.g. h100-sxm or llama-3.1-70b.")],
    fmt: FormatOpt = OutputFormat.table,
    catalog: CatalogOpt = None,
) -> None:
    """Show one entry with every field and its source.

    Example: factoryplan catalog show gb200-nvl72
    """
    from factoryplan.catalog.display import friendly_fields
    from factoryplan.catalog.load import load_catalog

    cat = load_catalog(catalog or [])
    kind, entry = cat.find(entry_id)
    data = {"kind": kind, **friendly_fields(entry)}
    if kind == "models":
        from factoryplan.catalog.models import param_breakdown, params_active, params_total
        from factoryplan.catalog.schema import ModelArch

        assert isinstance(entry, ModelArch)
        data["derived_params_total"] = params_total(entry)
        data["derived_params_active"] = params_active(entry)
        data["derived_param_breakdown"] = param_breakdown(entry)
    data["file"] = cat.origin.get((kind, entry.id), "")
    if fmt is OutputFormat.json:
        emit_json(data)
        return
    from rich.table import Table

    t = Table(title=f"{kind}: {entry.id}", title_justify="left", show_header=False)
    t.add_column("field")
    t.add_column("value", overflow="fold")
    for key, value in data.items():
        t.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console().print(t)


# Engine commands live in factoryplan/commands/<name>.py; each module is registered here.
validate_app = typer.Typer(help="Check the engines against published and measured results.", no_args_is_help=True)
app.add_typer(validate_app, name="validate")

from factoryplan.commands import cluster as _cluster_command  # noqa: E402

_cluster_command.register(app)

from factoryplan.commands import serve as _serve_command  # noqa: E402
from factoryplan.commands import validate_inference as _validate_inference_command  # noqa: E402
from factoryplan.commands import validate_kernels as _validate_kernels_command  # noqa: E402

_serve_command.register(app)
_validate_inference_command.register(validate_app)
_validate_kernels_command.register(validate_app)
# `serve` is the one-shot estimate scripts call in loops, and typer builds every command's options
# before it runs one (about 10 ms of a 0.3 s start-up): `factoryplan serve ...` runs from an app that
# holds serve alone (its usage, help and errors read the same).
_serve_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
_serve_command.register(_serve_app)

from factoryplan.commands import train as _train_command  # noqa: E402
from factoryplan.commands import validate_training as _validate_training_command  # noqa: E402

_train_command.register(app)
_validate_training_command.register(validate_app)


@contextmanager
def _no_pydantic_plugins() -> Iterator[None]:
    """Run without pydantic's third-party plugins (observability hooks found through the installed
    packages' entry points), as typer builds its own validators: finding them reads every installed
    distribution's metadata on the first validation, 13 ms of the 0.3 s a one-shot `serve` may take.
    A value the user set is kept."""
    previous = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    if previous is None:
        os.environ["PYDANTIC_DISABLE_PLUGINS"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one-line messages and exit codes."""
    args = sys.argv[1:] if argv is None else argv
    target, prog = (_serve_app, "factoryplan serve") if args[:1] == ["serve"] else (app, "factoryplan")
    try:
        with _no_pydantic_plugins():
            target(args=args[1:] if target is _serve_app else args, prog_name=prog)  # usage errors exit 2
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except FactoryplanError as exc:
        from rich.markup import escape

        err_console().print(f"[bold red]error:[/bold red] {escape(exc.render())}", highlight=False)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
