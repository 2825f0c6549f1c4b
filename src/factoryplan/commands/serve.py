"""`factoryplan serve`: TTFT, TPOT and throughput of one serving configuration, or the capacity plan
that meets a demand and latency targets with the fewest GPUs.

The module imports only typer at load time (the CLI imports every command module on start-up);
the engine, numpy and the catalog load inside the command. Without ``--catalog`` overlays only the
four catalog kinds the engine reads are loaded (accelerators, systems, models, calibrations).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from factoryplan.commands import OutputFormat
from factoryplan.errors import FactoryplanError, InfeasibleError, unknown

if TYPE_CHECKING:
    from collections.abc import Callable

    from factoryplan.catalog.load import Catalog
    from factoryplan.catalog.schema import Accelerator, System
    from factoryplan.commands.serve_engine import Layout, Setup

SERVING_KINDS = ("fx", "accelerators", "systems", "models", "calibrations")


class Precision(StrEnum):
    """Weight precision."""

    bf16 = "bf16"
    fp8 = "fp8"
    fp4 = "fp4"
    int4 = "int4"


class KvPrecision(StrEnum):
    """KV-cache precision."""

    bf16 = "bf16"
    fp8 = "fp8"
    fp4 = "fp4"


class ActivationPrecision(StrEnum):
    """What the GEMMs quantize activations to (W4A8: --precision fp4 --activation-precision fp8)."""

    bf16 = "bf16"
    fp8 = "fp8"
    fp4 = "fp4"


class Backend(StrEnum):
    """Serving engine."""

    trtllm = "trtllm"
    vllm = "vllm"
    sglang = "sglang"


class Mode(StrEnum):
    """Deployment modes the capacity planner may choose."""

    auto = "auto"
    aggregated = "aggregated"
    disaggregated = "disaggregated"


class Start(StrEnum):
    """How the users of a point estimate start."""

    together = "together"
    steady = "steady"


def serving_catalog(overlays: list[Path] | None, gpu: str | list[str] = "", model: str = "") -> Catalog:
    """The catalog entries one serving question reads; the whole catalog when overlays are given.

    Without overlays only the requested accelerators and systems (``gpu``: one reference or a
    list), the requested model (a catalog id, or the one a repository name maps to) and the
    inference calibrations are validated; the other ids of those kinds are kept for did-you-mean
    messages. A full load validates everything (``factoryplan catalog list``).
    """
    from factoryplan.catalog import load as cl
    from factoryplan.catalog.models import repo_model_id

    refs = [gpu] if isinstance(gpu, str) else list(gpu)
    if overlays:
        cat = cl.load_catalog(overlays)
        for ref in refs:
            cat.hardware(ref, field_name="--gpu")
        return cat
    texts: dict[str, dict[str, tuple[Path, str]]] = {}
    for kind in SERVING_KINDS:
        paths = sorted(cl.DATA_DIR.glob(f"{kind}.yaml")) + sorted(cl.DATA_DIR.glob(f"{kind}.*.yaml"))
        texts[kind] = {i: (path, text) for path in paths for i, text in cl.entry_texts(path).items()}

    def item(kind: str, entry_id: str) -> dict[str, Any]:
        """One entry's raw mapping ({} for an unknown id), parsed on first use."""
        if entry_id not in texts[kind]:
            return {}
        path, text = texts[kind][entry_id]
        return cl.parse_entry(text, path)

    raw = {kind: {i: item(kind, i) for i in texts[kind]} for kind in ("fx", "calibrations", "accelerators")}
    inference = {i for i, entry in raw["calibrations"].items() if entry.get("engine") == "inference"}
    local = model.endswith(".json") or Path(model).exists()
    model_id = model if model in texts["models"] or local else repo_model_id(texts["models"], model) or model
    wanted = {"fx": set(texts["fx"]), "calibrations": inference, "models": {model_id}}
    aliases = {i: tuple(entry.get("aliases") or ()) for i, entry in raw["accelerators"].items()}
    ids = [cl.hardware_id_of(ref, texts["systems"], aliases) or ref for ref in refs]
    wanted["systems"], wanted["accelerators"] = set(ids), set(ids)
    for hw_id in ids:
        wanted["systems"].add(str(raw["accelerators"].get(hw_id, {}).get("default_system", "")))
        wanted["accelerators"].add(str(item("systems", hw_id).get("accelerator", "")))
    cat = cl.Catalog()
    usd_per: dict[str, float] = {}
    for kind in SERVING_KINDS:
        for entry_id in sorted(wanted[kind] & set(texts[kind])):
            entry = cl._validate(kind, raw[kind][entry_id] if kind in raw else item(kind, entry_id), usd_per,
                                 str(texts[kind][entry_id][0]))
            cat.kind(kind)[entry.id] = entry
            cat.origin[(kind, entry.id)] = str(texts[kind][entry_id][0])
        if kind == "fx":
            usd_per = cat.usd_per()
    for ref, hw_id in zip(refs, ids, strict=True):
        if hw_id not in cat.accelerators and hw_id not in cat.systems:
            every = [*texts["accelerators"], *texts["systems"], *(n for names in aliases.values() for n in names)]
            raise unknown("accelerator or system", ref, every, field="--gpu")
    if model_id not in cat.models and not local:
        err = unknown("model", model, texts["models"])
        raise FactoryplanError(err.message, field="--model", allowed=f"{err.allowed}; or a path to a config.json, "
                               "or the repository name of a catalog architecture (meta-llama/Llama-3.1-70B-Instruct)")
    return cat


