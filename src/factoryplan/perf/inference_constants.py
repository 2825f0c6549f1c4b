"""The calibrated constants of the inference engine and how they are read from the catalog.

One ``calibrations`` entry with ``engine: inference`` and no backend holds the physics shared by
every GPU, model and serving engine; one entry per serving engine holds its profile
(``catalog/data/calibrations.inference.yaml``, fitted by ``benchmarks/calibrate_inference.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from factoryplan.errors import FactoryplanError, InfeasibleError

if TYPE_CHECKING:
    from factoryplan.catalog.load import Catalog
    from factoryplan.catalog.schema import Accelerator, Calibration

BACKENDS = ("trtllm", "vllm", "sglang")
# each engine's own names for ``token_budget`` and ``max_batch`` (its server options)
ENGINE_LIMITS = {"trtllm": ("max_num_tokens", "max_batch_size"), "vllm": ("max_num_batched_tokens", "max_num_seqs"),
                 "sglang": ("chunked_prefill_size", "max_running_requests")}


@dataclass(frozen=True)
class Constants:
    """Calibrated constants: global physics efficiencies plus one serving engine's profile."""

    gemm_efficiency: float  # achieved share of peak tensor FLOP/s of a large dense GEMM
    gemm_m_half: float  # tokens per pass at which a GEMM reaches half its large-M efficiency
    moe_efficiency: float  # grouped-GEMM compute efficiency relative to a dense GEMM
    hbm_efficiency: float  # achieved share of peak HBM bandwidth streaming weights
    kv_efficiency: float  # achieved share of peak HBM bandwidth reading the paged KV cache
    attention_efficiency: float  # achieved share of BF16 peak in prefill attention
    roofline_sharpness: float  # n in (t_c^n + t_m^n)^(1/n); large n is the hard max
    link_efficiency: float  # achieved share of the scale-up link bandwidth in collectives
    allreduce_latency_s: float  # fixed cost of one all-reduce inside the scale-up domain
    fused_allreduce_latency_s: float  # the same, fused with the RMSNorm after it (engines that fuse them)
    network_latency_s: float  # fixed cost of one collective across the scale-out network
    low_precision_efficiency: float  # FP8/FP4 tensor-core GEMMs relative to BF16 ones (efficiency ratio)
    routing_concentration: float  # Dirichlet concentration of expert popularity (inf: uniform routing)
    expert_overhead_s: float  # per expert (or slice of one) a GPU runs in an MoE layer and iteration
    first_token_steps: float  # decode iterations from a prompt's arrival to its first token, besides its own
    prefill_queue_factor: float  # engine: scale of the M/D/1 wait behind other prompts (from its scheduling)
    pool_queue_factor: float  # scale of the batched M/D/1 wait at a disaggregated prefill worker (closed loop)
    burst_share: float  # benchmark harness: share of a burst-started run's requests that queue as the first wave
    step_overhead_s: float  # engine: per iteration (scheduler, launch)
    layer_overhead_s: float  # engine: per layer and iteration (kernel gaps, small kernels)
    sequence_overhead_s: float  # engine: per running sequence and iteration (bookkeeping, sampling)
    cpu_sequence_s: float  # engine: host work per running sequence and iteration, overlapped with the GPU's
    moe_layer_overhead_s: float  # engine: per MoE layer and iteration (routing, permutation, expert launches)
    prefill_layer_overhead_s: float  # engine: per layer of an iteration carrying prompt tokens (no CUDA graph)
    request_overhead_s: float  # engine: per request, arrival to first token (HTTP, tokenizer, scheduling)
    moe_kernel_efficiency: float  # engine: its MoE kernels relative to the global grouped-GEMM efficiency
    token_budget: float  # engine: prompt tokens per iteration (chunked prefill)
    memory_fraction: float  # engine: share of HBM (or of the memory left after weights) it may use
    reserved_bytes: float  # engine: activations, CUDA graphs and workspace per GPU
    max_batch: float  # engine: most sequences one replica (or attention-DP rank) runs at once
    kv_reserve: float  # engine: share of the output length reserved in the KV cache at admission
    adp_timeout_iterations: float  # engine: attention-DP balancing, iterations a prompt waits at most (0: ranks alone)
    mixes_prefill: bool  # engine: prompt chunks share iterations with decodes (else they pause them)
    fraction_of_free: bool  # engine: the memory fraction applies to what the weights leave free
    kv_fp8_default: bool  # engine: FP8 KV cache by default when weights are FP8 or narrower
    fp4_experts_mxfp8: bool  # engine: weight-only FP4 (MXFP4) experts times MXFP8 activations on FP4 parts
    # engine: the model families (Hugging Face model_type, "*" for all) whose TP all-reduces it fuses with
    # the residual add and RMSNorm after them, each with the hidden size it fuses above (0: any)
    fused_allreduce: tuple[tuple[str, float], ...] = ()


