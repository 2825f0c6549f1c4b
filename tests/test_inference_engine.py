"""The step-time model: physics functions, model shapes, memory and one iteration's regimes."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import kv_cache_bytes_per_token, params_total
from factoryplan.catalog.schema import Release
from factoryplan.commands.serve_engine import Setup
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.perf.inference import (
    KV_BYTES,
    WEIGHT_BYTES,
    Constants,
    Hardware,
    Parallel,
    Precision,
    allreduce_time,
    check_kv_hardware,
    check_precision,
    constants_from_catalog,
    constants_from_values,
    expected_max_normal,
    expert_alltoall_time,
    expert_load_factor,
    experts_touched,
    fused_allreduce_limits,
    fused_allreduce_time,
    fuses_allreduce,
    gemm_peak,
    gemm_time,
    hardware_of,
    iteration,
    kv_bytes_per_sequence_per_gpu,
    moe_activation_elements,
    peak_flops,
    shape_of,
    weight_bytes_per_gpu,
)
from factoryplan.perf.serving import memory

from .conftest import FP8


@pytest.fixture(scope="module")
def k(catalog: Catalog) -> Constants:
    return constants_from_catalog(catalog, "trtllm")


def hw_of(catalog: Catalog, acc: str) -> Hardware:
    a = catalog.accelerators[acc]
    return hardware_of(a, catalog.systems[a.default_system])


def test_experts_touched_limits() -> None:
    assert experts_touched(256, 8, 0) == 0
    assert experts_touched(256, 8, 1) == pytest.approx(8)  # one token touches its k experts
    assert experts_touched(256, 8, 10_000) == pytest.approx(256)
    t = np.array([1, 4, 16, 64, 256], dtype=float)
    u = experts_touched(128, 8, t)
    assert np.all(np.diff(u) > 0) and np.all(u <= 128)
    # E·(1-(1-k/E)^T) by hand for E=8, k=2, T=2: 8·(1 - 0.75²) = 3.5
    assert experts_touched(8, 2, 2) == pytest.approx(3.5)


def test_skewed_routing_touches_fewer_experts() -> None:
    """Gamma-distributed popularity of concentration a: U = E·(1 - (1 + T·λ/a)^-a), λ = -ln(1-k/E);
    fewer experts than uniform routing at every T, the uniform formula as a grows, all experts for
    a long prompt."""
    t = np.array([1, 4, 16, 64], dtype=float)
    uniform = experts_touched(128, 8, t)
    skewed = experts_touched(128, 8, t, 3.0)
    assert np.all(skewed < uniform)
    lam = -math.log(1 - 8 / 128)
    assert experts_touched(128, 8, 4.0, 3.0) == pytest.approx(128 * (1 - (1 + 4 * lam / 3) ** -3))
    assert experts_touched(128, 8, t, 1e7) == pytest.approx(uniform, rel=1e-4)
    assert experts_touched(128, 8, 0.0, 3.0) == 0
    assert experts_touched(128, 8, 8192.0, 3.0) == pytest.approx(128, rel=1e-3)


def test_expected_max_normal_matches_order_statistics() -> None:
    """Blom's approximation with the rational inverse normal against the exact expected maxima of
    n standard normals (Harter 1961 tables: 0.5642, 1.0294, 1.4236, 2.0697 for n = 2, 4, 8, 32)."""
    exact = {2: 0.5642, 4: 1.0294, 8: 1.4236, 32: 2.0697}
    got = expected_max_normal(np.array(list(exact), dtype=float))
    assert got == pytest.approx(list(exact.values()), abs=0.03)
    assert got[2:] == pytest.approx(list(exact.values())[2:], rel=0.01)
    assert expected_max_normal(1) == 0.0


def _routed_max_load(experts: int, active: int, tokens: int, ranks: int, a: float, trials: int) -> float:
    """Monte Carlo: the busiest rank's token-expert pairs over the mean, each token picking ``active``
    distinct experts by popularity (Gamma(a) per expert and trial; uniform for a = inf)."""
    rng = np.random.default_rng(7)
    ratios = []
    for _ in range(trials):
        pop = rng.gamma(a, 1.0 / a, experts) if math.isfinite(a) else np.ones(experts)
        keys = np.log(pop / pop.sum())[None, :] - np.log(-np.log(rng.random((tokens, experts))))
        picks = np.argpartition(-keys, active - 1, axis=1)[:, :active]  # Gumbel top-k: k distinct
        load = np.bincount(picks.ravel(), minlength=experts).reshape(ranks, -1).sum(axis=1)
        ratios.append(load.max() / load.mean())
    return float(np.mean(ratios))


@pytest.mark.parametrize(("experts", "active", "ranks", "a"), [
    (256, 8, 8, 4.0), (256, 8, 32, math.inf), (128, 8, 4, 4.0), (128, 4, 2, math.inf),
])
def test_expert_load_factor_matches_random_routing(experts: int, active: int, ranks: int, a: float) -> None:
    """The busiest expert-parallel rank's load against simulated routing: within 5% from 16 tokens."""
    for tokens in (16, 64, 256):
        simulated = _routed_max_load(experts, active, tokens, ranks, a, trials=150)
        assert expert_load_factor(experts, active, tokens, ranks, a) == pytest.approx(simulated, rel=0.05)


