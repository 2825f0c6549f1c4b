"""TTFT percentiles under Poisson arrivals: the queue tails, their check against simulation, capacity
plans whose TTFT target holds for a share of the requests, and prompts whose lengths vary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.cli import main
from factoryplan.errors import InfeasibleError
from factoryplan.perf.capacity import (
    OPEN_LOOP_MAX_LOAD,
    Demand,
    evaluate_grid,
    layouts,
    plan_capacity,
    prefill_queue,
    size_inference,
)
from factoryplan.perf.disagg_sim import prefill_replica_percentiles, simulate_prefill_replica
from factoryplan.perf.inference import Parallel, iteration
from factoryplan.perf.queueing import exponential_wait_quantile, length_nodes, md1_wait_quantile, mg1_tail
from factoryplan.perf.serving import open_loop_ttft, serve
from factoryplan.perf.serving_sim import simulate

from .conftest import FP8, cli_json, plan_workload, serving_setup


def _md1_waits(rho: float, n: int = 200_000, seed: int = 3, cv: float = 0.0) -> np.ndarray:
    """Waits of an M/G/1 queue (mean service 1 s; fixed, or gamma of coefficient of variation ``cv``)
    by Lindley's recursion, the first tenth dropped."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rho, n)
    service = rng.gamma(1.0 / cv**2, cv**2, n) if cv > 0 else np.ones(n)
    waits = np.empty(n)
    w = 0.0
    for i, (a, s) in enumerate(zip(gaps, service, strict=True)):
        waits[i] = w
        w = max(0.0, w + s - a)
    return waits[n // 10:]


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_tail_matches_a_simulated_queue(rho: float) -> None:
    waits = _md1_waits(rho)
    for pct in (90.0, 99.0):
        assert float(md1_wait_quantile(rho, 1.0, pct)) == pytest.approx(float(np.percentile(waits, pct)), rel=0.06)
    assert float(md1_wait_quantile(rho, 2.0, 99.0)) == pytest.approx(2.0 * float(md1_wait_quantile(rho, 1.0, 99.0)))


def test_quantiles_vanish_where_most_arrivals_find_no_queue() -> None:
    # a share 1 - rho of arrivals waits nothing: the median at rho = 0.4 and P90 at rho = 0.09 are zero
    assert float(md1_wait_quantile(0.4, 1.0, 50.0)) == 0.0
    assert float(md1_wait_quantile(0.09, 1.0, 90.0)) == 0.0
    # just above, the exponential tail starts at C > rho: at most half a service time
    assert 0.0 < float(md1_wait_quantile(0.11, 1.0, 90.0)) < 0.5
    assert float(exponential_wait_quantile(0.2, 0.09, 90.0)) == 0.0
    # (W/rho)·ln(rho/(1 - p)): mean 0.5 s over all, busy 0.5, P99 = 1 s·ln 50
    assert float(exponential_wait_quantile(0.5, 0.5, 99.0)) == pytest.approx(np.log(50.0))
    busy = np.linspace(0.2, 0.95, 16)
    for pct in (90.0, 99.0):
        q = md1_wait_quantile(busy, 1.0, pct)
        assert np.all(np.diff(q) >= 0) and np.all(np.isfinite(q))
    assert np.all(md1_wait_quantile(busy, 1.0, 99.0) >= md1_wait_quantile(busy, 1.0, 90.0))


def test_open_loop_ttft_rises_with_load_and_percentile(catalog: Catalog) -> None:
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    res = serve(s, hw, Parallel(tp=4), FP8, k, concurrency=128.0, isl=4000.0, osl=500.0)
    outside = float(np.asarray(res.ttft_s) - np.asarray(res.queue_s))
    assert float(open_loop_ttft(res, 0.0, 99.0)) == pytest.approx(outside)
    loads = np.linspace(0.1, 0.9, 9)
    p90, p99 = open_loop_ttft(res, loads, 90.0), open_loop_ttft(res, loads, 99.0)
    assert np.all(np.diff(p90) >= 0) and np.all(p99 >= p90) and float(p99[-1]) > outside


def test_prefill_busy_share_is_the_steady_cycles(catalog: Catalog) -> None:
    """The prefilling share open_loop_ttft scales by the load is the steady loop's: its request rate
    times each request's share of the prompt iterations, the wait behind other prompts inside the cycle
    (a prefill-heavy load, where that wait is long)."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    res = serve(s, hw, Parallel(tp=4), FP8, k, concurrency=np.array([16.0, 128.0]), isl=8000.0, osl=200.0)
    assert float(np.asarray(res.queue_s)[1]) > 0.1 * float(np.asarray(res.ttft_s)[1])  # a long wait
    busy = np.asarray(res.requests_per_s) * np.asarray(res.prefill_service_s)
    assert np.all(busy < 0.95)
    assert np.asarray(res.prefill_busy) == pytest.approx(busy, rel=1e-9)


@pytest.mark.parametrize(("backend", "isl", "osl", "conc"), [("trtllm", 4000, 500, 128), ("sglang", 1000, 200, 32)])
def test_open_loop_percentiles_follow_the_iteration_simulation(
    catalog: Catalog, backend: str, isl: int, osl: int, conc: int
) -> None:
    """Poisson arrivals at 0.8 of the closed loop's rate: the simulated P90/P99 TTFT within 20% of the
    closed form (benchmarks/serving_open_loop.py runs the whole grid)."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm", backend)
    par = Parallel(tp=4)
    res = serve(s, hw, par, FP8, k, concurrency=float(conc), isl=float(isl), osl=float(osl))
    sim = simulate(s, hw, par, FP8, k, concurrency=conc, isl=isl, osl=osl, requests_per_s=0.8 * float(
        np.asarray(res.requests_per_s)), cycles=20, seed=1)
    for pct in (90.0, 99.0):
        assert sim.ttft_percentiles_s[pct] == pytest.approx(float(open_loop_ttft(res, 0.8, pct)), rel=0.2)
    assert sim.ttft_percentiles_s[50.0] <= sim.ttft_percentiles_s[90.0] <= sim.ttft_percentiles_s[99.0]