def resolve_gpu(cat: Catalog, ref: str) -> tuple[Accelerator, System]:
    """An accelerator id implies its usual system (``gb200`` -> NVL72); a system id its accelerator."""
    return cat.hardware(ref, field_name="--gpu")


def _number(value: float) -> str:
    return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"


def _emit(data: dict[str, Any], fmt: OutputFormat, title: str) -> None:
    """JSON, or the figures as two aligned columns under a title (plain text: a one-shot estimate
    does not pay rich's ~25 ms import for a two-column list; lists and dicts are in the JSON)."""
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    rows: list[tuple[str, str]] = []
    hidden = set()  # features not asked for (the JSON keeps every key)
    if not data.get("draft_tokens"):
        hidden |= {"draft_tokens", "acceptance", "tokens_per_step"}
    if not data.get("cached_prompt_tokens"):
        hidden.add("cached_prompt_tokens")
    if not data.get("isl_cv"):
        hidden.add("isl_cv")
    for key, value in data.items():
        if key in hidden:
            continue
        if isinstance(value, float):
            text = _number(value)
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
            text = f"{_number(value[0])} - {_number(value[1])}"  # a range
        elif key == "gpus_range":  # whole GPUs; None: the slow edge meets no target
            text = f"{value[0]} - {value[1] if value[1] is not None else 'none meets the targets'}"
        elif isinstance(value, list | dict):
            continue
        else:
            text = str(value)
        rows.append((key, text))
    width = max((len(k) for k, _ in rows), default=0)
    sys.stdout.write(title + "\n" + "".join(f"  {k.ljust(width)}  {v}\n" for k, v in rows))


