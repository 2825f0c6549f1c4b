"""Catalog entry types, in internal units (see ``factoryplan.units``).

Data files name fields with friendly unit suffixes (``hbm_tb_s``); the loader converts them to
the internal names used here (``hbm_bytes_s``) before validation. Every entry carries
``source``, ``as_of`` and ``basis``. Adding a GPU, a system or a model is adding a data entry.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Basis = Literal["spec", "measured", "derived", "assumption"]
DATA_CLASSES = ("public", "internal", "personal", "sensitive", "national-security")
SECTORS = ("private", "public", "finance", "health", "defense")
TRANSFER_BASES = ("consent", "contract", "certification", "adequacy", "treaty", "scc", "bcr")
Precision = Literal["bf16", "fp8", "fp4"]
Cooling = Literal["air", "liquid"]

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
FUSED_FAMILY = r"^(\*|[a-z0-9_]+)(>[0-9]+)?$"  # a model family, "*" for any, ">N": hidden size above N

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_AS_OF = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


class Entry(BaseModel):
    """Fields every catalog entry has: identity and provenance."""

    # defer_build: a model's validator is built when first used, so a command that reads a few
    # kinds (serve) does not pay for building every kind's at import
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    id: str
    name: str
    source: str = Field(min_length=3)
    as_of: str
    basis: Basis
    notes: str = ""

    @field_validator("id")
    @classmethod
    def _id_form(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError("ids are lower-case letters, digits, '.', '_' and '-'")
        return v

    @field_validator("as_of", mode="before")
    @classmethod
    def _as_of_form(cls, v: object) -> str:
        text = str(v)
        if not _AS_OF.match(text):
            raise ValueError("as_of is YYYY, YYYY-MM or YYYY-MM-DD")
        return text


class Accelerator(Entry):
    """One GPU/accelerator package. Dense (non-sparse) tensor throughput per precision."""

    vendor: str
    generation: str
    year: int
    bf16_dense_flops: PositiveFloat
    fp8_dense_flops: PositiveFloat | None = None
    fp4_dense_flops: PositiveFloat | None = None
    hbm_bytes: PositiveFloat
    hbm_bytes_s: PositiveFloat
    scaleup_bidir_bytes_s: NonNegFloat  # NVLink/Infinity Fabric, both directions, per GPU
    tdp_w: PositiveFloat
    price_usd: PositiveFloat | None = None
    default_system: str
    # other names people give the part ("h100" for the SXM H100): each names one accelerator, and
    # none is another accelerator's or system's id (checked when the catalog loads)
    aliases: tuple[str, ...] = ()

    @field_validator("aliases")
    @classmethod
    def _alias_form(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for alias in v:
            if not _ID.match(alias):
                raise ValueError(f"alias {alias!r}: lower-case letters, digits, '.', '_' and '-'")
        return v

    def dense_flops(self, precision: str) -> float | None:
        """Peak dense tensor FLOP/s at ``precision``; None when the part has no such unit."""
        return {"bf16": self.bf16_dense_flops, "fp8": self.fp8_dense_flops, "fp4": self.fp4_dense_flops}.get(
            precision
        )

    def precisions(self) -> list[str]:
        """Precisions with tensor-core support on this part."""
        return [p for p in ("bf16", "fp8", "fp4") if self.dense_flops(p) is not None]


class System(Entry):
    """A server or rack-scale system: what is bought, powered and cabled as one unit."""

    accelerator: str
    gpus: PositiveInt
    scaleup_domain_gpus: PositiveInt  # GPUs that share one NVLink/NVSwitch domain
    power_w: PositiveFloat  # maximum system power, all GPUs, CPUs, NICs and fans
    nics_per_gpu: NonNegFloat
    nic_bit_s: PositiveFloat  # scale-out (compute fabric) NIC speed
    compute_fabric: str  # switch id of the default scale-out fabric
    systems_per_rack: PositiveFloat  # < 1 would mean a system spans racks; NVL72 is 1
    rack_u: NonNegFloat = 0.0
    cooling: Cooling
    price_usd: PositiveFloat
    scalable_unit_systems: PositiveInt  # systems per scalable unit in the reference architecture
    nvlink_switch_trays: NonNegInt = 0  # rack-scale systems: NVSwitch trays per system
    # physical design (infra.fabric, infra.site); defaults describe an 8-GPU server
    nvlink_links_per_gpu: NonNegInt = 0  # NVLink links from each GPU to switch trays outside its board (NVL72: 18)
    fabric_planes_max: PositiveInt = 1  # planes one NIC can split into (ConnectX-8 multi-plane: 2)
    host_transceiver: str = ""  # link id of the NIC-side module of the compute fabric
    host_ports_per_transceiver: PositiveInt = 1  # NIC ports one host module carries (twin-port OSFP: 2)
    ns_ports: NonNegInt = 2  # north-south (storage and in-band Ethernet) ports per system
    ns_port_bit_s: PositiveFloat = 200e9
    ns_fabric: str = "spectrum-x-sn5600"  # switch id of the storage and in-band fabric
    ns_host_link: str = "aoc-200g-qsfp56"  # link id of a north-south host cable
    oob_ports: NonNegInt = 1  # 1GbE out-of-band management ports per system (BMCs, trays, power shelves)
    oob_switch: str = "spectrum-sn2201"  # switch id of the out-of-band management network


class Switch(Entry):
    """A network switch of the scale-out, storage or frontend fabric."""

    technology: Literal["infiniband", "ethernet"]
    ports: PositiveInt  # radix at port_bit_s
    port_bit_s: PositiveFloat
    power_w: PositiveFloat
    price_usd: PositiveFloat
    rack_u: NonNegFloat = 1.0
    ports_per_cage: PositiveInt = 1  # ports one pluggable module carries at port_bit_s (twin-port OSFP: 2)
    max_breakout: PositiveInt = 1  # a port may be split into this many slower ports (e.g. 400G -> 2 x 200G)
    transceiver: str = ""  # link id of the switch-side module for runs inside a hall
    long_reach_transceiver: str = ""  # link id for runs between halls; empty: the same module


class Link(Entry):
    """A transceiver or cable."""

    kind: Literal["transceiver", "dac", "acc", "aoc", "fiber"]
    speed_bit_s: PositiveFloat
    power_w: NonNegFloat
    price_usd: PositiveFloat
    reach_m: PositiveFloat


class Region(Entry):
    """A site region: energy price, cooling efficiency, staff cost, jurisdiction."""

    country: str
    jurisdiction: str
    currency: str
    electricity_usd_per_j: PositiveFloat
    pue_air: Annotated[float, Field(ge=1.0, le=3.0)]
    pue_liquid: Annotated[float, Field(ge=1.0, le=3.0)]
    fte_cost_usd_per_s: PositiveFloat  # loaded cost of one operations FTE
    facility_cost_factor: PositiveFloat = 1.0  # construction cost relative to the US average
    adequacy: list[str] = Field(default_factory=list)  # jurisdictions this one deems adequate for transfers


class CloudPrice(Entry):
    """Renting a GPU by the hour."""

    provider: str
    provider_kind: Literal["hyperscaler", "neocloud", "domestic-cloud", "sovereign-cloud", "market-index"]
    accelerator: str
    pricing: Literal["on-demand", "reserved-1y", "reserved-3y"]
    price_usd_per_gpu_s: PositiveFloat
    option: str  # deployment option this offer belongs to (sovereignty attributes)


class ApiPrice(Entry):
    """Buying tokens from an LLM API."""

    provider: str
    model_class: Literal["frontier", "large-open", "medium-open", "small"]
    open_weights: bool
    input_usd_per_token: PositiveFloat
    output_usd_per_token: PositiveFloat
    option: str


class Option(Entry):
    """A way to obtain compute, with the sovereignty attributes rules test."""

    kind: Literal["own", "colo", "cloud", "api"]
    # "domestic" (the plan's jurisdiction, wherever that is) or a jurisdiction code such as "US"
    data_location: str
    operator: Literal["customer", "domestic", "foreign"]
    operator_parent_jurisdiction: str
    ops_staff_location: str
    key_custody: Literal["customer", "provider"]
    physical_separation: bool
    air_gap: bool
    level: Annotated[int, Field(ge=0, le=4)]


class Assumption(Entry):
    """A modelling assumption with its range and distribution, in internal units after loading."""

    unit: str  # the internal unit (after conversion), e.g. "usd_per_w" or "fraction"
    given_unit: str = ""  # the unit the data file wrote (e.g. "usd_per_mw"); reports and overrides use it
    value: float
    low: float | None = None
    high: float | None = None
    distribution: Literal["fixed", "uniform", "triangular", "lognormal"] = "triangular"
    description: str = ""


class Rule(Entry):
    """A sovereignty rule: which workloads it covers and the condition an option must meet."""

    jurisdiction: str
    instrument: str
    data_classes: list[str]
    sectors: list[str] = Field(default_factory=lambda: ["any"])
    subject_jurisdictions: list[str] = Field(default_factory=list)  # empty: the rule's own jurisdiction
    require: dict[str, list[str] | bool | int] = Field(default_factory=dict)  # attribute -> allowed / min level
    forbid: dict[str, list[str]] = Field(default_factory=dict)  # option attribute -> values not allowed
    unless_transfer_basis: list[str] = Field(default_factory=list)  # a workload basis that makes it lawful
    effect: Literal["exclude", "flag"] = "exclude"
    text: str

    @model_validator(mode="after")
    def _known_terms(self) -> Rule:
        attrs = set(Option.model_fields) - set(Entry.model_fields)
        for key in [*self.require, *self.forbid]:
            if key not in attrs:
                raise ValueError(f"require/forbid name option attributes; {key!r} is not one of {sorted(attrs)}")
        for dc in self.data_classes:
            if dc not in (*DATA_CLASSES, "any"):
                raise ValueError(f"unknown data class {dc!r}; allowed: {', '.join(DATA_CLASSES)}, any")
        for sector in self.sectors:
            if sector not in (*SECTORS, "any"):
                raise ValueError(f"unknown sector {sector!r}; allowed: {', '.join(SECTORS)}, any")
        for basis in self.unless_transfer_basis:
            if basis not in TRANSFER_BASES:
                raise ValueError(f"unknown transfer basis {basis!r}; allowed: {', '.join(TRANSFER_BASES)}")
        return self


class Fx(Entry):
    """An exchange rate: USD per one unit of ``currency``."""

    currency: str
    usd_per_unit: PositiveFloat


class MoE(BaseModel):
    """Mixture-of-experts block."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experts: PositiveInt
    active: PositiveInt  # routed experts per token
    shared: NonNegInt = 0
    expert_ffn: PositiveInt  # intermediate size of one routed expert
    shared_ffn: NonNegInt = 0  # intermediate size of all shared experts together
    dense_layers: NonNegInt = 0  # leading layers with a dense MLP instead of experts
    layer_freq: PositiveInt = 1  # every k-th layer is MoE (after the dense ones)
    expert_bias: bool = False  # experts' projections carry biases (gpt-oss)
    router_bias: bool = False  # the router has a per-expert bias (gpt-oss; DeepSeek-V3 score correction)
    shared_gate: bool = False  # the shared experts' output is scaled by a sigmoid gate, h -> 1 (Qwen2-MoE, Qwen3-Next)


