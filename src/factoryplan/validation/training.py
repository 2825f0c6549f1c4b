"""Published training runs as engine inputs, and the engine's predictions against them.

``published_runs.csv`` (copied from the project's calibration set, with its sources) has one row
per published result. Training rows with a throughput figure become :class:`TrainingCase` s: the
messy fields (``"8 (recalled; verify)"``, ``"FSDP=8"``, ``"4M tokens"``, ``"156 (best config)"``) are
mapped to the engine's inputs, and every assumption the mapping makes is written into the case's
``notes``:

* Architectures: rows that give layers/hidden/heads are GPT-style (plain 4h MLP, multi-head
  attention, learned positions) unless the model is named; named benchmark models (NeMo's GPT3,
  Llama 2, Nemotron, Llama 3, Qwen3, gpt-oss) take the public configuration from the catalog or
  from ``training_models.yaml`` beside the CSV.
* The published figure is turned into tokens/s per GPU: NeMo rows publish it; Megatron-LM 2021,
  BLOOM and OPT publish TFLOP/s under Narayanan et al.'s eq. 3 (hardware FLOPs with recomputation),
  which :func:`~factoryplan.perf.flops.published_flops_per_token` inverts; MT-NLG publishes the
  iteration time.
* Degrees the row does not give (micro-batch, virtual stages, recomputation) are searched by the
  engine within the row's fixed degrees, as the authors tuned theirs. Pipeline stages may be
  uneven (Megatron's first/last-stage layer counts), as published runs of 61-layer DeepSeek-V3 use.
* Framework features follow the software of the time (``megatron-2021``: no overlap of the
  data-parallel all-reduce; ``megatron-core``: overlapped), a calibration backend, not a per-row fit.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from factoryplan.catalog.load import Catalog, read_yaml
from factoryplan.catalog.schema import ModelArch
from factoryplan.errors import FactoryplanError
from factoryplan.perf.flops import model_shape, published_flops_per_token
from factoryplan.perf.search import search
from factoryplan.perf.training import Efficiencies, Job, efficiencies, hardware

DATA = Path(__file__).parent / "data"
RUNS_CSV = DATA / "published_runs.csv"
MODELS_YAML = DATA / "training_models.yaml"

# model column -> architecture id (catalog or training_models.yaml)
NAMED_MODELS = {
    "GPT3-5B": "nemo-gpt3-5b", "GPT3-20B": "nemo-gpt3-20b", "GPT3-175B": "nemo-gpt3-175b",
    "LLAMA2-7B": "llama-2-7b", "LLAMA2-13B": "llama-2-13b", "LLAMA2-70B": "llama-2-70b",
    "Nemotron-8B": "nemotron-8b", "Nemotron-22B": "nemotron-22b", "Nemotron-340B": "nemotron-4-340b",
    "LLAMA3-8B": "llama-3.1-8b", "LLAMA3-70B": "llama-3.1-70b", "LLAMA3_8B": "llama-3.1-8b",
    "LLAMA3_70B": "llama-3.1-70b", "LLAMA3.1_405B": "llama-3.1-405b", "Qwen3_235B_a22B": "qwen3-235b-a22b",
    "GPT OSS 120B": "gpt-oss-120b",
}
# gpu_type text -> accelerator id: the first part name found (longest first, so GB200 is not B200)
GPU_PATTERN = re.compile(r"(gb300|gb200|b300|b200|h200|h100|h800|h20|a100|mi355x|mi325x|mi300x|gaudi3)")
OPT_VOCAB = 50272  # OPT's GPT-2 BPE vocabulary (Zhang et al. 2022); the row leaves it blank


@dataclass(frozen=True)
class TrainingCase:
    """One published training result as engine inputs."""

    row_id: int
    model: str  # as the row names it
    arch: ModelArch
    accelerator: str
    gpus: int
    precision: str
    seq_len: int
    global_batch: int  # sequences
    fixed: dict[str, int]  # degrees the row gives
    backend: str
    published_tokens_per_s_per_gpu: float
    published_text: str  # the figure as published
    calibration: bool  # in the calibration set (else a generalisation check)
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def source_kind(self) -> str:
        """A short label of the publication, for per-source tolerances."""
        s = self.source
        if "Narayanan" in s:
            return "megatron-2021-zero3" if self.fixed.get("zero") == 3 else "megatron-2021"
        for key, label in (("Turing", "mt-nlg"), ("BLOOM", "bloom"), ("OPT", "opt"), ("Megatron-Bridge", "nemo-25.11")):
            if key in s:
                return label
        return "nemo-24.07"


def _int(text: str) -> int | None:
    m = re.match(r"\s*(\d+)", text or "")
    return int(m.group(1)) if m else None


def _float(text: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?(?:e\d+)?)", (text or "").replace(",", ""))
    return float(m.group(1)) if m else None


@functools.lru_cache(maxsize=1)
def validation_models() -> dict[str, ModelArch]:
    """The architectures of ``training_models.yaml``, validated as catalog models."""
    return {raw["id"]: ModelArch.model_validate(raw) for raw in read_yaml(MODELS_YAML)}


def _gpt_arch(row: dict[str, str], notes: list[str]) -> ModelArch:
    """A GPT-style architecture from the row's columns (Megatron-LM, BLOOM, MT-NLG, OPT)."""
    h, heads = int(row["hidden"]), int(row["heads"])
    vocab = _int(row["vocab"]) or OPT_VOCAB
    if not row["vocab"]:
        notes.append(f"vocab {OPT_VOCAB} (OPT's GPT-2 BPE)")
    alibi = "BLOOM" in row["model"]
    notes.append("GPT layers: plain 4h MLP, multi-head attention" + (", ALiBi" if alibi else ", learned positions"))
    return ModelArch(
        id=re.sub(r"[^a-z0-9.]+", "-", row["model"].lower()).strip("-"), name=row["model"], family="gpt",
        layers=int(row["layers"]), hidden=h, heads=heads, kv_heads=_int(row["kv_heads"]) or heads,
        head_dim=h // heads, ffn=_int(row["ffn"]) or 4 * h, vocab=vocab, tied_embeddings=True, mlp="plain",
        attention_bias=True, attention_out_bias=True, mlp_bias=True, norm="layer",
        position_embeddings=0 if alibi else int(row["seq_len"]), max_context=int(row["seq_len"]),
        source=row["source"], as_of="2022", basis="spec",
    )


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _named_arch(name: str, catalog: Catalog) -> ModelArch | None:
    """A named benchmark model: the table above, else a catalog or validation model whose id matches
    the name with punctuation dropped (``DeepSeek_V3`` -> ``deepseek-v3``; Llama 3 sizes -> Llama 3.1,
    the same architectures)."""
    if name in NAMED_MODELS:
        arch_id = NAMED_MODELS[name]
        return catalog.models.get(arch_id) or validation_models()[arch_id]
    known = {_norm(m.id): m for m in (*validation_models().values(), *catalog.models.values())}
    key = _norm(name)
    return known.get(key) or known.get(key.replace("llama3", "llama31", 1))


