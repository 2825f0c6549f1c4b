"""Measured and published serving results mapped to inference-engine inputs, and predictions.

Two sources, both copied under ``validation/data`` with their provenance:

* ``serving_measured_hopper.csv``: measured TTFT and TPOT of aggregated in-flight-batching
  serving on H100/H200 (NVIDIA aiconfigurator-core 0.12.0 silicon data, Apache-2.0). The same
  columns describe any GPU, so :func:`load_measured` reads other files of this layout too.
* the ``inference`` rows of ``published_runs.csv``: TensorRT-LLM max-throughput tables (output
  tokens/s at full load), a NIM concurrency sweep (TTFT, inter-token latency, throughput) and
  vLLM CI latency tests (end-to-end latency of one batch). vLLM's ShareGPT throughput rows give
  requests/s for a length distribution the row does not state; they are listed as skipped.
  :mod:`factoryplan.validation.published` reads them, and any other table of that layout (other
  GPUs, models and precisions by the same rules).

Mapping rules (the same for every row, stated here once):

* precision: ``gemm_quant_mode`` gives the dense linear layers, ``moe_quant_mode`` the experts
  (where both are blank, a ``precision`` column's format gives both: it summarizes them)
  (empty, ``none``, ``float16``: BF16; ``fp8``/``fp8_block``: FP8; ``nvfp4``/``mxfp4``: FP4; ``int4_wo``:
  INT4 weight-only; ``int8_wo``, ``sq`` (SmoothQuant W8A8), ``int8``: FP8's bytes and rate, INT8 weight-only
  at BF16; a mode naming no format skips the row with the reason); a ``wXaY`` mode names
  the activations too (``w4a8_mxfp4_fp8``: FP4 weights times FP8 activations, at the FP8 tensor-core
  rate); an FP4 mode that names none, on a model whose FP4 checkpoint is weight-only (gpt-oss's MXFP4,
  the catalog's ``release``), multiplies with that scheme's activations (BF16), not as NVFP4 W4A4;
  the KV cache follows the engine's default
  (:class:`~factoryplan.perf.inference.Constants`) unless an optional ``kv_cache_quant_mode`` (or
  ``kv_cache_dtype``) column names it (``bfloat16``/``fp16``: BF16; ``fp8``, ``fp8_e4m3``, ``int8``:
  8-bit; ``nvfp4``/``fp4_e2m1``: FP4, on parts with FP4 units; ``auto`` or blank: the default).
* prefix caching: an optional ``prefix`` column gives the leading prompt tokens the engine's prefix
  cache already held (not prefilled; 0 when absent).
* requests per user: an optional ``requests_per_user`` column gives how many requests each user sent
  in the run (a benchmark client's prompts over its concurrency): the first of each queued as the
  first wave, one in that many (blank: the calibrated share, ``burst_share``).
* lengths sent: an optional ``random_range_ratio`` column gives the client's range ratio ``r``: each
  prompt and output length drawn uniformly from the whole numbers ``[int(r·L), L]`` around the row's
  nominal ``L``, so the engine saw ``(int(r·L) + L)/2`` on average (:func:`sent_length`; blank: 1, every
  request ``L`` long). The rows from InferenceMAX's result files (a ``source_file=YYYY-MM-DD.csv`` or
  ``db-dump/`` source, :func:`inferencemax_row`) ran its client, ``benchmark_serving.py``, with
  ``--random-range-ratio 0.8`` and ``--num-prompts`` ten times ``--max-concurrency`` (its benchmark
  scripts): blank cells of theirs read 0.8 and 10 requests per user.
* scheduling: SGLang rows are predicted with prompt chunks mixed into decode iterations
  (``--enable-mixed-chunk``), except release 0.5.1's, which prefill apart from decoding, SGLang's
  default, their users, started together, in lockstep (:func:`harness_mixes_prefill`). The
  deployment generator of NVIDIA's aiconfigurator, which launched the runs of its own gap analyses
  (SGLang 0.5.1, 0.5.6, 0.5.8 here), sets the flag for aggregated workers (``rule_plugin/sglang.rule``)
  but its 0.5.1 template (``cli_args.0.5.1.post1.j2``) tests a misspelt key, ``enable-mix-chunk``, and
  never passes it; the InferenceMAX runs (SGLang 0.5.9 and a GLM-5 build) drift apart as mixed runs
  do (``benchmarks/lockstep_campaigns.py``), whatever their launch said. TensorRT-LLM and vLLM always
  mix.
* concurrency: ``silicon_concurrency`` from the source column when given, else
  ``batch_size x attention_dp_size`` (the batch is per attention-DP rank).
* parallelism: ``tp_size`` attention TP, ``attention_dp_size`` attention DP (blank = 1),
  ``moe_tp_size``/``moe_ep_size`` for the experts (0 = 1). Five inconsistent encodings are
  repaired and the row says so in ``repair``: (a) a MoE row whose ``tp x dp`` is smaller than
  ``moe_tp x ep`` gets attention DP to match; (b) a row whose concurrency is ``batch x tp`` with no
  attention DP ran DP attention over the ``tp`` GPUs; (c) a row whose ``tp x dp`` exceeds the
  system's NVLink domain while ``moe_tp = ep = tp x dp / ep`` encodes a one-domain run of ``ep``
  GPUs as a product (the same measurement appears elsewhere in the file with ``ep`` GPUs);
  (d) likewise a row of ``tp x dp`` GPUs beyond the domain with ``ep = tp x dp``, no expert TP and
  ``tp > 1`` is the ``tp``-GPU run with ``ep = tp`` (the file has the same points with that
  encoding). A row with ``tp = 1`` and ``dp = ep`` beyond the domain is a genuine multi-node
  wide-EP run and is kept (its collectives cross the scale-out network). (e) A MoE row whose
  ``moe_tp x ep`` is smaller than ``tp x dp`` (blank expert columns) splits the experts over the
  whole group by expert tensor parallelism, as the engines do. (f) A MoE row whose ``ep`` does not
  divide the routed experts ran with a load balancer's redundant copies (the engines need as many
  expert slots on every rank: TensorRT-LLM ``num_slots``, SGLang's redundant experts): the fewest
  that make it so (DeepSeek-R1 on 48 or 72 ranks: 32, 288 slots).
* disaggregated rows (``mode`` disagg): the ``prefill_*`` and ``decode_*`` columns give each
  side's parallelism (with the same repairs), ``prefill_num_workers``/``decode_num_workers`` the
  worker counts, ``decode_batch_size`` and ``prefill_batch_size`` the workers' batch limits per
  attention-DP rank;
  concurrency as above, else every decode slot. They are predicted by
  :func:`~factoryplan.perf.serving.closed_loop_disaggregated`; the calibration set has none, so
  those predictions rest on the aggregated calibration alone.
* rows whose model is neither in the catalog nor given as a config.json (``--configs``), or whose
  config factoryplan cannot read (an unknown attention or layer kind), are skipped with the reason.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from factoryplan.catalog.load import Catalog
from factoryplan.catalog.models import repo_model_id as model_id
from factoryplan.catalog.models import resolve_model
from factoryplan.catalog.schema import Accelerator, ModelArch
from factoryplan.errors import FactoryplanError, InfeasibleError
from factoryplan.perf.inference import (
    BACKENDS,
    Array,
    Constants,
    Hardware,
    ModelShape,
    Parallel,
    Precision,
    check_kv_hardware,
    constants_from_catalog,
    engine_activations,
    hardware_of,
    iteration,
    kv_precision,
    shape_of,
    sparse_on_fp4,
)
from factoryplan.perf.serving import closed_loop_disaggregated, serve, with_requests_per_user

DATA = Path(__file__).parent / "data"
MEASURED = DATA / "serving_measured_hopper.csv"

MEASURED_COLUMNS = ("id", "model_path", "system", "backend", "isl", "osl", "gemm_quant_mode", "moe_quant_mode",
                    "batch_size", "tp_size", "silicon_ttft_ms", "silicon_tpot_ms")
QUANT = {"": "bf16", "bf16": "bf16", "fp16": "bf16", "fp8": "fp8", "fp8_block": "fp8", "nvfp4": "fp4",
         "mxfp4": "fp4", "w4a16_mxfp4": "fp4", "int4_wo": "int4", "w4a8_awq": "int4", "w4a16_awq": "int4",
         # INT8 weights (weight-only, SmoothQuant W8A8): FP8's bytes and, with 8-bit activations, its
         # tensor-core rate (INT8 and FP8 dense rates are equal on Hopper and B200)
         "int8_wo": "fp8", "int8": "fp8", "sq": "fp8", "w8a8": "fp8", "w8a8_sq": "fp8"}


@dataclass(frozen=True)
class Point:
    """One measured or published serving result as engine inputs plus what was measured."""

    id: str
    source: str
    model: str
    accelerator: str
    system: str
    backend: str
    weights: str
    experts: str
    par: Parallel
    isl: float
    osl: float
    concurrency: float  # 0: the engine's full load (offline max throughput)
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    output_tokens_per_s: float | None = None
    e2e_ms: float | None = None  # one batch of ``concurrency`` requests, start to end
    repair: str = ""
    version: str = ""
    disagg: Disagg | None = None  # a disaggregated deployment; ``par`` is then its decode workers'
    activations: str = ""  # what the GEMMs multiply with ("": the weights' own)
    prefix: float = 0.0  # leading prompt tokens the prefix cache held (not prefilled)
    kv: str = ""  # KV-cache precision ("": the engine's default)
    requests_per_user: float = 0.0  # requests each user sent in the run (0: not given, the calibrated share)
    mixes_prefill: bool | None = None  # the run's engine mixed prompt chunks into decodes (None: its default)
    fuses_allreduce: bool | None = None  # the run's engine fused all-reduce and RMSNorm (None: its default)
    range_ratio: float = 1.0  # lengths drawn from [int(r·L), L] around the nominal isl/osl (1: fixed)

    @property
    def isl_sent(self) -> float:
        """The mean prompt length the engine saw (:func:`sent_length`)."""
        return sent_length(self.isl, self.range_ratio)

    @property
    def osl_sent(self) -> float:
        """The mean output length the engine produced (:func:`sent_length`)."""
        return sent_length(self.osl, self.range_ratio)


def sent_length(nominal: float, range_ratio: float) -> float:
    """The mean of lengths drawn uniformly from the whole numbers ``[int(r·L), L]`` (a benchmark
    client's ``--random-range-ratio r``, vLLM's and SGLang's ``benchmark_serving.py`` random data set):
    ``(int(r·L) + L)/2``; ``L`` at ``r = 1``."""
    if range_ratio >= 1.0:
        return nominal
    return (math.floor(range_ratio * nominal) + nominal) / 2.0


# The InferenceMAX harness (SemiAnalysis InferenceMAX benchmark scripts: ``run_benchmark_serving
# --random-range-ratio "$RANDOM_RANGE_RATIO" --num-prompts $((CONC * 10)) --max-concurrency "$CONC"``,
# the ratio 0.8 in its workload configurations): how its result rows are named in a data set's source
# column, and the client settings they ran with.
INFERENCEMAX_SOURCE = re.compile(r"(source_file=\d{4}-\d\d-\d\d\.csv|db-dump/)")
INFERENCEMAX_RANGE_RATIO = 0.8
INFERENCEMAX_REQUESTS_PER_USER = 10.0


def inferencemax_row(source: str) -> bool:
    """Whether a measured row's ``silicon_data_source`` names one of InferenceMAX's result files."""
    return bool(INFERENCEMAX_SOURCE.match(source.strip()))


def implied_output_tokens_per_s(p: Point) -> float | None:
    """The output throughput a closed-loop point's measured TTFT and TPOT imply (Little's law):
    ``C·OSL / (TTFT + (OSL-1)·TPOT)`` at the mean output length sent; the published figure when the
    point has one."""
    if p.output_tokens_per_s is not None or not (p.ttft_ms and p.tpot_ms):
        return p.output_tokens_per_s
    osl = p.osl_sent
    return p.concurrency * osl * 1e3 / (p.ttft_ms + (osl - 1.0) * p.tpot_ms)


@dataclass(frozen=True)
class Disagg:
    """The prefill side of a disaggregated point and the worker counts."""

    prefill: Parallel
    prefill_workers: int
    decode_workers: int
    decode_batch: int  # the decode workers' batch limit per attention-DP rank
    prefill_batch: float = float("inf")  # the prefill workers' batch limit per attention-DP rank


@dataclass
class Loaded:
    """Points and the rows left out, with reasons."""

    points: list[Point] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # columns of the file the mapping does not read


def hardware_id(catalog: Catalog, name: str) -> tuple[str, str] | None:
    """(accelerator, system) of a data set's system name (``h200_sxm``, ``gb200``, ``b200_sxm``): the
    catalog's ids and aliases, in any case, with '_' for '-' (:meth:`Catalog.hardware_id`)."""
    if catalog.hardware_id(name.strip()) is None:
        return None
    acc, system = catalog.hardware(name.strip())
    return acc.id, system.id


