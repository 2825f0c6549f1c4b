"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from factoryplan.catalog.load import Catalog, load_catalog
from factoryplan.catalog.models import resolve_model
from factoryplan.perf.inference import Constants, Hardware, ModelShape, constants_from_catalog, hardware_of, shape_of

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