def _arch(row: dict[str, str], catalog: Catalog, notes: list[str]) -> ModelArch | None:
    named = _named_arch(row["model"].strip(), catalog)
    if named is not None:
        notes.append(f"architecture {named.id} (public config)")
        return named
    if all(_int(row[c]) for c in ("layers", "hidden", "heads")):
        return _gpt_arch(row, notes)
    return None


def _accelerator(gpu_type: str, catalog: Catalog) -> str | None:
    """The catalog accelerator a row's ``gpu_type`` names (``A100-SXM-80GB (DGX A100, Selene)``)."""
    text = gpu_type.lower()
    m = GPU_PATTERN.search(text)
    if m is None:
        return None
    part = m.group(1)
    choice = {
        "a100": "a100-sxm-40gb" if "40" in text else "a100-sxm-80gb",
        "h100": "h100-pcie" if "pcie" in text else "h100-sxm",
        "h200": "h200-sxm",
    }.get(part, part)
    return choice if choice in catalog.accelerators else None


def _fixed(row: dict[str, str], notes: list[str], megatron_2021: bool) -> dict[str, int]:
    fixed: dict[str, int] = {}
    for col, dim in (("TP", "tp"), ("PP", "pp"), ("DP", "dp"), ("EP", "ep"), ("CP", "cp"), ("micro_batch", "mb")):
        value = _int(row[col])
        if value is not None:
            fixed[dim] = value
    vp = row["VP_or_interleave"].strip()
    if vp == "n/a":
        fixed["vpp"] = 1
    elif _int(vp) is not None:
        fixed["vpp"] = int(_int(vp) or 1)
    zero = row["FSDP_or_ZeRO"]
    if "ZeRO-3" in zero or "FSDP" in zero:
        fixed["zero"] = 3
    elif "ZeRO-2" in zero:
        fixed["zero"] = 2
    elif "ZeRO-1" in zero or "dist-opt" in zero:
        fixed["zero"] = 1
    elif megatron_2021 and "Narayanan" in row["source"]:
        fixed["zero"] = 0
        notes.append("plain data parallelism (all-reduce), Megatron-LM 2021")
    mp = re.search(r"MP=(\d+)", row["notes"])
    if mp and "tp" not in fixed and int(mp.group(1)) > 1:
        fixed["tp"], fixed["pp"] = 8, int(mp.group(1)) // 8
        notes.append(f"model-parallel size {mp.group(1)} split as TP 8 x PP {fixed['pp']} (the paper's Table 1 layout)")
    elif mp:
        fixed["tp"], fixed["pp"] = 1, 1
    if megatron_2021:
        fixed.setdefault("cp", 1)  # context and expert parallelism did not exist yet
        fixed.setdefault("ep", 1)
        fixed["recompute"] = 2
        notes.append("full activation recomputation (the publication's FLOP count assumes it)")
    return fixed