def test_expert_load_factor_limits() -> None:
    """One rank is balanced; more tokens average out the sampling (not the popularity) imbalance;
    wider EP is more imbalanced; one token cannot load a rank beyond its ``k`` experts."""
    assert expert_load_factor(256, 8, 64, 1, 4.0) == 1.0
    t = np.array([4.0, 64.0, 1024.0, 1e6])
    f = expert_load_factor(256, 8, t, 8, 4.0)
    assert np.all(np.diff(f) < 0) and np.all(f > 1.0)
    assert f[-1] > 1.05  # popularity: a rank's share of popular experts stays uneven
    assert expert_load_factor(256, 8, 1e6, 8) == pytest.approx(1.0, abs=0.01)  # uniform routing averages out
    # a load balancer's redundant experts even out the popularity, not one step's sampling
    assert expert_load_factor(256, 8, 1e6, 8, 4.0, True) == pytest.approx(1.0, abs=0.01)
    assert expert_load_factor(256, 8, 64, 8, 4.0, True) == pytest.approx(expert_load_factor(256, 8, 64, 8))
    ranks = np.array([2.0, 8.0, 32.0, 64.0])
    assert np.all(np.diff(expert_load_factor(256, 8, 256, ranks, 4.0)) > 0)
    assert expert_load_factor(16, 8, 1, 8, 4.0) <= 8 * 2 / 8 + 1e-12  # <= ranks·min(k, E/r)/k


def test_expert_parallel_against_expert_tensor_parallel(catalog: Catalog, k: Constants) -> None:
    """The same 8 GPUs holding DeepSeek-R1's experts. Split by expert parallelism, the busiest GPU
    carries more than its share of the tokens and reads the more experts they touch; split by tensor
    parallelism every GPU carries an eighth of each touched expert, but runs a slice of every one of
    them: eight times the experts' fixed costs."""
    s = shape_of(catalog.models["deepseek-r1"])
    hw = hw_of(catalog, "h200-sxm")
    ep_par, etp_par = Parallel(tp=8, ep=8), Parallel(tp=8, moe_tp=8)

    def moe(par: Parallel, overhead_s: float) -> float:
        return float(iteration(s, hw, par, FP8, replace(k, expert_overhead_s=overhead_s),
                               decode_seqs=64.0, ctx=2000.0).moe)

    assert moe(ep_par, 0.0) > moe(etp_par, 0.0) * 1.02
    c = 1e-6
    fixed_etp = moe(etp_par, c) - moe(etp_par, 0.0)
    assert fixed_etp == pytest.approx(c * experts_touched(256, 8, 64.0, k.routing_concentration) * s.moe_layers)
    assert fixed_etp > 4.0 * (moe(ep_par, c) - moe(ep_par, 0.0)) > 0.0
    dense = iteration(s, hw, ep_par, FP8, k, decode_seqs=64.0, ctx=2000.0)
    assert dense.attention == pytest.approx(iteration(s, hw, etp_par, FP8, k, decode_seqs=64.0, ctx=2000.0).attention)


def test_host_work_caps_a_fast_replica(catalog: Catalog, k: Constants) -> None:
    """The engine prepares the next iteration while the GPU runs this one: its per-sequence host
    work adds nothing while the GPU's step is longer, and sets the step where it is not."""
    s = shape_of(catalog.models["llama-3.1-8b"])
    hw = hw_of(catalog, "b200")
    slow_host = replace(k, cpu_sequence_s=100e-6)
    few = iteration(s, hw, Parallel(tp=8), FP8, slow_host, decode_seqs=8.0, ctx=1000.0)
    many = iteration(s, hw, Parallel(tp=8), FP8, slow_host, decode_seqs=1024.0, ctx=1000.0)
    assert few.cpu == 0.0
    assert many.cpu > 0.0 and many.total == pytest.approx(100e-6 * 1024)
    no_host = iteration(s, hw, Parallel(tp=8), FP8, replace(k, cpu_sequence_s=0.0), decode_seqs=1024.0, ctx=1000.0)
    assert no_host.cpu == 0.0 and no_host.total < many.total


def test_low_precision_gemms_are_derated(catalog: Catalog, k: Constants) -> None:
    """FP8 tensor cores run at twice the BF16 rate but reach a smaller share of it; FP4 weights on
    Hopper are weight-only (BF16 tensor cores), so they are not derated."""
    hw = hw_of(catalog, "h100-sxm")
    assert float(gemm_peak(hw, "bf16", k)) == float(hw.bf16_flops)
    assert float(gemm_peak(hw, "fp8", k)) == pytest.approx(float(hw.fp8_flops) * k.low_precision_efficiency)
    assert float(gemm_peak(hw, "fp4", k)) == float(hw.bf16_flops)
    assert 0.5 < k.low_precision_efficiency <= 1.0


def test_gemm_time_regimes(k: Constants) -> None:
    """A GEMV is bound by its weight read, a large GEMM by its FLOPs; no tokens costs nothing."""
    params, peak, bw = 1e9, 1e15, 3e12
    one = float(gemm_time(2 * 1 * params, params, 1.0, peak, bw, k))
    memory_bound = params / (bw * k.hbm_efficiency)
    assert one == pytest.approx(memory_bound, rel=0.02)
    m = 65536.0
    big = float(gemm_time(2 * m * params, params, m, peak, bw, k))
    assert big == pytest.approx(2 * m * params / (peak * k.gemm_efficiency), rel=0.02)
    assert float(gemm_time(0.0, params, 0.0, peak, bw, k)) == 0.0
    # a weaker kernel (MoE) is slower on both sides of the roofline
    assert float(gemm_time(2 * params, params, 1.0, peak, bw, k, 0.5, 0.5)) > one


