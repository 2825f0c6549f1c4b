"""Training step time, memory and throughput of parallel configurations, vectorized.

:func:`evaluate` takes arrays of configurations (tensor ``tp``, pipeline ``pp`` with ``vpp``
virtual stages, context ``cp``, expert ``ep`` and data ``dp`` parallelism, micro-batch size,
recomputation and ZeRO stage) and returns arrays of step time, memory and throughput; a single
configuration is the same code with arrays of length 1 (:meth:`Configs.one`).

Step time of one configuration (every term a formula in this package):

* Per layer and micro-batch, on one GPU (:mod:`factoryplan.perf.layers`): matrix products at the
  calibrated GEMM efficiency of the precision, reduced for small dimensions and never faster than
  reading the operands from HBM; attention; memory-bound kernels (norms, residuals, rotary,
  activation functions, MoE permutation, FP8 casts) at HBM bandwidth; tensor-parallel
  all-gathers and reduce-scatters (sequence parallelism) inside the scale-up domain; the
  context-parallel ring exchange of K and V behind attention; the expert-parallel all-to-all
  inside and across domains. Full recomputation adds a forward to the backward, selective the
  attention core and the activation functions.
* Pipeline: ``(m + (p-1)/v) * t_micro`` for ``m`` micro-batches under 1F1B with ``v`` virtual
  stages (Narayanan et al. 2021, Sec. 2.2), the slowest (last) stage holding the LM head; stage
  point-to-point sends.
* Data parallelism: gradient reduce-scatter / all-reduce and parameter all-gather over the
  scale-out fabric, partly hidden behind a micro-batch of compute when the framework overlaps
  them; ZeRO-3 gathers weights for every micro-batch.
* Optimizer: Adam's memory traffic over the local shard at HBM bandwidth.

The constants come from catalog entries of kind ``calibrations`` (engine ``training``), fitted
by ``benchmarks/calibrate_training.py`` on published runs as a whole; see :func:`efficiencies`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from factoryplan import units
from factoryplan.catalog.schema import Accelerator, System
from factoryplan.errors import CatalogError
from factoryplan.perf import comm, memory
from factoryplan.perf.flops import ModelShape, model_flops_per_token
from factoryplan.perf.layers import LayerTimes, layer_times

if TYPE_CHECKING:
    from factoryplan.catalog.load import Catalog

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PRECISIONS = ("bf16", "fp8", "fp4")
DEFAULT_BACKEND = "megatron-core"
OPTIMIZER_BYTES_PER_PARAM = 30.0  # Adam: read grad, read/write fp32 master, m, v; write weights; grad norm


@dataclass(frozen=True)
class Hardware:
    """One GPU and the system around it, in internal units (bytes, bytes/s, FLOP/s, W)."""

    accelerator: str
    generation: str
    system: str
    gpus_per_system: int
    bf16_flops: float
    fp8_flops: float | None
    fp4_flops: float | None
    hbm_bytes: float
    hbm_bytes_s: float
    domain_gpus: int
    scaleup_bytes_s: float  # per direction, link rate
    scaleout_bytes_s: float  # per GPU, all its NICs, link rate
    system_power_w: float

    def peak(self, precision: str) -> float:
        """Dense tensor peak at ``precision``, falling back to the next wider unit the part has
        (FP4 -> FP8 -> BF16)."""
        chain = {"fp4": (self.fp4_flops, self.fp8_flops), "fp8": (self.fp8_flops,)}.get(precision, ())
        return next((f for f in chain if f), self.bf16_flops)


def hardware(acc: Accelerator, system: System) -> Hardware:
    """The :class:`Hardware` of an accelerator in a system (links from the system entry)."""
    return Hardware(
        accelerator=acc.id, generation=acc.generation, system=system.id, gpus_per_system=system.gpus,
        bf16_flops=acc.bf16_dense_flops, fp8_flops=acc.fp8_dense_flops, fp4_flops=acc.fp4_dense_flops,
        hbm_bytes=acc.hbm_bytes, hbm_bytes_s=acc.hbm_bytes_s, domain_gpus=system.scaleup_domain_gpus,
        scaleup_bytes_s=acc.scaleup_bidir_bytes_s / 2.0,
        scaleout_bytes_s=system.nics_per_gpu * system.nic_bit_s / 8.0,
        system_power_w=system.power_w,
    )


@dataclass(frozen=True)
class Efficiencies:
    """The engine's constants for one accelerator, precision and framework (dimensionless unless
    the name carries a unit). Which are fitted is stated in the catalog entries that set them."""

    gemm_efficiency: float  # achieved / peak for large matrix products at the precision
    gemm_half_dim: float  # dimension at which tile/wave quantisation halves GEMM efficiency
    attention_efficiency: float  # fused attention, of the 16-bit peak
    memory_bound_efficiency: float  # achieved / peak HBM bandwidth of elementwise kernels
    overlap_efficiency: float  # share of communication that can run behind independent compute
    comm_overlap: float  # 1: the framework overlaps DP/TP/PP communication; 0: it does not
    fused_attention: float  # 1: fused (flash) attention; 0: unfused, scores through HBM
    nic_aggregation: float  # 1: data-parallel rings use every NIC of a domain; 0: one NIC per rank
    scaleup_link_efficiency: float
    scaleout_link_efficiency: float
    scaleup_latency_s: float
    scaleout_latency_s: float
    memory_reserve: float  # share of HBM lost to allocator fragmentation and caching
    memory_reserve_bytes: float  # CUDA context, communication buffers

    def links(self, hw: Hardware) -> comm.Links:
        """The effective links of ``hw`` under these efficiencies."""
        return comm.Links(
            domain_gpus=hw.domain_gpus,
            scaleup_bytes_s=hw.scaleup_bytes_s * self.scaleup_link_efficiency,
            scaleout_bytes_s=hw.scaleout_bytes_s * self.scaleout_link_efficiency,
            scaleup_latency_s=self.scaleup_latency_s,
            scaleout_latency_s=self.scaleout_latency_s,
            nic_aggregation=self.nic_aggregation >= 0.5,
        )


def calibration_field(key: str, value: float) -> tuple[str, float]:
    """A calibration value's field name and value in internal units: the data file names each
    value with a unit suffix (``gemm_efficiency_fraction``, ``scaleup_latency_us``); dimensionless
    ones lose the suffix, others take the internal unit's (``scaleup_latency_s``)."""
    parts = units.split_suffix(key)
    if parts is None:
        return key, value
    stem, suffix = parts
    unit = units.unit(suffix)
    if unit.si in ("fraction", "ratio", "count"):
        return stem, value * unit.factor
    return units.si_field(key), value * unit.factor


