"""The scenario file: what the user wants planned, validated.

A scenario names a site region, an optional power budget, candidate hardware, the workloads
(training runs and inference services), assumption overrides and sovereignty requirements.
Unknown keys are errors with a suggestion; every error names the file, the field path, the value
and what is allowed. Numbers may be written as ``15e12``, ``15T``, ``1.5B`` or ``2,000``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from factoryplan.catalog.load import Catalog, read_yaml
from factoryplan.errors import ScenarioError, did_you_mean, unknown

DataClass = Literal["public", "internal", "personal", "sensitive", "national-security"]
Sector = Literal["private", "public", "finance", "health", "defense"]
TransferBasis = Literal["consent", "contract", "certification", "adequacy", "treaty", "scc", "bcr"]
Precision = Literal["bf16", "fp8", "fp4"]
ServingPrecision = Literal["bf16", "fp8", "fp4", "int4"]

_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
_NUMBER = re.compile(r"^\s*([-+]?[0-9][0-9_,]*\.?[0-9]*(?:[eE][-+]?[0-9]+)?)\s*([kKMBGTP]?)\s*$")


def _number(value: Any) -> Any:
    """Accept '15e12', '15T', '1.5B', '2,000' as numbers; leave anything else to pydantic."""
    if isinstance(value, str):
        m = _NUMBER.match(value)
        if m:
            return float(m.group(1).replace(",", "").replace("_", "")) * _SCALE[m.group(2)]
    return value


Num = Annotated[float, BeforeValidator(_number)]
PosNum = Annotated[float, BeforeValidator(_number), Field(gt=0)]
NonNegNum = Annotated[float, BeforeValidator(_number), Field(ge=0)]
Frac = Annotated[float, BeforeValidator(_number), Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Workload(_Strict):
    name: str = Field(min_length=1)
    model: str
    data_class: DataClass = "internal"
    sector: Sector = "private"
    jurisdiction: str | None = None  # data subjects' jurisdiction; default: the scenario's
    hardware: list[str] = Field(default_factory=list)  # candidate accelerators/systems for this workload
    # legal bases the owner has for moving this workload's data abroad (PIPA Art. 28-8, GDPR Ch. V)
    transfer_basis: list[TransferBasis] = Field(default_factory=list)
    minimum_level: Annotated[int, Field(ge=0, le=4)] | None = None  # sovereignty level L0..L4


class TrainingWorkload(_Workload):
    """Train ``model`` on ``tokens`` tokens within ``deadline_days``."""

    kind: Literal["training"]
    tokens: PosNum
    deadline_days: PosNum
    precision: Precision = "bf16"
    seq_len: Annotated[int, Field(gt=0)] = 8192
    global_batch_tokens: PosNum | None = None


class InferenceWorkload(_Workload):
    """Serve ``model`` to a demand under latency targets."""

    kind: Literal["inference"]
    requests_per_s: PosNum | None = None
    tokens_per_day: PosNum | None = None  # output tokens per day (average)
    peak_to_average: Annotated[float, BeforeValidator(_number), Field(ge=1)] | None = None
    input_tokens: Annotated[int, Field(gt=0)] = 1000
    # prompts' lengths vary around input_tokens: their coefficient of variation (gamma); 0: all alike
    input_tokens_cv: Annotated[float, BeforeValidator(_number), Field(ge=0, le=2)] = 0.0
    output_tokens: Annotated[int, Field(gt=0)] = 500
    # share of each prompt the engine's prefix cache already holds (system prompt, earlier turns)
    prefix_hit: Annotated[float, BeforeValidator(_number), Field(ge=0, lt=1)] = 0.0
    # speculative decoding: draft tokens per step (MTP module, EAGLE head) and their acceptance rate
    draft_tokens: Annotated[int, Field(ge=0)] = 0
    draft_acceptance: Annotated[float, BeforeValidator(_number), Field(ge=0, le=1)] | None = None
    ttft_ms: PosNum = 2000
    tpot_ms: PosNum = 50
    # the share of requests (per cent, e.g. 90 or 99) the TTFT target holds for; None: their mean
    ttft_percentile: Annotated[float, BeforeValidator(_number), Field(gt=0, lt=100)] | None = None
    # weights (attention, dense MLPs) and routed experts; None: as the model is published where its
    # checkpoint is quantized (gpt-oss: BF16 with MXFP4 experts), else fp8; moe_precision None: as precision
    precision: ServingPrecision | None = None
    moe_precision: ServingPrecision | None = None
    kv_precision: Literal["bf16", "fp8", "fp4"] | None = None  # None: the serving engine's default
    # None: the weights' own (MXFP4 experts: as the serving engine runs them on the part)
    activation_precision: Literal["bf16", "fp8", "fp4"] | None = None
    # the calibrated engine profile; None: trtllm on NVIDIA parts, vllm on others
    serving_engine: Literal["trtllm", "vllm", "sglang"] | None = None
    api_model_class: Literal["frontier", "large-open", "medium-open", "small"] | None = None

    @model_validator(mode="after")
    def _one_demand(self) -> InferenceWorkload:
        if (self.requests_per_s is None) == (self.tokens_per_day is None):
            raise ValueError("give exactly one of requests_per_s or tokens_per_day")
        if self.draft_tokens and self.draft_acceptance is None:
            raise ValueError("draft_tokens needs draft_acceptance (0-1, as measured for the model and its draft)")
        if self.draft_acceptance is not None and not self.draft_tokens:
            raise ValueError("draft_acceptance describes speculative decoding: give draft_tokens with it")
        return self

    def average_requests_per_s(self) -> float:
        """Average request rate; tokens_per_day counts output tokens."""
        if self.requests_per_s is not None:
            return self.requests_per_s
        assert self.tokens_per_day is not None  # guaranteed by _one_demand
        return self.tokens_per_day / 86_400.0 / self.output_tokens


Workload = Annotated[TrainingWorkload | InferenceWorkload, Field(discriminator="kind")]


class Facility(_Strict):
    """How the building side is procured."""

    deployment: Literal["own-build", "colocation"] = "own-build"
    cooling: Literal["auto", "air", "liquid"] = "auto"


class Sovereignty(_Strict):
    """Sovereignty requirements that apply to every workload unless it says otherwise."""

    jurisdiction: str | None = None  # default: the region's jurisdiction
    enforce: bool = True  # False: report feasibility but do not exclude options
    minimum_level: Annotated[int, Field(ge=0, le=4)] | None = None


class Phase(_Strict):
    """One step of a phased build-out: by ``year``, this much power and this hardware."""

    name: str = Field(min_length=1)
    year: Annotated[int, Field(ge=2000, le=2100)]
    power_mw: PosNum  # available at the meter by this phase (cumulative)
    hardware: list[str] = Field(default_factory=list)  # what can be bought in this phase; empty: the scenario's
    # share of each workload's demand (inference rate, training tokens) to serve by this phase:
    # one number for every workload, or a mapping of workload name -> share
    demand_scale: float | dict[str, float] = 1.0

    @model_validator(mode="after")
    def _positive_scales(self) -> Phase:
        scales = self.demand_scale.values() if isinstance(self.demand_scale, dict) else [self.demand_scale]
        if any(s < 0 for s in scales):
            raise ValueError("demand_scale must not be negative")
        return self

    def scale_for(self, workload: str) -> float:
        """The demand share of one workload in this phase (0 when a mapping does not name it)."""
        if isinstance(self.demand_scale, dict):
            return self.demand_scale.get(workload, 0.0)
        return self.demand_scale


class Scenario(_Strict):
    """A validated scenario."""

    name: str = Field(min_length=1)
    description: str = ""
    region: str
    power_budget_mw: PosNum | None = None  # at the meter (facility power)
    hardware: list[str] = Field(default_factory=list)  # candidate accelerators/systems; empty: let it choose
    facility: Facility = Field(default_factory=Facility)
    workloads: list[Workload] = Field(min_length=1)
    assumptions: dict[str, Num] = Field(default_factory=dict)
    sovereignty: Sovereignty = Field(default_factory=Sovereignty)
    horizon_years: Annotated[float, BeforeValidator(_number), Field(gt=0, le=50)] | None = None
    phases: list[Phase] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Scenario:
        names = [w.name for w in self.workloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"workload names must be unique; repeated: {', '.join(dupes)}")
        years = [p.year for p in self.phases]
        if years != sorted(years):
            order = ", ".join(f"{p.name} {p.year}" for p in self.phases)
            raise ValueError(f"phases must be in order of year; got {order}")
        phase_names = [p.name for p in self.phases]
        if len(set(phase_names)) != len(phase_names):
            raise ValueError("phase names must be unique")
        for p in self.phases:
            if isinstance(p.demand_scale, dict):
                unknown_names = sorted(set(p.demand_scale) - set(names))
                if unknown_names:
                    raise ValueError(
                        f"phase {p.name}: demand_scale names unknown workloads {', '.join(unknown_names)}; "
                        f"workloads are {', '.join(names)}"
                    )
        if self.power_budget_mw is not None:
            over = [p for p in self.phases if p.power_mw > self.power_budget_mw]
            if over:
                raise ValueError(
                    f"phase {over[0].name} has power_mw {over[0].power_mw:g} above the scenario's "
                    f"power_budget_mw {self.power_budget_mw:g}"
                )
        return self


def _path_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("training", "inference") and out.endswith("]"):
            continue  # discriminated-union tag pydantic inserts into the path
        else:
            out += f".{part}" if out else str(part)
    return out


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and part < len(cur)
        if in_dict or in_list:
            cur = cur[part]
        elif part not in ("training", "inference"):  # skip the union tag pydantic inserts
            return None
    return cur


def _model_at(loc: tuple[int | str, ...], data: Any) -> type[BaseModel]:
    """The pydantic model that owns the last element of ``loc`` (for did-you-mean on unknown keys)."""
    model: type[BaseModel] = Scenario
    parent = loc[:-1]
    if parent[:1] == ("workloads",):
        kind = _lookup(data, parent[:2])
        kind = kind.get("kind") if isinstance(kind, dict) else None
        return TrainingWorkload if kind == "training" else InferenceWorkload
    if parent[:1] == ("facility",):
        return Facility
    if parent[:1] == ("sovereignty",):
        return Sovereignty
    return model


def _allowed(err: Any, loc: tuple[int | str, ...], data: Any) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return str(ctx["expected"])
    if err["type"] == "extra_forbidden":
        return ", ".join(_model_at(loc, data).model_fields)
    if err["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
        bound = next(iter(v for k, v in ctx.items() if k in ("gt", "ge", "lt", "le")), "")
        return f"{op[err['type']]} {bound}"
    if err["type"] == "union_tag_invalid":
        return "training, inference"
    return ""


def errors_from_validation(exc: ValidationError, data: Any, where: str) -> ScenarioError:
    """One ScenarioError listing every problem pydantic found, each with path, value and allowed."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _path_text(loc)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            hint = did_you_mean(key, _model_at(loc, data).model_fields)
            msg = f"unknown key{hint}"
        elif err["type"] == "union_tag_invalid":
            msg = "unknown workload kind"
            path = path or "workloads"
        elif err["type"] == "union_tag_not_found":
            msg = "each workload needs a kind"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
        value = _lookup(data, loc) if err["type"] != "missing" and loc else None
        if not loc:  # a whole-scenario check: name the section it is about
            path = "phases" if msg.startswith("phase") else "workloads" if "workload" in msg else ""
        if err["type"] == "union_tag_invalid":
            value = (err.get("ctx") or {}).get("tag")
        allowed = _allowed(err, loc, data)
        line = ScenarioError(msg, where=where, field=path, value=value, allowed=allowed).render()
        lines.append(line)
    first, *rest = lines
    error = ScenarioError(first)
    if rest:
        error = ScenarioError("\n".join(lines))
    return error