def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog model id, a Hugging Face config.json path, or "
                                       "the repository name of a catalog architecture.")],
    gpu: Annotated[str, typer.Option("--gpu", "-g", help="Accelerator id or alias (implies its usual system, "
                                     "e.g. gb200 -> NVL72; h100 -> h100-sxm) or a system id; with --rps, "
                                     "several separated by commas are compared.")],
    isl: Annotated[int, typer.Option("--isl", min=1, help="Input (prompt) tokens per request.")],
    osl: Annotated[int, typer.Option("--osl", min=1, help="Output tokens per request.")],
    prefix_hit: Annotated[float, typer.Option("--prefix-hit", min=0, help="Share of each prompt the engine's "
                                              "prefix cache already holds (a shared system prompt, earlier "
                                              "turns): those tokens are not prefilled.")] = 0.0,
    draft_tokens: Annotated[int, typer.Option("--draft-tokens", min=0, help="Speculative decoding: tokens a "
                                              "one-layer draft (MTP module, EAGLE head) proposes per step, "
                                              "verified together (with --acceptance).")] = 0,
    acceptance: Annotated[float | None, typer.Option("--acceptance", min=0, max=1, help="Speculative "
                                                     "decoding: chance each draft token is accepted after the "
                                                     "ones before it (measured for the model and draft).")] = None,
    tp: Annotated[int | None, typer.Option("--tp", min=1, help="Tensor-parallel GPUs (attention, dense MLPs); "
                                           "with --attention-dp and no --tp, 1 per rank.")] = None,
    pp: Annotated[int, typer.Option("--pp", min=1, help="Pipeline stages.")] = 1,
    ep: Annotated[int, typer.Option("--ep", min=1, help="Expert-parallel GPUs (MoE models).")] = 1,
    attention_dp: Annotated[int, typer.Option("--attention-dp", min=1, help="Attention data-parallel ranks.")] = 1,
    redundant_experts: Annotated[int, typer.Option("--redundant-experts", min=0, help="Expert slots beyond the "
                                                   "model's experts, copies of popular ones that an expert-parallel "
                                                   "load balancer (EPLB) places so every --ep rank expects the same "
                                                   "load; with the experts, a multiple of --ep (TensorRT-LLM: "
                                                   "num_slots minus the experts; 256 + 32 = 288 slots on 72 ranks, "
                                                   "4 a rank). Default 0: no balancing.")] = 0,
    precision: Annotated[Precision | None, typer.Option("--precision", help="Weight precision (default: as the "
                                                        "model is published where its checkpoint is quantized, "
                                                        "e.g. gpt-oss's MXFP4 experts; else fp8).")] = None,
    moe_precision: Annotated[Precision | None, typer.Option("--moe-precision", help="Expert weights (default: "
                                                            "--precision, else as published).")] = None,
    kv_precision: Annotated[KvPrecision | None, typer.Option("--kv-precision", help="KV cache (default: the "
                                                             "engine's: trtllm and vllm FP8 with FP8 or narrower "
                                                             "weights, sglang the model's BF16; sparse-attention "
                                                             "models FP8 on Blackwell; fp4: NVFP4, on parts with "
                                                             "FP4 units).")] = None,
    activation_precision: Annotated[ActivationPrecision | None, typer.Option(
        "--activation-precision", help="Activations the GEMMs multiply with; the tensor cores run at the wider "
        "operand (default: the weights' own; INT4 weight-only at BF16; MXFP4 experts as the engine runs them on "
        "the part: MXFP8 in trtllm and sglang on Blackwell, else BF16).")] = None,
    backend: Annotated[Backend | None, typer.Option("--backend", help="Serving engine profile (default: trtllm on "
                                                    "NVIDIA GPUs, vllm on others).")] = None,
    token_budget: Annotated[int | None, typer.Option("--token-budget", min=1, help="Prompt tokens an iteration "
                                                     "carries, longer prompts chunked (TensorRT-LLM max_num_tokens, "
                                                     "vLLM max_num_batched_tokens, SGLang chunked_prefill_size; "
                                                     "default the engine's).")] = None,
    max_batch: Annotated[int | None, typer.Option("--max-batch", min=1, help="Sequences a replica (or attention-DP "
                                                  "rank) runs at once, the others queue (TensorRT-LLM "
                                                  "max_batch_size, vLLM max_num_seqs, SGLang max_running_requests; "
                                                  "default the engine's).")] = None,
    mixed_chunk: Annotated[bool, typer.Option("--mixed-chunk", help="Prompt chunks ride in decode iterations "
                                              "(SGLang --enable-mixed-chunk; TensorRT-LLM and vLLM always do; "
                                              "SGLang's default runs prompts apart, ahead of decoding).")] = False,
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1, help="Users served at once "
                                                    "by one replica (closed loop).")] = None,
    start: Annotated[Start | None, typer.Option("--start", help="How those users start: together (the "
                                                "default: as benchmark clients do, all at once, the figures "
                                                "averaged over a run of several requests each, the first wave "
                                                "queueing; what the calibration measured), or steady (a running "
                                                "service, users long since spread out).")] = None,
    requests_per_user: Annotated[int | None, typer.Option("--requests-per-user", min=1, help="Users starting "
                                                          "together: the requests each sends in the run the "
                                                          "figures average over (a benchmark client's prompts "
                                                          "over its concurrency); the first of each queues as "
                                                          "the first wave, 1 in N of them (default: the "
                                                          "calibrated share, about 1 in 9).")] = None,
    rps: Annotated[float | None, typer.Option("--rps", min=0, help="Plan capacity for this peak request rate "
                                              "(requests/s).")] = None,
    tokens_per_day: Annotated[float | None, typer.Option("--tokens-per-day", min=0, help="Plan capacity for this "
                                                         "many output tokens a day (average).")] = None,
    peak_to_average: Annotated[float, typer.Option("--peak-to-average", min=1, help="Peak over average load "
                                                   "(with --tokens-per-day).")] = 1.5,
    ttft_ms: Annotated[float, typer.Option("--ttft-ms", min=0, help="Time-to-first-token target (capacity).")] = 2000,
    tpot_ms: Annotated[float, typer.Option("--tpot-ms", min=0, help="Time-per-output-token target (capacity).")] = 50,
    isl_cv: Annotated[float, typer.Option("--isl-cv", min=0, max=2, help="Prompt lengths vary: their coefficient of "
                                          "variation (standard deviation over the mean --isl; a gamma "
                                          "distribution). 0: all --isl long, as benchmarks send them.")] = 0.0,
    ttft_percentile: Annotated[float | None, typer.Option("--ttft-percentile", help="The share of requests (per "
                                                          "cent, e.g. 90 or 99) the TTFT target holds for, "
                                                          "arriving as a Poisson process at peak (capacity; "
                                                          "default: their mean).")] = None,
    mode: Annotated[Mode, typer.Option("--mode", help="Deployment modes the planner may use.")] = Mode.auto,
    prefill_tp: Annotated[int | None, typer.Option("--prefill-tp", min=1, help="A disaggregated deployment: "
                                                   "tensor-parallel GPUs of a prefill worker (--tp, --ep, "
                                                   "--attention-dp then describe a decode worker).")] = None,
    prefill_ep: Annotated[int, typer.Option("--prefill-ep", min=1, help="Expert-parallel GPUs of a prefill "
                                            "worker.")] = 1,
    prefill_attention_dp: Annotated[int, typer.Option("--prefill-attention-dp", min=1, help="Attention "
                                                      "data-parallel ranks of a prefill worker.")] = 1,
    prefill_workers: Annotated[int, typer.Option("--prefill-workers", min=1, help="Prefill workers "
                                                 "(with --prefill-tp).")] = 1,
    decode_workers: Annotated[int, typer.Option("--decode-workers", min=1, help="Decode workers "
                                                "(with --prefill-tp).")] = 1,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="table (default) or json.")] = OutputFormat.table,
    catalog: Annotated[list[Path] | None, typer.Option("--catalog", help="Catalog overlay file (repeatable).")] = None,
) -> None:
    """Serving performance of one configuration, or a capacity plan for a demand.

    Example: factoryplan serve --model llama-3.3-70b --gpu h200-sxm --tp 2 --isl 2000 --osl 500 --concurrency 32

    Capacity: factoryplan serve -m deepseek-r1 -g gb200 --isl 2000 --osl 500 --rps 50 --ttft-ms 1500 --tpot-ms 40

    GPU types compared: factoryplan serve -m llama-3.3-70b -g h200,b200,gb200 --isl 2000 --osl 500 --rps 20

    Disaggregated: factoryplan serve -m deepseek-r1 -g h200-sxm --isl 4000 --osl 500 -c 256 --prefill-tp 8
    --prefill-workers 2 --tp 1 --attention-dp 8 --ep 8
    """
    from factoryplan.catalog.models import check_context, resolve_model
    from factoryplan.commands import serve_engine as eng
    from factoryplan.perf.serving import cached_tokens

    refs = [g.strip() for g in gpu.split(",") if g.strip()]
    capacity_mode = rps is not None or tokens_per_day is not None
    if not refs or (len(refs) > 1 and not capacity_mode):
        raise FactoryplanError("give one GPU for a point estimate" if refs else "no GPU given", field="--gpu",
                               value=gpu, allowed="one id; several, separated by commas, with --rps/--tokens-per-day")
    cat = serving_catalog(catalog, refs, model)
    arch = resolve_model(cat, model)  # once, for every GPU type compared
    check_context(arch, isl, osl, field="--isl/--osl")
    if prefix_hit >= 1.0:
        raise FactoryplanError("at least one token of each prompt is prefilled", field="--prefix-hit",
                               value=prefix_hit, allowed="0 <= share < 1")
    cached = cached_tokens(prefix_hit, isl)
    if draft_tokens and acceptance is None:
        raise FactoryplanError("speculative decoding needs the drafts' acceptance rate", field="--acceptance",
                               allowed="0-1, as measured for the model and its draft (DeepSeek-V3's MTP module: "
                               "0.85-0.9 for its one draft token)")
    if acceptance is not None and not draft_tokens:
        raise FactoryplanError("describes speculative decoding", field="--acceptance", value=acceptance,
                               allowed="give --draft-tokens with it, or leave it out")
    spec = (draft_tokens, acceptance or 0.0)

    def build(ref: str) -> eng.Setup:
        acc, system = resolve_gpu(cat, ref)
        setup = eng.Setup.build(cat, arch, acc, system, backend.value if backend else None,
                                precision.value if precision else None,
                                moe_precision.value if moe_precision else None,
                                kv_precision.value if kv_precision else None,
                                activation_precision.value if activation_precision else "").with_limits(
                                    token_budget, max_batch, mixed_chunk)
        if requests_per_user is not None and not setup.k.mixes_prefill and prefill_tp is None:  # aggregated
            raise FactoryplanError(f"sets the share of a run that queues as a first wave; {setup.backend} "
                                   "prefills apart from decoding, so users started together stay in step and "
                                   "every wave is a first wave", field="--requests-per-user", value=requests_per_user,
                                   allowed="omit it, or give --mixed-chunk (prompt chunks in decode iterations)")
        return setup.with_first_wave(requests_per_user)

    layout = eng.Layout(tp=tp, pp=pp, ep=ep, dp=attention_dp, redundant=redundant_experts)
    disagg = [n for n, v in (("--prefill-ep", prefill_ep), ("--prefill-attention-dp", prefill_attention_dp),
                             ("--prefill-workers", prefill_workers), ("--decode-workers", decode_workers)) if v != 1]
    if rps is not None or tokens_per_day is not None:
        _plan(refs, build, layout, isl, osl, cached, spec, isl_cv, fmt, start=start,
              requests_per_user=requests_per_user, concurrency=concurrency,
              prefill_tp=prefill_tp, disagg=disagg, rps=rps, tokens_per_day=tokens_per_day,
              peak_to_average=peak_to_average, mode=mode.value, target=(ttft_ms, tpot_ms, ttft_percentile))
        return
    if requests_per_user is not None and start is Start.steady:
        raise FactoryplanError("describes a run whose users start together", field="--requests-per-user",
                               value=requests_per_user, allowed="omit it with --start steady")
    if ttft_percentile is not None:
        raise FactoryplanError("a latency target of capacity planning", field="--ttft-percentile",
                               value=ttft_percentile, allowed="give it with --rps/--tokens-per-day")
    if tp is None and attention_dp > 1:  # attention data parallelism: one GPU per rank unless --tp says more
        layout = eng.Layout(tp=1, pp=pp, ep=ep, dp=attention_dp, redundant=redundant_experts)
    if layout.tp is None or concurrency is None:
        missing = ", ".join(n for n, v in (("--tp", layout.tp), ("--concurrency", concurrency)) if v is None)
        raise FactoryplanError("a point estimate needs a layout and a load", field=missing,
                               allowed="give --tp and --concurrency, or --rps to plan capacity")
    prefill = None if prefill_tp is None else eng.Layout(tp=prefill_tp, ep=prefill_ep, dp=prefill_attention_dp,
                                                         side="prefill-")
    _point(build(refs[0]), layout, concurrency, isl, osl, cached, spec, isl_cv, fmt,
           together=start is not Start.steady, prefill=prefill, workers=(prefill_workers, decode_workers),
           disagg=disagg)


