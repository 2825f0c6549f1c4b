"""Published serving results in ``published_runs.csv``'s layout mapped to inference-engine inputs.

The calibration table's ``inference`` rows (TensorRT-LLM max-throughput tables, a NIM concurrency
sweep, vLLM CI latency tests; copied under ``validation/data`` with their provenance) and any other
table of that layout: every row is read by the same rules (:func:`load_published`). Predictions
and error bands are :mod:`factoryplan.validation.inference`'s.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import repo_model_id as model_id
from factoryplan.catalog.models import resolve_model
from factoryplan.validation.inference import (
    DATA,
    Loaded,
    Point,
    activations_of,
    checkpoint_activations,
    engine_name,
    harness_fuses_allreduce,
    number,
    quant,
    read_table,
    row_parallel,
    whole,
)

PUBLISHED = DATA / "published_runs.csv"
# The columns a published-results file must have (the others are read when present).
PUBLISHED_COLUMNS = ("row_id", "category", "model", "gpu_type", "input_len", "output_len")
# Names the published tables give that no repository-name rule reads (the family without its size).
_PUBLISHED_MODELS = {"llama 3 70b": "llama-3.1-70b", "llama 4 maverick": "llama-4-maverick-17b-128e",
                     "llama 4 scout": "llama-4-scout-17b-16e"}


def published_model(catalog: Catalog, name: str) -> str | None:
    """The catalog model a published table's name gives (``Llama 3.3 70B``, ``Llama-3.3-70B-Instruct``,
    ``DeepSeek R1``, ``Qwen3 235B A22B``, ``Llama 4 Maverick``): as a repository name with its spaces
    read as hyphens, else the family names of :data:`_PUBLISHED_MODELS`; None when neither matches."""
    text = " ".join(name.strip().lower().split())
    return (model_id(catalog.models, text.replace(" ", "-")) or model_id(catalog.models, text)
            or _PUBLISHED_MODELS.get(text))


def published_gpu(catalog: Catalog, name: str) -> str | None:
    """The accelerator a published table's GPU names (``H200``, ``H100-SXM-80GB``, ``B200 180GB``,
    ``GB200-192GB``, ``GB200 NVL72``): the name with its memory size dropped, as an accelerator id,
    alias or system id (a system gives its accelerator); None when nothing matches."""
    text = re.sub(r"[\s_-]*\d+\s*gb$", "", " ".join(name.strip().lower().split())).replace(" ", "-")
    for ref in (text, text.removesuffix("-sxm")):
        hid = catalog.hardware_id(ref) if ref else None
        if hid is None:
            continue
        if hid in catalog.accelerators:
            return hid
        return next((a.id for a in catalog.accelerators.values() if a.default_system == hid), None)
    return None


def _published_concurrency(text: str) -> float | None:
    """Users of a published row: 0 for a full-load (max throughput) run, else the number it gives;
    None when it gives neither."""
    low = text.lower()
    if "max" in low:
        return 0.0
    numbers = re.findall(r"\d+", low)
    return float(numbers[0]) if numbers else None


def load_published(catalog: Catalog, path: Path = PUBLISHED) -> Loaded:
    """The inference rows of ``published_runs.csv`` that name lengths, GPUs and a figure.

    Any row of that layout is read the same way: the model by its name (:func:`published_model`),
    the GPU by its name (:func:`published_gpu`, the system its usual one), the weights by
    ``precision`` (:func:`quant`: FP8, FP4/NVFP4, INT4, blank BF16), the engine by ``framework``
    (NIM runs TensorRT-LLM), the layout by ``TP``, ``PP`` and ``EP`` (experts split as a measured
    row's; no ``TP``: ``gpu_count`` over the stages), the load by ``concurrency_or_batch`` (a
    full-load run: the users the KV cache holds).
    Rows it cannot read are listed in ``skipped`` with the reason."""
    out = Loaded()
    rows = read_table(path, PUBLISHED_COLUMNS, "published-results", "published_runs.csv")
    for r in (r for r in rows if r["category"] == "inference"):
        point, reason = _published_point(catalog, r)
        if point is None:
            out.skipped.append((f"published-{r['row_id']}", reason))
        else:
            out.points.append(point)
    return out


def _published_point(catalog: Catalog, r: dict[str, str]) -> tuple[Point | None, str]:
    """One published row as a :class:`Point` (the rules of :func:`load_published`), or the reason not."""
    isl, osl = number(r["input_len"]), number(r["output_len"])
    mid, acc = published_model(catalog, r["model"]), published_gpu(catalog, r["gpu_type"])
    conc = _published_concurrency(r.get("concurrency_or_batch", ""))
    weights = quant(r.get("precision", ""))
    if isl is None or osl is None:
        return None, f"lengths not given ({r['input_len']}): a length distribution"
    if mid is None or acc is None:
        return None, f"model {r['model']!r} or GPU {r['gpu_type']!r} not in the catalog"
    if conc is None or weights is None:
        return None, (f"users {r.get('concurrency_or_batch')!r} or precision {r.get('precision')!r} not read "
                      "(a number or 'max'; bf16/fp8/fp4/int4)")
    system = catalog.accelerators[acc].default_system
    tp_text = r.get("TP", "")
    if not tp_text.strip() and whole(r.get("gpu_count", "")) > 1:  # no TP given: the row's GPUs, over its stages
        tp_text = str(max(whole(r.get("gpu_count", "")) // whole(r.get("PP", "")), 1))
    layout = {"tp_size": tp_text, "pp_size": r.get("PP", ""), "moe_ep_size": r.get("EP", ""),
              "attention_dp_size": "", "moe_tp_size": "", "batch_size": str(int(conc)) if conc else ""}
    arch = resolve_model(catalog, mid)
    par, repair = row_parallel(layout, arch.moe.experts if arch.moe is not None else 0,
                               catalog.systems[system].scaleup_domain_gpus, conc)
    throughput = number(r.get("output_throughput_tok_s", ""))
    per_gpu = number(r.get("tokens_per_s_per_gpu", ""))
    if throughput is None and per_gpu is not None:  # a table that gives it per GPU: the replica's GPUs
        throughput = per_gpu * float(np.asarray(par.gpus()))
    ttft, tpot, e2e = (number(r.get(c, "")) for c in ("ttft_ms", "tpot_or_itl_ms", "e2e_latency_ms"))
    if throughput is None and ttft is None and tpot is None and e2e is None:
        return None, ("no serving figure (output_throughput_tok_s, tokens_per_s_per_gpu, ttft_ms, tpot_or_itl_ms "
                      "or e2e_latency_ms)")
    framework = r.get("framework", "")
    backend = engine_name(framework) or "trtllm"  # NIM runs TensorRT-LLM
    activations = checkpoint_activations(catalog, arch, weights, activations_of(r.get("precision", "")),
                                         catalog.accelerators[acc], backend)
    return Point(
        id=f"published-{r['row_id']}", source="published", model=mid, accelerator=acc, system=system,
        backend=backend,
        weights=weights, experts=weights, par=par, isl=isl, osl=osl, concurrency=conc, ttft_ms=ttft, tpot_ms=tpot,
        output_tokens_per_s=throughput, e2e_ms=e2e, version=framework, repair=repair,
        activations=activations, fuses_allreduce=harness_fuses_allreduce(backend, framework),
    ), ""