def whole(text: str, default: int = 1) -> int:
    """A count written in a data set; ``default`` when blank, unreadable or not positive."""
    try:
        value = int(float(text))
    except ValueError:
        return default
    return value if value > 0 else default


def number(text: str) -> float | None:
    """A number written in a data set (thousands separators allowed), or None."""
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def row_parallel(row: dict[str, str], experts: int, domain: int, conc: float) -> tuple[Parallel, str]:
    """Parallelism of a measured row of a model with ``experts`` routed experts (0: dense), with the
    repairs the module docstring lists."""
    tp, dp = whole(row["tp_size"]), whole(row.get("attention_dp_size", ""))
    mtp, ep = whole(row.get("moe_tp_size", "")), whole(row.get("moe_ep_size", ""))
    batch, pp = whole(row["batch_size"]), whole(row.get("pp_size", ""))
    repair = ""
    if not experts:
        return Parallel(tp=tp, dp=dp, pp=pp), repair
    if tp * dp > domain and mtp == ep > 1 and tp * dp == mtp * ep:
        gpus = ep
        tp, dp = (1, gpus) if dp > 1 else (gpus, 1)
        mtp, repair = 1, f"(c) {row['tp_size']}x{row.get('attention_dp_size') or 1} GPUs read as {gpus}"
    elif tp * dp > domain and mtp == 1 and ep == tp * dp and dp > 1 and tp > 1:
        dp, ep, repair = 1, tp, f"(d) {tp}x{dp} GPUs with ep {tp * dp} read as tp {tp}, ep {tp}"
    elif dp == 1 and tp > 1 and conc == batch * tp and conc != batch:
        tp, dp, repair = 1, tp, "(b) concurrency = batch x tp: attention DP"
    elif tp * dp < mtp * ep:
        dp, repair = mtp * ep // tp, "(a) attention DP to match moe_tp x ep"
    if tp * dp > mtp * ep and (tp * dp) % ep == 0:  # no expert split given: the group's GPUs share them
        mtp, repair = tp * dp // ep, repair or f"(e) experts split {tp * dp // ep} x {ep} over the {tp * dp} GPUs"
    redundant = -experts % ep  # (f) the fewest copies that give every rank as many slots
    if redundant:
        note = f"(f) ep {ep} with {experts} experts: {redundant} redundant slots ({(experts + redundant) // ep} a rank)"
        repair = f"{repair}; {note}" if repair else note
    return Parallel(tp=tp, dp=dp, moe_tp=mtp, ep=ep, pp=pp, redundant=redundant), repair