def efficiencies(
    catalog: Catalog, acc: Accelerator, precision: str, backend: str = DEFAULT_BACKEND
) -> Efficiencies:
    """Merge the training calibrations that apply to ``acc`` (by id, generation or ``*``),
    ``precision`` and ``backend``: general entries first, more specific ones override."""
    names = {f.name for f in fields(Efficiencies)}
    ranked = []
    for entry in catalog.calibrations.values():
        if entry.engine != "training":
            continue
        if entry.precision not in (None, precision) or entry.backend not in (None, backend):
            continue
        scope = 2 if acc.id in entry.applies_to else 1 if acc.generation in entry.applies_to else 0
        if scope == 0 and "*" not in entry.applies_to:
            continue
        ranked.append((scope, entry.precision is not None, entry.backend is not None, entry.id, entry.values))
    values: dict[str, float] = {}
    for *_, vals in sorted(ranked):
        for key, raw in vals.items():
            name, value = calibration_field(key, raw)
            if name in names:
                values[name] = value
    missing = sorted(names - set(values))
    if missing:
        raise CatalogError(
            f"no training calibration gives {', '.join(missing)} for {acc.id} at {precision} ({backend})",
            field="calibrations", allowed="entries of kind calibrations with engine: training",
        )
    return Efficiencies(**values)


@dataclass(frozen=True)
class Job:
    """What is trained: sequence length, global batch (sequences), GPUs and precision."""

    seq_len: int
    global_batch: int
    gpus: int
    precision: str


