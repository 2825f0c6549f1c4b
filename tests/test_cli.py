"""The command line: examples produce plans with the documented keys; errors exit cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from factoryplan.cli import main

from .conftest import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
PLAN_KEYS = {
    "workloads": {"name", "kind", "gpus"},
    "cluster": {"accelerator", "system", "gpus", "systems", "racks"},
    "power": {"it_mw", "facility_mw", "pue"},
    "costs": {"capex_usd", "opex_usd_per_year", "tco_usd", "usd_per_gpu_hour"},
    "alternatives": {"option", "tco_usd", "feasible", "reasons"},
    "assumptions": {"name", "value", "source"},
}


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    assert main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_three_examples_are_bundled() -> None:
    names = {p.name for p in EXAMPLE_FILES}
    assert {"sovereign-ai-factory-1gw.yaml", "enterprise-private-llm.yaml", "research-lab-training.yaml"} <= names


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_plan_has_documented_keys(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _run_json(capsys, "plan", str(example))
    for key, fields in PLAN_KEYS.items():
        value = plan[key]
        rows = value if isinstance(value, list) else [value]
        assert rows, key
        for row in rows:
            assert fields <= set(row), (key, fields - set(row))
    assert plan["cluster"]["gpus"] >= sum(w["gpus"] for w in plan["workloads"])
    assert plan["power"]["facility_mw"] > plan["power"]["it_mw"] > 0
    assert plan["costs"]["tco_usd"] > plan["costs"]["capex_usd"] > 0
    assert all(a["source"] for a in plan["assumptions"])


def test_html_and_markdown_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = tmp_path / "r.html"
    md = tmp_path / "r.md"
    example = str(EXAMPLES / "enterprise-private-llm.yaml")
    assert main(["plan", example, "--out", str(html)]) == 0
    assert main(["plan", example, "--out", str(md)]) == 0
    text = html.read_text()
    # self-contained and offline: no external script or stylesheet; plotly.js inlined once
    assert "<script src=" not in text and '<link rel="stylesheet" href="http' not in text
    assert text.count("Plotly.newPlot") >= 3
    assert "Cost breakdown" in text and "Power from chip to meter" in text and "Own vs cloud vs API" in text
    assert md.read_text().startswith("# Bank private LLM")


def test_catalog_list_and_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    listing = _run_json(capsys, "catalog", "list", "accelerators")
    ids = {e["id"] for e in listing["accelerators"]}
    assert {"h100-sxm", "gb200", "mi355x"} <= ids
    shown = _run_json(capsys, "catalog", "show", "h100-sxm")
    assert shown["id"] == "h100-sxm" and shown["source"] and shown["hbm_tb_s"] == pytest.approx(3.35)
    model = _run_json(capsys, "catalog", "show", "deepseek-v3")
    assert model["derived_params_total"] == pytest.approx(671e9, rel=0.01)


def test_user_error_is_one_line_and_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nregion: kr\nworkloadz: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "factoryplan", "plan", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "workloadz" in proc.stderr and 'did you mean "workloads"' in proc.stderr


def test_unknown_catalog_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "show", "h100-sxn"]) == 2
    assert 'did you mean "h100-sxm"' in capsys.readouterr().err


def test_short_gpu_name_suggests_the_ids_it_starts(capsys: pytest.CaptureFixture[str]) -> None:
    # "h10" is as close to "h20" by spelling, but the user meant one of the H100 parts
    assert main(["serve", "--model", "llama-3.1-8b", "--gpu", "h10", "--tp", "1", "--isl", "128", "--osl", "16",
                 "--concurrency", "1"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert '"h100-pcie" or "h100-sxm"' in err and '"h20"' not in err.split("allowed")[0]
    allowed = err.split("allowed: ")[1]
    assert "a100-80gb," in allowed and "h100-sxm5," in allowed  # the aliases are listed with the ids


def test_bad_report_suffix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLES / "research-lab-training.yaml"), "--out", "x.pdf"]) == 2
    assert "--out" in capsys.readouterr().err