# The parallelism columns of a measured row (and of its prefill_/decode_ sides).
_PARALLEL_COLUMNS = ("batch_size", "tp_size", "pp_size", "attention_dp_size", "moe_tp_size", "moe_ep_size")


def _side(row: dict[str, str], side: str) -> dict[str, str]:
    """The ``prefill_``/``decode_`` columns of a disaggregated row under the aggregated names."""
    return {**row, **{n: row.get(f"{side}_{n}", "") for n in _PARALLEL_COLUMNS}}


def _disaggregated(
    row: dict[str, str], experts: int, domain: int
) -> tuple[Parallel, Disagg, float, str]:
    """(decode parallelism, prefill side, concurrency, repairs) of a disaggregated row of a model with
    ``experts`` routed experts (0: dense). Concurrency: ``silicon_concurrency`` when the source gives
    it, else every decode slot (batch x dp x workers)."""
    dec_row, pre_row = _side(row, "decode"), _side(row, "prefill")
    dec_dp = whole(dec_row["attention_dp_size"])
    workers = whole(row.get("decode_num_workers", ""))
    m = re.search(r"silicon_concurrency=(\d+)", row.get("silicon_data_source", ""))
    conc = float(m.group(1)) if m else float(whole(dec_row["batch_size"]) * dec_dp * workers)
    dec, r1 = row_parallel(dec_row, experts, domain, conc / workers)
    pre, r2 = row_parallel(pre_row, experts, domain, float(whole(pre_row["batch_size"])))
    prefill_batch = float(whole(pre_row["batch_size"])) if pre_row["batch_size"].strip() else float("inf")
    disagg = Disagg(prefill=pre, prefill_workers=whole(row.get("prefill_num_workers", "")), decode_workers=workers,
                    decode_batch=whole(dec_row["batch_size"]), prefill_batch=prefill_batch)
    repair = "; ".join(f"{side}: {r}" for side, r in (("decode", r1), ("prefill", r2)) if r)
    return dec, disagg, conc, repair