def _plan(
    refs: list[str], build: Callable[[str], Setup], layout: Layout, isl: int, osl: int, cached: int,
    spec: tuple[int, float], isl_cv: float, fmt: OutputFormat, *, start: Start | None,
    requests_per_user: int | None, concurrency: int | None,
    prefill_tp: int | None, disagg: list[str], rps: float | None, tokens_per_day: float | None,
    peak_to_average: float, mode: str, target: tuple[float, float, float | None],
) -> None:
    """``serve --rps/--tokens-per-day``: the capacity plan on one GPU type, or the types compared;
    ``start``, ``requests_per_user``, ``concurrency``, ``layout.redundant``, ``prefill_tp`` and ``disagg``
    (the point-estimate options) are refused here; ``target``: TTFT and TPOT (ms), percentile."""
    from factoryplan.commands import serve_engine as eng

    for name, value in (("--start", start.value if start else None), ("--requests-per-user", requests_per_user)):
        if value is not None:
            raise FactoryplanError("the planner sizes a running service (steady state, Poisson arrivals)",
                                   field=name, value=value, allowed="omit it with --rps/--tokens-per-day")
    if concurrency is not None:
        raise FactoryplanError("the planner chooses the concurrency", field="--concurrency", value=concurrency,
                               allowed="omit it with --rps/--tokens-per-day")
    if layout.redundant:
        raise FactoryplanError("applies to a layout you give (the planner weighs one redundant slot per "
                               "expert-parallel rank against none itself)", field="--redundant-experts",
                               value=layout.redundant, allowed="omit it with --rps/--tokens-per-day")
    if prefill_tp is not None or disagg:
        raise FactoryplanError("the planner chooses the prefill and decode pools",
                               field=", ".join(["--prefill-tp"] * (prefill_tp is not None) + disagg),
                               allowed="omit it with --rps/--tokens-per-day (--mode disaggregated)")
    if rps is not None and tokens_per_day is not None:
        raise FactoryplanError("give one demand", field="--rps/--tokens-per-day")
    ttft_ms, tpot_ms, percentile = target
    if percentile is not None and not 0.0 < percentile < 100.0:
        raise FactoryplanError("a share of the requests, in per cent", field="--ttft-percentile",
                               value=percentile, allowed="more than 0 and less than 100 (e.g. 90, 99)")
    peak = rps if rps is not None else float(tokens_per_day or 0.0) / 86_400.0 / osl * peak_to_average
    if peak <= 0:
        demand = ("--rps", rps) if rps is not None else ("--tokens-per-day", tokens_per_day)
        raise FactoryplanError("demand must be positive", field=demand[0], value=demand[1], allowed="more than 0")
    goal = eng.Target(ttft_ms / 1e3, tpot_ms / 1e3, percentile)
    if len(refs) == 1:
        data = eng.capacity(build(refs[0]), layout, peak, isl, osl, goal, mode, cached, spec, isl_cv)
    else:  # a type that cannot take part (its engine, the model's fit, the targets) is listed with why
        data = eng.compare_hardware(refs, build, layout, peak, isl, osl, goal, mode, cached, spec, isl_cv)
    _emit(data, fmt, f"capacity plan: {data['model']} on {data['system']}")
    if fmt is OutputFormat.table and "hardware_options" in data:
        _emit_options(data["hardware_options"])


