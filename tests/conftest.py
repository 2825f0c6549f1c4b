"""Shared fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.cli import main
from factoryplan.perf.inference import (
    Constants,
    Hardware,
    ModelShape,
    Precision,
    constants_from_catalog,
    hardware_of,
    shape_of,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


def serving_setup(
    catalog: Catalog, model: str, acc: str, backend: str = "trtllm"
) -> tuple[ModelShape, Hardware, Constants]:
    """Shape, hardware (the accelerator's usual system) and engine constants of a serving test."""
    a = catalog.accelerators[acc]
    return (shape_of(resolve_model(catalog, model)), hardware_of(a, catalog.systems[a.default_system]),
            constants_from_catalog(catalog, backend))


FP8 = Precision("fp8", "fp8", "fp8")  # weights, experts and KV cache


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """Run the command line with ``--format json``; it must succeed; its parsed output."""
    assert main([*args, "--format", "json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def plan_workload(capsys: pytest.CaptureFixture[str], path: Path, scenario: str) -> dict[str, Any]:
    """Write ``scenario`` to ``path`` and plan it with ``--format json``; its first workload."""
    path.write_text(scenario, encoding="utf-8")
    workload: dict[str, Any] = cli_json(capsys, "plan", str(path))["workloads"][0]
    return workload