def _prefill_table(catalog: Catalog) -> tuple[int, np.ndarray, np.ndarray]:
    """(prompts of a full pass, batch sizes 0..full, their pass times) of a Llama-3.1-70B TP8 prefill
    replica on H200, 1,024-token prompts."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    full = int(k.token_budget // 1024)
    sizes = np.arange(full + 1, dtype=float)
    table = np.asarray(iteration(s, hw, Parallel(tp=8), FP8, k, decode_seqs=0.0, ctx=1024.0, prompts=sizes,
                                 prompt_len=1024.0).total, dtype=float)
    return full, sizes, table


def test_prefill_replica_percentiles_follow_its_simulation(catalog: Catalog) -> None:
    full, sizes, table = _prefill_table(catalog)
    rate = 0.7 * full / table[full]
    sim = prefill_replica_percentiles(table.tolist(), full, rate, (90.0, 99.0), seed=1)
    for pct in (90.0, 99.0):
        t_p, wait = prefill_queue(lambda b: np.asarray(np.interp(b, sizes, table)), float(full), rate, pct)
        assert float(t_p + wait) == pytest.approx(sim[pct], rel=0.3)
    mean_wait, mean_pass, _ = simulate_prefill_replica(table.tolist(), full, rate, seed=1)
    assert mean_wait + mean_pass < sim[90.0]


def test_percentile_targets_hold_at_the_planned_peak(catalog: Catalog) -> None:
    s, hw, k = serving_setup(catalog, "llama-3.3-70b", "h200-sxm")
    base = Demand(requests_per_s=40.0, isl=2000.0, osl=400.0, ttft_s=0.45, tpot_s=0.05)
    plans = {p: plan_capacity(s, hw, FP8, k, Demand(**{**base.__dict__, "ttft_percentile": p}),
                              modes=("aggregated",)) for p in (None, 90.0, 99.0)}
    for p in (90.0, 99.0):
        plan = plans[p]
        assert plan.ttft_percentiles_s[p] <= 0.45 and plan.tpot_s <= 0.05
        assert plan.ttft_percentiles_s[50.0] <= plan.ttft_percentiles_s[90.0] <= plan.ttft_percentiles_s[99.0]
    # the mean plan runs its replicas at their closed-loop rate, where one request in a hundred waits
    # far longer than the target; holding the target for 99 in 100 costs GPUs
    assert plans[None].ttft_percentiles_s[99.0] > 0.45
    assert plans[None].gpus <= plans[90.0].gpus <= plans[99.0].gpus
    assert plans[99.0].gpus > plans[None].gpus
    # a replica planned for a percentile is loaded at most OPEN_LOOP_MAX_LOAD of its closed-loop rate
    grid = evaluate_grid(s, hw, FP8, k, layouts(s, 8), 2000.0, 400.0)
    loads = grid.max_load(0.45, 99.0)
    assert np.all((loads >= 0) & (loads <= OPEN_LOOP_MAX_LOAD))
    met = loads > 0
    assert np.all(grid.open_loop_ttft(loads, 99.0)[met] <= 0.45 + 1e-9)


def test_disaggregated_plan_checks_its_prefill_pool_at_the_percentile(catalog: Catalog) -> None:
    s, hw, k = serving_setup(catalog, "llama-3.3-70b", "h200-sxm")
    d = Demand(requests_per_s=40.0, isl=2000.0, osl=400.0, ttft_s=1.5, tpot_s=0.04)
    mean_plan = plan_capacity(s, hw, FP8, k, d, modes=("disaggregated",))
    p99_plan = plan_capacity(s, hw, FP8, k, Demand(**{**d.__dict__, "ttft_percentile": 99.0}),
                             modes=("disaggregated",))
    assert mean_plan.ttft_s <= 1.5 < mean_plan.ttft_percentiles_s[99.0]
    assert p99_plan.ttft_percentiles_s[99.0] <= 1.5
    assert p99_plan.prefill_gpus > mean_plan.prefill_gpus and p99_plan.decode_gpus == mean_plan.decode_gpus


def test_unreachable_percentile_names_it(catalog: Catalog) -> None:
    s, hw, k = serving_setup(catalog, "llama-3.3-70b", "h200-sxm")
    d = Demand(requests_per_s=10.0, isl=8000.0, osl=400.0, ttft_s=0.05, tpot_s=0.05, ttft_percentile=99.0)
    with pytest.raises(InfeasibleError, match=r"TTFT \(P99\) 50 ms") as exc:
        plan_capacity(s, hw, FP8, k, d)
    assert exc.value.field == "sla" and "best reachable: TTFT (P99)" in (exc.value.allowed or "")
    sized = size_inference(s, hw, FP8, k, d, backend="trtllm")
    assert any("TTFT (P99) 50 ms" in w for w in sized.warnings)
    assert sized.details["ttft_percentile"] == 99.0 and "ttft_p99_ms" in sized.details


def test_serve_plans_for_a_percentile(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("serve", "-m", "llama-3.3-70b", "-g", "h200", "--isl", "2000", "--osl", "400", "--rps", "40",
            "--ttft-ms", "450", "--tpot-ms", "50")
    mean = cli_json(capsys, *args)
    p99 = cli_json(capsys, *args, "--ttft-percentile", "99")
    assert mean["ttft_target_percentile"] is None and p99["ttft_target_percentile"] == 99.0
    assert {"ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "ttft_percentiles_basis"} <= set(p99)
    assert p99["ttft_p99_ms"] <= 450 < mean["ttft_p99_ms"] and p99["gpus"] > mean["gpus"]
    both = cli_json(capsys, *args[:4], "h200,b200", *args[5:], "--ttft-percentile", "90")
    assert all("ttft_p90_ms" in o for o in both["hardware_options"] if o["feasible"])
    assert main([*args[:4], "h200,b200", *args[5:], "--ttft-percentile", "90"]) == 0
    compared = capsys.readouterr().out.split("hardware compared")[1]
    assert compared.count("TTFT P90") == sum(o["feasible"] for o in both["hardware_options"])


@pytest.mark.parametrize(("extra", "message"), [
    (("--rps", "10", "--ttft-percentile", "100"), "more than 0 and less than 100"),
    (("--rps", "10", "--ttft-percentile", "0"), "more than 0 and less than 100"),
    (("--tp", "2", "-c", "8", "--ttft-percentile", "99"), "give it with --rps/--tokens-per-day"),
])
def test_serve_refuses_a_percentile_it_cannot_use(
    capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    assert main(["serve", "-m", "llama-3.3-70b", "-g", "h200", "--isl", "2000", "--osl", "400", *extra]) == 2
    err = capsys.readouterr().err
    assert "--ttft-percentile" in err and message in " ".join(err.split())


SCENARIO = """
name: p99 chat
region: kr
hardware: [h200-sxm]
workloads:
  - name: chat
    kind: inference
    model: llama-3.3-70b
    requests_per_s: 20
    input_tokens: 2000
    output_tokens: 400
    ttft_ms: 600
    tpot_ms: 50
{extra}
"""


def test_scenario_percentile_reaches_the_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    w = plan_workload(capsys, tmp_path / "p99.yaml", SCENARIO.format(extra="    ttft_percentile: 99"))
    d = w["details"]
    assert d["ttft_percentile"] == 99.0 and d["ttft_p99_ms"] <= 600
    mean = plan_workload(capsys, tmp_path / "mean.yaml", SCENARIO.format(extra=""))
    assert "ttft_percentile" not in mean["details"] and mean["gpus"] <= w["gpus"]
    assert main(["plan", str(tmp_path / "p99.yaml")]) == 0
    assert "TTFT P99" in capsys.readouterr().out


def test_scenario_refuses_a_percentile_out_of_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SCENARIO.format(extra="    ttft_percentile: 150"), encoding="utf-8")
    assert main(["plan", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "ttft_percentile" in err and "150" in err


def test_gamma_service_tail(catalog: Catalog) -> None:
    """The M/G/1 tail with gamma service times: exponential service (CV 1) gives M/M/1's exact
    P(W > t) = rho·e^{-(1-rho)t/D}; a CV near 0 gives M/D/1's; CV 0.5 against Lindley's recursion."""
    rho = np.array([0.3, 0.6, 0.9])
    _, c, theta = mg1_tail(rho, 2.0, 1.0)
    assert np.allclose(c, rho) and np.allclose(theta, (1 - rho) / 2.0)
    assert np.allclose(mg1_tail(rho, 1.0, 1e-3)[1:], mg1_tail(rho, 1.0, 0.0)[1:], rtol=1e-3)
    waits = _md1_waits(0.7, cv=0.5)
    _, c, theta = mg1_tail(0.7, 1.0, 0.5)
    for pct in (90.0, 99.0):
        assert float(np.log(c / (1 - pct / 100)) / theta) == pytest.approx(float(np.percentile(waits, pct)), rel=0.08)
    nodes = length_nodes(np.array([0.5, 1.0]))
    assert nodes.shape == (2, 64) and np.allclose(nodes.mean(axis=-1), 1.0)
    assert np.allclose(nodes.std(axis=-1), [0.5, 1.0], rtol=0.05)


def test_varying_prompt_lengths_lengthen_the_wait_and_its_tail(catalog: Catalog) -> None:
    """Prompts of varying length: the mean wait behind other prompts is (1 + CV²) times the fixed
    one's at the same busy share (Pollaczek-Khinchine), a little less in a closed loop (the longer
    wait thins the arrivals); the percentiles follow the iteration simulation with drawn lengths."""
    s, hw, k = serving_setup(catalog, "llama-3.1-70b", "h200-sxm")
    par, kw = Parallel(tp=4), {"concurrency": 64.0, "isl": 4000.0, "osl": 500.0}
    fixed = serve(s, hw, par, FP8, k, **kw)
    varied = serve(s, hw, par, FP8, k, isl_cv=0.5, **kw)
    ratio = float(np.asarray(varied.queue_s)) / float(np.asarray(fixed.queue_s))
    assert 1.23 < ratio < 1.25
    assert np.asarray(varied.tpot_s) == pytest.approx(np.asarray(fixed.tpot_s))
    rate = 0.8 * float(np.asarray(varied.requests_per_s))
    sim = simulate(s, hw, par, FP8, k, concurrency=64, isl=4000, osl=500, requests_per_s=rate, cycles=30, seed=1,
                   isl_cv=0.5)
    for pct in (90.0, 99.0):
        assert sim.ttft_percentiles_s[pct] == pytest.approx(float(open_loop_ttft(varied, 0.8, pct)), rel=0.25)
        assert float(open_loop_ttft(varied, 0.8, pct)) > float(open_loop_ttft(fixed, 0.8, pct))


def test_prefill_replica_with_varying_prompts_follows_its_simulation(catalog: Catalog) -> None:
    full, sizes, table = _prefill_table(catalog)
    rate = 0.5 * full / table[full]
    sim = prefill_replica_percentiles(table.tolist(), full, rate, (90.0, 99.0), seed=1, isl_cv=0.5)
    for pct in (90.0, 99.0):
        t_p, wait = prefill_queue(lambda b: np.asarray(np.interp(b, sizes, table)), float(full), rate, pct, 0.5)
        assert float(t_p + wait) == pytest.approx(sim[pct], rel=0.35)


def test_plans_for_varying_prompts(catalog: Catalog, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A percentile target with prompts of varying length needs more GPUs; the CLI and the scenario
    carry the coefficient of variation and refuse what they cannot use."""
    s, hw, k = serving_setup(catalog, "llama-3.3-70b", "h200-sxm")
    base = {"requests_per_s": 40.0, "isl": 2000.0, "osl": 400.0, "ttft_s": 0.6, "tpot_s": 0.05,
            "ttft_percentile": 99.0}
    gpus = [plan_capacity(s, hw, FP8, k, Demand(**base, isl_cv=cv)).gpus for cv in (0.0, 0.5, 1.0)]
    assert gpus[0] <= gpus[1] <= gpus[2] and gpus[2] > gpus[0]
    args = ("serve", "-m", "llama-3.3-70b", "-g", "h200", "--isl", "2000", "--osl", "400", "--rps", "40",
            "--ttft-ms", "600", "--tpot-ms", "50", "--ttft-percentile", "99")
    d = cli_json(capsys, *args, "--isl-cv", "1")
    assert d["isl_cv"] == 1.0 and d["gpus"] == gpus[2] and d["ttft_p99_ms"] <= 600
    assert main(["serve", "-m", "llama-3.3-70b", "-g", "h200", "--isl", "2000", "--osl", "400", "-c", "8",
                 "--tp", "2", "--prefill-tp", "2", "--isl-cv", "0.5"]) == 2
    assert "--isl-cv" in capsys.readouterr().err
    assert main([*args, "--isl-cv", "2.5"]) == 2
    capsys.readouterr()
    extra = "    input_tokens_cv: 1\n    ttft_percentile: 99"
    w = plan_workload(capsys, tmp_path / "cv.yaml", SCENARIO.format(extra=extra))
    assert w["details"]["input_tokens_cv"] == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENARIO.format(extra="    input_tokens_cv: 5"), encoding="utf-8")
    assert main(["plan", str(bad)]) == 2
    assert "input_tokens_cv" in capsys.readouterr().err