def _point(
    setup: Setup, layout: Layout, concurrency: int, isl: int, osl: int, cached: int, spec: tuple[int, float],
    isl_cv: float, fmt: OutputFormat, *, together: bool, prefill: Layout | None, workers: tuple[int, int],
    disagg: list[str],
) -> None:
    """``serve --tp ... --concurrency C``: one aggregated configuration, or with ``prefill`` (from
    ``--prefill-tp``) a given prefill/decode deployment of ``workers`` (prefill, decode) workers."""
    from factoryplan.commands import serve_engine as eng

    if prefill is not None:
        if isl_cv > 0:
            raise FactoryplanError("prompt-length variation is modelled for aggregated serving and capacity "
                                   "plans, not for a given prefill/decode deployment", field="--isl-cv",
                                   value=isl_cv, allowed="omit it with --prefill-tp")
        data = eng.disaggregated_point(setup, layout, prefill, workers[0], workers[1], concurrency, isl, osl,
                                       cached, spec, together=together)
        _emit(data, fmt, f"serving {setup.arch.id} disaggregated on {data['gpus']} x {setup.acc.id} "
                         f"({setup.backend})")
        return
    if disagg:
        raise FactoryplanError("describes a disaggregated deployment", field=", ".join(disagg),
                               allowed="give --prefill-tp with it, or leave it out")
    data = eng.point(setup, layout, concurrency, isl, osl, cached, spec, together=together, isl_cv=isl_cv)
    _emit(data, fmt, f"serving {setup.arch.id} on {layout.gpus()} x {setup.acc.id} ({setup.backend})")