GLOBAL_FIELDS = (
    "gemm_efficiency", "gemm_m_half", "moe_efficiency", "hbm_efficiency", "kv_efficiency",
    "attention_efficiency", "roofline_sharpness", "link_efficiency", "allreduce_latency_s",
    "fused_allreduce_latency_s", "network_latency_s", "low_precision_efficiency", "routing_concentration",
    "expert_overhead_s", "first_token_steps", "burst_share", "pool_queue_factor",
)
ENGINE_FIELDS = (
    "step_overhead_s", "layer_overhead_s", "sequence_overhead_s", "cpu_sequence_s", "moe_layer_overhead_s",
    "prefill_layer_overhead_s",
    "request_overhead_s", "moe_kernel_efficiency", "prefill_queue_factor", "token_budget", "memory_fraction",
    "reserved_bytes", "max_batch", "kv_reserve", "adp_timeout_iterations", "mixes_prefill", "fraction_of_free",
    "kv_fp8_default", "fp4_experts_mxfp8",
)


# How each constant is named in calibrations.inference.yaml: with its unit (catalog convention).
YAML_NAMES: dict[str, str] = {
    "gemm_efficiency": "gemm_efficiency_fraction", "gemm_m_half": "gemm_m_half_tokens",
    "moe_efficiency": "moe_efficiency_ratio", "hbm_efficiency": "hbm_efficiency_fraction",
    "kv_efficiency": "kv_efficiency_fraction", "attention_efficiency": "attention_efficiency_fraction",
    "roofline_sharpness": "roofline_sharpness_ratio", "link_efficiency": "link_efficiency_fraction",
    "first_token_steps": "first_token_steps_count", "low_precision_efficiency": "low_precision_efficiency_ratio",
    "routing_concentration": "routing_concentration_ratio", "prefill_queue_factor": "prefill_queue_factor_ratio",
    "pool_queue_factor": "pool_queue_factor_ratio",
    "moe_kernel_efficiency": "moe_kernel_efficiency_ratio", "burst_share": "burst_share_fraction",
    "token_budget": "token_budget_tokens", "max_batch": "max_batch_count", "kv_reserve": "kv_reserve_fraction",
    "adp_timeout_iterations": "adp_timeout_iterations_count",
}


def constants_from_values(global_values: dict[str, float], engine_values: dict[str, float]) -> Constants:
    """Build :class:`Constants` from two value mappings (global physics, one engine's profile),
    keyed by the catalog's names (``gemm_efficiency_fraction``) or the field names."""
    engine_names = {*ENGINE_FIELDS, *(YAML_NAMES.get(f, f) for f in ENGINE_FIELDS)}
    misplaced = sorted(k for k in global_values if k in engine_names)
    if misplaced:
        raise FactoryplanError("an engine's constant in the global inference entry", field="values",
                               value=", ".join(misplaced), allowed="these in each inference-engine-* entry")
    merged = {**global_values, **engine_values}
    args: dict[str, float | bool] = {}
    missing = []
    for f in GLOBAL_FIELDS + ENGINE_FIELDS:
        key = YAML_NAMES.get(f, f)
        if key in merged or f in merged:
            args[f] = float(merged[key] if key in merged else merged[f])
        else:
            missing.append(key)
    if missing:
        raise FactoryplanError("inference calibration lacks values", field="values", value=", ".join(missing))
    for flag in ("mixes_prefill", "kv_fp8_default", "fraction_of_free", "fp4_experts_mxfp8"):
        args[flag] = bool(args[flag])
    return Constants(**args)  # type: ignore[arg-type]


def constants_from_catalog(catalog: Catalog, backend: str) -> Constants:
    """The inference constants for ``backend`` from the catalog's ``calibrations`` entries.

    One entry with ``engine: inference`` and no ``backend`` holds the global physics constants;
    one entry per backend holds that engine's profile.
    """
    glob = [c for c in catalog.calibrations.values() if c.engine == "inference" and c.backend is None]
    eng = _engine_entry(catalog, backend)
    if not glob:
        raise FactoryplanError("the catalog has no inference physics calibration", field="calibrations")
    fused = tuple((family, float(above or 0)) for family, _, above in (f.partition(">") for f in eng.fused_allreduce))
    return replace(constants_from_values(glob[0].values, eng.values), fused_allreduce=fused)