def parse_scenario(data: Any, *, where: str = "scenario") -> Scenario:
    """Validate a scenario given as a mapping (e.g. parsed YAML)."""
    if not isinstance(data, dict):
        raise ScenarioError("a scenario is a mapping of key: value", where=where, value=type(data).__name__)
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise errors_from_validation(exc, data, where) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    return parse_scenario(read_yaml(p), where=str(p))


def check_references(scenario: Scenario, catalog: Catalog, *, where: str = "scenario") -> None:
    """Ids the scenario names must exist in the catalog (region, hardware, assumptions, jurisdictions)."""
    if scenario.region not in catalog.regions:
        raise unknown("region", scenario.region, catalog.regions, where=where, field="region", cls=ScenarioError)
    hardware_ids = catalog.hardware_names()
    for i, hw in enumerate(scenario.hardware):
        if catalog.hardware_id(hw) is None:
            raise unknown("hardware", hw, hardware_ids, where=where, field=f"hardware[{i}]", cls=ScenarioError)
    for p_i, phase in enumerate(scenario.phases):
        for i, hw in enumerate(phase.hardware):
            if catalog.hardware_id(hw) is None:
                path = f"phases[{p_i}].hardware[{i}]"
                raise unknown("hardware", hw, hardware_ids, where=where, field=path, cls=ScenarioError)
    for w_i, w in enumerate(scenario.workloads):
        for i, hw in enumerate(w.hardware):
            if catalog.hardware_id(hw) is None:
                path = f"workloads[{w_i}].hardware[{i}]"
                raise unknown("hardware", hw, hardware_ids, where=where, field=path, cls=ScenarioError)
    jurisdictions = {r.jurisdiction for r in catalog.regions.values()}
    sov = scenario.sovereignty.jurisdiction
    if sov is not None and sov not in jurisdictions:
        raise unknown(
            "jurisdiction", sov, jurisdictions, where=where, field="sovereignty.jurisdiction", cls=ScenarioError
        )