def test_collectives(k: Constants) -> None:
    assert float(allreduce_time(1e6, 1, 450e9, 1e-5, k)) == 0.0
    t8 = float(allreduce_time(1e8, 8, 450e9, 1e-5, k))
    assert t8 == pytest.approx(1e-5 + 2 * 7 / 8 * 1e8 / (450e9 * k.link_efficiency))
    assert float(allreduce_time(1e8, 2, 450e9, 1e-5, k)) < t8  # 2(r-1)/r grows with r


def test_fused_all_reduce_costs_less_only_for_small_messages(catalog: Catalog, k: Constants) -> None:
    """An engine that fuses each TP all-reduce with the RMSNorm after it runs the one-shot kernel (its
    fixed cost, ``(r-1)`` messages over each link) for messages up to the fused kernel's limit at that
    TP size (vLLM's on Hopper: 64 MiB at 2, 2 MiB at 4, 1 MiB at 8, none at other sizes), two a
    layer; larger messages, one GPU and engines that do not fuse take the plain all-reduce."""
    mib = 2.0**20
    s, hw = shape_of(catalog.models["llama-3.1-70b"]), hw_of(catalog, "h200-sxm")
    whole, one = fused_allreduce_limits(np.array([1.0, 2.0, 4.0, 8.0, 16.0]), hw.fused_allreduce_limits)
    np.testing.assert_array_equal(whole, [0.0, 64 * mib, 2 * mib, 1 * mib, 0.0])
    np.testing.assert_array_equal(one, [0.0, 32 * mib, 2 * mib, 1 * mib, 0.0])
    plain = replace(k, fused_allreduce=(), allreduce_latency_s=13e-6, fused_allreduce_latency_s=4e-6)
    fused = replace(plain, fused_allreduce=(("*", 0.0),))
    msg = 32.0 * s.hidden * 2.0  # 32 decoding sequences' hidden states, BF16: 512 KiB
    for tp in (2.0, 4.0, 8.0):
        decode = [float(iteration(s, hw, Parallel(tp=tp), FP8, c, decode_seqs=32.0, ctx=2000.0).comm)
                  for c in (plain, fused)]
        one_shot = float(fused_allreduce_time(msg, tp, hw.link_bytes_s, fused))
        ring = float(allreduce_time(msg, tp, hw.link_bytes_s, 13e-6, plain))
        assert one_shot == pytest.approx(4e-6 + (tp - 1) * msg / (hw.link_bytes_s * k.link_efficiency))
        assert decode[0] - decode[1] == pytest.approx(2 * s.layers * (ring - one_shot), rel=1e-9)
        assert decode[1] < decode[0]
    # 8,192 prompt tokens at TP 8: 128 MiB messages, over the limit: the plain all-reduce
    prompt = [float(iteration(s, hw, Parallel(tp=8.0), FP8, c, decode_seqs=0.0, ctx=8192.0, prompts=1.0,
                              prompt_len=8192.0).comm) for c in (plain, fused)]
    assert prompt[0] == prompt[1]
    # TP 16 has no fused kernel; one GPU has no all-reduce
    for par in (Parallel(tp=16.0), Parallel(tp=1.0)):
        one = [float(iteration(s, hw_of(catalog, "gb200"), par, FP8, c, decode_seqs=8.0, ctx=2000.0).comm)
               for c in (plain, fused)]
        assert one[0] == one[1]


def test_fused_all_reduce_limits_follow_the_generation(catalog: Catalog, k: Constants) -> None:
    """Blackwell fuses messages up to 32 MiB at TP 4 (Hopper 2 MiB), in the two-shot form above 4 MiB: a
    ring's traffic, two of the fused kernel's synchronisations. 512 decoding sequences of Llama-3.1-70B
    at TP 4 (8 MiB a message) take the plain all-reduce on an H200 and the two-shot fused one on a B200;
    Blackwell Ultra fuses up to 2 MiB at TP 8 (Hopper and Blackwell 1 MiB)."""
    mib = 2.0**20
    s = shape_of(catalog.models["llama-3.1-70b"])
    plain = replace(k, fused_allreduce=(), allreduce_latency_s=13e-6, fused_allreduce_latency_s=4e-6)
    fused = replace(plain, fused_allreduce=(("*", 0.0),))
    tps = np.array([2.0, 4.0, 8.0])
    limits = {acc: fused_allreduce_limits(tps, hw_of(catalog, acc).fused_allreduce_limits)
              for acc in ("h200-sxm", "b200", "gb200", "b300", "gb300")}
    assert limits["b200"][0].tolist() == [64 * mib, 32 * mib, 1 * mib] == limits["gb200"][0].tolist()
    assert limits["b200"][1].tolist() == [32 * mib, 4 * mib, 1 * mib]
    assert limits["gb300"][0].tolist() == [64 * mib, 64 * mib, 2 * mib] == limits["b300"][0].tolist()
    msg = 512.0 * s.hidden * 2.0
    assert msg == 8 * mib
    for acc, path in (("h200-sxm", "plain"), ("b200", "two-shot")):
        hw = hw_of(catalog, acc)
        comm = [float(iteration(s, hw, Parallel(tp=4.0), FP8, c, decode_seqs=512.0, ctx=2000.0).comm)
                for c in (plain, fused)]
        ring = float(allreduce_time(msg, 4.0, hw.link_bytes_s, 13e-6, plain))
        two = 8e-6 + 2 * 3 / 4 * msg / (hw.link_bytes_s * k.link_efficiency)
        assert float(fused_allreduce_time(msg, 4.0, hw.link_bytes_s, fused, 4 * mib)) == pytest.approx(two)
        if path == "plain":
            assert comm[0] == comm[1]
        else:
            assert comm[0] - comm[1] == pytest.approx(2 * s.layers * (ring - two), rel=1e-9)