@dataclass(frozen=True)
class ErrorBand:
    """How far measurements fell from an engine's predictions on its calibration points: measured /
    predicted at the 10th and 90th percentile (8 in 10 measurements between the two), for TTFT,
    TPOT and output throughput."""

    ttft: tuple[float, float]
    tpot: tuple[float, float]
    throughput: tuple[float, float]
    basis: str  # the points the percentiles are taken over
    gpus: tuple[str, ...] = ()  # accelerator ids those points were measured on (empty: not stated)
    unseen: bool = False  # each point predicted by a fit without its GPU's points (the band for other parts)

    def caveat(self, accelerator: str) -> str:
        """What a user of the band on ``accelerator`` must know: "" when the band's points include it
        (or do not say where they were measured), else that it carries over the engine's errors from
        the parts that were measured: as a fit erred on each of them without its points (``unseen``),
        or as it errs there."""
        if not self.gpus or accelerator in self.gpus:
            return ""
        where = " and ".join(self.gpus)
        if self.unseen:
            return f"; measured on {where} only: on {accelerator} the band is that of a GPU the fit has not seen"
        return f"; measured on {where} only: on {accelerator} the band assumes the engine errs as it does there"

    def gpus_basis(self, accelerator: str, reachable: bool = True) -> str:
        """How a plan's GPUs at the band's two edges are found (the plan redone with TPOT and
        throughput at the band's ratios, TTFT as predicted), for a plan on ``accelerator``;
        ``reachable`` False: no layout meets the targets at the slow edge."""
        unreachable = "" if reachable else "; at the slow edge no layout meets the targets"
        return (f"the GPUs the plan needs if TPOT runs x{self.tpot[0]:.2f} to x{self.tpot[1]:.2f} and throughput "
                f"x{self.throughput[1]:.2f} to x{self.throughput[0]:.2f} of the prediction, the band 8 in 10 "
                f"measurements of the {self.basis} fell in; TTFT as predicted{unreachable}{self.caveat(accelerator)}")


def error_band(catalog: Catalog, backend: str, accelerator: str | None = None) -> ErrorBand | None:
    """The :class:`ErrorBand` of ``backend``'s calibration entry for a plan on ``accelerator``: the
    in-sample band (``*_measured_p10/p90_ratio``) on a part among the entry's ``measured_on`` (or with
    no part named), else the band of each measured GPU's points predicted by a fit without them
    (``*_unseen_p10/p90_ratio``, leave one GPU out) where the entry gives it; None when the entry gives
    no in-sample band (an overlay that refits the constants without one)."""
    entry = _engine_entry(catalog, backend)
    figures = ("ttft", "tpot", "throughput")

    def given(kind: str) -> bool:
        return all(f"{f}_{kind}_p{pct}_ratio" in entry.values for f in figures for pct in (10, 90))

    if not given("measured"):  # the two are written together: without the first, the second is stale too
        return None
    other = accelerator is not None and bool(entry.measured_on) and accelerator not in entry.measured_on
    kind = "unseen" if other and given("unseen") else "measured"
    lo_hi = {f: (float(entry.values[f"{f}_{kind}_p10_ratio"]), float(entry.values[f"{f}_{kind}_p90_ratio"]))
             for f in figures}
    unseen = kind == "unseen"
    count = int(entry.values.get("unseen_band_points_count" if unseen else "band_points_count", 0))
    points = f"{count:,} " if count else ""
    how = " (each predicted by a fit without the points of its GPU)" if unseen else ""
    return ErrorBand(ttft=lo_hi["ttft"], tpot=lo_hi["tpot"], throughput=lo_hi["throughput"],
                     basis=f"{points}{backend} calibration points{how}", gpus=tuple(entry.measured_on), unseen=unseen)


def _engine_entry(catalog: Catalog, backend: str) -> Calibration:
    if backend not in BACKENDS:
        raise FactoryplanError("unknown serving backend", field="backend", value=backend, allowed=", ".join(BACKENDS))
    eng = [c for c in catalog.calibrations.values() if c.engine == "inference" and c.backend == backend]
    if not eng:
        raise FactoryplanError(f"the catalog has no inference calibration for {backend!r}", field="calibrations")
    return eng[0]


def engines_for(catalog: Catalog, acc: Accelerator) -> list[str]:
    """The serving engines that run on ``acc`` (its vendor in the engine profile's ``runs_on``),
    in the order of :data:`BACKENDS`."""
    out = []
    for backend in BACKENDS:
        try:
            vendors = _engine_entry(catalog, backend).runs_on
        except FactoryplanError:
            continue
        if not vendors or acc.vendor.lower() in (v.lower() for v in vendors):
            out.append(backend)
    return out


def serving_engine(catalog: Catalog, acc: Accelerator, backend: str | None, field: str = "backend") -> str:
    """The engine to size ``acc`` with: ``backend`` when it runs there, else refused naming ``field``
    and the engines that do; none given, the first that runs there (TensorRT-LLM on NVIDIA parts,
    vLLM on the others)."""
    engines = engines_for(catalog, acc)
    if backend is None:
        if not engines:
            raise InfeasibleError(f"no serving engine profile runs on {acc.vendor} {acc.id}", field=field)
        return engines[0]
    _engine_entry(catalog, backend)  # unknown engine or missing profile: its own message
    if backend not in engines:
        raise InfeasibleError(f"{backend} does not run on {acc.vendor} {acc.id}", field=field, value=backend,
                              allowed=", ".join(engines) or "none")
    return backend
