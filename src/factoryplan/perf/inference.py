"""The inference step-time model: one forward iteration of an LLM replica, vectorized.

An iteration of an in-flight-batching engine processes ``B`` decoding sequences (one new token
each, attending to ``ctx`` cached tokens) and ``Np`` prompt tokens of new requests (prefill) in
one forward pass. Its time on one GPU is the sum over layers of

* **GEMMs** (attention projections, dense MLPs, shared experts, the LM head), each a smooth
  roofline of its compute ``2·M·P / (F·e(M))`` and its weight read ``P·b_w / (BW·e_bw)`` with
  ``M`` the tokens in the pass (Williams, Waterman and Patterson 2009, "Roofline"). The compute
  efficiency ``e(M) = e_max·M/(M + m0)`` ramps with the tokens per step (tile and wave
  quantization); where the crossing lies depends on the part's FLOP:byte ratio ``F/BW``.
* **MoE experts**: ``T`` tokens routed to ``k`` of ``E`` experts touch
  ``U = E·(1 - (1 - k/E)^T)`` distinct experts (uniform routing), whose weights are read once per
  pass; the grouped GEMM runs at ``M = T·k/U`` tokens per expert. Under expert parallelism the
  busiest rank sets the pace: it receives ``f >= 1`` times the mean rank's tokens (sampling and
  the router's favourites; :func:`expert_load_factor`) and reads the experts those touch; expert
  tensor parallelism splits every expert evenly instead. Each expert (or slice of one) a GPU runs
  costs a fixed time besides its roofline (the grouped kernel's per-expert setup and tail), so
  slicing experts over more GPUs does not shrink that part. Each token-expert pair also moves its
  activations through HBM (gathered hidden state, gate/up outputs, the weighted sum;
  :func:`moe_activation_elements`): under 2% of the experts' time in decode, a tenth to a third
  of it in a prompt's pass.
* **attention**: decode reads each sequence's KV cache (GQA heads split across tensor-parallel
  ranks up to the number of KV heads; MLA's compressed latent is replicated, DeepSeek-V2 paper
  Sec. 2.1) and does ``2·(d_qk + d_v)`` FLOPs per head and cached token; causal prefill does
  ``2·(d_qk + d_v)·S²/2`` per head (FlashAttention, Dao 2023). Sliding-window layers cap the
  context at the window.
* **linear attention** (Gated DeltaNet layers of hybrid models, Yang et al. 2024,
  arXiv:2412.06464): no KV cache; each sequence keeps a fixed recurrent and convolution state per
  layer, which a decode step reads and writes once (memory-bound, at the KV-cache efficiency) with
  a few FLOPs per state element; a prompt runs the chunked delta rule, FLOPs linear in its length
  (see :func:`shape_of`). Tensor parallelism splits the heads and so the state. Mamba-2 mixers
  (Nemotron-H, Granite 4.0-H) are the same kind of layer with their own parameter and FLOP counts
  (:func:`~factoryplan.catalog.models.linear_attention_flops`).
* **DeepSeek sparse attention** (DeepSeek-V3.2; DeepSeek-AI 2025, "DeepSeek-V3.2-Exp: Boosting
  Long-Context Efficiency with DeepSeek Sparse Attention", Sec. 2): MLA attends to the ``k_top``
  cached latents a lightning indexer picks, so decode reads ``min(ctx, k_top)`` latents per
  sequence and layer; a prompt's attention runs in MLA's absorbed (MQA) mode over
  ``Σ_pos min(pos, k_top)`` pairs at the decode FLOPs per pair (Sec. 2.1) or, where cheaper
  (prompts under ~13k tokens for DeepSeek-V3.2), as masked dense MHA over ``S²/2`` pairs (the
  report's short-sequence prefill, Sec. 3). The indexer reads every cached FP8 indexer key and
  scores it at ``2·H_I·d_I`` FLOPs on FP8 tensor cores, for each decoded token and each causal
  pair of a prompt (:func:`_indexer`).
* **collectives** over the scale-up domain: two all-reduces per layer under tensor parallelism
  (``α + 2(t-1)/t · bytes / (BW_link·e_link)``, the bandwidth-optimal bound of Patarasuk and
  Yuan 2009), and an all-to-all dispatch and combine per MoE layer under attention data
  parallelism. Beyond the scale-up domain the NICs carry the traffic; an expert all-to-all that
  spans domains reaches the peers in the GPU's own domain over NVLink while the rest goes through
  its NIC, the two in parallel.
* **engine overheads**: a fixed time per iteration (scheduling, launch), per layer (kernel gaps),
  per MoE layer (routing, token permutation, the experts' launches) and per running sequence
  (request bookkeeping, sampling), from the serving engine's calibrated profile. An iteration
  that carries prompt tokens runs outside the CUDA graphs captured for decode batches, so its
  kernels are launched one by one: an extra cost per layer. Where mixer and feed-forward are
  separate blocks (Nemotron-H), the per-layer costs and the TP all-reduces count blocks in pairs.
  The engine's host work per running sequence (scheduling, sampling, detokenizing) runs while the
  GPU computes (overlap scheduling): it sets the iteration only where it is the longer of the two,
  a ceiling on a replica's tokens per second that a faster GPU does not lift.

Pipeline parallelism splits the layers into ``pp`` stages: one token passes every stage in turn
(latency), while ``pp`` micro-batches keep the stages busy (throughput; see ``serving``).

Inputs are plain floats or numpy arrays (broadcast together), in internal units (s, bytes,
FLOP/s). Calibrated constants come from catalog entries of kind ``calibrations`` with
``engine: inference`` (see :func:`constants_from_catalog`). The inputs (the model's shape, the
hardware, the layout, the precisions, the bytes a GPU holds) are built in
:mod:`factoryplan.perf.inference_inputs` and re-exported here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from factoryplan.perf.inference_constants import BACKENDS as BACKENDS  # re-exported: callers import them here
from factoryplan.perf.inference_constants import ENGINE_FIELDS as ENGINE_FIELDS
from factoryplan.perf.inference_constants import GLOBAL_FIELDS as GLOBAL_FIELDS
from factoryplan.perf.inference_constants import YAML_NAMES as YAML_NAMES
from factoryplan.perf.inference_constants import Constants as Constants
from factoryplan.perf.inference_constants import constants_from_catalog as constants_from_catalog
from factoryplan.perf.inference_constants import constants_from_values as constants_from_values
from factoryplan.perf.inference_inputs import ACTIVATION_BYTES as ACTIVATION_BYTES
from factoryplan.perf.inference_inputs import ACTIVATION_PRECISIONS as ACTIVATION_PRECISIONS
from factoryplan.perf.inference_inputs import KV_BYTES as KV_BYTES
from factoryplan.perf.inference_inputs import KV_PRECISIONS as KV_PRECISIONS
from factoryplan.perf.inference_inputs import PRECISIONS as PRECISIONS
from factoryplan.perf.inference_inputs import WEIGHT_BYTES as WEIGHT_BYTES
from factoryplan.perf.inference_inputs import Array as Array
from factoryplan.perf.inference_inputs import BoolArray as BoolArray
from factoryplan.perf.inference_inputs import FloatOrArray as FloatOrArray
from factoryplan.perf.inference_inputs import Hardware as Hardware
from factoryplan.perf.inference_inputs import ModelShape as ModelShape
from factoryplan.perf.inference_inputs import Parallel as Parallel
from factoryplan.perf.inference_inputs import Precision as Precision
from factoryplan.perf.inference_inputs import ServedFormats as ServedFormats
from factoryplan.perf.inference_inputs import check_kv_hardware as check_kv_hardware
from factoryplan.perf.inference_inputs import check_precision as check_precision
from factoryplan.perf.inference_inputs import compute_precision as compute_precision
from factoryplan.perf.inference_inputs import engine_activations as engine_activations
from factoryplan.perf.inference_inputs import hardware_of as hardware_of
from factoryplan.perf.inference_inputs import kv_bytes_per_sequence_per_gpu as kv_bytes_per_sequence_per_gpu
from factoryplan.perf.inference_inputs import kv_precision as kv_precision
from factoryplan.perf.inference_inputs import serving_formats as serving_formats
from factoryplan.perf.inference_inputs import serving_precision as serving_precision
from factoryplan.perf.inference_inputs import shape_of as shape_of
from factoryplan.perf.inference_inputs import sparse_on_fp4 as sparse_on_fp4
from factoryplan.perf.inference_inputs import splits_evenly as splits_evenly
from factoryplan.perf.inference_inputs import weight_bytes_per_gpu as weight_bytes_per_gpu

# ---------------------------------------------------------------- small physics functions


def gemm_peak(hw: Hardware, precision: str, k: Constants) -> FloatOrArray:
    """The tensor peak a GEMM of ``precision`` weights runs against: :func:`peak_flops`, scaled
    by ``low_precision_efficiency`` where it runs on FP8/FP4 tensor cores (their doubled rate is
    harder to feed, and activations are quantized on the fly), not where it is weight-only."""
    native = peak_flops(hw, precision)
    low = np.asarray(native) > np.asarray(hw.bf16_flops) * 1.01
    return np.where(low, np.asarray(native) * k.low_precision_efficiency, native)


def peak_flops(hw: Hardware, precision: str) -> FloatOrArray:
    """Dense tensor FLOP/s the GEMMs of weights stored at ``precision`` run at on ``hw``.

    FP8 weights use FP8 tensor cores where the part has them; FP4 weights use FP4 tensor cores
    where present, else they are dequantized in the kernel and multiplied at BF16 (weight-only,
    as Marlin and the Triton MXFP4 MoE kernels do on Hopper); INT4 is always weight-only (BF16).
    """
    if precision == "fp8":
        return np.where(np.asarray(hw.fp8_flops) > 0, hw.fp8_flops, hw.bf16_flops)
    if precision == "fp4":
        return np.where(np.asarray(hw.fp4_flops) > 0, hw.fp4_flops, hw.bf16_flops)
    return hw.bf16_flops


def gemm_time(
    flops: FloatOrArray, weight_bytes: FloatOrArray, tokens: FloatOrArray, peak: FloatOrArray,
    bandwidth: FloatOrArray, k: Constants, compute_scale: float = 1.0, bandwidth_scale: float = 1.0,
) -> FloatOrArray:
    """Time of a GEMM (or a group of GEMMs sharing ``tokens``): a smooth roofline.

    ``t_c = flops / (peak·e_max·s_c·M/(M + m0))``, ``t_m = bytes / (BW·e_bw·s_m)``,
    ``t = (t_c^n + t_m^n)^(1/n)``, with ``s_c``/``s_m`` a kernel's compute and bandwidth
    efficiency relative to a dense GEMM (1 for dense GEMMs). ``M = 0`` (no tokens) costs
    nothing; small ``M`` is memory-bound, large ``M`` compute-bound.
    """
    m = np.maximum(tokens, 1e-9)
    t_c = flops * (m + k.gemm_m_half) / (m * peak * k.gemm_efficiency * compute_scale)
    t_m = weight_bytes / (bandwidth * k.hbm_efficiency * bandwidth_scale)
    t = smooth_roofline(t_c, t_m, k.roofline_sharpness)
    return np.where(np.asarray(tokens) > 0, t, 0.0)


def smooth_roofline(t_c: FloatOrArray, t_m: FloatOrArray, n: float) -> FloatOrArray:
    """``(t_c^n + t_m^n)^(1/n)``: the compute and memory times of one kernel overlapping imperfectly
    (``n -> inf`` is the hard roofline ``max``); ``n = 2``, the catalog's, is a square root of
    squares (times of seconds neither overflow nor underflow there; ``np.hypot``, which guards
    against both, is three times slower over a million configurations)."""
    c, m = np.asarray(t_c, dtype=float), np.asarray(t_m, dtype=float)
    if n == 2.0:
        return np.asarray(np.sqrt(c * c + m * m), dtype=np.float64)
    return np.asarray((c**n + m**n) ** (1.0 / n), dtype=np.float64)


def experts_touched(
    experts: FloatOrArray, active: FloatOrArray, tokens: FloatOrArray, concentration: float = np.inf
) -> FloatOrArray:
    """Expected distinct experts that ``T`` tokens routed to ``k`` of ``E`` experts touch.

    Uniform routing: an expert is missed by one token with probability ``1 - k/E``, so
    ``U = E·(1 - (1 - k/E)^T)``. Routers favour some experts: let an expert's popularity be its
    uniform share times ``x ~ Gamma(a, 1/a)`` (mean 1; ``a`` the concentration, uniform as
    ``a -> inf``). It is missed by ``T`` tokens with probability ``E[(1 - k/E)^(T·x)]
    = (1 + T·λ/a)^(-a)``, ``λ = -ln(1 - k/E)``, so ``U = E·(1 - (1 + T·λ/a)^(-a))``: fewer distinct
    experts for the same tokens (popular experts are hit again). ``T = 0`` gives 0; large ``T``
    gives ``E``.
    """
    e = np.maximum(experts, 1.0)
    t = np.maximum(tokens, 0.0)
    lam = -np.log1p(-np.minimum(active / e, 1.0 - 1e-12))
    if not np.isfinite(concentration):
        return np.asarray(e * -np.expm1(-lam * t), dtype=np.float64)
    return np.asarray(e * (1.0 - (1.0 + t * lam / concentration) ** -concentration), dtype=np.float64)


def expected_max_normal(n: FloatOrArray) -> FloatOrArray:
    """Expected largest of ``n`` standard normal draws, Blom's ``Φ⁻¹((n - 0.375)/(n + 0.25))``
    (Blom 1958; within 0.03 of the exact order statistic, 4% at n = 2 and under 1% from n = 8),
    with ``Φ⁻¹`` by the rational approximation 26.2.23 of Abramowitz and Stegun (error under
    4.5e-4). ``n <= 1`` gives 0. Whole ``n`` up to 1,024 (rank counts) are looked up in a table."""
    nn = np.maximum(np.asarray(n, dtype=float), 1.0)
    if nn.size and nn.max() <= _Z_TABLE_MAX and np.array_equal(nn, np.floor(nn)):
        return np.asarray(_Z_TABLE[nn.astype(np.intp)], dtype=np.float64)
    return _blom(nn)


def _blom(nn: Array) -> Array:
    tail = 1.0 - (nn - 0.375) / (nn + 0.25)  # upper-tail probability, <= 0.5
    t = np.sqrt(-2.0 * np.log(np.clip(tail, 1e-300, 0.5)))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t**3)
    return np.asarray(np.where(nn > 1.0, np.maximum(z, 0.0), 0.0), dtype=np.float64)


_Z_TABLE_MAX = 1024
_Z_TABLE = _blom(np.maximum(np.arange(_Z_TABLE_MAX + 1, dtype=float), 1.0))


def expert_load_factor(
    experts: FloatOrArray, active: FloatOrArray, tokens: FloatOrArray, ranks: FloatOrArray,
    concentration: float = np.inf, balanced: bool | BoolArray = False,
) -> FloatOrArray:
    """The busiest of ``ranks`` expert-parallel GPUs' routed tokens over the mean, ``f >= 1``.

    ``T`` tokens each pick ``k`` of ``E`` experts; a rank holds ``E/r`` of them and receives
    ``μ = T·k/r`` token-expert pairs on average. Its share varies for two reasons: sampling (each
    token lands on a rank's experts hypergeometrically: relative variance ``(E-k)/(E-1)/μ``, third
    cumulant ``(E-k)/(E-1)/μ²``) and the router's favourites (expert popularity ``Gamma(a, 1/a)``, as
    :func:`experts_touched`; a rank's share is the mean of ``E/r`` of them: variance ``1/g``, third
    cumulant ``2/g²``, ``g = a·E/r``), both scaled by ``1 - 1/r`` since the shares sum to one. The
    busiest rank sits at the expected maximum of ``r`` draws, Blom's ``z`` corrected for the load's
    skew ``γ`` (Cornish and Fisher 1938): ``f = 1 + sqrt(v)·(z + (z² - 1)·γ/6)``, capped where every
    token would put all the experts it can on one rank. Checked against random routing (Monte Carlo,
    tests): within 5% from 16 tokens for 2 to 64 ranks. Expert tensor parallelism splits every
    expert evenly and has no such imbalance. ``balanced`` (an expert-parallel load balancer placing
    redundant copies of the popular experts by their observed load, EPLB) removes the popularity
    term, not the sampling one: every rank expects the same share, but a step's tokens still fall
    unevenly. One rank gives 1.
    """
    e = np.maximum(np.asarray(experts, dtype=float), 1.0)
    r = np.maximum(np.asarray(ranks, dtype=float), 1.0)
    k = np.asarray(active, dtype=float)
    inv_mu = r / np.maximum(np.asarray(tokens, dtype=float) * k, 1e-9)
    spread = 1.0 - 1.0 / r
    sample = (e - k) / np.maximum(e - 1.0, 1.0)
    g_inv = r / (concentration * e) if math.isfinite(concentration) else 0.0
    g_inv = np.where(balanced, 0.0, g_inv) if np.any(balanced) else g_inv
    var = spread * (sample * inv_mu + g_inv)
    third = spread * (sample * inv_mu * inv_mu + 2.0 * g_inv * g_inv)
    z = expected_max_normal(r)
    # 1 + sd·(z + (z² - 1)·γ/6) with γ = third / var^1.5; one rank: var = third = 0, f = 1
    f = 1.0 + np.sqrt(var) * z + (z * z - 1.0) * third / (6.0 * np.maximum(var, 1e-30))
    cap = r * np.minimum(k, e / r) / np.maximum(k, 1e-9)
    return np.asarray(np.clip(f, 1.0, cap), dtype=np.float64)


def allreduce_time(
    message_bytes: FloatOrArray, ranks: FloatOrArray, link_bytes_s: FloatOrArray, latency_s: FloatOrArray,
    k: Constants,
) -> FloatOrArray:
    """All-reduce of ``message_bytes`` over ``ranks`` GPUs: ``α + 2(r-1)/r · bytes / (BW·e)``.

    One rank costs nothing (Patarasuk and Yuan 2009: the bandwidth-optimal all-reduce moves
    ``2(r-1)/r`` of the message over each GPU's link).
    """
    r = np.maximum(ranks, 1.0)
    t = latency_s + 2.0 * (r - 1.0) / r * message_bytes / (link_bytes_s * k.link_efficiency)
    return np.where(r > 1.0, t, 0.0)


def expert_alltoall_time(
    token_bytes: FloatOrArray, ranks: FloatOrArray, active: FloatOrArray, hw: Hardware, k: Constants,
    prompts: FloatOrArray = 1.0,
) -> FloatOrArray:
    """One direction of a MoE all-to-all (dispatch to the experts, or combine back) over ``ranks``
    GPUs: each sends ``token_bytes`` (its tokens' hidden states) to the GPUs holding each token's
    ``active`` experts, spread evenly over the ranks.

    A token reaches ``d = r·(1 - (1 - 1/r)^k)`` GPUs. Inside one scale-up domain every copy crosses
    NVLink. A group spanning ``n = r/g`` whole domains of ``g`` GPUs also uses each GPU's own NIC
    (every GPU sends at once, so NICs are not shared), with the DeepEP kernels that expert-parallel
    deployments across nodes configure (SGLang ``--moe-a2a-backend deepep``, vLLM
    ``--all2all-backend deepep_high_throughput`` / ``deepep_low_latency``, TensorRT-LLM's DeepEP
    all-to-all methods):

    * passes that carry prompts (``prompts`` > 0; their normal kernels, throughput first) send a token
      once to each other domain that holds one of its experts, ``(n - 1)·(1 - (1 - 1/n)^k)`` copies
      through the NIC, and the GPU that receives it forwards it over NVLink to the experts' GPUs
      there, so NVLink still carries about ``d`` copies;
    * decode passes (their low-latency kernels) send a copy for each of the token's experts that sits
      in another domain, ``k·(r - g)/r`` copies through the NIC, without forwarding.

    The two paths run in parallel, the slower sets the time, plus the network's latency. A serving
    replica is placed whole, so 64 GPUs of a 72-GPU NVL72 rack stay on NVLink (the training engine's
    :func:`factoryplan.perf.comm.alltoall_time` tiles many groups instead). 0 for one rank.
    """
    r = np.maximum(np.asarray(ranks, dtype=float), 1.0)
    x = np.asarray(token_bytes, dtype=float)
    kk = np.asarray(active, dtype=float)
    g = np.minimum(np.asarray(hw.domain, dtype=float), r)
    n = r / g
    gpus = r * (1.0 - _power(1.0 - 1.0 / r, kk))
    domains = (n - 1.0) * (1.0 - _power(1.0 - 1.0 / n, kk))
    remote = np.where(np.asarray(prompts, dtype=float) > 0.0, domains, kk * (r - g) / r)
    intra = x * gpus / (hw.link_bytes_s * k.link_efficiency)
    inter = x * remote / (hw.nic_bytes_s * k.link_efficiency)
    lat = np.where(r > g, k.network_latency_s, k.allreduce_latency_s)
    return np.where(r > 1.0, lat + np.maximum(intra, inter), 0.0)


def _power(base: Array, exponent: Array) -> Array:
    """``base ** exponent``; a whole exponent up to 64 (active experts) by repeated squaring: the
    same to rounding and four times faster than the general power over a sweep's arrays."""
    if exponent.ndim or not 0.0 <= exponent <= 64.0 or exponent != math.floor(exponent):
        return np.asarray(base**exponent, dtype=np.float64)
    out, square, e = np.ones_like(base), base, int(exponent)
    while e:
        if e & 1:
            out = out * square
        e >>= 1
        if e:
            square = square * square
    return out


def fuses_allreduce(s: ModelShape, k: Constants, hw: Hardware | None = None) -> bool:
    """Whether the engine fuses the TP all-reduces of ``s``'s family with the RMSNorm after them
    (``k.fused_allreduce``: families, or "*", each with the hidden size it is fused above), on a part
    that has the fused kernels (``hw.fused_allreduce``; ``hw`` None: the engine's choice alone)."""
    if hw is not None and not hw.fused_allreduce:
        return False
    return any(family in ("*", s.family) and s.hidden > above for family, above in k.fused_allreduce)


def fused_allreduce_time(
    message_bytes: FloatOrArray, ranks: FloatOrArray, link_bytes_s: FloatOrArray, k: Constants,
    one_shot_bytes: FloatOrArray = np.inf,
) -> FloatOrArray:
    """An all-reduce fused with the residual add and RMSNorm after it (FlashInfer's and TensorRT-LLM's
    kernels). Up to ``one_shot_bytes`` the one-shot form, ``α_f + (r-1) · bytes / (BW·e)``: each rank
    writes its whole message to every other rank and reduces what it receives in one step, so it has
    one synchronisation (the small fixed cost) but moves ``(r-1)`` messages where a ring moves
    ``2(r-1)/r``; above it the two-shot form, a reduce-scatter and an all-gather in one kernel,
    ``2·α_f + 2(r-1)/r · bytes / (BW·e)`` (a ring's traffic, two synchronisations). The one-shot form's
    extra traffic is why engines take it only up to a size (:func:`fused_allreduce_limits`): at vLLM's
    TP 8 limit on Hopper the two paths cost the same in this model (25.8 against 26.0 us for 1 MiB on
    the H200, the catalog's constants), at its TP 4 and TP 2 limits the fused one is 24% and 8% cheaper."""
    r = np.maximum(np.asarray(ranks, dtype=float), 1.0)
    m = np.asarray(message_bytes, dtype=float)
    per_byte = m / (link_bytes_s * k.link_efficiency)
    one = k.fused_allreduce_latency_s + (r - 1.0) * per_byte
    two = 2.0 * k.fused_allreduce_latency_s + 2.0 * (r - 1.0) / r * per_byte
    t = np.where(m <= one_shot_bytes, one, two)
    return np.where(r > 1.0, t, 0.0)


def fused_allreduce_limits(
    tp: FloatOrArray, limits: tuple[tuple[float, float, float], ...]
) -> tuple[Array, Array]:
    """(largest message through the fused kernel, largest through its one-shot form) at ``tp`` ranks on
    a part with ``limits`` (``Hardware.fused_allreduce_limits``: vLLM's per compute capability, taken
    for TensorRT-LLM's fusions too; 0 at TP sizes without an entry). Larger messages take the plain
    all-reduce. A message is a pass's tokens x hidden x 2 bytes: small decode batches' are under them
    (Llama-3.1-70B at TP 8 on Hopper: up to 64 tokens), most prompts' are not."""
    t = np.asarray(tp, dtype=float)
    whole, one_shot = np.zeros_like(t), np.zeros_like(t)
    for size, largest, one_shot_largest in limits:
        whole = np.where(t == size, largest, whole)
        one_shot = np.where(t == size, one_shot_largest, one_shot)
    return whole, one_shot


def _collective_path(hw: Hardware, group: FloatOrArray, k: Constants) -> tuple[FloatOrArray, FloatOrArray]:
    """(bandwidth, latency) for a collective over ``group`` GPUs: NVLink inside the scale-up
    domain, the NICs (and the network latency) once the group spans domains."""
    inside = np.asarray(group) <= np.asarray(hw.domain)
    bw = np.where(inside, hw.link_bytes_s, hw.nic_bytes_s)
    lat = np.where(inside, k.allreduce_latency_s, k.network_latency_s)
    return bw, lat


# ---------------------------------------------------------------- one iteration


@dataclass(frozen=True)
class Step:
    """Seconds of one iteration by component (all on the slowest GPU)."""

    gemm: FloatOrArray
    moe: FloatOrArray
    attention: FloatOrArray
    comm: FloatOrArray
    overhead: FloatOrArray
    cpu: FloatOrArray = 0.0  # the scheduler's work beyond the GPU's, where it is the longer of the two

    @property
    def total(self) -> FloatOrArray:
        """The whole iteration."""
        return self.gemm + self.moe + self.attention + self.comm + self.overhead + self.cpu


def _dense_gemms(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, tokens: FloatOrArray, logits: FloatOrArray,
    k: Constants,
) -> FloatOrArray:
    """Attention projections, dense MLPs, shared experts and the LM head of one stage."""
    tp = np.asarray(par.tp, dtype=float)
    params = (s.layers * s.attn_params + s.dense_layers * s.mlp_params + s.moe_layers * s.shared_params) / tp
    params = params + s.layers * s.indexer_params * (1.0 - 1.0 / tp)  # the indexer is replicated
    wb, peak = WEIGHT_BYTES[prec.weights], gemm_peak(hw, compute_precision(prec.weights, prec.activations), k)
    body = gemm_time(2.0 * tokens * params, params * wb, tokens, peak, hw.hbm_bytes_s, k)
    head_params = s.vocab_params / tp
    head = gemm_time(2.0 * logits * head_params, head_params * 2.0, logits, hw.bf16_flops, hw.hbm_bytes_s, k)
    return body / np.asarray(par.pp, dtype=float) + head  # the LM head runs on the last stage, once per token


def moe_activation_elements(s: ModelShape, moe_tp: FloatOrArray = 1.0) -> FloatOrArray:
    """Activation elements one token-expert pair moves through HBM in a fused MoE layer, besides the
    weights: ``3·h + 6·I/t`` for gated experts (``h`` the hidden size, ``I`` an expert's intermediate
    size, ``t`` the expert tensor parallelism). Counted from vLLM's fused MoE (``fused_experts``):
    the first grouped GEMM gathers the pair's hidden state (``h`` read) and writes gate and up
    (``2·I``), the gated activation reads them and writes ``I``, the second GEMM reads that ``I`` and
    writes ``h``, and the weighted sum reads the ``h`` back; experts without a gate (GELU, ReLU²)
    move ``3·h + 4·I/t``. TensorRT-LLM's CUTLASS MoE permutes the rows first (``h`` more) and fuses
    the activation (``4·I`` fewer). A token fans out to ``k`` experts while an expert is thin, so
    this traffic matters where the weights' does not: a prompt's thousands of pairs."""
    inter = s.expert_ffn * (6.0 if s.gated_mlp else 4.0)
    return 3.0 * s.hidden + inter / np.asarray(moe_tp, dtype=float)


def _experts(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, tokens: FloatOrArray, k: Constants,
    load: FloatOrArray = 1.0,
) -> FloatOrArray:
    """Routed experts of one stage on the busiest expert-parallel rank (``load``, see
    :func:`expert_load_factor`): touched experts' weights read once, grouped GEMM at T·k/U."""
    if s.moe_layers == 0:
        return np.zeros_like(np.asarray(tokens, dtype=float))
    ep, moe_tp = np.asarray(par.ep, dtype=float), np.asarray(par.moe_tp, dtype=float)
    # the busiest expert-parallel rank: ``load`` times the mean rank's token-expert pairs, over the
    # experts that many pairs touch on it (its routing intensity ``load`` times the mean)
    pairs = tokens * s.active * load / ep
    touched = experts_touched(s.experts, s.active, tokens * load, k.routing_concentration) / ep
    per_expert_tokens = pairs / np.maximum(touched, 1e-9)
    params_gpu = touched * s.expert_params / moe_tp
    flops = 2.0 * pairs * s.expert_params / moe_tp
    peak = gemm_peak(hw, compute_precision(prec.experts, prec.activations), k)
    t = gemm_time(
        flops, params_gpu * WEIGHT_BYTES[prec.experts], per_expert_tokens, peak,
        hw.hbm_bytes_s, k, k.moe_efficiency * k.moe_kernel_efficiency, k.moe_kernel_efficiency,
    )
    fixed = k.expert_overhead_s * touched  # the experts (or slices) this GPU runs
    t = t + pairs * moe_activation_elements(s, moe_tp) * ACTIVATION_BYTES / (hw.hbm_bytes_s * k.hbm_efficiency)
    return np.asarray((t + fixed) * s.moe_layers / np.asarray(par.pp, dtype=float), dtype=np.float64)


def attended_pairs(prefix: FloatOrArray, length: FloatOrArray, window: float = math.inf) -> FloatOrArray:
    """(query, key) pairs of ``length`` prompt tokens computed after ``prefix`` cached ones, each
    attending causally to at most ``window`` earlier tokens: ``∫_P^{P+N} min(p, W) dp``,
    ``N·(P + N/2)`` without a window, ``N·W - W²/2`` for a whole prompt longer than the window."""
    p = np.asarray(prefix, dtype=float)
    n = np.asarray(length, dtype=float)
    if not math.isfinite(window):
        return np.asarray(n * (p + n / 2.0), dtype=np.float64)
    a, b = np.minimum(p, window), np.minimum(p + n, window)
    beyond = np.maximum(p + n - np.maximum(p, window), 0.0)
    return np.asarray((b * b - a * a) / 2.0 + (window * beyond if math.isfinite(window) else 0.0), dtype=np.float64)


def _attention(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, decode_seqs: FloatOrArray, ctx: FloatOrArray,
    prompt_len: FloatOrArray, prompts: FloatOrArray, k: Constants, prompt_prefix: FloatOrArray = 0.0,
    decode_tokens: FloatOrArray = 1.0,
) -> FloatOrArray:
    """Decode attention (KV read, roofline with its FLOPs) plus causal prefill attention of the
    ``prompt_len`` new tokens of each prompt over its ``prompt_prefix`` cached ones and themselves
    (:func:`attended_pairs`); linear layers read and write each decoding sequence's state and run the
    chunked delta rule on the new tokens; sparse attention caps the keys of a query at ``k_top`` and
    adds :func:`_indexer`. ``decode_tokens`` tokens of each decoding sequence (speculative decoding
    verifies its drafts together) read the sequence's cache once and each do the attention FLOPs."""
    tp = np.asarray(par.tp, dtype=float)
    heads = s.heads / tp
    kv_gpu = s.kv_elems * KV_BYTES[prec.kv] / np.minimum(tp, s.kv_split)
    lin_split = np.minimum(tp, s.state_split)
    sliding = s.layers - s.full_layers - s.linear_layers
    ctx_win = np.minimum(ctx, s.window) if s.window > 0 else 0.0
    attended = np.minimum(ctx, s.top_k) if s.top_k > 0 else np.asarray(ctx, dtype=float)
    ctx_layers = s.full_layers * attended + sliding * ctx_win
    dec_bytes = decode_seqs * (ctx_layers * kv_gpu + s.linear_layers * 2.0 * s.state_bytes / lin_split)
    lin_flops = s.linear_layers * s.linear_decode_flops / lin_split
    dec_flops = decode_seqs * decode_tokens * (ctx_layers * heads * s.decode_attn_flops + lin_flops)
    attn_peak = hw.bf16_flops * k.attention_efficiency
    t_dec = smooth_roofline(dec_flops / attn_peak, dec_bytes / (hw.hbm_bytes_s * k.kv_efficiency),
                            k.roofline_sharpness)
    length = np.asarray(prompt_len, dtype=float)
    full_flops = attended_pairs(prompt_prefix, length) * s.prefill_attn_flops  # per head, one full layer
    if s.top_k > 0:  # the cheaper of sparse MQA mode over Σ_pos min(pos, k) pairs and masked MHA
        full_flops = np.minimum(full_flops, attended_pairs(prompt_prefix, length, s.top_k) * s.decode_attn_flops)
    win_flops = attended_pairs(prompt_prefix, length, s.window) * s.prefill_attn_flops if s.window > 0 else 0.0
    flops = s.full_layers * full_flops + sliding * win_flops
    linear = length * s.linear_layers * s.linear_prefill_flops / lin_split
    t_pre = prompts * (flops * heads + linear) / attn_peak
    t_idx = _indexer(s, hw, decode_seqs, ctx, length, prompts, k, prompt_prefix, decode_tokens)
    return np.asarray((t_dec + t_pre + t_idx) / np.asarray(par.pp, dtype=float), dtype=np.float64)


def _indexer(
    s: ModelShape, hw: Hardware, decode_seqs: FloatOrArray, ctx: FloatOrArray, length: FloatOrArray,
    prompts: FloatOrArray, k: Constants, prefix: FloatOrArray = 0.0, decode_tokens: FloatOrArray = 1.0,
) -> FloatOrArray:
    """The lightning indexer of sparse attention in all layers; 0 without. It scores every cached
    token, so it keeps the context's full length: a decoding sequence reads ``ctx`` FP8 keys of
    ``key_I`` bytes per layer (at the KV-cache efficiency) and does ``2·H_I·d_I`` FLOPs per key, a
    roofline; a prompt of ``S`` tokens scores ``S²/2`` causal pairs (its new tokens after a cached
    prefix, :func:`attended_pairs`). The FLOPs run on FP8 tensor
    cores (DeepGEMM's FP8 MQA-logits kernels) at the attention efficiency, not split by TP (vLLM and
    SGLang replicate the indexer on every TP rank)."""
    if s.top_k <= 0:
        return 0.0
    peak = gemm_peak(hw, "fp8", k) * k.attention_efficiency
    keys = decode_seqs * s.layers * np.asarray(ctx, dtype=float)
    t_c = keys * decode_tokens * s.index_flops / peak  # each verified token scores the keys, read once
    t_m = keys * s.index_key_bytes / (hw.hbm_bytes_s * k.kv_efficiency)
    t_pre = prompts * s.layers * attended_pairs(prefix, length) * s.index_flops / peak
    return np.asarray(smooth_roofline(t_c, t_m, k.roofline_sharpness) + t_pre, dtype=np.float64)


def _communication(
    s: ModelShape, hw: Hardware, par: Parallel, tokens_rank: FloatOrArray, k: Constants, load: FloatOrArray = 1.0,
    prompts: FloatOrArray = 0.0,
) -> FloatOrArray:
    """Collectives of one stage: TP all-reduces, MoE all-to-all under attention DP, PP sends. Every
    rank sends its own tokens; the busiest expert rank receives ``load`` times the mean, and the
    dispatch and combine wait for it (``prompts`` > 0: the pass carries prompt tokens,
    :func:`expert_alltoall_time`)."""
    tp, dp, pp = (np.asarray(x, dtype=float) for x in (par.tp, par.dp, par.pp))
    msg = tokens_rank * s.hidden * ACTIVATION_BYTES
    bw_tp, lat_tp = _collective_path(hw, tp, k)
    per_layer = 2.0 * allreduce_time(msg, tp, bw_tp, lat_tp, k)
    if fuses_allreduce(s, k, hw):
        whole, one_shot = fused_allreduce_limits(tp, hw.fused_allreduce_limits)
        fused = (tp > 1.0) & (tp <= np.asarray(hw.domain)) & (msg <= whole)
        per_layer = np.where(fused, 2.0 * fused_allreduce_time(msg, tp, bw_tp, k, one_shot), per_layer)
    moe_comm: FloatOrArray = 0.0
    if s.moe_layers:
        # dispatch to the GPUs that hold each token's experts and combine back
        a2a = 2.0 * expert_alltoall_time(msg * load, tp * dp, s.active, hw, k, prompts)
        moe_comm = np.where(dp > 1.0, a2a, 0.0)
    total = ((s.block_layers or s.layers) * per_layer + s.moe_layers * moe_comm) / pp
    bw_pp, lat_pp = _collective_path(hw, tp * dp * pp, k)
    send = np.where(pp > 1.0, lat_pp + msg / (bw_pp * k.link_efficiency), 0.0)
    return total + send


def iteration(
    s: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, *,
    decode_seqs: FloatOrArray, ctx: FloatOrArray, prompts: FloatOrArray = 0.0, prompt_len: FloatOrArray = 0.0,
    prompt_prefix: FloatOrArray = 0.0, decode_tokens: FloatOrArray = 1.0,
) -> Step:
    """One forward pass of one pipeline stage on its busiest GPU.

    ``decode_seqs`` sequences of the replica decode ``decode_tokens`` tokens each (1; with speculative
    decoding the token and its drafts, verified together) at mean context ``ctx``;
    ``prompts`` new requests of ``prompt_len`` tokens are prefilled in the same pass, after
    ``prompt_prefix`` tokens of each that the prefix cache already holds (they cost attention only). Decoding
    sequences spread over the ``dp`` attention ranks; a prompt sits on one rank, so a rank's
    attention GEMMs see at least one whole prompt. All ``dp`` ranks' tokens meet in the experts.
    """
    dp = np.asarray(par.dp, dtype=float)
    n_prompts = np.asarray(prompts, dtype=float)
    prompt_tokens = n_prompts * prompt_len
    rank_prompt = np.maximum(prompt_tokens / dp, np.minimum(prompt_tokens, prompt_len))
    rank_prompts = np.maximum(n_prompts / dp, np.minimum(n_prompts, 1.0))
    rank_seqs = np.asarray(decode_seqs, dtype=float) / dp
    rank_decode = rank_seqs * decode_tokens
    tokens_rank = rank_decode + rank_prompt
    all_tokens = np.asarray(decode_seqs, dtype=float) * decode_tokens + prompt_tokens
    gemm = _dense_gemms(s, hw, par, prec, tokens_rank, rank_decode + rank_prompts, k)
    load: FloatOrArray = 1.0
    if s.moe_layers:
        balanced = np.asarray(par.redundant, dtype=float) > 0.0
        load = expert_load_factor(s.experts, s.active, all_tokens, par.ep, k.routing_concentration, balanced)
    moe = _experts(s, hw, par, prec, all_tokens, k, load)
    attn = _attention(s, hw, par, prec, rank_seqs, ctx, prompt_len, rank_prompts, k, prompt_prefix, decode_tokens)
    prompt = np.asarray(n_prompts > 0, dtype=float)  # the iteration runs outside the decode CUDA graphs
    comm = _communication(s, hw, par, tokens_rank, k, load, prompt)
    layers = (k.layer_overhead_s + k.prefill_layer_overhead_s * prompt) * (s.block_layers or s.layers)
    layers = layers + k.moe_layer_overhead_s * s.moe_layers
    overhead = (
        k.step_overhead_s + layers / np.asarray(par.pp, dtype=float)
        + k.sequence_overhead_s * (rank_seqs + rank_prompts)
    )
    zero = np.zeros_like(np.asarray(gemm, dtype=float))
    # the engine prepares the next iteration while the GPU runs this one (overlap scheduling): its
    # per-sequence host work shows only where it outlasts the GPU's
    host = k.cpu_sequence_s * (rank_seqs + rank_prompts)
    cpu = np.maximum(host - (gemm + moe + attn + comm + overhead), 0.0)
    return Step(gemm=gemm + zero, moe=moe + zero, attention=attn + zero, comm=comm + zero, overhead=overhead + zero,
                cpu=cpu + zero)