def test_fused_all_reduce_follows_the_model_family_and_hidden_size(catalog: Catalog) -> None:
    """An engine fuses the all-reduces of the families its model code fuses: TensorRT-LLM's Llama above
    a hidden size of 4,096 (Llama-3.1-70B, not -8B), its Qwen3-MoE and DeepSeek-V3 models, not dense
    Qwen3 or gpt-oss; vLLM every family; SGLang none (opt-in)."""
    trt, vllm, sglang = (constants_from_catalog(catalog, b) for b in ("trtllm", "vllm", "sglang"))
    fused = {m: [fuses_allreduce(shape_of(catalog.models[m]), k) for k in (trt, vllm, sglang)]
             for m in ("llama-3.1-70b", "llama-3.1-8b", "qwen3-235b-a22b", "deepseek-r1", "qwen3-32b", "gpt-oss-120b")}
    assert fused == {"llama-3.1-70b": [True, True, False], "llama-3.1-8b": [False, True, False],
                     "qwen3-235b-a22b": [True, True, False], "deepseek-r1": [True, True, False],
                     "qwen3-32b": [False, True, False], "gpt-oss-120b": [False, True, False]}


def test_fused_all_reduce_only_on_parts_with_the_fused_kernels(catalog: Catalog) -> None:
    """The fused kernels run on NVIDIA Hopper and Blackwell (FlashInfer's, vLLM's size limits exist for
    those compute capabilities only) and AMD CDNA3/CDNA4 (AITER's); an A100, an L40S or a Gaudi 3 takes
    the plain all-reduce whatever the engine fuses, and `serve` says so."""
    vllm = constants_from_catalog(catalog, "vllm")
    s = shape_of(catalog.models["llama-3.1-70b"])
    capable = {acc: hw_of(catalog, acc).fused_allreduce
               for acc in ("h100-sxm", "h200-sxm", "b200", "gb300", "mi300x", "a100-sxm-80gb", "l40s", "gaudi3")}
    assert capable == {"h100-sxm": True, "h200-sxm": True, "b200": True, "gb300": True, "mi300x": True,
                       "a100-sxm-80gb": False, "l40s": False, "gaudi3": False}
    plain = replace(vllm, fused_allreduce=())
    for acc, fuses in capable.items():
        hw = hw_of(catalog, acc)
        assert fuses_allreduce(s, vllm, hw) is fuses
        comm = [float(iteration(s, hw, Parallel(tp=8.0), FP8, c, decode_seqs=16.0, ctx=2000.0).comm)
                for c in (vllm, plain)]
        assert (comm[0] < comm[1]) if fuses else (comm[0] == comm[1]), acc
    for acc, fuses in (("a100-sxm-80gb", False), ("h100-sxm", True)):
        a = catalog.accelerators[acc]
        setup = Setup.build(catalog, catalog.models["llama-3.1-70b"], a, catalog.systems[a.default_system], "vllm",
                            None, None, None)
        assert setup.limits()["fused_allreduce"] is fuses


def test_expert_all_to_all_across_domains_splits_nvlink_and_nic(catalog: Catalog, k: Constants) -> None:
    """Inside an 8-GPU domain a token's copies to the GPUs of its 8 experts all cross NVLink. Over 16
    GPUs of two domains a prompt's token leaves through the NIC once for the other domain (which
    forwards it to the experts there), not once per GPU: the NIC sets the time at one copy where a copy
    per remote GPU would have been 3.45; over 72 GPUs of nine domains 4.9 copies, not 6.87. A decode
    pass (low-latency kernels) sends a copy for each remote expert instead: 4 over 16 GPUs, 7.1 over 72."""
    hw = hw_of(catalog, "h200-sxm")
    link, nic = float(hw.link_bytes_s) * k.link_efficiency, float(hw.nic_bytes_s) * k.link_efficiency
    x = 1e8

    def gpus(r: float) -> float:
        return r * (1 - (1 - 1 / r) ** 8)

    def nic_copies(r: float, prompts: float) -> float:
        return (float(expert_alltoall_time(x, r, 8, hw, k, prompts)) - k.network_latency_s) * nic / x

    assert float(expert_alltoall_time(x, 1.0, 8, hw, k)) == 0.0
    for prompts in (0.0, 1.0):  # inside a domain the kernels' modes move the same copies
        inside = float(expert_alltoall_time(x, 8.0, 8, hw, k, prompts))
        assert inside == pytest.approx(k.allreduce_latency_s + x * gpus(8) / link)
    assert nic_copies(16, 1.0) == pytest.approx(1 - 0.5**8)
    assert gpus(16) * 8 / 15 / nic_copies(16, 1.0) == pytest.approx(3.45, abs=0.01)
    assert nic_copies(72, 1.0) == pytest.approx(8 * (1 - (8 / 9) ** 8)) == pytest.approx(4.9, abs=0.05)
    assert gpus(72) * 64 / 71 == pytest.approx(6.87, abs=0.01)
    assert nic_copies(16, 0.0) == pytest.approx(4.0)
    assert nic_copies(72, 0.0) == pytest.approx(8 * 64 / 72)
    gb200 = hw_of(catalog, "gb200")  # 72 GPUs behind one NVLink switch: 64 stay on NVLink
    assert float(expert_alltoall_time(x, 64.0, 8, gb200, k)) == pytest.approx(
        k.allreduce_latency_s + x * gpus(64) / (float(gb200.link_bytes_s) * k.link_efficiency))


