"""What `factoryplan serve` computes: a point estimate or a capacity plan, as a flat dict of figures.

Kept apart from the command so that the command module stays light at CLI start-up; this module
loads numpy and the engine (the capacity planner only when a plan is asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import params_active, params_total
from factoryplan.catalog.schema import Accelerator, ModelArch, System
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.perf.inference import (
    Constants,
    FloatOrArray,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    compute_precision,
    constants_from_catalog,
    expert_load_factor,
    fuses_allreduce,
    hardware_of,
    peak_flops,
    serving_formats,
    shape_of,
    splits_evenly,
)
from factoryplan.perf.inference_constants import ENGINE_LIMITS, ErrorBand, error_band, serving_engine
from factoryplan.perf.serving import (
    DisaggregatedLoop,
    Memory,
    Serving,
    closed_loop_disaggregated,
    first_wave_share,
    memory,
    memory_gib,
    serve,
    tokens_per_step,
    with_requests_per_user,
)
from factoryplan.units import GIB

PERCENTILES_BASIS = ("requests arriving as a Poisson process at the planned peak rate: the wait behind other "
                     "prompts of an M/D/1 queue (aggregated) or of a batching prefill replica (disaggregated)")


@dataclass(frozen=True)
class Setup:
    """Model, hardware, engine constants and precisions of one serving question."""

    arch: ModelArch
    shape: ModelShape
    acc: Accelerator
    system: System
    hw: Hardware
    backend: str
    k: Constants
    prec: Precision
    band: ErrorBand | None = None
    precision_basis: str = "as given"

    @classmethod
    def build(
        cls, cat: Catalog, arch: ModelArch, acc: Accelerator, system: System, backend: str | None,
        weights: str | None, experts: str | None, kv: str | None, activations: str = "",
    ) -> Setup:
        """The engine constants for ``arch`` on the part; the engine defaults to the first that runs on
        the part (:func:`serving_engine`), the weights to the model's release or FP8
        (:func:`serving_precision`), the KV precision to the engine's, the activation precision to the
        weights' own."""
        backend = serving_engine(cat, acc, backend, field="--backend")
        k = constants_from_catalog(cat, backend)
        prec, basis = serving_formats(arch, acc, k, weights, experts, activations, kv,
                                      fields=("--moe-precision", "--kv-precision"))
        return cls(arch=arch, shape=shape_of(arch), acc=acc, system=system, hw=hardware_of(acc, system),
                   backend=backend, k=k, prec=prec, band=error_band(cat, backend, acc.id), precision_basis=basis)

    def compute_precision(self) -> str:
        """What the GEMMs multiply in: the wider of weights and activations where the part has those
        tensor cores, else BF16 (weight-only); the routed experts' too where theirs differs."""
        dense, experts = self._compute(self.prec.weights), self._compute(self.prec.experts)
        return dense if experts == dense or self.shape.moe_layers == 0 else f"{dense}; experts {experts}"

    def _compute(self, weights: str) -> str:
        fmt = compute_precision(weights, self.prec.activations)
        native = {"bf16": self.acc.bf16_dense_flops, "fp8": self.acc.fp8_dense_flops, "fp4": self.acc.fp4_dense_flops}
        return fmt if native.get(fmt) else f"bf16 (weight-only {weights})"

    def names(self) -> dict[str, str]:
        """The JSON keys naming what serves: model, GPU, system, engine."""
        return {"model": self.arch.id, "gpu": self.acc.id, "system": self.system.id, "backend": self.backend}

    def ranges(
        self, ttft_ms: float, tpot_ms: float, throughput: float, throughput_key: str = "output_tokens_per_s",
        steady: bool = False,
    ) -> dict[str, Any]:
        """The JSON keys of the band around the figures in which 8 in 10 of the engine's calibration
        measurements fell (:class:`ErrorBand`), ``throughput`` under ``throughput_key``; none when the
        catalog gives no band. ``steady``: the figures describe a running service, the measurements
        benchmark runs whose users started together (their TTFT spread is mostly the first wave's)."""
        if self.band is None:
            return {}
        b = self.band
        note = " (those measurements started their users together)" if steady else ""
        return {"ttft_ms_range": [ttft_ms * b.ttft[0], ttft_ms * b.ttft[1]],
                "tpot_ms_range": [tpot_ms * b.tpot[0], tpot_ms * b.tpot[1]],
                f"{throughput_key}_range": [throughput * b.throughput[0], throughput * b.throughput[1]],
                "range_basis": f"8 in 10 measurements of the {b.basis} fell in these ranges around the "
                               f"prediction{note}{b.caveat(self.acc.id)}"}

    def gpus_range(self, gpus_band: tuple[int | None, int | None] | None) -> dict[str, Any]:
        """The JSON keys of a plan's GPUs at the two edges of the engine's error band
        (:func:`~factoryplan.perf.capacity.band_gpus`; None at an edge where no layout meets the
        targets); none without a band."""
        if self.band is None or gpus_band is None:
            return {}
        lo, hi = gpus_band
        return {"gpus_range": [lo, hi], "gpus_range_basis": self.band.gpus_basis(self.acc.id, reachable=hi is not None)}

    def queue_note(self, concurrency: int, max_concurrency: int, kv_concurrency: float) -> str:
        """What happens to the users whose sequences the replica cannot run, and what would run more: where
        the KV cache holds more than the engine's batch limit lets run, a higher ``--max-batch``, more
        attention-DP ranks or replicas; else more GPUs a replica, a narrower KV cache where the part has one
        (FP8, or FP4 on parts with FP4 units), or more replicas."""
        waiting = (f"the other {concurrency - max_concurrency:,} wait in the engine's queue (ttft_ms includes "
                   "the wait)")
        if kv_concurrency > max_concurrency:
            held = "all of them" if kv_concurrency >= concurrency else f"{int(kv_concurrency):,}"
            return (f"the engine runs at most {max_concurrency:,} of the {concurrency:,} users' sequences at once "
                    f"({ENGINE_LIMITS[self.backend][1]} {self.k.max_batch:,.0f} a replica or attention-DP rank): "
                    f"{waiting}; the KV cache holds {held}: a higher --max-batch, more attention-DP ranks or "
                    "more replicas serve them all")
        fp4 = ", an FP4 KV cache" if self.acc.fp4_dense_flops else ""
        narrower = {"bf16": ", an FP8 KV cache", "fp8": fp4}.get(self.prec.kv, "")
        return (f"the KV cache holds {max_concurrency:,} of the {concurrency:,} users' sequences: {waiting}; more "
                f"GPUs a replica (--tp, --attention-dp){narrower} or more replicas serve them all")

    def systems(self, gpus: int) -> int:
        """The systems ``gpus`` GPUs take (whole systems, as a capacity plan counts them)."""
        return -(-gpus // self.system.gpus)

    def limits(self) -> dict[str, int | bool]:
        """The JSON keys of the engine's scheduling assumed: prompt tokens an iteration carries, sequences
        a replica (or attention-DP rank) runs at once, whether prompt chunks ride in decode iterations
        (the engine's defaults unless given), and whether the engine fuses the model's TP all-reduces
        with the RMSNorm after them (its model code: the profile's fused_allreduce; on parts with the
        fused kernels)."""
        return {"token_budget": int(self.k.token_budget), "max_batch": int(self.k.max_batch),
                "mixed_chunk": bool(self.k.mixes_prefill),
                "fused_allreduce": fuses_allreduce(self.shape, self.k, self.hw)}

    def with_limits(self, token_budget: int | None, max_batch: int | None, mixed_chunk: bool = False) -> Setup:
        """This setup with the engine's token budget and batch limit as given (None: the engine's), and
        prompt chunks mixed into decode iterations where ``mixed_chunk`` asks (SGLang's
        --enable-mixed-chunk; TensorRT-LLM and vLLM always mix)."""
        k = replace(self.k, token_budget=float(token_budget) if token_budget else self.k.token_budget,
                    max_batch=float(max_batch) if max_batch else self.k.max_batch,
                    mixes_prefill=self.k.mixes_prefill or mixed_chunk)
        return replace(self, k=k)

    def with_first_wave(self, requests_per_user: int | None) -> Setup:
        """This setup for a benchmark run in which each user sends ``requests_per_user`` requests: the
        first of each queues as the first wave, one request in that many (None: the calibrated share)."""
        return replace(self, k=with_requests_per_user(self.k, requests_per_user))

    def precisions(self) -> dict[str, str]:
        """The JSON keys of the number formats: weights, experts, KV cache, activations, the GEMMs'."""
        return {"precision": self.prec.weights, "moe_precision": self.prec.experts, "kv_precision": self.prec.kv,
                "activation_precision": self.prec.activation_format(), "compute_precision": self.compute_precision(),
                "precision_basis": self.precision_basis}


@dataclass(frozen=True)
class Layout:
    """The layout the user gave (``tp`` None: the planner chooses)."""

    tp: int | None
    pp: int = 1
    ep: int = 1
    dp: int = 1
    side: str = ""  # "prefill-" for a disaggregated deployment's prefill workers (the options' prefix)
    redundant: int = 0  # expert slots beyond the model's experts (an EP load balancer's copies)

    def gpus(self) -> int:
        """GPUs of one replica."""
        return (self.tp or 1) * self.dp * self.pp

    def parallel(self, shape: ModelShape) -> Parallel:
        """The engine's :class:`Parallel`; experts use ``ep`` ways of expert and the rest of tensor
        parallelism over the ``tp·dp`` GPUs of a stage."""
        tp = self.tp or 1
        group = tp * self.dp
        self.check_splits(shape)
        if shape.moe_layers == 0:
            for what, name, value, none in (("expert parallelism needs", "ep", self.ep, 1),
                                            ("redundant expert slots need", "redundant-experts", self.redundant, 0)):
                if value != none:
                    raise FactoryplanError(f"{what} a MoE model", field=f"--{self.side}{name}", value=value,
                                           allowed=f"{none} for {shape.name}")
            return Parallel(tp=tp, dp=self.dp, pp=self.pp)
        if group % self.ep:
            raise FactoryplanError(f"--{self.side}ep must divide --{self.side}tp x --{self.side}attention-dp",
                                   field=f"--{self.side}ep", value=self.ep,
                                   allowed=f"a divisor of {group}")
        return Parallel(tp=tp, dp=self.dp, moe_tp=group // self.ep, ep=self.ep, pp=self.pp,
                        redundant=self.redundant)


    def check_splits(self, shape: ModelShape) -> None:
        """Refuse a layout the serving engines cannot run (:func:`splits_evenly`), naming the
        field and the values that would split the model evenly."""
        tp = self.tp or 1
        if not splits_evenly(shape, tp):
            ok = [n for n in range(1, int(shape.heads) + 1) if splits_evenly(shape, n)]
            kv = "" if shape.mla else f" ({shape.kv_split:.0f} key/value)"
            raise FactoryplanError(
                f"{shape.name}'s {shape.heads:.0f} attention heads{kv} do not split evenly over the "
                "tensor-parallel GPUs", field=f"--{self.side}tp", value=tp,
                allowed=", ".join(map(str, ok)))
        if shape.moe_layers and self.redundant and self.ep == 1:
            raise FactoryplanError("redundant expert slots spread over expert-parallel ranks",
                                   field=f"--{self.side}redundant-experts", value=self.redundant,
                                   allowed=f"0 (give --{self.side}ep > 1)")
        if shape.moe_layers and not splits_evenly(shape, tp, self.ep, redundant=self.redundant):
            experts = int(shape.experts)
            # the fewest copies that make the expert slots a multiple of the ranks (engines need as
            # many slots on every rank)
            fill = -experts % self.ep
            if not self.redundant:
                ok = [n for n in range(1, experts + 1) if experts % n == 0]
                raise FactoryplanError(
                    f"{shape.name}'s {experts} routed experts do not split evenly", field=f"--{self.side}ep",
                    value=self.ep, allowed=f"{', '.join(map(str, ok))}; or --{self.side}redundant-experts {fill} "
                    f"with --{self.side}ep {self.ep} ({experts + fill} expert slots, {(experts + fill) // self.ep} "
                    "a rank)")
            fills = [fill + i * self.ep for i in range(3)] if fill else [i * self.ep for i in range(1, 4)]
            raise FactoryplanError(
                f"{shape.name}'s {experts} routed experts and {self.redundant} redundant slots do not split "
                f"evenly over the expert-parallel ranks", field=f"--{self.side}redundant-experts",
                value=self.redundant, allowed=f"{', '.join(map(str, fills))}, ... ({experts} + it a multiple of "
                f"--{self.side}ep {self.ep})")
        if not splits_evenly(shape, tp, 1, self.pp):
            raise FactoryplanError(f"{shape.name} has {shape.layers} layers", field=f"--{self.side}pp", value=self.pp,
                                   allowed=f"1 to {shape.layers}")


def _check_fits(setup: Setup, mem: Memory, layout: Layout, isl: float, osl: float) -> None:
    """Refuse a layout whose GPUs cannot hold the weights and one sequence of ``isl`` + ``osl`` tokens,
    naming what the model needs."""
    if bool(np.asarray(mem.fits)) and float(np.asarray(mem.kv_room_bytes)) > 0:
        return
    per_gpu = float(np.asarray(mem.weights_bytes)) / 1e9
    raise InfeasibleError(
        f"{setup.arch.id} at {setup.prec.label()} does not fit {layout.gpus()} x {setup.acc.id} "
        f"({per_gpu:,.1f} GB of weights per GPU, {setup.acc.hbm_bytes / 1e9:,.0f} GB HBM): "
        f"{_needs(setup, layout, isl, osl)}",
        field=f"--{layout.side}tp",
    )


def _needs(setup: Setup, layout: Layout, isl: float, osl: float) -> str:
    """What the model needs for one sequence of ``isl`` + ``osl`` tokens: the fewest GPUs that hold it
    with every weight split over them; where ``layout`` already has that many, the split that fits and
    what the layout keeps on each GPU instead."""
    from factoryplan.perf.capacity import min_gpus_to_fit

    need = min_gpus_to_fit(setup.shape, setup.hw, setup.prec, setup.k, isl, osl)
    text = f"needs >= {need} x {setup.acc.id} at {setup.prec.label()}"
    if need > layout.gpus():
        return text
    tp = min(need, int(np.asarray(setup.hw.domain)))
    split = f"--{layout.side}tp {tp}" + (f" --{layout.side}ep {tp}" if setup.shape.moe_layers else "")
    if need > tp:
        split += f" --{layout.side}pp {need // tp}"
    kept = (f"keeps the attention and dense weights whole on each of its {layout.dp} attention-DP ranks"
            if layout.dp > 1 else
            "splits the experts over fewer GPUs" if setup.shape.moe_layers and layout.ep < (layout.tp or 1)
            else f"adds {layout.redundant} redundant expert slots" if layout.redundant
            else "keeps more of the weights on each GPU")
    return f"{text} with every weight split over them ({split}); this layout {kept}"


def _request(isl: int, osl: int, cached: int, spec: tuple[int, float], isl_cv: float = 0.0) -> dict[str, Any]:
    """The JSON keys of a request: its lengths (and the prompts' lengths' coefficient of variation),
    the prompt tokens the prefix cache holds, and speculative decoding's draft tokens, their
    acceptance and the tokens an iteration yields."""
    return {"isl": isl, "isl_cv": isl_cv, "osl": osl, "cached_prompt_tokens": cached, "draft_tokens": spec[0],
            "acceptance": spec[1], "tokens_per_step": float(np.asarray(tokens_per_step(spec[0], spec[1])))}


def _start(
    together: bool, ttft_steady_s: FloatOrArray, tpot_steady_s: FloatOrArray, first_wave_share: float
) -> dict[str, Any]:
    """The JSON keys of how the users started; started together, also the share of the run's requests
    that queued as the first wave and the steady state's figures."""
    if not together:
        return {"start": "steady"}
    return {"start": "together", "first_wave_share": first_wave_share,
            "ttft_ms_steady": float(np.asarray(ttft_steady_s)) * 1e3,
            "tpot_ms_steady": float(np.asarray(tpot_steady_s)) * 1e3}


def point(
    setup: Setup, layout: Layout, concurrency: int, isl: int, osl: int, cached: int = 0,
    spec: tuple[int, float] = (0, 0.0), together: bool = True, isl_cv: float = 0.0,
) -> dict[str, Any]:
    """Serving figures of one replica at ``concurrency`` users (JSON-ready); ``cached`` prompt tokens
    held by the prefix cache; ``spec``: (draft tokens, acceptance) of speculative decoding;
    ``together``: the users start at once, as in a benchmark run (else the steady state); ``isl_cv``:
    the prompts' lengths' coefficient of variation."""
    par = layout.parallel(setup.shape)

    def run(burst: bool) -> Serving:
        return serve(setup.shape, setup.hw, par, setup.prec, setup.k, concurrency=concurrency, isl=isl, osl=osl,
                     prefix=cached, draft_tokens=spec[0], acceptance=spec[1], burst=burst, isl_cv=isl_cv)

    r = run(together)
    steady = run(False) if together else r
    _check_fits(setup, r.mem, layout, float(isl), float(osl))
    max_conc = float(np.asarray(r.mem.max_concurrency))
    gpus = layout.gpus()
    out_tps = float(np.asarray(r.output_tokens_per_s))
    power_w = gpus * setup.system.power_w / setup.system.gpus
    out = {
        **setup.names(), "gpus": gpus, "tp": layout.tp, "pp": layout.pp, "ep": layout.ep, "attention_dp": layout.dp,
        "redundant_experts": layout.redundant,
        **setup.precisions(), **setup.limits(), **_request(isl, osl, cached, spec, isl_cv), "concurrency": concurrency,
        "ttft_ms": float(np.asarray(r.ttft_s)) * 1e3, "tpot_ms": float(np.asarray(r.tpot_s)) * 1e3,
        **_start(together, steady.ttft_s, steady.tpot_s, first_wave_share(setup.k)),
        "output_tokens_per_s": out_tps, "output_tokens_per_s_per_gpu": out_tps / gpus,
        "tokens_per_s_per_user": float(np.asarray(r.tokens_per_s_per_user)),
        "requests_per_s": float(np.asarray(r.requests_per_s)),
        "memory_per_gpu_gib": float(np.asarray(memory_gib(r.memory_per_gpu_bytes))),
        "weights_per_gpu_gib": float(np.asarray(r.mem.weights_bytes)) / GIB,
        "kv_cache_per_gpu_gib": float(np.asarray(r.mem.kv_room_bytes)) / GIB,
        "max_concurrency": int(max_conc), "fits": concurrency <= max_conc,
        "running": int(np.asarray(r.running)), "decode_step_ms": float(np.asarray(r.decode_step_s)) * 1e3,
        "prefill_ms": float(np.asarray(r.prefill_s)) * 1e3, "systems": setup.systems(gpus), "power_kw": power_w / 1e3,
        "output_tokens_per_s_per_mw": out_tps / (power_w / 1e6),
        "params_total": params_total(setup.arch), "params_active": params_active(setup.arch),
        "peak_tflops": float(np.asarray(peak_flops(
            setup.hw, compute_precision(setup.prec.weights, setup.prec.activations)))) / 1e12,
    }
    balance = float(np.asarray(steady.balance_s))
    if balance > 0:  # the engine holds prompts until every attention-DP rank has one (steady state)
        out["attention_dp_balance_wait_ms"] = balance * 1e3
    out |= _expert_load(setup, layout, float(np.asarray(steady.running)), spec[0])
    out |= setup.ranges(out["ttft_ms"], out["tpot_ms"], out_tps, steady=not together)
    notes = ([setup.queue_note(concurrency, int(max_conc), float(np.asarray(r.mem.kv_concurrency)))]
             if concurrency > max_conc else [])
    if together and not setup.k.mixes_prefill:
        notes.append(f"{setup.backend} prefills apart from decoding, ahead of it: users started together stay "
                     "in step, every wave prefilled whole, then decoded together (ttft_ms and tpot_ms are that "
                     "lockstep's; --start steady for users spread out)")
    notes += _host_note(setup, layout, steady)
    notes += _span_note(setup, layout)
    if notes:
        out["note"] = "; ".join(notes)
    return out


def _span_note(setup: Setup, layout: Layout, workers: str = "the replica") -> list[str]:
    """A note where ``layout`` spans NVLink domains: which of its collectives leave through the GPUs'
    NICs (as :mod:`factoryplan.perf.inference` times them), something no calibration point measures."""
    domain = setup.system.scaleup_domain_gpus
    group = (layout.tp or 1) * layout.dp
    crossing = [what for what, crosses in (
        ("tensor-parallel all-reduces", (layout.tp or 1) > domain),
        ("expert all-to-all", bool(setup.shape.moe_layers) and layout.dp > 1 and group > domain),
        ("pipeline sends", layout.pp > 1 and group * layout.pp > domain),
    ) if crosses]
    if not crossing:
        return []
    nic_gbit = setup.system.nic_bit_s * setup.system.nics_per_gpu / 1e9
    return [f"{workers} spans {setup.systems(layout.gpus())} {setup.system.id} systems ({domain} GPUs share NVLink): "
            f"its {' and '.join(crossing)} {'crosses' if crossing == ['expert all-to-all'] else 'cross'} each GPU's "
            f"{nic_gbit:.0f} Gb/s network link, which no calibration point measures"]


def _host_note(setup: Setup, layout: Layout, steady: Serving) -> list[str]:
    """A note where the engine's host work for the steady state's running sequences (one scheduler
    per attention-DP rank) sets its decode step (``decode_step_s``, a speculative step's drafts
    included), outlasting the GPU's passes; none otherwise."""
    stages = layout.pp
    host = setup.k.cpu_sequence_s * float(np.asarray(steady.running)) / (stages * layout.dp)
    if host < float(np.asarray(steady.decode_step_s)) / stages * (1.0 - 1e-9):
        return []
    host_us = setup.k.cpu_sequence_s * 1e6
    return [f"the {setup.backend} scheduler's host work ({host_us:.0f} us per running sequence) outlasts the GPU's "
            "decode step: a faster GPU would not shorten it, fewer sequences per replica (or per attention-DP "
            "rank) would"]


def _expert_load(setup: Setup, layout: Layout, sequences: float, draft_tokens: int) -> dict[str, Any]:
    """Under expert parallelism, the busiest rank's routed tokens over the mean in a decode step of
    ``sequences`` over the pipeline stages, each verifying its token and drafts (as
    :func:`~factoryplan.perf.inference.iteration` routes them, :func:`expert_load_factor`); nothing
    otherwise."""
    s = setup.shape
    if not s.moe_layers or layout.ep <= 1:
        return {}
    tokens = sequences / layout.pp * (1.0 + draft_tokens)
    load = expert_load_factor(s.experts, s.active, tokens, layout.ep, setup.k.routing_concentration,
                              layout.redundant > 0)
    return {"expert_load_busiest_rank": float(np.asarray(load))}


def disaggregated_point(
    setup: Setup, decode: Layout, prefill: Layout, prefill_workers: int, decode_workers: int, concurrency: int,
    isl: int, osl: int, cached: int = 0, spec: tuple[int, float] = (0, 0.0), together: bool = True,
) -> dict[str, Any]:
    """Serving figures of a given disaggregated deployment: ``prefill_workers`` replicas of the
    ``prefill`` layout and ``decode_workers`` of the ``decode`` one serving ``concurrency`` closed-loop
    users (:func:`~factoryplan.perf.serving.closed_loop_disaggregated`), JSON-ready; ``together`` as
    in :func:`point`."""
    dec, pre = decode.parallel(setup.shape), prefill.parallel(setup.shape)

    def run(burst: bool) -> DisaggregatedLoop:
        return closed_loop_disaggregated(
            setup.shape, setup.hw, pre, dec, setup.prec, setup.k, concurrency=float(concurrency), isl=float(isl),
            osl=float(osl), prefill_workers=float(prefill_workers), decode_workers=float(decode_workers),
            prefix=float(cached), draft_tokens=float(spec[0]), acceptance=spec[1], burst=burst)

    r = run(together)
    steady = run(False) if together else r
    mem_p = memory(setup.shape, setup.hw, pre, setup.prec, setup.k, float(isl), 1.0)
    _check_fits(setup, mem_p, prefill, float(isl), 1.0)
    mem_d = memory(setup.shape, setup.hw, dec, setup.prec, setup.k, float(isl), float(osl))
    _check_fits(setup, mem_d, decode, float(isl), float(osl))
    batch = float(np.asarray(r.decode_batch))
    kv_used = batch / (decode.dp * decode.pp) * float(np.asarray(mem_d.kv_per_sequence_bytes))
    p_gpus, d_gpus = prefill.gpus() * prefill_workers, decode.gpus() * decode_workers
    gpus = p_gpus + d_gpus
    out_tps = float(np.asarray(r.output_tokens_per_s))
    power_w = gpus * setup.system.power_w / setup.system.gpus
    out = {
        **setup.names(), "mode": "disaggregated", "gpus": gpus, "prefill_gpus": p_gpus, "decode_gpus": d_gpus,
        "prefill_workers": prefill_workers, "decode_workers": decode_workers,
        "prefill_tp": prefill.tp, "prefill_ep": prefill.ep, "prefill_attention_dp": prefill.dp,
        "tp": decode.tp, "pp": decode.pp, "ep": decode.ep, "attention_dp": decode.dp,
        "redundant_experts": decode.redundant,
        **setup.precisions(), **setup.limits(), **_request(isl, osl, cached, spec), "concurrency": concurrency,
        "ttft_ms": float(np.asarray(r.ttft_s)) * 1e3, "tpot_ms": float(np.asarray(r.tpot_s)) * 1e3,
        **_start(together, steady.ttft_s, steady.tpot_s, setup.k.burst_share),
        "output_tokens_per_s": out_tps, "output_tokens_per_s_per_gpu": out_tps / gpus,
        "tokens_per_s_per_user": 1.0 / float(np.asarray(r.tpot_s)),
        "decode_batch": batch, "prefill_utilization": float(np.asarray(r.prefill_utilization)),
        "memory_per_gpu_gib": (float(np.asarray(mem_d.weights_bytes)) + kv_used + setup.k.reserved_bytes) / GIB,
        "weights_per_gpu_gib": float(np.asarray(mem_d.weights_bytes)) / GIB,
        "max_concurrency": int(float(np.asarray(mem_d.max_concurrency)) * decode_workers),
        "fits": bool(np.asarray(r.fits)), "systems": setup.systems(gpus), "power_kw": power_w / 1e3,
        "output_tokens_per_s_per_mw": out_tps / (power_w / 1e6),
        **_expert_load(setup, decode, float(np.asarray(steady.decode_batch)), spec[0]),
    }
    out |= setup.ranges(out["ttft_ms"], out["tpot_ms"], out_tps, steady=not together)
    notes = [setup.queue_note(concurrency, out["max_concurrency"], float(np.asarray(mem_d.kv_concurrency))
                              * decode_workers)] if not out["fits"] else []
    notes += _span_note(setup, prefill, "a prefill worker") + _span_note(setup, decode, "a decode worker")
    if notes:
        out["note"] = "; ".join(notes)
    return out


@dataclass(frozen=True)
class Target:
    """A capacity plan's latency targets (seconds); ``ttft_percentile``: the share of requests (per
    cent) the TTFT target holds for, None for their mean."""

    ttft_s: float
    tpot_s: float
    ttft_percentile: float | None = None


def compare_hardware(
    refs: list[str], build: Callable[[str], Setup], layout: Layout, peak_rps: float, isl: int, osl: int,
    target: Target, mode: str, cached: int = 0, spec: tuple[int, float] = (0, 0.0), isl_cv: float = 0.0,
) -> dict[str, Any]:
    """The capacity plan on each GPU type (``build`` makes each one's :class:`Setup`); the one with the
    fewest GPUs (then the least power) is returned, with every type's outcome in ``hardware_options``
    (a type that cannot meet the targets, hold the model or run the engine says why)."""
    plans: list[tuple[str, dict[str, Any] | None, str, tuple[str, str, str]]] = []
    for ref in refs:
        try:
            setup = build(ref)
        except FactoryplanError as exc:  # e.g. the engine named does not run on this vendor's parts
            plans.append((ref, None, exc.render(), (ref, "", "")))
            continue
        ids = (setup.acc.id, setup.system.id, setup.backend)
        try:
            plans.append((ref, capacity(setup, layout, peak_rps, isl, osl, target, mode, cached, spec, isl_cv), "",
                          ids))
        except FactoryplanError as exc:
            plans.append((ref, None, exc.render(), ids))
    feasible = [(d["gpus"], d["power_kw"], i) for i, (_, d, _, _) in enumerate(plans) if d is not None]
    if not feasible:
        reasons = "; ".join(f"{ref}: {reason}" for ref, _, reason, _ in plans)
        raise InfeasibleError(f"no GPU type compared meets the targets: {reasons}", field="--gpu")
    best = min(feasible)[2]
    options = []
    for i, (ref, d, reason, (acc_id, system_id, backend)) in enumerate(plans):
        row: dict[str, Any] = {"gpu": acc_id or ref, "system": system_id, "backend": backend,
                               "feasible": d is not None, "chosen": i == best, "reason": reason}
        if d is not None:
            keys = ["gpus", "systems", "replicas", "mode", "config", "ttft_ms", "tpot_ms", "power_kw",
                    "output_tokens_per_s_per_gpu", "output_tokens_per_s_per_mw"]
            if target.ttft_percentile is not None:
                keys.insert(6, f"ttft_p{target.ttft_percentile:g}_ms")
            row.update({key: d[key] for key in keys})
        options.append(row)
    chosen = plans[best][1]
    assert chosen is not None  # best indexes a feasible plan
    return {**chosen, "hardware_options": options}


def capacity(
    setup: Setup, layout: Layout, peak_rps: float, isl: int, osl: int, target: Target, mode: str,
    cached: int = 0, spec: tuple[int, float] = (0, 0.0), isl_cv: float = 0.0,
) -> dict[str, Any]:
    """The fewest-GPU plan meeting the targets at ``peak_rps`` (JSON-ready), with its frontier;
    ``cached`` prompt tokens held by the prefix cache; ``isl_cv`` the prompts' lengths' coefficient
    of variation."""
    from factoryplan.perf.capacity import Demand, layouts, plan_demand, ttft_percentile_fields

    s, hw = setup.shape, setup.hw
    lay = layouts(s, int(setup.system.scaleup_domain_gpus))
    if layout.tp is not None:
        layout.check_splits(s)
        mask = (lay.tp == layout.tp) & (lay.dp == layout.dp) & (lay.pp == layout.pp)
        if s.moe_layers and layout.ep > 1:
            mask &= lay.ep == layout.ep
        lay = lay.select(mask)
        if len(lay) == 0:
            raise FactoryplanError("no such layout on this system", field="--tp", value=layout.tp,
                                   allowed=f"powers of two up to the {setup.system.scaleup_domain_gpus}-GPU domain")
    modes = ("aggregated", "disaggregated") if mode == "auto" else (mode,)
    d = Demand(requests_per_s=peak_rps, isl=isl, osl=osl, ttft_s=target.ttft_s, tpot_s=target.tpot_s,
               prefix=float(cached), draft_tokens=float(spec[0]), acceptance=spec[1],
               ttft_percentile=target.ttft_percentile, isl_cv=isl_cv)
    planned = plan_demand(s, hw, setup.prec, setup.k, d, lay=lay, modes=modes, band=setup.band)
    plan = planned.plan
    return {
        **setup.names(), **setup.precisions(), **setup.limits(), "peak_requests_per_s": peak_rps,
        **_request(isl, osl, cached, spec, isl_cv),
        "ttft_target_ms": target.ttft_s * 1e3, "ttft_target_percentile": target.ttft_percentile,
        "tpot_target_ms": target.tpot_s * 1e3,
        "mode": plan.mode, "config": plan.config, "gpus": plan.gpus, "systems": plan.systems,
        "replicas": plan.replicas, "gpus_per_replica": plan.gpus_per_replica,
        "concurrency_per_replica": plan.concurrency_per_replica, "ttft_ms": plan.ttft_s * 1e3,
        **ttft_percentile_fields(plan), "ttft_percentiles_basis": PERCENTILES_BASIS,
        "tpot_ms": plan.tpot_s * 1e3, "tokens_per_s_per_user": plan.tokens_per_s_per_user,
        "output_tokens_per_s_per_gpu": plan.output_tokens_per_s_per_gpu, "power_kw": plan.power_w / 1e3,
        "output_tokens_per_s_per_mw": plan.output_tokens_per_s_per_mw, "prefill_gpus": plan.prefill_gpus,
        "decode_gpus": plan.decode_gpus,
        "prefill_to_decode_gpus": plan.prefill_gpus / plan.decode_gpus if plan.decode_gpus else 0.0,
        **setup.ranges(plan.ttft_s * 1e3, plan.tpot_s * 1e3, plan.output_tokens_per_s_per_gpu,
                       "output_tokens_per_s_per_gpu", steady=True),
        **setup.gpus_range(planned.gpus_band), "alternatives": plan.alternatives, "frontier": planned.frontier,
        "frontier_disaggregated": planned.frontier_disaggregated,
    }
