"""Training workloads in `factoryplan plan` are sized by the training engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.errors import InfeasibleError
from factoryplan.plan import build_plan
from factoryplan.scenario import load_scenario

from .conftest import EXAMPLES

SCENARIO = """
name: training test
region: us
hardware: [{hw}]
workloads:
  - name: pretrain
    kind: training
    model: llama-3.1-8b
    tokens: {tokens}
    deadline_days: {days}
    precision: bf16
    seq_len: 8192
    global_batch_tokens: 4M
"""


def _plan(tmp_path: Path, catalog: Catalog, hw: str = "h100-sxm", tokens: str = "1T", days: float = 30):  # type: ignore[no-untyped-def]
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO.format(hw=hw, tokens=tokens, days=days))
    return build_plan(load_scenario(path), catalog)


def test_training_workload_uses_the_engine(tmp_path: Path, catalog: Catalog) -> None:
    w = _plan(tmp_path, catalog).workloads[0]
    assert w.method.startswith("training engine")
    assert w.gpus % 8 == 0 and w.system == "dgx-h100"
    d = w.details
    assert {"tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch", "recompute", "zero"} <= set(d)
    assert float(d["wall_clock_days"]) <= 30 and 0 < float(d["goodput"]) <= 1
    assert int(d["tp"]) * int(d["pp"]) * int(d["cp"]) * int(d["dp"]) == int(d["gpus_used"]) <= w.gpus
    assert float(d["energy_mwh"]) > 0 and float(d["gpu_hours"]) > 0


def test_a_shorter_deadline_needs_more_gpus(tmp_path: Path, catalog: Catalog) -> None:
    slow = _plan(tmp_path, catalog, days=60).workloads[0]
    fast = _plan(tmp_path, catalog, days=15).workloads[0]
    assert fast.gpus > slow.gpus


def test_impossible_deadline_is_reported(tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(InfeasibleError, match="cannot train"):
        _plan(tmp_path, catalog, tokens="100T", days=0.5)


def test_examples_size_training_with_the_engine(catalog: Catalog) -> None:
    plan = build_plan(load_scenario(EXAMPLES / "research-lab-training.yaml"), catalog)
    w = plan.workloads[0]
    assert w.method.startswith("training engine") and float(w.details["wall_clock_days"]) <= 30