def test_shape_of_mla_and_gqa(catalog: Catalog) -> None:
    ds = shape_of(catalog.models["deepseek-v3"])
    assert ds.mla and ds.kv_split == 1 and ds.kv_elems == 512 + 64
    assert ds.moe_layers == 58 and ds.dense_layers == 3 and ds.experts == 256 and ds.active == 8
    llama = shape_of(catalog.models["llama-3.1-70b"])
    assert not llama.mla and llama.kv_split == 8 and llama.moe_layers == 0
    gptoss = shape_of(catalog.models["gpt-oss-120b"])
    assert gptoss.window == 128 and gptoss.full_layers == 18  # half the layers slide over 128 tokens


def test_weights_per_gpu_match_parameter_count(catalog: Catalog) -> None:
    """Summed over the GPUs of a layout, the weights are the model's parameters at their precision
    (embedding and LM head in BF16)."""
    arch = catalog.models["llama-3.1-70b"]
    s = shape_of(arch)
    vocab = 2 * arch.vocab * arch.hidden
    for tp in (1, 2, 8):
        per_gpu = float(weight_bytes_per_gpu(s, Parallel(tp=tp), FP8))
        assert per_gpu * tp == pytest.approx((params_total(arch) - vocab) * 1.0 + vocab * 2.0, rel=1e-6)
    ds = shape_of(catalog.models["deepseek-v3"])
    ep8 = float(weight_bytes_per_gpu(ds, Parallel(tp=8, moe_tp=1, ep=8), FP8))
    mtp8 = float(weight_bytes_per_gpu(ds, Parallel(tp=8, moe_tp=8, ep=1), FP8))
    assert ep8 == pytest.approx(mtp8)  # experts split 8 ways either way
    adp = float(weight_bytes_per_gpu(ds, Parallel(tp=1, dp=8, moe_tp=1, ep=8), FP8))
    assert adp > ep8  # attention DP replicates the attention weights on every rank


def test_kv_bytes_match_catalog_formula(catalog: Catalog) -> None:
    arch = catalog.models["llama-3.1-70b"]
    s = shape_of(arch)
    expected = float(kv_cache_bytes_per_token(arch, 1.0)) * 4096
    assert float(kv_bytes_per_sequence_per_gpu(s, Parallel(tp=1), "fp8", 4096)) == pytest.approx(expected)
    # GQA splits over up to 8 KV heads; beyond that heads are duplicated
    assert float(kv_bytes_per_sequence_per_gpu(s, Parallel(tp=8), "fp8", 4096)) == pytest.approx(expected / 8)
    assert float(kv_bytes_per_sequence_per_gpu(s, Parallel(tp=16), "fp8", 4096)) == pytest.approx(expected / 8)
    ds = shape_of(catalog.models["deepseek-v3"])
    one = float(kv_bytes_per_sequence_per_gpu(ds, Parallel(tp=1), "bf16", 1000))
    assert one == pytest.approx(61 * 576 * 2 * 1000)  # MLA latent, replicated on every TP rank
    assert float(kv_bytes_per_sequence_per_gpu(ds, Parallel(tp=8), "bf16", 1000)) == pytest.approx(one)
    gpt = shape_of(catalog.models["gpt-oss-120b"])
    short = float(kv_bytes_per_sequence_per_gpu(gpt, Parallel(), "bf16", 128))
    long = float(kv_bytes_per_sequence_per_gpu(gpt, Parallel(), "bf16", 8192))
    assert long < short * 64  # sliding-window layers stop growing at 128 tokens


def test_precision_and_hopper_fp4(catalog: Catalog) -> None:
    h100, b200 = hw_of(catalog, "h100-sxm"), hw_of(catalog, "b200")
    assert float(peak_flops(h100, "fp8")) == pytest.approx(catalog.accelerators["h100-sxm"].fp8_dense_flops)
    # Hopper has no FP4 tensor cores: FP4/INT4 weights are dequantized and multiplied at BF16
    assert float(peak_flops(h100, "fp4")) == pytest.approx(h100.bf16_flops)
    assert float(peak_flops(h100, "int4")) == pytest.approx(h100.bf16_flops)
    assert float(peak_flops(b200, "fp4")) == pytest.approx(catalog.accelerators["b200"].fp4_dense_flops)
    assert WEIGHT_BYTES["fp4"] == pytest.approx(0.5625)  # NVFP4: 4-bit values + an FP8 scale per 16
    with pytest.raises(FactoryplanError, match="kv_precision"):
        check_precision(Precision("fp8", "fp8", "int4"))


