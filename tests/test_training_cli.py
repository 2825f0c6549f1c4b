"""`factoryplan train` and `factoryplan validate training`: documented JSON keys, clean errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from factoryplan.cli import main

from .conftest import ROOT

KEYS = {"step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "model_tflops_per_gpu", "mfu", "memory_per_gpu_gib",
        "memory_breakdown_gib", "fits", "config"}
CONFIG = {"tp", "pp", "vpp", "cp", "ep", "dp", "micro_batch", "recompute", "zero"}


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main(["train", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_fixed_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    r = _json(capsys, "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "64", "--seq-len", "8192",
              "--global-batch", "128", "--tp", "4", "--pp", "8", "--vpp", "5", "--precision", "fp8")
    assert set(r) >= KEYS and set(r["config"]) == CONFIG
    assert r["config"] == {"tp": 4, "pp": 8, "vpp": 5, "cp": 1, "ep": 1, "dp": 2, "micro_batch": 1,
                                "recompute": "none", "zero": 1}
    assert r["system"] == "dgx-h100" and r["fits"] is True
    assert r["tokens_per_s"] == pytest.approx(128 * 8192 / r["step_time_s"])
    assert r["tokens_per_s_per_gpu"] == pytest.approx(r["tokens_per_s"] / 64)
    assert set(r["memory_breakdown_gib"]) == {"weights", "gradients", "optimizer", "activations"}
    assert "wall_clock_days" not in r


def test_run_figures_with_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    r = _json(capsys, "--model", "llama-3.1-8b", "--gpu", "gb200", "--gpus", "72", "--seq-len", "8192",
              "--global-batch", "144", "--tokens", "1T", "--search")
    assert r["system"] == "gb200-nvl72"
    assert {"gpu_hours", "wall_clock_days", "energy_mwh", "goodput", "steps"} <= set(r)
    assert r["steps"] == -(-1e12 // (144 * 8192))
    assert r["gpu_hours"] == pytest.approx(72 * r["wall_clock_days"] * 24)
    s = r["search"]
    assert s["evaluated"] > 100 and s["runners_up"] and s["rejected"]
    assert all(ru["tokens_per_s_per_gpu"] <= r["tokens_per_s_per_gpu"] for ru in s["runners_up"])


def test_config_that_does_not_fit_says_what_it_needs(capsys: pytest.CaptureFixture[str]) -> None:
    # the figures are still given (JSON on stdout), then the command fails with what would fit
    assert main(["train", "--model", "llama-3.1-70b", "--gpu", "h100-sxm", "--gpus", "8", "--seq-len", "4096",
                 "--global-batch", "8", "--format", "json"]) == 3
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert r["fits"] is False and r["memory_shortfall_gib"] > 100
    err = " ".join(err.split())
    assert "does not fit 8 x h100-sxm as tp=1" in err and "--search" in err and "Traceback" not in err


def test_config_json_model(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests" / "data" / "hf_configs" / "meta-llama--Llama-3.1-8B_config.json"
    r = _json(capsys, "--model", str(path), "--gpu", "h100-sxm", "--gpus", "8", "--seq-len", "4096",
              "--global-batch", "64")
    assert r["params"] == pytest.approx(8.03e9, rel=0.01)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--tp", "3"], "--tp"),
        (["--pp", "7"], "--pp"),
        (["--tp", "8", "--pp", "4", "--cp", "4"], "--gpus"),
        (["--precision", "fp8", "--gpu", "a100-sxm-80gb"], "no fp8"),
        (["--recompute", "some"], "--recompute"),
        (["--gpu", "h1000"], "did you mean"),
        (["--global-batch", "0"], "--global-batch"),
    ],
)
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], text: str) -> None:
    base = {"--model": "llama-3.1-70b", "--gpu": "h100-sxm", "--gpus": "64", "--seq-len": "8192",
            "--global-batch": "1024"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["train", *[x for kv in base.items() for x in kv]]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err


def test_validate_training_writes_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.csv"
    assert main(["validate", "training", "--out", str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(report["rows"]) >= 45
    assert report["summary"]["calibration_mape"] < 0.10
    assert {"row_id", "published_tokens_per_s_per_gpu", "predicted_tokens_per_s_per_gpu", "error_pct"} <= set(rows[0])


def test_validate_training_reads_another_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from factoryplan.validation.training import RUNS_CSV

    with RUNS_CSV.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        row = next(r for r in reader if r["row_id"] == "77")
    data = tmp_path / "runs.csv"
    with data.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerow({**row, "row_id": "1001", "gpu_type": "B200 (DGX-B200)", "model": "Llama3_70B"})
        writer.writerow({**row, "row_id": "1002", "gpu_type": "TPU v5p"})
    assert main(["validate", "training", "--data", str(data), "--out", str(tmp_path / "o.csv"), "--format",
                 "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["row_id"], r["accelerator"]) for r in report["rows"]] == [(1001, "b200")]
    assert report["skipped"] == [{"row_id": "1002", "reason": "unknown GPU"}]
    assert main(["validate", "training", "--data", str(tmp_path / "none.csv")]) != 0
