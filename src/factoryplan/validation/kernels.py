"""The inference engine's kernel physics against microbenchmarks measured on one GPU.

``benchmarks/device/gpu_microbench.py`` times, on the GPU it runs on, what the serving model is built
from: dense GEMMs of LLM layer shapes over token counts (BF16, FP8), HBM reads, prefill and decode
attention, MoE grouped GEMMs, and a whole decode step and prefill of a Llama-3.1-8B-shaped model
(CUDA graphs, no serving engine). This module predicts each timed kernel with the engine's own
formulas (:func:`~factoryplan.perf.inference.gemm_time`, the attention roofline,
:func:`~factoryplan.perf.inference.iteration` with the engine overheads set to zero) and the
catalog's constants, so a file measured on a new GPU shows at once whether the physics holds there,
and :func:`implied_constants` reads off the constants the measurements themselves give (the
catalog's ``kernels-*`` entries, ``basis: measured``).

Prediction rules (the same for every file):

* GEMM ``m x k · k x n``: ``2mkn`` FLOPs against the tensor peak of its precision (FP8 derated by
  ``low_precision_efficiency``), ``kn`` weights of 2 bytes (BF16) or 1 (FP8) streamed from HBM.
* attention: prefill ``4·b·h·s²·d/2`` causal FLOPs at ``attention_efficiency`` of the BF16 peak;
  decode ``2·b·h_kv·ctx·d`` KV elements of 2 bytes at ``kv_efficiency`` of the HBM bandwidth,
  rooflined with its ``4·b·h·ctx·d`` FLOPs; a prompt chunk after a prefix of its prompt
  (``prefix_causal``) ``4·h·d`` FLOPs per attended pair (:func:`~factoryplan.perf.inference.attended_pairs`;
  every key, for the variant without a mask) at ``attention_efficiency``.
* grouped GEMM (every expert given the same tokens, or only some experts a few tokens each, as in
  decode): the up (gate and up) and down projections of the experts given tokens as one GEMM group,
  their weights streamed at the dense rate, their FLOPs at ``moe_efficiency`` of a dense GEMM's
  compute rate, plus the fixed time per expert a GPU runs (``expert_overhead_s``).
* decode step and prefill: one iteration of the catalog model the file names (``llama-3.1-8b``), one
  GPU, BF16 weights and KV (FP8 weights for ``decode_step_fp8``), with no engine overhead: the
  difference is what the step's other kernels (norms, activations, residuals, attention launches)
  cost, reported per layer. ``prefill_fp8``: the prefill with FP8 matrix products; ``mixed_step``: a
  prompt chunk (after ``prefix`` tokens of its prompt) and ``batch`` decoding sequences in one pass.
* decode step of one GPU's slice under tensor parallelism (``decode_tp``): the iteration of the model
  the record names at its ``tp``, less the all-reduces (one GPU runs no collective), and the same
  iteration's matrix products alone.
* MoE decode step (``decode_moe``): the iteration of the model the record names, routing uniform (the
  benchmark's router has random weights) and its experts at the global grouped-GEMM efficiency.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from factoryplan.catalog.load import Catalog
from factoryplan.errors import FactoryplanError, unknown
from factoryplan.perf.inference import (
    Constants,
    Hardware,
    Parallel,
    Precision,
    attended_pairs,
    gemm_peak,
    gemm_time,
    hardware_of,
    iteration,
    shape_of,
    smooth_roofline,
)

DATA_DIR = Path(__file__).parent / "data"
SHIPPED = tuple(DATA_DIR / f"kernels_h200-sxm_2026-11-30_{run}.json"
                for run in ("run1", "run2", "moe", "run3", "run4", "attention", "decode_tp1", "decode_tp2",
                                "decode_moe1", "decode_moe2"))
STEP_MODEL = "llama-3.1-8b"  # the shape of the microbenchmark's decode step and prefill
BF16_BYTES, FP8_BYTES = 2.0, 1.0


@dataclass(frozen=True)
class KernelCase:
    """One timed kernel: its family (``gemm bf16``, ``decode step``, ...), a label, measured and
    predicted seconds."""

    family: str
    case: str
    measured_s: float
    predicted_s: float

    @property
    def error_pct(self) -> float:
        return (self.predicted_s - self.measured_s) / self.measured_s * 100.0


@dataclass(frozen=True)
class KernelBench:
    """A microbenchmark file: the accelerator it ran on, the file, and its sections."""

    accelerator: str
    path: Path
    data: dict[str, Any]

    def unread(self) -> dict[str, int]:
        """Records no prediction reads, by ``section/kind``: sections other than :data:`RECORDS`' (``hbm``,
        a plain bandwidth figure), kinds a newer script may add, and cases the run could not measure
        (``section (error)``)."""
        out: dict[str, int] = {}
        for section, rows in self.data.items():
            if not isinstance(rows, list):
                continue
            for r in rows:
                if not isinstance(r, dict):
                    continue
                if "error" in r:
                    out[f"{section} (error)"] = out.get(f"{section} (error)", 0) + 1
                    continue
                kinds = RECORDS.get(section, {})
                if "*" not in kinds and str(r.get("kind")) not in kinds:
                    key = f"{section}/{r['kind']}" if "kind" in r else section
                    out[key] = out.get(key, 0) + 1
        return out

    def rows(self, section: str) -> list[dict[str, Any]]:
        """A section's records; a section the run could not measure (an ``error`` record) is empty."""
        rows = self.data.get(section, [])
        return [r for r in rows if isinstance(r, dict) and "error" not in r] if isinstance(rows, list) else []