def test_fp4_kv_cache_holds_more_and_reads_less(catalog: Catalog, k: Constants) -> None:
    """NVFP4 KV cache (4-bit values and an FP8 scale per 16): 0.5625 of FP8's bytes, so the same room
    holds 1/0.5625 = 1.78x the sequences and a long-context decode step reads less; Blackwell only."""
    assert KV_BYTES["fp4"] == pytest.approx(0.5625)
    check_precision(Precision("fp4", "fp4", "fp4"))
    s = shape_of(catalog.models["llama-3.1-70b"])
    b200 = hw_of(catalog, "b200")
    fp8_kv, fp4_kv = Precision("fp4", "fp4", "fp8"), Precision("fp4", "fp4", "fp4")
    m8 = memory(s, b200, Parallel(tp=2), fp8_kv, k, 8000.0, 1000.0)
    m4 = memory(s, b200, Parallel(tp=2), fp4_kv, k, 8000.0, 1000.0)
    assert float(m8.kv_per_sequence_bytes) / float(m4.kv_per_sequence_bytes) == pytest.approx(1.0 / 0.5625)
    assert float(m4.kv_room_bytes) == pytest.approx(float(m8.kv_room_bytes))  # the weights are the same
    assert float(m4.max_concurrency) == pytest.approx(math.floor(float(m4.kv_room_bytes) /
                                                                 float(m4.kv_per_sequence_bytes)))
    assert float(m4.max_concurrency) > 1.7 * float(m8.max_concurrency)
    step8 = float(iteration(s, b200, Parallel(tp=2), fp8_kv, k, decode_seqs=128.0, ctx=32000.0).total)
    step4 = float(iteration(s, b200, Parallel(tp=2), fp4_kv, k, decode_seqs=128.0, ctx=32000.0).total)
    assert step4 < 0.85 * step8  # 128 x 32k tokens of KV dominate the step
    check_kv_hardware("fp4", catalog.accelerators["gb300"], field="kv_precision")
    check_kv_hardware("fp8", catalog.accelerators["h100-sxm"], field="kv_precision")
    with pytest.raises(InfeasibleError, match="kv_precision: an FP4 KV cache needs FP4 hardware; h100-sxm"):
        check_kv_hardware("fp4", catalog.accelerators["h100-sxm"], field="kv_precision")


def test_kv_cache_defaults_of_the_engines(catalog: Catalog) -> None:
    """The KV cache an engine keeps unless told: TensorRT-LLM and vLLM FP8 with FP8 or narrower
    weights; SGLang the model's BF16 (kv_cache_dtype "auto"), FP8 where the checkpoint asks for it;
    a DeepSeek-sparse-attention model FP8 on Blackwell in every engine, BF16 under SGLang on Hopper."""
    from factoryplan.perf.inference import serving_formats

    def kv(model: str, acc: str, backend: str, weights: str | None = "fp8", given: str | None = None) -> str:
        k = constants_from_catalog(catalog, backend)
        prec, _ = serving_formats(catalog.models[model], catalog.accelerators[acc], k, weights, kv=given)
        return prec.kv

    assert [kv("llama-3.1-70b", "h200-sxm", b) for b in ("trtllm", "vllm", "sglang")] == ["fp8", "fp8", "bf16"]
    assert [kv("llama-3.1-70b", "h200-sxm", b, "bf16") for b in ("trtllm", "sglang")] == ["bf16", "bf16"]
    assert kv("llama-3.1-70b", "h200-sxm", "sglang", given="fp8") == "fp8"  # as given
    assert [kv("glm-5", acc, "sglang") for acc in ("h200-sxm", "b200", "gb300")] == ["bf16", "fp8", "fp8"]
    assert kv("deepseek-v3.2", "b200", "sglang", "bf16") == "fp8"
    assert kv("deepseek-v3.2", "h100-sxm", "vllm", "bf16") == "bf16"
    assert kv("deepseek-v3.2", "b200", "vllm", "bf16") == "fp8"
    asks = catalog.models["llama-3.1-70b"].model_copy(update={"release": Release(weights="fp8", kv="fp8")})
    prec, _ = serving_formats(asks, catalog.accelerators["h200-sxm"], constants_from_catalog(catalog, "sglang"))
    assert prec.kv == "fp8"  # a checkpoint whose quantization config asks for an FP8 cache (ModelOpt)


def test_decode_is_memory_bound_at_batch_one(catalog: Catalog, k: Constants) -> None:
    """Llama 3.1 70B FP8 on one H200: a decode step reads ~72 GB of weights at ~88% of 4.8 TB/s."""
    s = shape_of(catalog.models["llama-3.1-70b"])
    hw = hw_of(catalog, "h200-sxm")
    step = iteration(s, hw, Parallel(tp=1), FP8, k, decode_seqs=1.0, ctx=1024.0)
    weights = float(weight_bytes_per_gpu(s, Parallel(tp=1), FP8))
    floor = weights / (float(hw.hbm_bytes_s) * k.hbm_efficiency)
    assert float(step.gemm) == pytest.approx(floor, rel=0.05)
    assert 15e-3 < float(step.total) < 25e-3  # measured TPOT at 4 users: 20-21 ms