WeightFormat = Literal["bf16", "fp8", "fp4", "int4"]


class Release(BaseModel):
    """The number formats a model's weights are published in: its checkpoint's ``quantization_config``
    (FP8 block scales, MXFP4 or NVFP4 experts, INT4 weight-only experts). Serving defaults to them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: WeightFormat = "bf16"  # attention, dense MLPs, shared experts
    experts: WeightFormat | None = None  # routed experts; None: as ``weights``
    # what the engines multiply them with: "" the weights' own format (FP8 W8A8, NVFP4 W4A4); "bf16" for a
    # weight-only format (MXFP4, INT4 W4A16); "fp8" for W4A8
    activations: Literal["", "bf16", "fp8", "fp4"] = ""
    kv: Literal["", "fp8", "fp4"] = ""  # the KV cache the checkpoint asks for; "": the engine's default
    quantization: str = ""  # what the checkpoint says, e.g. "mxfp4 (attention, router, embeddings kept BF16)"

    def experts_format(self) -> WeightFormat:
        """The routed experts' format (the other weights' where the release does not set it apart)."""
        return self.experts or self.weights

    def quantized(self) -> bool:
        """Whether any weight is published narrower than BF16."""
        return self.weights != "bf16" or self.experts_format() != "bf16"


class MLA(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    q_lora_rank: NonNegInt  # 0: queries are not low-rank
    kv_lora_rank: PositiveInt
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt
    v_head_dim: PositiveInt


class LinearAttention(BaseModel):
    """Token mixers with a fixed recurrent state instead of a KV cache, interleaved with softmax
    attention: Gated DeltaNet linear attention (Yang, Kautz and Hatamizadeh 2024, arXiv:2412.06464;
    Qwen3-Next, Qwen3.5; names follow the config's ``linear_*`` fields) or Mamba-2 state-space layers
    (Dao and Gu 2024, arXiv:2405.21060; Nemotron-H, Nemotron 3). Both keep per value head a state of
    ``key_head_dim x value_head_dim``: for Gated DeltaNet query/key heads are ``key_heads``; for
    Mamba-2 ``value_heads`` are its heads (``mamba_num_heads``) of ``value_head_dim`` channels
    (``mamba_head_dim``), ``key_heads`` its B/C groups (``n_groups``) and ``key_head_dim`` the state
    size (``ssm_state_size``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layers: PositiveInt  # layers whose token mixer is linear attention (no KV cache)
    key_heads: PositiveInt  # query/key heads (linear_num_key_heads); Mamba-2: B/C groups (n_groups)
    value_heads: PositiveInt  # value heads, one recurrent state each (linear_num_value_heads; mamba_num_heads)
    key_head_dim: PositiveInt  # Mamba-2: ssm_state_size
    value_head_dim: PositiveInt  # Mamba-2: mamba_head_dim
    conv_kernel: PositiveInt  # width of the depthwise causal convolution over q/k/v (linear_conv_kernel_dim)
    state_bytes: PositiveFloat = 4.0  # bytes per element of the recurrent state (mamba_ssm_dtype float32: 4)
    kind: Literal["gated_deltanet", "mamba2"] = "gated_deltanet"
    conv_bias: bool = False  # the convolution has a bias (Mamba-2's use_conv_bias)

    @model_validator(mode="after")
    def _grouped_heads(self) -> LinearAttention:
        if self.value_heads % self.key_heads:
            raise ValueError(
                f"linear_attention.value_heads ({self.value_heads}) must be a multiple of "
                f"linear_attention.key_heads ({self.key_heads}): each query/key head serves a group of value heads"
            )
        return self


class SparseAttention(BaseModel):
    """DeepSeek sparse attention (DSA; DeepSeek-AI 2025, "DeepSeek-V3.2-Exp: Boosting Long-Context
    Efficiency with DeepSeek Sparse Attention", Sec. 2.1), on MLA: in every layer a lightning indexer
    of ``index_heads`` heads of ``index_head_dim`` scores each query against every earlier token's
    indexer key, and attention reads only the ``top_k`` best-scoring cached latents. Names follow the
    config's ``index_n_heads``, ``index_head_dim`` and ``index_topk``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index_heads: PositiveInt  # lightning-indexer heads (index_n_heads)
    index_head_dim: PositiveInt  # width of one indexer head and of the cached indexer key
    top_k: PositiveInt  # keys each query attends to (index_topk)


class ModelArch(Entry):
    """A transformer LLM architecture. Parameter counts are derived (see ``catalog.models``)."""

    family: str
    layers: PositiveInt
    hidden: PositiveInt
    heads: PositiveInt
    kv_heads: PositiveInt
    head_dim: PositiveInt
    ffn: NonNegInt  # dense MLP intermediate size (0 when every layer is MoE)
    vocab: PositiveInt
    tied_embeddings: bool = False
    mlp: Literal["gated", "plain"] = "gated"
    attention_bias: bool = False  # biases on q/k/v (and o when attention_out_bias)
    attention_out_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    norm: Literal["rms", "layer"] = "rms"  # RMSNorm (weight) or LayerNorm (weight and bias)
    position_embeddings: NonNegInt = 0  # rows of a learned absolute position table (GPT-2); 0 = RoPE/none
    attention_sinks: bool = False
    sliding_window: NonNegInt = 0  # tokens; 0 = full attention everywhere
    sliding_layers: NonNegInt = 0  # layers that use the sliding window
    max_context: PositiveInt = 8192
    attn_output_gate: bool = False  # q_proj also emits a sigmoid gate on the attention output (Qwen3-Next)
    moe: MoE | None = None
    mla: MLA | None = None
    linear_attention: LinearAttention | None = None  # hybrid models: these layers replace softmax attention
    # Blocks with a feed-forward part (dense MLP or experts), where mixer and feed-forward are separate
    # blocks (Nemotron-H: a block is Mamba-2, attention, MLP or MoE; ``layers`` then counts the mixer
    # blocks); None: every layer has one.
    ffn_layers: NonNegInt | None = None
    sparse_attention: SparseAttention | None = None  # DeepSeek sparse attention: a top-k indexer in every layer
    published_params: PositiveFloat | None = None  # total, as published by the model's authors
    published_active_params: PositiveFloat | None = None
    release: Release | None = None  # the published checkpoint's number formats; None: BF16, or not known

    @model_validator(mode="after")
    def _layer_kinds(self) -> ModelArch:
        linear = self.linear_attention.layers if self.linear_attention is not None else 0
        sliding = self.sliding_layers if self.sliding_window > 0 else 0
        if linear + sliding > self.layers:
            raise ValueError(
                f"linear_attention.layers ({linear}) plus sliding_layers ({sliding}) exceed layers ({self.layers})"
            )
        return self

    @model_validator(mode="after")
    def _ffn_blocks(self) -> ModelArch:
        if self.ffn_layers is not None and self.moe is not None and self.moe.dense_layers > self.ffn_layers:
            raise ValueError(
                f"moe.dense_layers ({self.moe.dense_layers}) exceed ffn_layers ({self.ffn_layers})"
            )
        return self

    @model_validator(mode="after")
    def _sparse_on_mla(self) -> ModelArch:
        dsa = self.sparse_attention
        if dsa is None:
            return self
        if self.mla is None or self.mla.q_lora_rank == 0:
            raise ValueError(
                "sparse_attention needs mla with q_lora_rank > 0: the lightning indexer's queries are "
                "projected from MLA's compressed query"
            )
        if self.linear_attention is not None or self.sliding_window > 0:
            raise ValueError(
                "sparse_attention applies to every layer; it cannot be combined with linear_attention or "
                "a sliding_window"
            )
        if dsa.index_head_dim < self.mla.qk_rope_head_dim:
            raise ValueError(
                f"sparse_attention.index_head_dim ({dsa.index_head_dim}) must be at least mla.qk_rope_head_dim "
                f"({self.mla.qk_rope_head_dim}): the indexer rotates that many of its dimensions"
            )
        return self


class Calibration(Entry):
    """Calibrated constants of a performance engine, fitted on a stated data set as a whole.

    ``values`` are dimensionless efficiencies or internal-unit constants named with their unit
    (e.g. ``step_overhead_s``); ``spread`` reports the fit's error over its data set.
    """

    # "kernels": what microbenchmarks measured on one part (benchmarks/device/gpu_microbench.py), which
    # `validate kernels` checks the inference physics against; no engine reads it as its constants
    engine: Literal["training", "inference", "kernels"]
    applies_to: list[str]  # accelerator ids or generations; ["*"] for every part
    precision: str | None = None
    backend: str | None = None
    values: dict[str, float]
    fitted_on: str = ""
    spread: str = ""
    runs_on: list[str] = Field(default_factory=list)  # accelerator vendors a serving engine supports; empty: any
    measured_on: list[str] = Field(default_factory=list)  # accelerator ids of the measurements behind its error band
    # a serving engine: model families (Hugging Face model_type; "*" for every family) whose TP all-reduces it
    # fuses with the residual add and RMSNorm after them; "family>N": only above a hidden size of N
    fused_allreduce: list[Annotated[str, StringConstraints(pattern=FUSED_FAMILY)]] = Field(default_factory=list)


KINDS: dict[str, type[Entry]] = {
    "accelerators": Accelerator,
    "systems": System,
    "switches": Switch,
    "links": Link,
    "models": ModelArch,
    "regions": Region,
    "cloud_prices": CloudPrice,
    "api_prices": ApiPrice,
    "options": Option,
    "assumptions": Assumption,
    "rules": Rule,
    "fx": Fx,
    "calibrations": Calibration,
}