def load_bench(catalog: Catalog, path: Path, accelerator: str | None = None) -> KernelBench:
    """Read a ``gpu_microbench.py`` output file (:data:`SHIPPED`: ten files of runs on one H200), checking
    each record it will read. The accelerator is ``accelerator`` if given, else the file's own
    ``accelerator`` key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FactoryplanError(f"cannot read: {exc.strerror}", field="--data", value=str(path)) from None
    except json.JSONDecodeError as exc:
        raise FactoryplanError(f"not a JSON file: {exc.msg} at line {exc.lineno}", field="--data",
                               value=str(path)) from None
    if not isinstance(data, dict) or not any(k in data for k in RECORDS):
        raise FactoryplanError(f"not a gpu_microbench.py output (no {', '.join(RECORDS)} section)", field="--data",
                               value=str(path))
    for section, kinds in RECORDS.items():
        for i, record in enumerate(KernelBench("", path, data).rows(section)):
            _check_record(record, section, i, kinds, path)
            if section in ("decode_tp", "decode_moe") and record.get("model") not in catalog.models:
                raise unknown("model", str(record.get("model")), catalog.models, where=f"{path}: {section}[{i}]",
                              field="model")
    acc = accelerator or data.get("accelerator")
    if not acc:
        raise FactoryplanError("the file does not say which accelerator it measured", field="--gpu",
                               allowed="an accelerator id, e.g. h200-sxm")
    if acc not in catalog.accelerators:
        raise unknown("accelerator", str(acc), catalog.accelerators, field="--gpu")
    return KernelBench(accelerator=str(acc), path=path, data=data)


# the keys each record needs, by section and record kind (``*``: every record of the section)
_GEMM_KEYS = ("shape", "dtype", "m", "k", "n", "seconds", "tflops", "weight_bytes_per_s")
RECORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "gemm": {"*": _GEMM_KEYS},
    "gemm_tp": {"*": _GEMM_KEYS},  # one GPU's slice of each layer under tensor parallelism
    "attention": {"prefill_causal": ("batch", "heads", "seq", "head_dim", "fwd_tflops"),
                  "prefix_causal": ("variant", "batch", "q_heads", "head_dim", "chunk", "prefix", "seconds"),
                  "decode_gqa": ("batch", "context", "q_heads", "kv_heads", "seconds", "kv_bytes_per_s")},
    "grouped_gemm": {"*": ("shape", "experts", "hidden", "ffn", "tokens_per_expert", "seconds", "tflops")},
    "grouped_gemm_touched": {"*": ("shape", "experts", "hidden", "ffn", "touched", "tokens_per_expert", "seconds",
                                   "weight_bytes_per_s")},
    "decode_moe": {"moe_decode_step": ("model", "batch", "context", "seconds")},
    "decode_tp": {"decode_step_tp_slice": ("model", "tp", "batch", "context", "seconds", "gemms_only_seconds")},
    "decode": {"decode_step": ("batch", "context", "seconds", "kv_bytes"), "decode_gemms_only": ("batch", "seconds"),
               "decode_step_fp8": ("batch", "context", "seconds"), "prefill": ("seq", "seconds"),
               "prefill_fp8": ("seq", "seconds"), "mixed_step": ("batch", "context", "chunk", "prefix", "seconds")},
}
GEMM_DTYPES = ("bf16", "fp8", "fp8_fast_accum")


def _check_record(record: dict[str, Any], section: str, index: int, kinds: dict[str, tuple[str, ...]],
                  src: Path) -> None:
    """A record has the keys its kind needs, with positive numbers (the text keys aside; a chunked-prefill
    step's decode batch and prefix may be zero)."""
    where = f"{src}: {section}[{index}]"
    kind = str(record.get("kind", "*"))
    if kind not in kinds and "*" not in kinds:
        return  # a kind this module does not read (a newer script's section): skipped
    needed = kinds.get(kind, kinds.get("*", ()))
    missing = [key for key in needed if key not in record]
    if missing:
        raise FactoryplanError("a record lacks keys", where=where, value=", ".join(missing),
                               allowed=", ".join(needed))
    for key in needed:
        value = record[key]
        if key in ("shape", "dtype", "variant", "model"):
            continue
        counts = kind == "mixed_step" and key in ("batch", "prefix")  # a chunk alone, or a first chunk
        if isinstance(value, bool) or not isinstance(value, int | float) or not (value >= 0 if counts else value > 0):
            raise FactoryplanError("not a non-negative number" if counts else "not a positive number", where=where,
                                   field=key, value=value)
    if section in ("gemm", "gemm_tp") and record["dtype"] not in GEMM_DTYPES:
        raise FactoryplanError("unknown GEMM precision", where=where, field="dtype", value=record["dtype"],
                               allowed=", ".join(GEMM_DTYPES))


def physics_only(k: Constants) -> Constants:
    """``k`` without the serving engine's overheads: what the GPU's kernels alone take."""
    return replace(k, step_overhead_s=0.0, layer_overhead_s=0.0, sequence_overhead_s=0.0, cpu_sequence_s=0.0,
                   moe_layer_overhead_s=0.0, prefill_layer_overhead_s=0.0)


def _hardware(catalog: Catalog, accelerator: str) -> Hardware:
    acc = catalog.accelerators[accelerator]
    return hardware_of(acc, catalog.systems[acc.default_system])


def gemm_cases(bench: KernelBench, hw: Hardware, k: Constants) -> list[KernelCase]:
    """Dense GEMMs, one family per precision (``bf16``, ``fp8``, ``fp8_fast_accum``), and per precision
    again for one GPU's slice of a layer under tensor parallelism (``gemm_tp``: ``... tp slice``)."""
    out = []
    for section, suffix in (("gemm", ""), ("gemm_tp", " tp slice")):
        for r in bench.rows(section):
            fp8 = str(r["dtype"]).startswith("fp8")
            m, kk, n = float(r["m"]), float(r["k"]), float(r["n"])
            peak = gemm_peak(hw, "fp8" if fp8 else "bf16", k)
            t = gemm_time(2.0 * m * kk * n, kk * n * (FP8_BYTES if fp8 else BF16_BYTES), m, peak, hw.hbm_bytes_s, k)
            out.append(KernelCase(f"gemm {r['dtype']}{suffix}", f"{r['shape']} m={int(m)}", float(r["seconds"]),
                                  float(t)))
    return out


def attention_cases(bench: KernelBench, hw: Hardware, k: Constants) -> list[KernelCase]:
    """Causal prefill attention (forward), a prompt chunk's attention after a prefix of its prompt, and
    decode attention over a KV cache."""
    out = []
    peak = float(np.asarray(hw.bf16_flops)) * k.attention_efficiency
    kv_rate = float(np.asarray(hw.hbm_bytes_s)) * k.kv_efficiency
    for r in bench.rows("attention"):
        if r["kind"] == "prefill_causal":
            flops = 4.0 * r["batch"] * r["heads"] * r["seq"] ** 2 * r["head_dim"] / 2.0
            measured = flops / (r["fwd_tflops"] * 1e12)
            out.append(KernelCase("attention prefill", f"b={r['batch']} h={r['heads']} s={r['seq']}",
                                  measured, flops / peak))
        elif r["kind"] == "prefix_causal":  # the mask aligned bottom-right, or (no_mask_all_keys) every key
            every_key = r["variant"] == "no_mask_all_keys"
            pairs = r["chunk"] * (r["prefix"] + r["chunk"]) if every_key else float(
                attended_pairs(float(r["prefix"]), float(r["chunk"])))
            flops = 4.0 * r["batch"] * r["q_heads"] * r["head_dim"] * pairs
            out.append(KernelCase(f"attention after a prefix, {r['variant'].replace('_', ' ')}",
                                  f"chunk={r['chunk']} prefix={r['prefix']}", float(r["seconds"]), flops / peak))
        elif r["kind"] == "decode_gqa":
            kv_bytes = r["kv_bytes_per_s"] * r["seconds"]  # the K and V caches, BF16
            head_dim = kv_bytes / (2.0 * r["batch"] * r["kv_heads"] * r["context"] * BF16_BYTES)
            flops = 4.0 * r["batch"] * r["q_heads"] * r["context"] * head_dim
            t = smooth_roofline(flops / peak, kv_bytes / kv_rate, k.roofline_sharpness)
            out.append(KernelCase("attention decode", f"b={r['batch']} ctx={r['context']}", float(r["seconds"]),
                                  float(t)))
    return out


def grouped_cases(bench: KernelBench, hw: Hardware, k: Constants) -> list[KernelCase]:
    """MoE expert GEMMs, one grouped GEMM per projection: every expert given the same tokens
    (``grouped_gemm``), or only ``touched`` experts a few tokens each, as in decode
    (``grouped_gemm_touched``). The engine's model: the experts' weights stream at its dense rate
    (``hbm_efficiency``), their GEMMs run at the global grouped-GEMM efficiency ``moe_efficiency`` (a
    serving engine's own MoE kernels scale both by their ``moe_kernel_efficiency``), plus the fixed
    time per expert run."""
    out = []
    for section, family in (("grouped_gemm", "grouped gemm"), ("grouped_gemm_touched", "grouped gemm, some experts")):
        for r in bench.rows(section):
            run = float(r.get("touched", r["experts"]))
            h, f, per = (float(r[x]) for x in ("hidden", "ffn", "tokens_per_expert"))
            params = run * h * 3.0 * f
            t = gemm_time(2.0 * per * params, params * BF16_BYTES, per, hw.bf16_flops, hw.hbm_bytes_s, k,
                          k.moe_efficiency)
            label = f"{r['shape']} {int(run)}x{int(per)}" if "touched" in r else f"{r['shape']} {int(per)}/expert"
            out.append(KernelCase(family, label, float(r["seconds"]), float(t) + k.expert_overhead_s * run))
    return out


def _weights(fmt: str) -> Precision:
    """Dense and expert weights at ``fmt`` (the matrix products' format), KV cache in BF16."""
    return Precision(weights=fmt, experts=fmt, kv="bf16")


def step_cases(catalog: Catalog, bench: KernelBench, hw: Hardware, k: Constants) -> list[KernelCase]:
    """Whole decode steps (BF16 and FP8 weights), prompt prefills (BF16 and FP8 matrix products) and
    chunked-prefill steps (a prompt chunk with a decode batch in one pass) of the step model, engine
    overheads excluded."""
    s = shape_of(catalog.models[STEP_MODEL])
    k0 = physics_only(k)
    out = []
    for r in bench.rows("decode"):
        kind = r["kind"]
        fmt = "fp8" if kind.endswith("fp8") else "bf16"
        if kind in ("decode_step", "decode_step_fp8"):
            batch = float(r.get("padded_batch", r["batch"]))
            t = iteration(s, hw, Parallel(), _weights(fmt), k0, decode_seqs=batch, ctx=float(r["context"])).total
            label = f"b={int(batch)} ctx={r['context']}"
            out.append(KernelCase(kind.replace("_", " "), label, float(r["seconds"]), float(t)))
        elif kind in ("prefill", "prefill_fp8"):
            t = iteration(s, hw, Parallel(), _weights(fmt), k0, decode_seqs=0.0, ctx=float(r["seq"]), prompts=1.0,
                          prompt_len=float(r["seq"])).total
            out.append(KernelCase(kind.replace("_", " "), f"s={r['seq']}", float(r["seconds"]), float(t)))
        elif kind == "mixed_step":  # a prompt chunk after ``prefix`` tokens of its prompt, with a decode batch
            t = iteration(s, hw, Parallel(), _weights("bf16"), k0, decode_seqs=float(r["batch"]),
                          ctx=float(r["context"]), prompts=1.0, prompt_len=float(r["chunk"]),
                          prompt_prefix=float(r["prefix"])).total
            label = f"b={r['batch']} chunk={r['chunk']} prefix={r['prefix']}"
            family = "chunked prefill step" + (", after a prefix" if r["prefix"] else "")
            out.append(KernelCase(family, label, float(r["seconds"]), float(t)))
    return out


def model_step_cases(catalog: Catalog, bench: KernelBench, hw: Hardware, k: Constants) -> list[KernelCase]:
    """Decode steps of the catalog model each record names (checked on loading), BF16, engine overheads
    excluded: one GPU's slice under tensor parallelism less its all-reduces (and its matrix products
    alone), and whole MoE steps."""
    k0 = physics_only(k)
    out = []
    for r in bench.rows("decode_tp"):  # one GPU's slice under TP: the step less its all-reduces
        step = iteration(shape_of(catalog.models[r["model"]]), hw, Parallel(tp=float(r["tp"])), _weights("bf16"), k0,
                         decode_seqs=float(r["batch"]), ctx=float(r["context"]))
        label = f"{r['model']} tp={r['tp']} b={r['batch']}"
        out.append(KernelCase("decode step tp slice", label, float(r["seconds"]), float(step.total - step.comm)))
        out.append(KernelCase("decode step tp slice, matrix products alone", label, float(r["gemms_only_seconds"]),
                              float(step.gemm)))
    # the benchmark's router has random weights (routing about uniform) and its experts run as torch's
    # grouped GEMM (the global MoE efficiency, no serving engine's kernel factor)
    k_moe = replace(k0, routing_concentration=math.inf, moe_kernel_efficiency=1.0)
    for r in bench.rows("decode_moe"):
        step = iteration(shape_of(catalog.models[r["model"]]), hw, Parallel(), _weights("bf16"), k_moe,
                         decode_seqs=float(r["batch"]), ctx=float(r["context"]))
        out.append(KernelCase("moe decode step", f"{r['model']} b={r['batch']}", float(r["seconds"]),
                              float(step.total)))
    return out


def kernel_cases(catalog: Catalog, bench: KernelBench, k: Constants) -> list[KernelCase]:
    """Every timed kernel of ``bench`` with its prediction."""
    hw = _hardware(catalog, bench.accelerator)
    out = gemm_cases(bench, hw, k) + attention_cases(bench, hw, k) + grouped_cases(bench, hw, k)
    if STEP_MODEL in catalog.models:
        out += step_cases(catalog, bench, hw, k)
    return out + model_step_cases(catalog, bench, hw, k)


def summary(cases: Sequence[KernelCase]) -> dict[str, dict[str, float]]:
    """Per family: points, MAPE, median absolute error and mean signed error (+: predicted slower)."""
    groups: dict[str, list[float]] = {}
    for c in cases:
        groups.setdefault(c.family, []).append(c.error_pct)
    return {f: {"n": len(v), "mape_pct": sum(abs(x) for x in v) / len(v),
                "median_ape_pct": statistics.median(abs(x) for x in v), "bias_pct": sum(v) / len(v)}
            for f, v in groups.items()}


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def implied_constants(catalog: Catalog, bench: KernelBench) -> dict[str, float]:
    """What the measurements give, read off directly (medians; the selections are stated in each
    line). Keys are the catalog names of the engine constants they measure, plus two the engine has no
    constant for: decode-like MoE weight streaming and the per-layer time of a decode step's other
    kernels. NaN where the file lacks the section."""
    hw = _hardware(catalog, bench.accelerator)
    bf16, bw = float(np.asarray(hw.bf16_flops)), float(np.asarray(hw.hbm_bytes_s))
    fp8 = float(np.asarray(hw.fp8_flops)) or math.nan
    gemm = bench.rows("gemm")

    def sel(pred: Callable[[dict[str, Any]], bool], value: Callable[[dict[str, Any]], float],
            rows: list[dict[str, Any]]) -> float:
        return _median([value(r) for r in rows if pred(r)])

    big = sel(lambda r: r["dtype"] == "bf16" and r["m"] >= 1024, lambda r: r["tflops"] * 1e12 / bf16, gemm)
    big8 = sel(lambda r: r["dtype"] == "fp8" and r["m"] >= 1024, lambda r: r["tflops"] * 1e12 / fp8, gemm)
    out = {
        # GEMMs of 1,024 tokens or more (compute-bound): share of the BF16 dense peak
        "gemm_efficiency_fraction": big,
        # BF16 GEMMs of 1-16 tokens (weight streaming): share of the HBM bandwidth
        "hbm_efficiency_fraction": sel(lambda r: r["dtype"] == "bf16" and r["m"] <= 16,
                                       lambda r: r["weight_bytes_per_s"] / bw, gemm),
        # FP8 against BF16 efficiency, both at 1,024 tokens or more
        "low_precision_efficiency_ratio": big8 / big,
        # decode attention reading 1 GB of KV cache or more: share of the HBM bandwidth
        "kv_efficiency_fraction": sel(lambda r: r["kind"] == "decode_gqa" and r["kv_bytes_per_s"] * r["seconds"] >= 1e9,
                                      lambda r: r["kv_bytes_per_s"] / bw, bench.rows("attention")),
        # causal prefill attention forward: share of the BF16 peak
        "attention_efficiency_fraction": sel(lambda r: r["kind"] == "prefill_causal",
                                             lambda r: r["fwd_tflops"] * 1e12 / bf16, bench.rows("attention")),
        # grouped GEMMs of 512 tokens per expert (compute-bound) against dense BF16 GEMMs of 1,024+
        "moe_efficiency_ratio": sel(lambda r: r["tokens_per_expert"] >= 512, lambda r: r["tflops"] * 1e12 / bf16,
                                    bench.rows("grouped_gemm")) / big,
    }
    # decode-like grouped GEMMs (1-16 tokens for each of at least half the experts): weight streaming, share
    # of the HBM bandwidth (a dense GEMV streams at hbm_efficiency_fraction)
    out["moe_stream_fraction"] = sel(lambda r: r["touched"] * 2 >= r["experts"] and r["tokens_per_expert"] <= 16,
                                     lambda r: r["weight_bytes_per_s"] / bw, bench.rows("grouped_gemm_touched"))
    out["decode_other_kernels_per_layer_s"] = _other_kernels_per_layer(
        catalog, bench, bw * out["hbm_efficiency_fraction"], bw * out["kv_efficiency_fraction"])
    return out


def _other_kernels_per_layer(catalog: Catalog, bench: KernelBench, stream_bytes_s: float, kv_bytes_s: float) -> float:
    """A BF16 decode step of 1-8 sequences less its matrix products alone (same batch, timed
    separately), its LM head (streamed at ``stream_bytes_s``) and its KV read (at ``kv_bytes_s``), per
    layer: what a layer's norms, activations, residual adds and attention launches take in a CUDA
    graph, unfused."""
    if STEP_MODEL not in catalog.models:
        return math.nan
    s = shape_of(catalog.models[STEP_MODEL])
    rows = bench.rows("decode")
    gemms = {r["batch"]: r["seconds"] for r in rows if r["kind"] == "decode_gemms_only"}
    values = [
        (r["seconds"] - gemms[r["batch"]] - s.vocab_params * BF16_BYTES / stream_bytes_s - r["kv_bytes"] / kv_bytes_s)
        / s.layers
        for r in rows if r["kind"] == "decode_step" and r["batch"] <= 8 and r["batch"] in gemms
    ]
    return _median(values)