def test_step_grows_with_batch_and_context(catalog: Catalog, k: Constants) -> None:
    s = shape_of(catalog.models["qwen3-32b"])
    hw = hw_of(catalog, "h100-sxm")
    batch = np.array([1, 8, 64, 512], dtype=float)
    t = np.asarray(iteration(s, hw, Parallel(tp=2), FP8, k, decode_seqs=batch, ctx=2048.0).total)
    assert np.all(np.diff(t) > 0)
    per_token = t / batch
    assert np.all(np.diff(per_token) < 0)  # batching amortises the weight read
    short = float(iteration(s, hw, Parallel(tp=2), FP8, k, decode_seqs=64.0, ctx=512.0).total)
    longer = float(iteration(s, hw, Parallel(tp=2), FP8, k, decode_seqs=64.0, ctx=8192.0).total)
    assert longer > short  # the KV read grows with context


def test_moe_reads_only_touched_experts(catalog: Catalog, k: Constants) -> None:
    s = shape_of(catalog.models["deepseek-r1"])
    hw = hw_of(catalog, "h200-sxm")
    par = Parallel(tp=8, moe_tp=1, ep=8)
    one = float(iteration(s, hw, par, FP8, k, decode_seqs=1.0, ctx=1024.0).moe)
    many = float(iteration(s, hw, par, FP8, k, decode_seqs=256.0, ctx=1024.0).moe)
    expert_bytes = s.moe_layers * s.experts * s.expert_params / 8  # all experts of one GPU, FP8
    full_read = expert_bytes / (float(hw.hbm_bytes_s) * k.hbm_efficiency * k.moe_kernel_efficiency)
    assert one < 0.1 * full_read  # one token touches 8 of 256 experts
    assert many > 0.9 * full_read  # 256 tokens touch nearly all


def test_moe_activation_elements_count_the_fused_kernels(catalog: Catalog) -> None:
    qwen = shape_of(catalog.models["qwen3-235b-a22b"])  # gated experts, h 4096, I 1536
    assert moe_activation_elements(qwen) == 3 * 4096 + 6 * 1536
    assert moe_activation_elements(qwen, 2.0) == 3 * 4096 + 3 * 1536  # expert TP splits I, not h
    plain = replace(qwen, gated_mlp=False)  # up, activation, down: no gate
    assert moe_activation_elements(plain) == 3 * 4096 + 4 * 1536


def test_a_prompts_expert_pairs_move_their_activations(catalog: Catalog, k: Constants) -> None:
    """A prompt's token-expert pairs move their activations through HBM besides the expert weights:
    the difference between a pass with that traffic and one whose pairs move nothing is that many
    bytes at the streaming rate, on the busiest expert-parallel rank."""
    s = shape_of(catalog.models["qwen3-235b-a22b"])
    hw = hw_of(catalog, "h100-sxm")
    par = Parallel(tp=8, moe_tp=1, ep=8)
    kw = dict(decode_seqs=0.0, ctx=4096.0, prompts=1.0, prompt_len=4096.0)
    with_traffic = float(iteration(s, hw, par, FP8, k, **kw).moe)
    # a shape whose pairs move nothing: no hidden state and no intermediate to count
    silent = float(iteration(replace(s, hidden=0.0, expert_ffn=0.0), hw, par, FP8, k, **kw).moe)
    load = float(expert_load_factor(s.experts, s.active, 4096.0, 8.0, k.routing_concentration))
    pairs = 4096.0 * s.active * load / 8.0
    moved = s.moe_layers * pairs * (3 * s.hidden + 6 * s.expert_ffn) * 2.0
    assert with_traffic - silent == pytest.approx(moved / (float(hw.hbm_bytes_s) * k.hbm_efficiency), rel=1e-9)
    assert 0.1 < 1.0 - silent / with_traffic < 0.4  # a sizeable share of a prompt's expert time
    dec = dict(decode_seqs=64.0, ctx=4096.0)  # decode: the expert weights' read dominates
    dec_silent = float(iteration(replace(s, hidden=0.0, expert_ffn=0.0), hw, par, FP8, k, **dec).moe)
    assert 1.0 - dec_silent / float(iteration(s, hw, par, FP8, k, **dec).moe) < 0.05


def test_tensor_parallel_speeds_up_decode_until_latency_bound(catalog: Catalog, k: Constants) -> None:
    s = shape_of(catalog.models["llama-3.1-70b"])
    hw = hw_of(catalog, "h200-sxm")
    tps = np.array([1, 2, 4, 8], dtype=float)
    t = np.asarray(iteration(s, hw, Parallel(tp=tps), FP8, k, decode_seqs=8.0, ctx=2048.0).total)
    assert np.all(np.diff(t) < 0)
    assert t[-1] > t[0] / 8  # all-reduces and fixed overheads keep TP8 from being 8x faster
    comm = np.asarray(iteration(s, hw, Parallel(tp=tps), FP8, k, decode_seqs=8.0, ctx=2048.0).comm)
    assert comm[0] == 0.0 and np.all(comm[1:] > 0)