def _concurrency(row: dict[str, str]) -> float:
    m = re.search(r"silicon_concurrency=(\d+)", row.get("silicon_data_source", ""))
    if m:
        return float(m.group(1))
    return float(whole(row["batch_size"]) * whole(row.get("attention_dp_size", "")))


def engine_name(text: str) -> str | None:
    """The engine profile a data set's backend names (``trtllm``, ``TensorRT-LLM``, ``dynamo-trtllm``,
    ``vLLM``, ``sglang``), or None."""
    key = re.sub(r"[^a-z]", "", text.lower())
    spellings = {"trtllm": ("trtllm", "tensorrtllm")}
    return next((name for name in BACKENDS if any(t in key for t in spellings.get(name, (name,)))), None)


# Spellings of "not quantized" in data sets (an empty cell, or a None/NaN written out by a script).
_UNQUANTIZED = frozenset({"", "none", "null", "nan", "n/a", "na", "unquantized", "bf16", "fp16", "half"})


def quant(mode: str) -> str | None:
    """The engine precision of a data set's quantization mode (``fp8_block`` -> ``fp8``,
    ``w4a8_mxfp4_fp8`` -> ``fp4``, ``int4_wo`` -> ``int4``, ``float16``, ``none`` and empty -> ``bf16``);
    None for a mode that names no known format (the row is then skipped with the reason)."""
    key = mode.strip().lower()
    if key in QUANT:
        return QUANT[key]
    if key in _UNQUANTIZED:
        return "bf16"
    for token, prec in (("fp4", "fp4"), ("int4", "int4"), ("w4", "int4"), ("fp8", "fp8"), ("16", "bf16")):
        if token in key:
            return prec
    return None