@dataclass(frozen=True)
class Configs:
    """Parallel configurations as equal-length integer arrays. ``recompute``: 0 none, 1 selective,
    2 full. ``zero``: ZeRO stage 0-3 (1 is Megatron's distributed optimizer, 3 is FSDP)."""

    tp: IntArray
    pp: IntArray
    vpp: IntArray
    cp: IntArray
    ep: IntArray
    dp: IntArray
    mb: IntArray
    recompute: IntArray
    zero: IntArray

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @classmethod
    def one(cls, **degrees: int) -> Configs:
        """A single configuration (arrays of length 1)."""
        return cls(**{f.name: np.array([degrees[f.name]], dtype=np.int64) for f in fields(cls)})

    def take(self, index: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> Configs:
        """The configurations at ``index`` (integer positions or a mask)."""
        return Configs(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def row(self, i: int) -> dict[str, int | str]:
        """Configuration ``i`` as a plain dict (``micro_batch``; recompute by name)."""
        out: dict[str, int | str] = {f.name: int(getattr(self, f.name)[i]) for f in fields(self)}
        out["recompute"] = memory.RECOMPUTE[int(self.recompute[i])]
        out["micro_batch"] = out.pop("mb")
        return out


@dataclass(frozen=True)
class Evaluation:
    """Arrays over configurations: time (s), memory (bytes), throughput."""

    configs: Configs
    step_time_s: Array
    tokens_per_s: Array
    tokens_per_s_per_gpu: Array
    model_tflops_per_gpu: Array
    mfu: Array
    memory: dict[str, Array]  # weights, gradients, optimizer, activations, total
    memory_available: float
    fits: npt.NDArray[np.bool_]
    time: dict[str, Array]  # breakdown of the step time


def stage_layers(layers: int, pp: IntArray, vpp: IntArray) -> tuple[Array, Array]:
    """(layers of a middle pipeline stage, layers of the last stage). When ``pp*vpp`` divides
    ``L``, every stage holds ``L/pp``. Otherwise Megatron can count the embedding and the loss as
    one layer each (when ``pp*vpp`` divides ``L+2``): middle stages hold ``(L+2)/pp`` layers and the
    first and last ``(L+2)/pp - 1`` beside the embedding and the LM head. Failing both, uneven
    stages (Megatron's first/last-stage layer counts): middle stages ``ceil(L/(pp*vpp))*vpp``, the
    last what remains."""
    pv = pp * vpp
    even = (layers % pv) == 0
    plus2 = (layers + 2) % pv == 0
    uneven = np.ceil(layers / pv) * vpp
    middle = np.where(even, layers / pp, np.where(plus2, (layers + 2) / pp, uneven))
    rest = np.maximum(1.0, layers - (pp - 1) * uneven)
    last = np.where(even, middle, np.where(plus2, middle - 1.0, rest))
    return np.asarray(middle, dtype=np.float64), np.asarray(last, dtype=np.float64)


def local_params(shape: ModelShape, cfg: Configs) -> tuple[Array, Array]:
    """(non-expert, routed-expert) parameters of the most loaded GPU before ZeRO sharding: a middle
    stage's layers, or the last stage's layers with the LM head (and, without pipeline parallelism
    and untied, the embedding), split by ``tp``; experts split by ``ep``."""
    head = shape.lm_head_params + shape.embedding_params
    per_layer = (shape.non_expert_params - head) / shape.layers
    middle, last = stage_layers(shape.layers, cfg.pp, cfg.vpp)
    head_copies = np.where((cfg.pp == 1) & (not shape.tied_embeddings), 2.0, 1.0)
    dense = np.maximum(per_layer * middle, per_layer * last + head_copies * shape.lm_head_params) / cfg.tp
    moe_share = shape.moe_layers / shape.layers
    experts = middle * moe_share * shape.experts * shape.expert_params / cfg.ep
    return np.asarray(dense, dtype=np.float64), np.asarray(experts, dtype=np.float64)


def evaluate(shape: ModelShape, hw: Hardware, eff: Efficiencies, job: Job, cfg: Configs) -> Evaluation:
    """Step time, memory and throughput of every configuration in ``cfg`` (see the module docstring)."""
    links = eff.links(hw)
    lt = layer_times(shape, hw, eff, links, job, cfg)
    n_micro = job.global_batch / (cfg.dp * cfg.mb)
    pipe, micro = _pipeline(shape, eff, links, job, cfg, lt, n_micro)
    dense_p, expert_p = local_params(shape, cfg)
    dp_s = _data_parallel(eff, links, cfg, dense_p, expert_p, micro, n_micro)
    sharded = np.where(cfg.zero >= 1, 1.0, 0.0)
    dense_shard = 1.0 + sharded * (cfg.dp * cfg.cp - 1.0)
    expert_shard = 1.0 + sharded * (cfg.tp * cfg.cp * cfg.dp / cfg.ep - 1.0)
    opt_params = dense_p / dense_shard + expert_p / expert_shard
    opt_s = OPTIMIZER_BYTES_PER_PARAM * opt_params / (hw.hbm_bytes_s * eff.memory_bound_efficiency)
    step = pipe["total"] + dp_s + opt_s
    tps = float(job.global_batch * job.seq_len) / step
    per_gpu = tps / job.gpus
    tflops = per_gpu * float(model_flops_per_token(shape, float(job.seq_len))) / 1e12
    mem = _memory(shape, eff, job, cfg, dense_p, expert_p, n_micro)
    available = memory.usable_bytes(hw.hbm_bytes, eff.memory_reserve, eff.memory_reserve_bytes)
    time = {**{k: v for k, v in pipe.items() if k != "total"}, "data_parallel": dp_s, "optimizer": opt_s}
    return Evaluation(
        configs=cfg, step_time_s=step, tokens_per_s=tps, tokens_per_s_per_gpu=per_gpu,
        model_tflops_per_gpu=tflops, mfu=tflops * 1e12 / hw.peak(job.precision), memory=mem,
        memory_available=available, fits=mem["total"] <= available, time=time,
    )


def _pipeline(
    shape: ModelShape, eff: Efficiencies, links: comm.Links, job: Job, cfg: Configs, lt: LayerTimes,
    n_micro: Array,
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Pipeline time of one step and the forward/backward time of one micro-batch on the slowest
    stage (a middle stage or the last, which also runs the LM head)."""
    middle, last = stage_layers(shape.layers, cfg.pp, cfg.vpp)
    moe = shape.moe_layers / shape.layers
    layer_fwd = (1.0 - moe) * lt.dense_fwd + moe * lt.moe_fwd
    layer_bwd = (1.0 - moe) * lt.dense_bwd + moe * lt.moe_bwd
    last_slower = last * (layer_fwd + layer_bwd) + lt.head_fwd + lt.head_bwd >= middle * (layer_fwd + layer_bwd)
    ls = np.where(last_slower, last, middle)
    head = np.where(last_slower, 1.0, 0.0)
    fwd = ls * layer_fwd + head * lt.head_fwd
    bwd = ls * layer_bwd + head * lt.head_bwd
    tokens = cfg.mb * job.seq_len / cfg.cp
    p2p_bytes = 2.0 * tokens * shape.hidden / cfg.tp
    crosses = cfg.tp * cfg.cp * cfg.dp * cfg.pp > links.domain_gpus
    sends = np.where(cfg.pp > 1, 2.0 * cfg.vpp, 0.0) * comm.p2p_time(p2p_bytes, crosses, links)
    p2p = comm.exposed(sends, fwd + bwd, eff.overlap_efficiency * eff.comm_overlap)
    micro = fwd + bwd + p2p
    bubble = (cfg.pp - 1.0) / cfg.vpp * micro
    parts = {name: n_micro * ls * part for name, part in lt.parts.items()}
    parts["lm_head"] = n_micro * head * (lt.head_fwd + lt.head_bwd)
    parts["pipeline_p2p"] = n_micro * p2p
    parts["pipeline_bubble"] = bubble
    parts["total"] = n_micro * micro + bubble
    return parts, {"fwd": fwd, "bwd": bwd}


def _data_parallel(
    eff: Efficiencies, links: comm.Links, cfg: Configs, dense_p: Array, expert_p: Array,
    micro: dict[str, Array], n_micro: Array,
) -> Array:
    """Exposed data-parallel communication per step (16-bit gradients and weights)."""
    dp_n = cfg.dp * cfg.cp
    ep_dp_n = cfg.tp * cfg.cp * cfg.dp / cfg.ep
    # a reduce-scatter of the gradients and an all-gather of the weights move the same bytes
    ring = comm.ring_time(2.0 * dense_p, dp_n, cfg.tp, links) + comm.ring_time(2.0 * expert_p, ep_dp_n, cfg.ep, links)
    ovl = eff.overlap_efficiency * eff.comm_overlap
    fwd, bwd = micro["fwd"], micro["bwd"]
    # ZeRO 0: all-reduce (reduce-scatter + all-gather of the gradients) once per step
    z0 = comm.exposed(2.0 * ring, bwd, ovl)
    # ZeRO 1 (distributed optimizer): reduce-scatter gradients, all-gather the updated weights
    z1 = comm.exposed(ring, bwd, ovl) + comm.exposed(ring, fwd, ovl)
    # ZeRO 2: gradients reduce-scattered after every micro-batch
    z2 = n_micro * comm.exposed(ring, bwd, ovl) + comm.exposed(ring, fwd, ovl)
    # ZeRO 3: weights gathered for the forward, the recomputation and the backward of every
    # micro-batch; prefetching overlaps them in every framework
    regather = np.where(cfg.recompute == 2, 2.0, 1.0)
    z3 = n_micro * (
        comm.exposed(ring, fwd, eff.overlap_efficiency)
        + comm.exposed((regather + 1.0) * ring, bwd, eff.overlap_efficiency)
    )
    return np.asarray(np.select([cfg.zero == 0, cfg.zero == 1, cfg.zero == 2], [z0, z1, z2], z3), dtype=np.float64)


def _memory(
    shape: ModelShape, eff: Efficiencies, job: Job, cfg: Configs, dense_p: Array, expert_p: Array, n_micro: Array,
) -> dict[str, Array]:
    """Bytes per GPU by kind (the larger of the first and the last pipeline stage for activations)."""
    fp8 = job.precision in ("fp8", "fp4")
    dense = memory.model_state_bytes(dense_p, cfg.dp * cfg.cp, cfg.zero, fp8)
    experts = memory.model_state_bytes(expert_p, cfg.tp * cfg.cp * cfg.dp / cfg.ep, cfg.zero, fp8)
    tokens = cfg.mb * job.seq_len / cfg.cp
    scores = 0.0 if eff.fused_attention >= 0.5 else float(job.seq_len)
    moe = shape.moe_layers / shape.layers

    def layer(recompute: IntArray, is_moe: bool) -> Array:
        return memory.layer_activation_bytes(shape, tokens, cfg.tp, recompute, is_moe, fp8, scores)

    per_layer = (1.0 - moe) * layer(cfg.recompute, False) + (moe * layer(cfg.recompute, True) if moe else 0.0)
    working = layer(np.zeros_like(cfg.recompute), shape.is_moe)
    ls, _ = stage_layers(shape.layers, cfg.pp, cfg.vpp)
    first = ls * per_layer * memory.inflight_microbatches(cfg.pp, cfg.vpp, n_micro)
    logits = memory.logits_bytes(tokens, shape.vocab, cfg.tp)
    act = np.where(cfg.pp > 1, np.maximum(first, ls * per_layer + logits), first + logits)
    act = act + np.where(cfg.recompute == 2, working, 0.0)
    out = {
        "weights": dense.weights + experts.weights,
        "gradients": dense.gradients + experts.gradients,
        "optimizer": dense.optimizer + experts.optimizer,
        "activations": act,
    }
    out["total"] = out["weights"] + out["gradients"] + out["optimizer"] + act
    return out


__all__ = [
    "DEFAULT_BACKEND",
    "PRECISIONS",
    "Configs",
    "Efficiencies",
    "Evaluation",
    "Hardware",
    "Job",
    "calibration_field",
    "efficiencies",
    "evaluate",
    "hardware",
    "local_params",
    "stage_layers",
]
