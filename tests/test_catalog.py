"""The shipped catalog: required entries, provenance, unit suffixes, consistency, overlays, conversion."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from factoryplan import units
from factoryplan.catalog.load import DATA_DIR, Catalog, load_catalog, read_yaml
from factoryplan.catalog.schema import Option
from factoryplan.errors import CatalogError, FactoryplanError


def _ids(text: str) -> set[str]:
    """The whitespace-separated ids in ``text``."""
    return set(text.split())


REQUIRED: dict[str, set[str]] = {
    "fx": {"krw", "eur", "jpy"},
    "accelerators": _ids(
        """a100-sxm-40gb a100-sxm-80gb h100-sxm h100-pcie l40s h200-sxm h800 h20 b200 b300 gb200 gb300
        mi300x mi325x mi355x gaudi3"""
    ),
    "systems": _ids(
        """hgx-a100-40gb dgx-a100-80gb dgx-h100 hgx-h100-pcie l40s-server hgx-h200 hgx-h800 hgx-h20 dgx-b200
        dgx-b300 gb200-nvl72 gb300-nvl72 mi300x-platform mi325x-platform mi355x-platform gaudi3-server"""
    ),
    "switches": {"quantum-qm9700", "quantum-x800-q3400", "spectrum-x-sn5600"},
    "links": {"osfp-800g-2xdr4-mms4x00-ns", "osfp-400g-dr4-mms4x00-ns400", "dac-400g-osfp", "aoc-400g-osfp"},
    "regions": {"kr", "us", "eu", "jp", "us-tx"},
    "options": _ids(
        """own-build colocation-domestic sovereign-cloud-domestic neocloud-foreign hyperscaler-local-region
        hyperscaler-sovereign llm-api-foreign llm-api-domestic"""
    ),
    "rules": _ids(
        """kr-pipa-28-8 kr-csap-low kr-csap-mid-high kr-ai-basic-act kr-efsr-cloud-finance eu-gdpr-ch5 eu-ai-act
        us-cloud-act-sensitive us-cloud-act-national-security planner-national-security-level"""
    ),
    "assumptions": _ids(
        """utilization average_power_fraction
        it_lifetime facility_lifetime residual_value_it wacc hw_support_maintenance
        facility_om insurance ops_fte_per_gpu ops_fte_per_mw facility_build_cost liquid_cooling_uplift colo_price
        installation_fraction hot_spare_fraction
        software_usd_per_gpu_year interruptions_per_gpu_year
        cloud_commit_discount_1y cloud_commit_discount_3y air_cooling_limit rack_floor_area building_max_power
        serving_peak_to_average serving_headroom"""
    ),
}

# Internal unit each required assumption must load into (other code reads them in these units).
ASSUMPTION_UNITS = {
    "utilization": "fraction",
    "wacc": "fraction",
    "it_lifetime": "s",
    "facility_lifetime": "s",
    "facility_build_cost": "usd_per_w",
    "colo_price": "usd_per_w_s",
    "ops_fte_per_gpu": "fte_per_gpu",
    "ops_fte_per_mw": "fte_per_w",
    "software_usd_per_gpu_year": "usd_per_s",
    "interruptions_per_gpu_year": "per_gpu_s",
    "air_cooling_limit": "w_per_rack",
    "rack_floor_area": "m2_per_rack",
    "building_max_power": "w",
    "serving_peak_to_average": "ratio",
}

# Numeric fields that are dimensionless counts, ratios or dates, so carry no unit suffix.
# Everything else numeric must end in a unit from units.known_units().
DIMENSIONLESS = frozenset(
    [
        *("as_of", "year"),  # dates
        *("gpus", "scaleup_domain_gpus", "nics_per_gpu", "systems_per_rack", "scalable_unit_systems"),  # counts
        *("nvlink_switch_trays", "ports"),  # counts
        *("nvlink_links_per_gpu", "fabric_planes_max", "host_ports_per_transceiver", "ns_ports", "oob_ports"),  # counts
        *("ports_per_cage", "max_breakout"),  # counts (switch modules and port breakout)
        *("pue_air", "pue_liquid", "facility_cost_factor"),  # ratios
        "level",  # sovereignty level (options, rules' require)
        *("value", "low", "high"),  # assumptions: in the entry's `unit`
        "usd_per_unit",  # exchange rate (USD per unit of `currency`)
    ]
)
# Transformer architecture hyper-parameters (models.yaml): counts of layers, heads, dimensions, tokens.
MODEL_COUNTS = frozenset(
    _ids(
        """layers hidden heads kv_heads head_dim ffn vocab max_context sliding_window sliding_layers
    position_embeddings published_params published_active_params experts active shared expert_ffn shared_ffn
    dense_layers layer_freq q_lora_rank kv_lora_rank qk_nope_head_dim qk_rope_head_dim v_head_dim
    key_heads value_heads key_head_dim value_head_dim conv_kernel index_heads index_head_dim top_k ffn_layers"""
    )
)
BASES = {"spec", "measured", "derived", "assumption"}
DATA_CLASSES = ("public", "internal", "personal", "sensitive", "national-security")
SECTORS = {"any", "private", "public", "finance", "health", "defense"}


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def _data_files() -> list[Path]:
    return sorted(DATA_DIR.glob("*.yaml"))


def _numeric_keys(node: Any, where: str) -> list[tuple[str, str]]:
    """(where, key) for every key in a YAML tree whose value is a number or null."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                out.append((where, str(key)))
            out.extend(_numeric_keys(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for item in node:
            label = item.get("id", "?") if isinstance(item, dict) else "?"
            out.extend(_numeric_keys(item, f"{where}[{label}]"))
    return out


def _write_overlay(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


PROVENANCE = {"source": "test overlay", "as_of": "2026-11", "basis": "assumption"}


# --- presence and provenance --------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_required_ids_load(cat: Catalog, kind: str) -> None:
    missing = REQUIRED[kind] - set(cat.kind(kind))
    assert not missing, f"{kind} lacks {sorted(missing)}"


def test_accelerators_are_exactly_the_listed_parts(cat: Catalog) -> None:
    assert set(cat.accelerators) == REQUIRED["accelerators"]


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: p.name)
def test_every_raw_entry_states_its_provenance(path: Path) -> None:
    entries = read_yaml(path)
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert isinstance(entry, dict)
        label = f"{path.name}: {entry.get('id')}"
        assert len(str(entry.get("source", "")).strip()) >= 10, f"{label}: source too thin"
        assert entry.get("as_of") is not None, f"{label}: no as_of"
        assert entry.get("basis") in BASES, f"{label}: basis {entry.get('basis')!r}"
        if entry["basis"] == "assumption" and path.stem != "assumptions":
            assert entry.get("notes") or "estimate" in entry["source"].lower() or "assum" in entry["source"].lower(), (
                f"{label}: an assumption must say so in notes or source"
            )


def test_every_loaded_entry_has_provenance(cat: Catalog) -> None:
    for kind in REQUIRED:
        for entry in cat.kind(kind).values():
            assert entry.source and entry.as_of and entry.basis in BASES, f"{kind}[{entry.id}]"


# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: p.name)
def test_numeric_fields_end_in_a_known_unit(path: Path) -> None:
    bad = [
        f"{where}.{key}"
        for where, key in _numeric_keys(read_yaml(path), path.stem)
        if key not in DIMENSIONLESS and key not in MODEL_COUNTS and units.split_suffix(key) is None
    ]
    assert not bad, f"numeric fields without a unit suffix: {bad}"


def test_assumption_units_are_known_and_loaded_as_expected(cat: Catalog) -> None:
    for entry in read_yaml(DATA_DIR / "assumptions.yaml"):
        assert entry["unit"] in units.known_units(), entry["id"]
    for name, si in ASSUMPTION_UNITS.items():
        assert cat.assumptions[name].unit == si, name


# --- conversion spot checks ---------------------------------------------------------------------


def test_conversions_to_internal_units(cat: Catalog) -> None:
    h100 = cat.accelerators["h100-sxm"]
    assert h100.hbm_bytes_s == pytest.approx(3.35e12, rel=1e-12)
    assert h100.hbm_bytes == pytest.approx(81_559 * 2**20, rel=1e-3)  # nvidia-smi total, 79.6 GiB
    assert h100.bf16_dense_flops == pytest.approx(989.4e12, rel=1e-12)
    assert h100.scaleup_bidir_bytes_s == pytest.approx(900e9, rel=1e-12)
    assert cat.regions["kr"].electricity_usd_per_j == pytest.approx(182.7 / 1400 / 3.6e6, rel=1e-9)
    assert cat.regions["us"].fte_cost_usd_per_s == pytest.approx(200_000 / units.SECONDS_PER_YEAR, rel=1e-12)
    assert cat.systems["dgx-h100"].power_w == pytest.approx(10_200, rel=1e-12)
    assert cat.systems["dgx-b300"].nic_bit_s == pytest.approx(800e9, rel=1e-12)
    assert cat.cloud_prices["aws-h100-on-demand"].price_usd_per_gpu_s == pytest.approx(6.88 / 3600, rel=1e-12)
    assert cat.api_prices["openai-gpt-5"].input_usd_per_token == pytest.approx(1.25e-6, rel=1e-12)
    assert cat.api_prices["naver-hyperclova-x"].input_usd_per_token == pytest.approx(5000 / 1400 / 1e6, rel=1e-9)
    assert cat.assumptions["facility_build_cost"].value == pytest.approx(12.0)  # 12 M USD/MW = 12 USD/W
    assert cat.assumptions["it_lifetime"].value == pytest.approx(5 * units.SECONDS_PER_YEAR)
    assert cat.assumptions["building_max_power"].value == pytest.approx(100e6)
    assert cat.usd_per()["KRW"] == pytest.approx(1 / 1400, rel=1e-12)


# --- consistency --------------------------------------------------------------------------------


def test_default_system_holds_its_own_part(cat: Catalog) -> None:
    for acc in cat.accelerators.values():
        assert cat.systems[acc.default_system].accelerator == acc.id, acc.id


def test_system_power_covers_its_gpus(cat: Catalog) -> None:
    for s in cat.systems.values():
        gpu_power = s.gpus * cat.accelerators[s.accelerator].tdp_w
        assert gpu_power < s.power_w < 3 * gpu_power, f"{s.id}: {s.power_w} W for {gpu_power} W of GPUs"
        assert s.scaleup_domain_gpus <= s.gpus


def test_rack_scale_and_liquid(cat: Catalog) -> None:
    for sid in ("gb200-nvl72", "gb300-nvl72"):
        s = cat.systems[sid]
        assert (s.gpus, s.scaleup_domain_gpus, s.systems_per_rack, s.nvlink_switch_trays) == (72, 72, 1, 9)
        assert s.cooling == "liquid"
    assert all(s.nvlink_switch_trays == 0 for s in cat.systems.values() if s.gpus == 8)


def test_dense_throughput_ordering(cat: Catalog) -> None:
    for a in cat.accelerators.values():
        assert 100e12 < a.bf16_dense_flops < 5e15, a.id
        if a.fp8_dense_flops is not None:
            assert a.fp8_dense_flops >= a.bf16_dense_flops, a.id
        if a.fp4_dense_flops is not None:
            assert a.fp8_dense_flops is not None and a.fp4_dense_flops >= a.fp8_dense_flops, a.id
    assert cat.accelerators["a100-sxm-80gb"].fp8_dense_flops is None
    fp4 = {a.id for a in cat.accelerators.values() if a.fp4_dense_flops}
    assert fp4 == {"b200", "b300", "gb200", "gb300", "mi355x"}


def test_reserved_prices_are_below_on_demand(cat: Catalog) -> None:
    on_demand = {
        (p.provider, p.accelerator): p.price_usd_per_gpu_s
        for p in cat.cloud_prices.values()
        if p.pricing == "on-demand"
    }
    checked = 0
    for p in cat.cloud_prices.values():
        key = (p.provider, p.accelerator)
        if p.pricing != "on-demand" and key in on_demand:
            assert p.price_usd_per_gpu_s < on_demand[key], p.id
            checked += 1
    assert checked >= 20


def test_offers_point_at_options_of_the_right_kind(cat: Catalog) -> None:
    for p in cat.cloud_prices.values():
        assert cat.options[p.option].kind == "cloud", p.id
    for a in cat.api_prices.values():
        assert cat.options[a.option].kind == "api", a.id
    assert any(p.option == "sovereign-cloud-domestic" for p in cat.cloud_prices.values())
    assert any(a.option == "llm-api-domestic" for a in cat.api_prices.values())


def test_option_levels_follow_the_sovereignty_levels(cat: Catalog) -> None:
    levels = {o.id: o.level for o in cat.options.values()}
    assert levels["own-build"] == 4
    assert levels["colocation-domestic"] == levels["sovereign-cloud-domestic"] == 3
    assert levels["hyperscaler-sovereign"] == 2
    assert levels["hyperscaler-local-region"] in (1, 2)
    assert levels["neocloud-foreign"] == levels["llm-api-foreign"] == 0
    for o in cat.options.values():  # a US-parented operator never reaches level 3
        if o.operator_parent_jurisdiction == "US":
            assert o.level <= 2, o.id


def test_rules_name_real_option_attributes(cat: Catalog) -> None:
    fields = Option.model_fields
    for rule in cat.rules.values():
        assert set(rule.data_classes) <= set(DATA_CLASSES), rule.id
        assert set(rule.sectors) <= SECTORS, rule.id
        assert rule.text.strip(), rule.id
        for attr, need in rule.require.items():
            assert attr in fields, f"{rule.id}: {attr}"
            annotation = fields[attr].annotation
            if annotation is bool:
                assert isinstance(need, bool), f"{rule.id}: {attr}"
            elif attr == "level":
                assert isinstance(need, int) and not isinstance(need, bool) and 0 <= need <= 4
            else:
                assert isinstance(need, list) and need, f"{rule.id}: {attr}"
                allowed = typing.get_args(annotation)
                if allowed:  # a Literal: every value must be one of its members
                    assert set(need) <= set(allowed), f"{rule.id}: {attr} {need}"


def test_region_adequacy(cat: Catalog) -> None:
    assert cat.regions["kr"].adequacy == []
    assert {"KR", "JP", "US"} <= set(cat.regions["eu"].adequacy)
    assert {r.jurisdiction for r in cat.regions.values()} >= {"KR", "US", "EU", "JP"}


def test_assumption_ranges(cat: Catalog) -> None:
    for a in cat.assumptions.values():
        if a.distribution != "fixed":
            assert a.low is not None and a.high is not None, a.id
        if a.low is not None and a.high is not None:
            assert a.low <= a.value <= a.high, a.id
        if a.unit == "fraction":
            lowest = a.low if a.low is not None else a.value
            highest = a.high if a.high is not None else a.value
            assert lowest >= 0.0 and highest <= 1.0, a.id


# --- broken entries name the file, the entry and the field -------------------------------------


def _error(path: Path) -> str:
    with pytest.raises(CatalogError) as info:
        load_catalog([path])
    return str(info.value)


def test_typo_field_is_named(tmp_path: Path) -> None:
    path = _write_overlay(
        tmp_path, "typo.yaml", {"accelerators": [{"id": "h100-sxm", "hbm_tb_sec": 3.35, **PROVENANCE}]}
    )
    message = _error(path)
    assert str(path) in message and "accelerators[h100-sxm]" in message and "hbm_tb_sec" in message
    assert "unknown field" in message


def test_negative_value_is_named(tmp_path: Path) -> None:
    path = _write_overlay(
        tmp_path, "negative.yaml", {"accelerators": [{"id": "h100-sxm", "tdp_w": -700, **PROVENANCE}]}
    )
    message = _error(path)
    assert str(path) in message and "accelerators[h100-sxm]" in message and "tdp_w" in message
    assert "-700" in message


def test_unknown_system_reference_is_named(tmp_path: Path) -> None:
    path = _write_overlay(
        tmp_path, "ref.yaml", {"accelerators": [{"id": "h100-sxm", "default_system": "dgx-h1000", **PROVENANCE}]}
    )
    message = _error(path)
    assert str(path) in message and "accelerators[h100-sxm]" in message and "default_system" in message
    assert "dgx-h1000" in message and 'did you mean "dgx-h100"' in message


def test_hardware_names_people_use_resolve_to_one_part(cat: Catalog) -> None:
    assert cat.hardware("h100")[0].id == "h100-sxm" and cat.hardware("h100")[1].id == "dgx-h100"
    assert cat.hardware("H200")[0].id == "h200-sxm"
    assert cat.hardware("H100_SXM")[0].id == "h100-sxm"  # case and '_' as data sets write them
    assert cat.hardware("a100")[0].id == "a100-sxm-80gb"
    assert cat.hardware("GB200-NVL72")[1].id == "gb200-nvl72"
    assert cat.find("h100")[1].id == "h100-sxm"  # `catalog show h100`
    with pytest.raises(FactoryplanError) as exc:
        cat.hardware("h1000", field_name="--gpu")
    assert exc.value.field == "--gpu" and "h1000" in exc.value.message


def test_an_alias_that_is_another_id_is_refused(tmp_path: Path) -> None:
    path = _write_overlay(
        tmp_path, "alias.yaml", {"accelerators": [{"id": "h200-sxm", "aliases": ["h100"], **PROVENANCE}]}
    )
    message = _error(path)
    assert "alias 'h100' of h200-sxm" in message and "aliases" in message


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: p.name)
def test_entries_read_one_by_one_are_the_file(path: Path) -> None:
    # serve parses only the entries it needs; each must read as in the whole file
    from factoryplan.catalog.load import entry_texts, parse_entry

    whole = read_yaml(path) or []
    texts = entry_texts(path)
    assert list(texts) == [item["id"] for item in whole]
    assert [parse_entry(t, path) for t in texts.values()] == whole


def test_entries_of_a_file_laid_out_otherwise(tmp_path: Path) -> None:
    from factoryplan.catalog.load import entry_texts, parse_entry

    path = tmp_path / "flow.yaml"
    path.write_text('[{id: a, x: 1}, {"id": "b", "x": [2, 3]}]\n', encoding="utf-8")
    texts = entry_texts(path)
    expected = {"a": {"id": "a", "x": 1}, "b": {"id": "b", "x": [2, 3]}}
    assert {i: parse_entry(t, path) for i, t in texts.items()} == expected


def test_missing_source_is_named(tmp_path: Path) -> None:
    new = yaml.safe_load((DATA_DIR / "links.yaml").read_text(encoding="utf-8"))[0]
    new = {k: v for k, v in new.items() if k != "source"} | {"id": "test-link"}
    path = _write_overlay(tmp_path, "nosource.yaml", {"links": [new]})
    message = _error(path)
    assert str(path) in message and "links[test-link]" in message and "source" in message
    # a patch of a shipped entry must restate its provenance, too
    patch = _write_overlay(tmp_path, "patch.yaml", {"regions": [{"id": "kr", "electricity_krw_per_kwh": 190}]})
    message = _error(patch)
    assert str(patch) in message and "regions[kr]" in message and "source" in message


# --- overlays add and patch ---------------------------------------------------------------------


def test_overlay_adds_and_patches(tmp_path: Path) -> None:
    new_gpu = {
        "id": "test-gpu",
        "name": "Test GPU",
        "vendor": "Test",
        "generation": "hopper",
        "year": 2026,
        "bf16_dense_tflops": 500,
        "hbm_gb": 64,
        "hbm_tb_s": 2.5,
        "scaleup_bidir_gb_s": 0,
        "tdp_w": 500,
        "default_system": "dgx-h100",
        **PROVENANCE,
    }
    offer = {
        "id": "test-offer",
        "name": "Test offer",
        "provider": "Test",
        "provider_kind": "neocloud",
        "accelerator": "test-gpu",
        "pricing": "on-demand",
        "price_usd_per_gpu_hour": 1.5,
        "option": "neocloud-foreign",
        **PROVENANCE,
    }
    data = {
        "accelerators": [{"id": "h100-sxm", "hbm_gb_s": 3000, **PROVENANCE}, new_gpu],
        "regions": [{"id": "kr", "electricity_krw_per_kwh": 200, **PROVENANCE}],
        "fx": [{"id": "krw", "usd_per_unit": 0.0008, **PROVENANCE}],
        "cloud_prices": [offer],
    }
    path = _write_overlay(tmp_path, "overlay.yaml", data)
    cat = load_catalog([path])
    h100 = cat.accelerators["h100-sxm"]
    assert h100.hbm_bytes_s == pytest.approx(3.0e12)  # patched in another unit
    assert h100.hbm_bytes == pytest.approx(79.6 * 2**30) and h100.tdp_w == 700  # the rest kept
    assert h100.source == "test overlay" and cat.origin[("accelerators", "h100-sxm")] == str(path)
    assert cat.accelerators["test-gpu"].bf16_dense_flops == pytest.approx(500e12)
    assert cat.cloud_prices["test-offer"].price_usd_per_gpu_s == pytest.approx(1.5 / 3600)
    assert cat.regions["kr"].electricity_usd_per_j == pytest.approx(200 * 0.0008 / 3.6e6)  # new rate applied
    shipped = load_catalog()
    assert shipped.accelerators["h100-sxm"].hbm_bytes_s == pytest.approx(3.35e12)
    assert "test-gpu" not in shipped.accelerators