# KV-cache columns a data set may carry, and their spellings (8-bit integer caches take FP8's bytes).
KV_COLUMNS = ("kv_cache_quant_mode", "kv_cache_dtype")
_KV_MODES = {"bf16": "bf16", "bfloat16": "bf16", "fp16": "bf16", "float16": "bf16", "half": "bf16", "fp8": "fp8",
             "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "int8": "fp8", "nvfp4": "fp4", "fp4": "fp4", "fp4_e2m1": "fp4"}


def kv_of(row: dict[str, str]) -> tuple[str | None, str]:
    """(KV-cache precision, the column and value it came from) of a measured row: "" (the engine's
    default) when no KV column is given or it says ``auto``; None for a value naming no format."""
    for name in KV_COLUMNS:
        text = (row.get(name) or "").strip()
        if text and text.lower() not in ("auto", "none", "nan"):
            return _KV_MODES.get(text.lower()), f"{name} {text!r}"
    return "", ""


def checkpoint_activations(
    catalog: Catalog, arch: ModelArch, experts: str, activations: str, acc: Accelerator, backend: str
) -> str:
    """The activations a row's experts are multiplied with: the ones its label names, else, for an FP4
    label on a model whose FP4 checkpoint is weight-only (gpt-oss's MXFP4, its ``release``), what the
    row's engine (``backend``) multiplies that checkpoint with on ``acc`` (:func:`engine_activations`: BF16 on
    Hopper; MXFP8 in TensorRT-LLM and SGLang on parts with FP4 tensor cores), not NVFP4 W4A4's; else ""
    (the weights' own)."""
    release = arch.release
    if activations or experts != "fp4" or release is None or release.experts_format() != "fp4":
        return activations
    return engine_activations(release.activations, experts, acc, constants_from_catalog(catalog, backend))


def activations_of(*modes: str) -> str:
    """The activation precision a quantization mode names (``w4a8_*`` and ``w4afp8`` -> ``fp8``, ``w4a16_*`` and
    ``int4_wo`` -> ``bf16``); "" when it names none (the weights' own), from the first mode that does."""
    for mode in modes:
        key = mode.strip().lower()
        m = re.search(r"w\d+a(?:fp|int)?(\d+)", key)
        if m:
            return {"16": "bf16", "8": "fp8", "4": "fp4"}.get(m.group(1), "")
        if key.endswith("_wo"):
            return "bf16"
    return ""


def _model_ref(catalog: Catalog, repo: str, configs: Path | None) -> tuple[str | None, str]:
    """(catalog id or config.json path, reason when none): the catalog first, then
    ``<configs>/<org>--<name>_config.json`` (the calibration set's naming)."""
    mid = model_id(catalog.models, repo)
    if mid is not None:
        return mid, ""
    if configs is not None:
        cfg = configs / (repo.strip().replace("/", "--") + "_config.json")
        matches = [c for c in configs.glob("*_config.json") if c.name.lower() == cfg.name.lower()]
        if matches:
            try:
                resolve_model(catalog, str(matches[0]))
            except FactoryplanError as exc:
                return None, exc.message
            return str(matches[0]), ""
    return None, f"model {repo} not in the catalog"


def load_measured(
    catalog: Catalog, path: Path = MEASURED, source: str = "measured", configs: Path | None = None
) -> Loaded:
    """Points of a file in the aiconfigurator silicon-data layout (aggregated and disaggregated rows).

    Models resolve to catalog ids, else to a Hugging Face config.json in ``configs``; rows whose
    model, system or serving engine is unknown are listed in ``skipped`` with the reason.
    """
    out = Loaded()
    rows = read_table(path, MEASURED_COLUMNS, "measured-points", "serving_measured_hopper.csv")
    out.unread = sorted(set(rows[0]) - _READ_COLUMNS) if rows else []
    for row in rows:
        point, reason = _measured_point(catalog, row, source, configs)
        if point is None:
            out.skipped.append((row["id"], reason))
        else:
            out.points.append(point)
    return out


def read_table(path: Path, columns: Sequence[str], what: str, example: str) -> list[dict[str, str]]:
    """The rows of a CSV file that has ``columns`` (blank cells as ""); refused naming the file and
    the columns it lacks (``what``: the kind of file, ``example``: the file whose columns it needs)."""
    if not path.is_file():
        raise FactoryplanError("file not found", where=str(path))
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise FactoryplanError(f"not a {what} file", where=str(path), field=", ".join(missing),
                                   allowed=f"the columns of {example}")
        return [{k: v or "" for k, v in r.items() if isinstance(k, str)} for r in reader]


# Whole-number columns of a measured row (blank: not given, read as 1 where a count is needed).
_INT_COLUMNS = (*(f"{side}{n}" for side in ("", "prefill_", "decode_") for n in _PARALLEL_COLUMNS),
                "prefill_num_workers", "decode_num_workers")


# Every column the mapping reads (the module docstring's rules): a file's others are reported, not used.
_READ_COLUMNS = frozenset({
    "id", "silicon_data_source", "backend", "backend_version", "model_path", "system", "precision", "mode", "isl",
    "osl", "gemm_quant_mode", "moe_quant_mode", "silicon_ttft_ms", "silicon_tpot_ms", *_INT_COLUMNS, "prefix",
    "requests_per_user", "random_range_ratio", *KV_COLUMNS,
})


def harness_fuses_allreduce(backend: str, version: str) -> bool | None:
    """Whether runs of ``backend`` ``version`` fused each TP all-reduce with the RMSNorm after it,
    where that differs from the engine's profile (None: the profile's): vLLM did by default from 0.17
    (the fusion pass went on by default in February 2026, vLLM PR #34299; from v0.17 on Hopper, vLLM
    recipes PR #325), not before. A run whose release is not recorded (a CI build, a file without
    the image) is taken as one of the releases before, which ran every earlier benchmark."""
    if backend != "vllm":
        return None
    release = _release(version)
    return None if release is not None and release >= (0, 17) else False


def _release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a release name such as ``0.16.0`` or ``0.5.1.post1``; None when not one."""
    parts = version.strip().split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]), int(parts[1])


def harness_mixes_prefill(backend: str, version: str) -> bool | None:
    """Whether the measured set's runs of ``backend`` ``version`` had prompt chunks mixed into decode
    iterations, where that differs from the engine's default (None: the engine's own): SGLang with
    ``--enable-mixed-chunk`` but 0.5.1 without (the module docstring's scheduling rule)."""
    if backend != "sglang":
        return None
    return not version.strip().startswith("0.5.1")


def _measured_point(
    catalog: Catalog, row: dict[str, str], source: str, configs: Path | None
) -> tuple[Point | None, str]:
    ref, reason = _model_ref(catalog, row["model_path"], configs)
    hw = hardware_id(catalog, row["system"])
    named = (row.get("mode") or "agg").strip().lower()
    mode = {"aggregated": "agg", "disaggregated": "disagg"}.get(named, named)
    if mode not in ("agg", "disagg"):
        return None, f"serving mode {mode!r} (agg or disagg)"
    if ref is None:
        return None, reason
    if hw is None:
        return None, f"system {row['system']} not in the catalog"
    backend = engine_name(row["backend"])
    if backend is None:
        return None, f"serving engine {row['backend']} has no profile"
    values: dict[str, float | None] = {}
    for name in ("isl", "osl", "silicon_ttft_ms", "silicon_tpot_ms"):
        text = (row.get(name) or "").strip()
        value = number(text) if text else None
        if text and (value is None or not math.isfinite(value) or value <= 0):
            return None, f"{name} {text!r} is not a positive number"
        values[name] = value
    for name in _INT_COLUMNS:
        text = (row.get(name) or "").strip()
        count = number(text) if text else 0.0
        if count is None or not math.isfinite(count) or count < 0 or count != int(count):
            return None, f"{name} {text!r} is not a whole number"
    if values["isl"] is None or values["osl"] is None:
        return None, "isl and osl must be given"
    text = (row.get("prefix") or "").strip()  # cached prompt tokens, when the file gives them
    prefix = number(text) if text else 0.0
    if prefix is None or not math.isfinite(prefix) or prefix < 0 or prefix != int(prefix) or prefix >= values["isl"]:
        return None, f"prefix {text!r} is not a whole number of cached tokens below isl"
    text = (row.get("requests_per_user") or "").strip()  # the run's requests per user, when the file gives them
    per_user = number(text) if text else 0.0
    if per_user is None or not math.isfinite(per_user) or per_user != int(per_user) or (text and per_user < 1):
        return None, f"requests_per_user {text!r} is not a whole number of requests (1 or more)"
    harness = inferencemax_row(row.get("silicon_data_source", ""))
    if not text and harness:
        per_user = INFERENCEMAX_REQUESTS_PER_USER
    text = (row.get("random_range_ratio") or "").strip()
    ratio = number(text) if text else (INFERENCEMAX_RANGE_RATIO if harness else 1.0)
    if ratio is None or not math.isfinite(ratio) or not 0.0 <= ratio <= 1.0:
        return None, f"random_range_ratio {text!r} is not a ratio from 0 to 1"
    if values["silicon_ttft_ms"] is None and values["silicon_tpot_ms"] is None:
        return None, "neither silicon_ttft_ms nor silicon_tpot_ms is given"
    names = ("gemm_quant_mode", "moe_quant_mode")
    summary = (row.get("precision") or "").strip()
    from_summary = bool(summary) and not any((row.get(n) or "").strip() for n in names)  # only it names a format
    modes = [summary if from_summary else row.get(n, "") for n in names]
    weights, experts = quant(modes[0]), quant(modes[1])
    if weights is None or experts is None:
        name = "precision" if from_summary else names[0] if weights is None else names[1]
        text = summary if from_summary else row[name]
        return None, (f"{name} {text!r} names no known format (bf16/fp16/none, fp8, fp8_block, nvfp4, mxfp4, "
                      "int4_wo, w4aN_*)")
    kv, kv_given = kv_of(row)
    if kv is None:
        return None, f"{kv_given} names no known KV-cache format (bfloat16, fp8, int8, nvfp4, auto)"
    try:
        check_kv_hardware(kv, catalog.accelerators[hw[0]], field=kv_given)
    except InfeasibleError as exc:
        return None, f"{kv_given}: {exc.message}"
    arch = resolve_model(catalog, ref)
    activations = checkpoint_activations(catalog, arch, experts, activations_of(*modes),
                                         catalog.accelerators[hw[0]], backend)
    domain = catalog.systems[hw[1]].scaleup_domain_gpus
    disagg = None
    routed = arch.moe.experts if arch.moe is not None else 0
    if mode == "disagg":
        par, disagg, conc, repair = _disaggregated(row, routed, domain)
    else:
        conc = _concurrency(row)
        par, repair = row_parallel(row, routed, domain, conc)
    return Point(
        id=row["id"], source=source, model=ref, accelerator=hw[0], system=hw[1], backend=backend,
        weights=weights, experts=experts, par=par, activations=activations,
        isl=float(values["isl"]), osl=float(values["osl"]), concurrency=conc, ttft_ms=values["silicon_ttft_ms"],
        tpot_ms=values["silicon_tpot_ms"], repair=repair, version=row.get("backend_version", ""), disagg=disagg,
        prefix=prefix, kv=kv, requests_per_user=per_user,
        mixes_prefill=harness_mixes_prefill(backend, row.get("backend_version", "")), range_ratio=ratio,
        fuses_allreduce=harness_fuses_allreduce(backend, row.get("backend_version", "")),
    ), ""


# ---------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Prediction:
    """Predicted figures of one point (ms, tokens/s)."""

    ttft_ms: float
    tpot_ms: float
    output_tokens_per_s: float
    e2e_ms: float
    fits: bool


GroupKey = tuple[str, str, str, str, str, str, str, str, str, float, bool | None, bool | None]


def _group_key(p: Point) -> GroupKey:
    return (p.model, p.accelerator, p.system, p.backend, p.weights, p.experts, p.activations, p.kv,
            "disagg" if p.disagg else "agg", p.requests_per_user, p.mixes_prefill, p.fuses_allreduce)


def point_precision(catalog: Catalog, p: Point, k: Constants) -> Precision:
    """The formats a point's engine ran with: its weights, experts and activations, and its KV cache
    as given, else the engine's default for that model on that part (:func:`kv_precision`)."""
    sparse = sparse_on_fp4(resolve_model(catalog, p.model), catalog.accelerators[p.accelerator])
    return Precision(weights=p.weights, experts=p.experts, activations=p.activations,
                     kv=kv_precision(k, p.weights, p.kv, sparse_on_fp4=sparse))


def _parallel_arrays(pars: Iterable[Parallel]) -> Parallel:
    items = list(pars)
    return Parallel(*(_as_array(getattr(p, f) for p in items) for f in ("tp", "dp", "moe_tp", "ep", "pp")))


def _as_array(values: Iterable[float]) -> Array:
    return np.asarray(list(values), dtype=np.float64)


def predict(
    catalog: Catalog, points: Sequence[Point], constants: dict[str, Constants] | None = None
) -> list[Prediction]:
    """Predictions for ``points``, vectorized per (model, hardware, backend, precision) group.

    ``constants`` maps backend -> :class:`Constants` (default: the catalog's calibration).
    Points with ``concurrency == 0`` run at the engine's full load (the concurrency the KV cache
    holds); points with ``e2e_ms`` are one batch prefilled together then decoded. Measured points
    come from a harness that starts all users at once (``burst``); the published NIM sweep warms up
    first (steady state).
    """
    consts = constants or {}
    out: list[Prediction | None] = [None] * len(points)
    groups: dict[GroupKey, list[int]] = {}
    for i, p in enumerate(points):
        groups.setdefault(_group_key(p), []).append(i)
    for key, idx in groups.items():
        model, acc, system, backend, _, _, _, _, mode, per_user, mixes, fuses = key
        k = consts.get(backend) or constants_from_catalog(catalog, backend)
        k = with_requests_per_user(k, per_user)  # the run's requests per user, where the file gives them
        if mixes is not None:  # the harness's scheduling, where it set one
            k = replace(k, mixes_prefill=mixes)
        if fuses is False:  # the run's release predates the profile's fusion
            k = replace(k, fused_allreduce=())
        shape = shape_of(resolve_model(catalog, model))
        hw = hardware_of(catalog.accelerators[acc], catalog.systems[system])
        pts = [points[i] for i in idx]
        prec = point_precision(catalog, pts[0], k)  # the group's points share their precisions
        par = _parallel_arrays(p.par for p in pts)
        isl, osl = _as_array(p.isl_sent for p in pts), _as_array(p.osl_sent for p in pts)
        conc = _as_array(p.concurrency for p in pts)
        if mode == "disagg":
            for i, pred in zip(idx, _predict_disaggregated(shape, hw, par, prec, k, pts), strict=True):
                out[i] = pred
            continue
        batch_mode = _as_array(1.0 if p.e2e_ms is not None else 0.0 for p in pts)
        prefix = _as_array(p.prefix for p in pts)
        full = serve(shape, hw, par, prec, k, concurrency=np.full_like(conc, 1e9), isl=isl, osl=osl, prefix=prefix)
        conc = np.where(conc > 0, conc, full.mem.max_concurrency)
        burst = _as_array(1.0 if p.source != "published" else 0.0 for p in pts)
        res = serve(shape, hw, par, prec, k, concurrency=conc, isl=isl, osl=osl, burst=burst, prefix=prefix)
        e2e = _batch_latency(shape, hw, par, prec, k, conc, isl, osl)
        ttft, tpot = np.asarray(res.ttft_s) * 1e3, np.asarray(res.tpot_s) * 1e3
        tps, fits = np.asarray(res.output_tokens_per_s), np.asarray(res.mem.fits)
        for j, i in enumerate(idx):
            out[i] = Prediction(
                ttft_ms=float(ttft[j]), tpot_ms=float(tpot[j]), output_tokens_per_s=float(tps[j]),
                e2e_ms=float(e2e[j]) * 1e3 if batch_mode[j] else float("nan"), fits=bool(fits[j]),
            )
    return [p for p in out if p is not None]


def _predict_disaggregated(
    shape: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, pts: list[Point]
) -> list[Prediction]:
    """Disaggregated points: prefill and decode workers in a closed loop (:func:`closed_loop_disaggregated`)."""
    sides = [p.disagg for p in pts if p.disagg is not None]
    res = closed_loop_disaggregated(
        shape, hw, _parallel_arrays(d.prefill for d in sides), par, prec, k,
        concurrency=_as_array(p.concurrency for p in pts), isl=_as_array(p.isl_sent for p in pts),
        osl=_as_array(p.osl_sent for p in pts), prefill_workers=_as_array(d.prefill_workers for d in sides),
        decode_workers=_as_array(d.decode_workers for d in sides),
        decode_batch_max=_as_array(d.decode_batch for d in sides),
        prefill_batch_max=_as_array(d.prefill_batch for d in sides),
        burst=_as_array(1.0 if p.source != "published" else 0.0 for p in pts),
        prefix=_as_array(p.prefix for p in pts),
    )
    ttft, tpot = np.asarray(res.ttft_s) * 1e3, np.asarray(res.tpot_s) * 1e3
    tps, fits = np.asarray(res.output_tokens_per_s), np.asarray(res.fits)
    return [Prediction(ttft_ms=float(ttft[j]), tpot_ms=float(tpot[j]), output_tokens_per_s=float(tps[j]),
                       e2e_ms=float("nan"), fits=bool(fits[j])) for j in range(len(pts))]


def _batch_latency(
    shape: ModelShape, hw: Hardware, par: Parallel, prec: Precision, k: Constants, conc: Array, isl: Array,
    osl: Array,
) -> Array:
    """One batch of ``conc`` prompts prefilled in one pass, then ``osl - 1`` decode iterations."""
    pre = iteration(shape, hw, par, prec, k, decode_seqs=0.0, ctx=isl, prompts=conc, prompt_len=isl).total
    dec = iteration(shape, hw, par, prec, k, decode_seqs=conc, ctx=isl + osl / 2.0).total
    return np.asarray(pre + (osl - 1.0) * dec, dtype=np.float64)


def band_gpus(points: Sequence[Point]) -> dict[str, list[str]]:
    """Per serving engine, the accelerators ``points`` were measured on (sorted): the calibration
    entry's ``measured_on``, which ``serve`` names when it reports the band for another part."""
    out: dict[str, set[str]] = {}
    for p in points:
        out.setdefault(p.backend, set()).add(p.accelerator)
    return {b: sorted(a) for b, a in out.items()}


def error_bands(points: Sequence[Point], preds: Sequence[Prediction]) -> dict[str, dict[str, float]]:
    """Per serving engine, the 10th and 90th percentile of measured / predicted TTFT, TPOT and output
    throughput over ``points`` (give measured points the throughput their TTFT and TPOT imply,
    :func:`implied_output_tokens_per_s`), and how many points: the band the calibration entries
    carry (``ttft_measured_p10_ratio`` ..., ``band_points_count``) and ``serve`` reports."""
    ratios: dict[str, dict[str, list[float]]] = {}
    for p, q in zip(points, preds, strict=True):
        for name, pr, me in (("ttft", q.ttft_ms, p.ttft_ms), ("tpot", q.tpot_ms, p.tpot_ms),
                             ("throughput", q.output_tokens_per_s, p.output_tokens_per_s)):
            if me and math.isfinite(pr) and pr > 0:
                ratios.setdefault(p.backend, {}).setdefault(name, []).append(me / pr)
    out: dict[str, dict[str, float]] = {}
    for backend, by in ratios.items():
        out[backend] = {"band_points_count": float(max(len(v) for v in by.values()))}
        out[backend] |= {f"{name}_measured_p{pct}_ratio": float(np.percentile(v, pct))
                         for name, v in by.items() for pct in (10, 90)}
    return out


def _configuration(p: Point) -> tuple[object, ...]:
    """Everything that defines a serving run except the GPU it ran on."""
    par = tuple(float(np.asarray(getattr(p.par, f))) for f in ("tp", "dp", "moe_tp", "ep", "pp", "redundant"))
    return (p.source, p.model, p.backend, p.version, p.weights, p.experts, p.activations, p.kv, par, repr(p.disagg),
            p.isl, p.osl, p.prefix, p.concurrency)


def gpu_scaling(
    points: Sequence[Point], preds: Sequence[Prediction], order: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """How each figure changes between two GPUs that ran the same configuration (same model, engine
    and engine version, precisions, layout, lengths and users), measured against predicted.

    A campaign's own effects (its harness, its engine version) are the same on both GPUs and cancel
    in the ratio, so this checks the hardware physics alone, which is what carries a calibration to
    GPUs it has not seen. Per GPU pair ``"a -> b"`` and figure: ``pairs``, the median measured and
    predicted ratio ``b / a``, and the mean and the median of ``|predicted ratio / measured ratio -
    1|`` in % (``ratio_error_pct``, ``median_ratio_error_pct``). The earlier part comes first:
    ``order`` maps accelerator ids to a sort key (the command gives year and BF16 peak); ids without
    one follow, by name. Repeated rows of a configuration on one GPU are averaged; throughput is what
    each point's TTFT and TPOT imply where it has none (:func:`implied_output_tokens_per_s`)."""

    def rank(gpu: str) -> tuple[tuple[float, float], str]:
        return (order or {}).get(gpu, (math.inf, math.inf)), gpu

    runs: dict[tuple[object, ...], dict[str, dict[str, list[tuple[float, float]]]]] = {}
    for p, q in zip(points, preds, strict=True):
        figures = (("ttft_ms", p.ttft_ms, q.ttft_ms), ("tpot_ms", p.tpot_ms, q.tpot_ms),
                   ("output_tokens_per_s", implied_output_tokens_per_s(p), q.output_tokens_per_s))
        on_gpu = runs.setdefault(_configuration(p), {}).setdefault(p.accelerator, {})
        for name, meas, pred in figures:
            if meas and math.isfinite(pred) and pred > 0:
                on_gpu.setdefault(name, []).append((meas, pred))
    ratios: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {}
    for by_gpu in runs.values():
        gpus = sorted(by_gpu, key=rank)
        for i, a in enumerate(gpus):
            for b in gpus[i + 1:]:
                for name in by_gpu[a].keys() & by_gpu[b].keys():
                    (ma, pa), (mb, pb) = (np.mean(by_gpu[g][name], axis=0) for g in (a, b))
                    ratios.setdefault((a, b), {}).setdefault(name, []).append((mb / ma, pb / pa))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (a, b), by_name in sorted(ratios.items(), key=lambda item: (rank(item[0][0]), rank(item[0][1]))):
        pair = out.setdefault(f"{a} -> {b}", {})
        for name, v in sorted(by_name.items()):
            errors = [abs(pr / m - 1.0) * 100.0 for m, pr in v]
            pair[name] = {"pairs": float(len(v)),
                          "measured_ratio_median": float(np.median([m for m, _ in v])),
                          "predicted_ratio_median": float(np.median([pr for _, pr in v])),
                          "ratio_error_pct": float(np.mean(errors)),
                          "median_ratio_error_pct": float(np.median(errors))}
    return out