def _emit_options(options: list[dict[str, Any]]) -> None:
    """One line per GPU type compared: the plan it gets, or why it has none."""
    lines = ["hardware compared (fewest GPUs chosen, then the least power):"]
    for o in options:
        where = f" ({o['system']}, {o['backend']})" if o["system"] else ""
        head = f"  {'*' if o['chosen'] else ' '} {o['gpu']}{where}"
        if o["feasible"]:
            systems = f"{o['systems']:,} system{'s' if o['systems'] != 1 else ''}"
            tails = "".join(f", TTFT {key[5:-3].upper()} {value:,.0f} ms" for key, value in o.items()
                            if key.startswith("ttft_p") and key.endswith("_ms"))  # the percentile asked for
            lines.append(f"{head}: {o['gpus']:,} GPUs in {systems}, {o['power_kw']:,.1f} kW, "
                         f"{o['mode']} {o['config']}, TTFT {o['ttft_ms']:,.0f} ms{tails}, TPOT {o['tpot_ms']:.1f} ms")
        else:
            lines.append(f"{head}: {o['reason']}")
    sys.stdout.write("\n".join(lines) + "\n")


def register(app: typer.Typer) -> None:
    """Add the command to the CLI."""
    app.command("serve")(serve)


__all__ = ["InfeasibleError", "register", "resolve_gpu", "serve", "serving_catalog"]