def _published(row: dict[str, str], arch: ModelArch, seq: int, gpus: int, batch: int) -> tuple[float, str]:
    if row["tokens_per_s_per_gpu"]:
        return float(row["tokens_per_s_per_gpu"]), f"{row['tokens_per_s_per_gpu']} tokens/s/GPU"
    if row["iteration_time_s"]:
        it = float(row["iteration_time_s"])
        return batch * seq / it / gpus, f"{it:g} s/iteration"
    tflops = _float(row["tflops_per_gpu"])
    assert tflops is not None  # only rows with a throughput figure become cases
    per_token = published_flops_per_token(model_shape(arch), float(seq), "megatron-2021")
    return tflops * 1e12 / per_token, f"{row['tflops_per_gpu']} TFLOP/s/GPU (eq. 3, with recompute)"


def _legacy(row: dict[str, str]) -> bool:
    """Software of 2021-2022 (Megatron-LM, Megatron-DeepSpeed, DeepSpeed): a row without a NeMo or
    Megatron-Bridge framework whose source is dated 2022 or earlier."""
    if any(k in row["framework"] for k in ("NeMo", "Megatron-Bridge", "Megatron-Core")):
        return False
    years = [int(y) for y in re.findall(r"\b(20[12]\d)\b", row["source"])]
    return bool(years) and min(years) <= 2022


def _backend(row: dict[str, str], legacy: bool) -> str:
    if not legacy:
        return "megatron-core"
    return "deepspeed-zero3-2021" if "ZeRO-3" in row["FSDP_or_ZeRO"] else "megatron-2021"