def test_prompt_iterations_pay_launch_overhead(catalog: Catalog, k: Constants) -> None:
    """An iteration that carries prompt tokens runs outside the decode CUDA graphs: its overhead
    exceeds a decode iteration's by the engine's per-layer launch cost."""
    s = shape_of(catalog.models["llama-3.1-70b"])
    hw = hw_of(catalog, "h200-sxm")
    dec = float(iteration(s, hw, Parallel(tp=4), FP8, k, decode_seqs=8.0, ctx=2048.0).overhead)
    mixed = float(iteration(s, hw, Parallel(tp=4), FP8, k, decode_seqs=8.0, ctx=2048.0, prompts=1.0,
                            prompt_len=512.0).overhead)
    assert mixed - dec == pytest.approx(k.prefill_layer_overhead_s * s.layers + k.sequence_overhead_s)


def test_moe_layers_add_their_overhead(catalog: Catalog, k: Constants) -> None:
    dense = shape_of(catalog.models["qwen3-32b"])
    moe = shape_of(catalog.models["qwen3-235b-a22b"])
    hw = hw_of(catalog, "h100-sxm")
    par = Parallel(tp=8, moe_tp=1, ep=8)
    ov_dense = float(iteration(dense, hw, Parallel(tp=8), FP8, k, decode_seqs=4.0, ctx=1024.0).overhead)
    ov_moe = float(iteration(moe, hw, par, FP8, k, decode_seqs=4.0, ctx=1024.0).overhead)
    per_layer = k.layer_overhead_s
    assert ov_moe - ov_dense == pytest.approx((moe.layers - dense.layers) * per_layer + moe.moe_layers
                                              * k.moe_layer_overhead_s)


def test_collectives_leave_the_domain_over_nics(catalog: Catalog, k: Constants) -> None:
    s = shape_of(catalog.models["llama-3.1-405b"])
    hw = hw_of(catalog, "h100-sxm")
    inside = float(iteration(s, hw, Parallel(tp=8), FP8, k, decode_seqs=64.0, ctx=2048.0).comm)
    across = float(iteration(s, hw, Parallel(tp=16), FP8, k, decode_seqs=64.0, ctx=2048.0).comm)
    assert across > 2 * inside


def test_constants_need_every_value(catalog: Catalog, k: Constants) -> None:
    values = {f: float(getattr(k, f)) for f in k.__dataclass_fields__ if f != "fused_allreduce"}
    glob = {f: values[f] for f in ("gemm_efficiency",)}
    with pytest.raises(FactoryplanError, match="lacks values"):
        constants_from_values(glob, {})
    with pytest.raises(FactoryplanError, match="unknown serving backend"):
        constants_from_catalog(catalog, "tgi")
    assert replace(k, burst_share=1.0).burst_share == 1.0
    assert math.isfinite(k.step_overhead_s) and k.step_overhead_s > 0
    # an engine's constant in the global entry (an older catalog's prefill_queue_factor) is refused,
    # not silently overridden by the engine entries
    from factoryplan.perf.inference import ENGINE_FIELDS, GLOBAL_FIELDS

    glob = {f: values[f] for f in GLOBAL_FIELDS}
    engine = {f: values[f] for f in ENGINE_FIELDS}
    assert constants_from_values(glob, engine) == replace(k, fused_allreduce=())  # the fusions: the entry's list
    with pytest.raises(FactoryplanError, match="engine's constant") as exc:
        constants_from_values({**glob, "prefill_queue_factor_ratio": 0.65}, engine)
    assert exc.value.value == "prefill_queue_factor_ratio"


def test_activation_precision_sets_the_tensor_core_rate(catalog: Catalog, k: Constants) -> None:
    """Weights and activations are separate choices: the GEMM runs at the wider operand's rate (W4A8 at
    FP8, W4A16 at BF16, NVFP4 W4A4 at FP4) and reads the weights at their own width either way."""
    from factoryplan.perf.inference import compute_precision

    assert [compute_precision(w, a) for w, a in (("fp4", ""), ("fp4", "fp8"), ("fp4", "bf16"), ("fp4", "fp4"),
                                                  ("int4", ""), ("int4", "fp8"), ("fp8", "bf16"), ("bf16", "fp8"))] \
        == ["fp4", "fp8", "bf16", "fp4", "int4", "fp8", "bf16", "bf16"]
    b200 = catalog.accelerators["b200"]
    hw = hardware_of(b200, catalog.systems[b200.default_system])
    s = shape_of(catalog.models["llama-3.3-70b"])

    def prefill(act: str) -> float:
        prec = Precision("fp4", "fp4", "fp8", activations=act)
        return float(iteration(s, hw, Parallel(tp=1), prec, k, decode_seqs=0.0, ctx=8000, prompts=1.0,
                               prompt_len=8000.0).gemm)

    def decode(act: str) -> float:
        prec = Precision("fp4", "fp4", "fp8", activations=act)
        return float(iteration(s, hw, Parallel(tp=1), prec, k, decode_seqs=1.0, ctx=1000).gemm)

    # compute-bound prefill: FP8 tensor cores at half the FP4 rate, BF16 at a quarter (before derating)
    assert prefill("fp8") / prefill("fp4") == pytest.approx(2.0, rel=0.1)
    assert prefill("bf16") / prefill("fp4") > 2.5
    # memory-bound decode of one sequence: the same FP4 weights to read, about the same time
    assert decode("fp8") == pytest.approx(decode("fp4"), rel=0.05)
    with pytest.raises(FactoryplanError, match="activation_precision"):
        check_precision(Precision("fp4", "fp4", "fp8", activations="fp16"))
