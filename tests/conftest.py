"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from factoryplan.catalog.load import Catalog, load_catalog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()