def _batch(text: str, seq: int) -> int | None:
    """Global batch in sequences from ``2048`` or ``4M tokens``."""
    m = re.match(r"\s*([\d.]+)\s*([KMB]?)\s*tokens", text)
    if m:
        scale = {"": 1, "K": 2**10, "M": 2**20, "B": 2**30}[m.group(2)]
        return max(1, int(float(m.group(1)) * scale // seq))
    return _int(text)


def load_cases_report(catalog: Catalog, path: Path = RUNS_CSV) -> tuple[list[TrainingCase], list[tuple[str, str]]]:
    """(cases, skipped): every training row with a throughput figure and a GPU count as a
    :class:`TrainingCase`; rows that cannot be mapped (unknown model or GPU, no sequence length or
    batch) as (row id, reason)."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("category", "").startswith("training")]
    cases, skipped = [], []
    for row in rows:
        has_rate = row["tflops_per_gpu"] or row["tokens_per_s_per_gpu"] or row["iteration_time_s"]
        if not has_rate or not _int(row["gpu_count"]):
            continue
        case, reason = _case(row, catalog)
        if case is None:
            skipped.append((row["row_id"], reason))
        else:
            cases.append(case)
    return cases, skipped


def load_cases(catalog: Catalog, path: Path = RUNS_CSV) -> list[TrainingCase]:
    """The cases of :func:`load_cases_report`."""
    return load_cases_report(catalog, path)[0]


def _case(row: dict[str, str], catalog: Catalog) -> tuple[TrainingCase | None, str]:
    notes: list[str] = []
    legacy = _legacy(row)
    arch = _arch(row, catalog, notes)
    acc = _accelerator(row["gpu_type"], catalog)
    seq, gpus = _int(row["seq_len"]), int(row["gpu_count"])
    batch = _batch(row["global_batch"], seq) if seq else None
    if arch is None or acc is None or not seq or not batch:
        what = "model" if arch is None else "GPU" if acc is None else "sequence length or global batch"
        return None, f"unknown {what}"
    fixed = _fixed(row, notes, legacy)
    if any(k in row["source"] for k in ("Turing", "BLOOM")):
        fixed["vpp"] = 1
        notes.append("DeepSpeed pipeline engine: 1F1B without interleaving")
    if "OPT" in row["model"]:
        fixed.update(tp=8, zero=3)
        batch = gpus  # 2M tokens on 992 GPUs: one 2048-token sequence per GPU per step
        notes.append("TP 8 and FSDP (metaseq), 992 sequences per step; 'up to' figure, not calibrated")
    rate, text = _published(row, arch, seq, gpus, batch)
    upper = row["precision"].upper()
    calibrated = row["category"] == "training_benchmark" or row["model"].startswith("BLOOM")
    return TrainingCase(
        row_id=int(row["row_id"]), model=row["model"], arch=arch, accelerator=acc, gpus=gpus,
        precision="fp4" if "FP4" in upper else "fp8" if "FP8" in upper else "bf16", seq_len=seq,
        global_batch=batch, fixed=fixed, backend=_backend(row, legacy),
        published_tokens_per_s_per_gpu=rate, published_text=text,
        calibration=calibrated and "OPT" not in row["model"] and row["category"] != "training_projection",
        source=row["source"], notes=notes,
    ), ""


@dataclass(frozen=True)
class Prediction:
    """The engine's best configuration for a case and its throughput against the published one."""

    case: TrainingCase
    config: dict[str, int | str]
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float
    fits: bool
    memory_gib: float

    @property
    def error(self) -> float:
        """Relative error, (predicted - published) / published."""
        return self.tokens_per_s_per_gpu / self.case.published_tokens_per_s_per_gpu - 1.0


def predict(
    case: TrainingCase, catalog: Catalog, tune: Callable[[Efficiencies, TrainingCase], Efficiencies] | None = None
) -> Prediction:
    """Search the degrees the row leaves open; the fastest configuration that fits (or, when none
    fits, the fastest structurally valid one, flagged ``fits=False``). ``tune`` replaces the
    catalog's constants (the calibration script uses it to try candidate values)."""
    acc = catalog.accelerators[case.accelerator]
    hw = hardware(acc, catalog.systems[acc.default_system])
    eff = efficiencies(catalog, acc, case.precision, case.backend)
    if tune is not None:
        eff = tune(eff, case)
    shape = model_shape(case.arch)
    job = Job(seq_len=case.seq_len, global_batch=case.global_batch, gpus=case.gpus, precision=case.precision)
    result = search(shape, hw, eff, job, case.fixed, uneven=True)
    ev = result.evaluation
    if not len(ev.configs):
        raise FactoryplanError(
            f"row {case.row_id}: the row's degrees admit no configuration", value=case.fixed,
            allowed="; ".join(result.rejected),
        )
    i = int(result.ranking[0]) if result.ranking.size else int(ev.tokens_per_s.argmax())
    return Prediction(
        case=case, config=ev.configs.row(i), tokens_per_s_per_gpu=float(ev.tokens_per_s_per_gpu[i]),
        model_tflops_per_gpu=float(ev.model_tflops_per_gpu[i]), fits=bool(ev.fits[i]),
        memory_gib=float(ev.memory["total"][i]) / 2**30,
    )


def summary(predictions: list[Prediction]) -> dict[str, float]:
    """MAPE and largest absolute error over the calibration rows and over the others."""
    out: dict[str, float] = {}
    for label, rows in (("calibration", [p for p in predictions if p.case.calibration]),
                        ("other", [p for p in predictions if not p.case.calibration])):
        errs = [abs(p.error) for p in rows]
        out[f"{label}_rows"] = len(errs)
        out[f"{label}_mape"] = sum(errs) / len(errs) if errs else float("nan")
        out[f"{label}_max_error"] = max(errs) if errs else float("nan")
    return out


__all__ = ["Prediction", "TrainingCase", "load_cases", "load_cases_report", "predict", "summary", "validation_models"]
