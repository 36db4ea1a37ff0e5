"""The zoo registry as data: the shipped files, their validation (pydantic models) and JSON schemas,
backbone matching, generated model cards, and the build step that ships the data folders inside the wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from huggingface_hub.repocard_data import model_index_to_eval_results
from mmengine.config import Config
from PIL import Image

from harma_zoo import resources
from harma_zoo.cli import main
from harma_zoo.hub.download import sha256_file
from harma_zoo.hub.index import (
    BACKBONES_FILE,
    CHECKPOINTS_FILE,
    BackboneEntry,
    CheckpointEntry,
    RegistryError,
    backbone_matches,
    entry_dict,
    family_config,
    load_index,
    match_backbone,
    weights_option,
)
from harma_zoo.hub.references import resolve_zoo_weights, zoo_reference
from harma_zoo.hub.schema import SCHEMAS, modeline, registry_schema, schema_paths, stale_schemas
from harma_zoo.zoo import _wheel_data
from harma_zoo.zoo.cards import base_model, card_metadata, render_card
from harma_zoo.zoo.catalog import Filters, backbone_rows, recipe_rows

PROJECT = Path(__file__).resolve().parents[1]
SHA = "ab" * 32
REQUIRED_BACKBONES = {
    "openai-clip-vit-b32": ("open_clip", "tag", "openai"),
    "openai-clip-vit-l14": ("open_clip", "tag", "openai"),
    "openclip-vit-b32-laion": ("open_clip", "tag", "laion2b_s34b_b79k"),
    "georsclip-vit-b32": ("open_clip", "url", "hf://Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32.pt"),
    "georsclip-vit-b32-ret2": ("open_clip", "url", "hf://Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32_RET-2.pt"),
    "georsclip-vit-h14": ("open_clip", "url", "hf://Zilun/GeoRSCLIP/ckpt/RS5M_ViT-H-14.pt"),
    "remoteclip-vit-b32": ("open_clip", "url", "hf://chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt"),
    "remoteclip-vit-l14": ("open_clip", "url", "hf://chendelong/RemoteCLIP/RemoteCLIP-ViT-L-14.pt"),
    "siglip-vit-b16": ("open_clip", "tag", "webli"),
    "blip-itm-base-coco": ("hf_blip", "hub", "Salesforce/blip-itm-base-coco"),
    "harma-tiny-vit": ("open_clip", "random", None),
    "harma-small-vit": ("open_clip", "random", None),
}


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A copy of the shipped registry, inside a project root of its own."""
    folder = tmp_path / "project" / "registry"
    shutil.copytree(PROJECT / "registry", folder)
    return folder


def _edit(folder: Path, file: str, change) -> None:
    path = folder / file
    entries = yaml.safe_load(path.read_text()) or []
    entries = change(entries)
    path.write_text(yaml.safe_dump(entries, sort_keys=False) if not isinstance(entries, str) else entries)


def _entry(entries: list[dict], name: str) -> dict[str, Any]:
    return next(entry for entry in entries if entry["name"] == name)


def checkpoint_entry(**changes: Any) -> dict[str, Any]:
    entry = {
        "name": "tiny-harma",
        "backbone": "harma-tiny-vit",
        "method": {"type": "harma", "shared_towers": ["text"]},
        "loss": {"type": "harma"},
        "recipe": "harma_small-vit_synthetic",
        "dataset": {"name": "synthetic"},
        "selected_on": "val",
        "epoch": 3,
        "metrics": {"val": {"i2t_R@1": 10.0, "mR": 30.5}},
        "parameters": {"trainable": 1234},
        "urls": ["zoo_files/tiny-harma.safetensors"],
        "sha256": SHA,
        "size": 100,
        "card": "model_cards/tiny-harma.md",
        "backbone_fingerprint": "f" * 64,
        "toolkit_version": "0.1.0",
    }
    entry.update(changes)
    return entry


# --- the shipped registry ------------------------------------------------------------------------
def test_the_shipped_backbones_are_there_with_their_sources(shipped) -> None:
    for name, (family, kind, source) in REQUIRED_BACKBONES.items():
        entry = shipped.backbone(name)
        assert (entry.family, entry.weights.kind, entry.weights.source) == (family, kind, source), name
        assert entry.license and entry.citation
    # no invented hashes: a sha256 is recorded only for a file shipped here, and it is that file's
    for entry in shipped.backbones.values():
        if entry.weights.kind == "file":
            assert sha256_file(PROJECT / entry.weights.source) == entry.weights.sha256, entry.name
        else:
            assert entry.weights.sha256 is None, entry.name
    assert shipped.backbone("georsclip-vit-b32-ret2").architecture == {"arch": "ViT-B-32-quickgelu"}
    for entry in shipped.checkpoints.values():  # only checkpoints that really exist get an entry
        file = PROJECT / entry.urls[0]
        assert file.is_file() and file.stat().st_size == entry.size and sha256_file(file) == entry.sha256
        assert (PROJECT / entry.card).is_file() and entry.selected_on == "val"


def test_every_recipe_backbone_is_a_registry_entry(shipped) -> None:
    rows = {row["name"]: row for row in recipe_rows(shipped)}
    assert rows["harma_georsclip-vit-b32-ret2_rsicd"]["backbone"] == "georsclip-vit-b32-ret2"
    assert rows["harma_blip-itm-base-coco_rsicd"]["backbone"] == "blip-itm-base-coco"
    assert rows["harma_siglip-vit-b16_rsicd"]["backbone"] == "siglip-vit-b16"
    assert rows["harma_small-vit_synthetic"]["dataset"] == "synthetic"
    assert all(row["backbone"] for row in rows.values())


def _backbone_pieces() -> dict[str, dict[str, Any]]:
    """The backbone config of every piece in recipes/_base_/backbones/, by file name."""
    folder = PROJECT / "recipes" / "_base_" / "backbones"
    return {path.stem: Config.fromfile(path).backbone.to_dict() for path in sorted(folder.glob("*.py"))}


def test_every_backbone_with_weights_has_a_recipe_piece_naming_it_as_zoo(shipped, tmp_path, monkeypatch) -> None:
    """One source of truth: a piece names registry weights as zoo:NAME, never a tag, hub id or path of its own."""
    pieces = _backbone_pieces()
    for entry in shipped.backbones.values():
        if entry.weights.kind == "random":
            continue
        naming = [stem for stem, config in pieces.items() if zoo_reference(config) == entry.name]
        assert len(naming) == 1, f"{entry.name}: pieces naming it: {naming}"
        assert match_backbone(shipped, pieces[naming[0]]) is entry  # family and architecture are the entry's
    for stem, config in pieces.items():
        if config.get(weights_option(config["type"])) is not None:
            assert zoo_reference(config) in shipped.backbones, stem
    # and each resolves to what its family loads, without downloading anything: files from a local folder
    monkeypatch.setenv("HARMA_ZOO_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HARMA_ZOO_HOME", str(tmp_path / "zoo-home"))
    (tmp_path / "weights").mkdir()
    for entry in shipped.backbones.values():
        if entry.weights.kind == "url":
            (tmp_path / "weights" / entry.weights.source.rpartition("/")[2]).write_bytes(b"stand-in")
    for stem, config in pieces.items():
        name = zoo_reference(config)
        if name is None:
            continue
        entry = shipped.backbone(name)
        value = resolve_zoo_weights(config, index=shipped)[weights_option(config["type"])]
        if entry.weights.kind in ("tag", "hub"):
            assert value == entry.weights.source, stem
        elif entry.weights.kind == "url":
            assert value == str(tmp_path / "weights" / entry.weights.source.rpartition("/")[2]), stem
        else:  # a file shipped in the project: copied into the zoo cache, verified
            assert Path(value).parent.parent == tmp_path / "zoo-home" / "downloads", stem
            assert sha256_file(value) == entry.weights.sha256


def test_backbone_configs_and_matching(shipped) -> None:
    georsclip = shipped.backbone("georsclip-vit-b32-ret2")
    config = family_config(georsclip, "/cache/ab12/RS5M_ViT-B-32_RET-2.pt")
    assert config == {
        "type": "open_clip",
        "arch": "ViT-B-32-quickgelu",
        "pretrained": "/cache/ab12/RS5M_ViT-B-32_RET-2.pt",
    }
    assert match_backbone(shipped, config) is georsclip
    assert match_backbone(shipped, {**config, "pretrained": "weights/RS5M_ViT-B-32.pt"}).name == "georsclip-vit-b32"
    assert match_backbone(shipped, {**config, "arch": "ViT-B-32"}) is None
    assert match_backbone(shipped, {**config, "unexpected": 1}) is None
    assert match_backbone(shipped, {**config, "cache_dir": "/tmp/x"}) is georsclip  # changes nothing
    assert backbone_matches(shipped.backbone("harma-tiny-vit"), {"type": "open_clip", "arch": "harma-tiny-vit"})
    assert not backbone_matches(
        shipped.backbone("harma-tiny-vit"), {"type": "open_clip", "arch": "harma-tiny-vit", "pretrained": "x.pt"}
    )
    blip = shipped.backbone("blip-itm-base-coco")
    assert family_config(blip) == {"type": "hf_blip", "source": "Salesforce/blip-itm-base-coco"}
    with pytest.raises(ValueError, match="harma-zoo fetch georsclip-vit-b32-ret2"):
        family_config(georsclip)  # a weights file has to be fetched first


def test_filters(shipped) -> None:
    assert [row["name"] for row in backbone_rows(shipped, Filters(family="hf_blip"))] == ["blip-itm-base-coco"]
    georsclip = {row["name"] for row in backbone_rows(shipped, Filters(text="GeoRSCLIP"))}
    assert georsclip == {"georsclip-vit-b32", "georsclip-vit-b32-ret2", "georsclip-vit-h14"}
    with pytest.raises(ValueError, match="no method or dataset"):
        backbone_rows(shipped, Filters(method="harma"))


# --- malformed entries: every error names the file, the entry and the field -----------------------
def _drop(name: str, key: str):
    def change(entries):
        del _entry(entries, name)[key]
        return entries

    return change


def _set(name: str, key: str, value: Any):
    def change(entries):
        entry = _entry(entries, name)
        if "." in key:
            outer, inner = key.split(".")
            entry[outer][inner] = value
        else:
            entry[key] = value
        return entries

    return change


@pytest.mark.parametrize(
    ("change", "entry", "field", "problem"),
    [
        (_drop("georsclip-vit-b32", "family"), "'georsclip-vit-b32'", "family", "is missing"),
        (_set("georsclip-vit-b32", "family", "clip"), "'georsclip-vit-b32'", "family", "unknown family 'clip'"),
        (_set("georsclip-vit-b32", "family", 7), "'georsclip-vit-b32'", "family", "must be a string"),
        (_set("siglip-vit-b16", "architecture", "ViT-B-16"), "'siglip-vit-b16'", "architecture", "must be a mapping"),
        (_set("siglip-vit-b16", "familly", "open_clip"), "'siglip-vit-b16'", "familly", "is unknown"),
        (_set("siglip-vit-b16", "weights.kind", "magic"), "'siglip-vit-b16'", "weights.kind", "must be one of"),
        (_set("siglip-vit-b16", "weights.sha256", SHA), "'siglip-vit-b16'", "weights.sha256", "must be null"),
        (_set("georsclip-vit-b32", "weights.sha256", "abc"), "'georsclip-vit-b32'", "weights.sha256", "64 lowercase"),
        (_set("georsclip-vit-b32", "weights.source", "Zilun/x.pt"), "'georsclip-vit-b32'", "weights.source", "a URL"),
        (
            _set("georsclip-vit-b32", "weights.source", "hf://Zilun/x.pt"),
            "'georsclip-vit-b32'",
            "weights.source",
            "hf://OWNER/REPO",
        ),
        (
            _set("blip-itm-base-coco", "weights.kind", "tag"),
            "'blip-itm-base-coco'",
            "weights.kind",
            "is 'tag': family hf_blip loads random, hub, url, file",
        ),
        (
            _set("siglip-vit-b16", "weights.kind", "hub"),
            "'siglip-vit-b16'",
            "weights.kind",
            "is 'hub': family open_clip loads random, tag, url, file",
        ),
        (_set("harma-tiny-vit", "weights.source", "x.pt"), "'harma-tiny-vit'", "weights.source", "must be null"),
        (_set("siglip-vit-b16", "license", ""), "'siglip-vit-b16'", "license", "must not be empty"),
        (_set("siglip-vit-b16", "license", 3), "'siglip-vit-b16'", "license", "must be a string"),
        (
            _set("siglip-vit-b16", "architecture", {"arch": "x", "pretrained": "webli"}),
            "'siglip-vit-b16'",
            "architecture.pretrained",
            "belongs in field 'weights'",
        ),
        (_set("siglip-vit-b16", "name", "bad name"), "'bad name'", "name", "letters, digits"),
        (_set("siglip-vit-b16", "name", "blip-itm-base-coco"), "'blip-itm-base-coco'", "name", "duplicate"),
        (_set("siglip-vit-b16", "weights.revision", "main"), "'siglip-vit-b16'", "weights.revision", "is unknown"),
        (_set("siglip-vit-b16", "weights.source", None), "'siglip-vit-b16'", "weights.source", "a tag needs a source"),
        (_set("siglip-vit-b16", "weights", "webli"), "'siglip-vit-b16'", "weights", "must be a mapping, found a str"),
        (_set("siglip-vit-b16", "citation", "  \n"), "'siglip-vit-b16'", "citation", "must not be empty"),
        (_set("siglip-vit-b16", "homepage", 5), "'siglip-vit-b16'", "homepage", "must be a string, found an integer"),
        (_set("siglip-vit-b16", "architecture", {1: "x"}), "'siglip-vit-b16'", "architecture", "string keys"),
        (
            _set("georsclip-vit-b32", "weights.source", "https://x.org/ckpt/"),
            "'georsclip-vit-b32'",
            "weights.source",
            "must name a file",
        ),
        (
            _set("siglip-vit-b16", "architecture", {"type": "hf_clip"}),
            "'siglip-vit-b16'",
            "architecture.type",
            "but the family is 'open_clip'",
        ),
    ],
)
def test_malformed_backbone_entries_name_file_entry_and_field(registry, change, entry, field, problem) -> None:
    _edit(registry, "backbones.yaml", change)
    with pytest.raises(RegistryError) as raised:
        load_index(registry)
    message = str(raised.value)
    assert f"backbones.yaml: entry {entry}: field '{field}'" in message, message
    assert problem in message, message
    assert (raised.value.entry, raised.value.field) == (entry, field)


def test_a_file_kind_weight_must_stay_inside_the_project(registry) -> None:
    _edit(registry, "backbones.yaml", _set("harma-tiny-vit", "weights", {"kind": "file", "source": "../w.pt"}))
    with pytest.raises(RegistryError, match=r"entry 'harma-tiny-vit': field 'weights.source' must be a path relative"):
        load_index(registry)


def test_whole_file_problems_name_the_file(registry) -> None:
    (registry / "backbones.yaml").write_text("name: not-a-list\n")
    with pytest.raises(RegistryError, match=r"backbones.yaml: expected a YAML list of entries, found dict"):
        load_index(registry)
    (registry / "backbones.yaml").write_text("- [1, 2]\n")
    with pytest.raises(RegistryError, match=r"backbones.yaml: entry #1: must be a mapping, found a list"):
        load_index(registry)
    (registry / "backbones.yaml").write_text("- name: x\n  family: [\n")
    with pytest.raises(RegistryError, match=r"backbones.yaml: not valid YAML"):
        load_index(registry)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"backbone": "no-such-backbone"}, "backbone", "unknown backbone 'no-such-backbone'"),
        ({"selected_on": "test"}, "selected_on", "never selected on the test split"),
        ({"selected_on": "train"}, "selected_on", "a split without metrics"),
        ({"sha256": "XYZ"}, "sha256", "64 lowercase hex digits"),
        ({"urls": []}, "urls", "at least one"),
        ({"urls": ["ftp://host/x.safetensors"]}, "urls[0]", "must be a URL"),
        ({"urls": ["zoo_files/a.safetensors", "../x.safetensors"]}, "urls[1]", "relative to the project root"),
        ({"metrics": {"val": {"mR": "high"}}}, "metrics.val.mR", "must be a number"),
        ({"parameters": {"trainable": -1}}, "parameters.trainable", "non-negative integer"),
        ({"epoch": True}, "epoch", "must be an integer"),
        ({"dataset": {}}, "dataset.name", "is missing"),
        ({"method": {"bottleneck": 8}}, "method.type", "is missing"),
        ({"name": "harma-tiny-vit"}, "name", "also the name of a backbone"),
        ({"urls": ["https://x.org/zoo/"]}, "urls[0]", "must name a file"),
        ({"size": -5}, "size", "non-negative integer"),
        ({"size": 1.5}, "size", "must be an integer"),
        ({"metrics": {"val": [30.5]}}, "metrics.val", "must be a mapping"),
        (
            {"parameters": {"trainable": 3, "groups": {"method.shared": -1}}},
            "parameters.groups.method.shared",
            "non-negative integer",
        ),  # fmt: skip
        ({"parameters": {}}, "parameters.trainable", "is missing"),
        ({"dataset": {"name": ""}}, "dataset.name", "must not be empty"),
        ({"loss": {"type": 2}}, "loss.type", "must be a string, found an integer"),
        ({"toolkit_version": 0.1}, "toolkit_version", "must be a string, found a number"),
        ({"card": None}, "card", "must be a string, found null"),
    ],
)
def test_malformed_checkpoint_entries_name_file_entry_and_field(registry, changes, field, problem) -> None:
    entry = checkpoint_entry(**changes)
    (registry / "checkpoints.yaml").write_text(yaml.safe_dump([entry], sort_keys=False))
    with pytest.raises(RegistryError) as raised:
        load_index(registry)
    message = str(raised.value)
    assert f"checkpoints.yaml: entry '{entry['name']}': field '{field}'" in message, message
    assert problem in message, message


def test_a_checkpoint_entry_must_write_optional_values_as_null(registry) -> None:
    entry = checkpoint_entry()
    del entry["selected_on"]
    (registry / "checkpoints.yaml").write_text(yaml.safe_dump([entry]))
    with pytest.raises(RegistryError, match="field 'selected_on' is missing \\(write null"):
        load_index(registry)
    (registry / "checkpoints.yaml").write_text(yaml.safe_dump([checkpoint_entry(selected_on=None)]))
    assert load_index(registry).checkpoint("tiny-harma").selected_on is None


def test_a_misspelt_field_is_reported_as_unknown_not_the_real_one_as_missing(registry) -> None:
    def misspell(entries):
        entry = _entry(entries, "siglip-vit-b16")
        entry["licence"] = entry.pop("license")
        return entries

    _edit(registry, "backbones.yaml", misspell)
    with pytest.raises(RegistryError, match=r"'siglip-vit-b16': field 'licence' is unknown; known fields: name, "):
        load_index(registry)


def test_entries_hold_exactly_what_the_files_say(shipped) -> None:
    """``entry_dict`` (what --json, cards and publish read) is the YAML entry with the defaults filled in."""
    for registry_file, entries in ((BACKBONES_FILE, shipped.backbones), (CHECKPOINTS_FILE, shipped.checkpoints)):
        raw = yaml.safe_load((PROJECT / "registry" / registry_file).read_text())
        model = SCHEMAS[registry_file][1]
        defaults = {name: info.default for name, info in model.model_fields.items() if not info.is_required()}
        for item in raw:
            data = entry_dict(entries[item["name"]])
            assert list(data) == list(model.model_fields)  # field order
            expected = {**defaults, **item}
            if model is BackboneEntry:
                expected["weights"] = {"source": None, "sha256": None, **item["weights"]}
            assert data == expected, item["name"]
    georsclip = shipped.backbone("georsclip-vit-b32")
    assert (georsclip.weights.kind, georsclip.weights.source, georsclip.weights.sha256) == (
        "url", "hf://Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32.pt", None
    )  # fmt: skip


# --- the JSON schemas editors read -------------------------------------------------------------------
def test_the_committed_json_schemas_are_up_to_date() -> None:
    assert stale_schemas(PROJECT / "registry") == [], "run `harma-zoo registry-schema` and commit registry/schema/"
    for registry_file in SCHEMAS:  # every registry file names its schema on its first line
        first_line = (PROJECT / "registry" / registry_file).read_text().splitlines()[0]
        assert first_line == modeline(registry_file)
        assert (PROJECT / "registry" / first_line.partition("$schema=")[2]) == schema_paths(PROJECT / "registry")[
            registry_file
        ]


def test_registry_schema_writes_and_checks(registry, capsys) -> None:
    shutil.rmtree(registry / "schema")
    assert main(["registry-schema", "--check", "--registry", str(registry)]) == 1
    assert "backbones.schema.json is out of date" in capsys.readouterr().out
    assert main(["registry-schema", "--registry", str(registry)]) == 0
    assert main(["registry-schema", "--check", "--registry", str(registry)]) == 0
    assert stale_schemas(registry) == []


def _schema_errors(registry_file: str, entries: list[Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(registry_schema(registry_file))
    return [error.message for error in validator.iter_errors(entries)]


def test_the_schema_accepts_the_shipped_files_and_refuses_what_load_index_refuses(shipped) -> None:
    """What an editor's YAML language server sees: a JSON Schema validator with the exported schema."""
    backbones = yaml.safe_load((PROJECT / "registry" / BACKBONES_FILE).read_text())
    checkpoints = yaml.safe_load((PROJECT / "registry" / CHECKPOINTS_FILE).read_text())
    assert _schema_errors(BACKBONES_FILE, backbones) == []
    assert _schema_errors(CHECKPOINTS_FILE, checkpoints) == []
    assert _schema_errors(CHECKPOINTS_FILE, [checkpoint_entry()]) == []
    broken = [
        (BACKBONES_FILE, {**backbones[0], "familly": "open_clip"}, "Additional properties"),
        (BACKBONES_FILE, {**backbones[0], "weights": {"kind": "magic", "source": None}}, "'magic' is not one of"),
        (BACKBONES_FILE, {**backbones[0], "name": "bad name"}, "does not match"),
        (BACKBONES_FILE, {**backbones[0], "license": ""}, "does not match"),
        (CHECKPOINTS_FILE, checkpoint_entry(epoch=True), "True is not valid under any of the given schemas"),
        (CHECKPOINTS_FILE, checkpoint_entry(sha256="XYZ"), "does not match"),
        (CHECKPOINTS_FILE, checkpoint_entry(urls=[]), "should be non-empty"),
        (CHECKPOINTS_FILE, checkpoint_entry(method={"bottleneck": 8}), "'type' is a required property"),
        (CHECKPOINTS_FILE, checkpoint_entry(parameters={"trainable": -1}), "less than the minimum of 0"),
    ]
    for registry_file, entry, problem in broken:
        errors = _schema_errors(registry_file, [entry])
        assert any(problem in error for error in errors), (entry, errors)


# --- model cards ---------------------------------------------------------------------------------
def test_a_card_has_hugging_face_front_matter_with_the_metrics(shipped) -> None:
    metrics = {"val": {"i2t_R@1": 10.0, "t2i_R@1": 8.0, "mR": 30.5}, "test": {"mR": 28.25}}
    entry = CheckpointEntry(
        **checkpoint_entry(
            backbone="georsclip-vit-b32-ret2",
            method={"type": "harma", "bottleneck": 128, "shared_towers": ["image", "text"]},
            dataset={"name": "rsicd", "train": "rsicd_train.json", "val": "rsicd_val.json"},
            metrics=metrics,
        )
    )
    text = render_card(entry, shipped.backbone("georsclip-vit-b32-ret2"))
    metadata = card_metadata(text)
    assert metadata["library_name"] == "harma-zoo"
    assert metadata["datasets"] == ["rsicd"] and "remote-sensing" in metadata["tags"]
    assert metadata["base_model"] == "Zilun/GeoRSCLIP"
    assert metadata["license"] == "unknown"
    name, results = model_index_to_eval_results(metadata["model-index"])  # huggingface_hub's own parser
    assert name == "tiny-harma"
    found = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    assert found == {(split, key): value for split, values in metrics.items() for key, value in values.items()}
    assert {r.task_type for r in results} == {"image-text-retrieval"} and results[0].dataset_type == "rsicd"
    assert "in both towers" in text and "`shared_towers: [image, text]`" in text
    assert "harma-zoo fetch tiny-harma" in text and "harma-zoo fetch georsclip-vit-b32-ret2" in text
    assert 'harma_zoo.load_pretrained("tiny-harma")' in text
    assert "harma-zoo eval harma_small-vit_synthetic --checkpoint" in text
    assert "2404.18253" in text and "Zhang, Zilun" in text  # HarMA and the backbone are cited
    assert "| val (selection) | 10.00 | 8.00 | 30.50 |" in text


def test_base_model_only_for_hub_weights(shipped) -> None:
    assert base_model(shipped.backbone("blip-itm-base-coco")) == "Salesforce/blip-itm-base-coco"
    assert base_model(shipped.backbone("remoteclip-vit-b32")) == "chendelong/RemoteCLIP"
    assert base_model(shipped.backbone("siglip-vit-b16")) is None
    entry = CheckpointEntry(**checkpoint_entry())
    assert "base_model" not in card_metadata(render_card(entry, shipped.backbone("harma-tiny-vit")))
    assert "text tower only" in render_card(entry, shipped.backbone("harma-tiny-vit"))
    with pytest.raises(ValueError, match="is for backbone 'harma-tiny-vit'"):
        render_card(entry, shipped.backbone("siglip-vit-b16"))


def test_the_shipped_cards_are_what_the_renderer_makes_of_the_registry(shipped) -> None:
    assert shipped.checkpoints  # the zoo publishes checkpoints, each with its card
    for entry in shipped.checkpoints.values():
        expected = render_card(entry, shipped.backbone(entry.backbone))
        assert (PROJECT / entry.card).read_text(encoding="utf-8") == expected, f"{entry.card} is stale: `make cards`"
    cards = {path.name for path in (PROJECT / "model_cards").glob("*.md")} - {"README.md"}
    assert cards == {Path(entry.card).name for entry in shipped.checkpoints.values()}  # no orphan card


def test_a_card_s_python_example_loads_its_checkpoint_by_name(shipped, tmp_path) -> None:
    entry = shipped.checkpoint("harma_tiny-vit-rsicd-source_rsicd")
    (code,) = re.findall(r"^```python\n(.*?)^```$", render_card(entry, shipped.backbone(entry.backbone)), re.M | re.S)
    Image.new("RGB", (96, 80), (120, 140, 90)).save(tmp_path / "scene.jpg")  # the user's image in the example
    env = {**os.environ, "HARMA_ZOO_HOME": str(tmp_path / "home")}
    env.pop("HARMA_ZOO_REGISTRY", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tensor" in done.stdout  # the 2 x 1 similarities


# --- packaging -----------------------------------------------------------------------------------
def test_the_build_step_ships_the_data_folders_where_resources_finds_them(tmp_path, monkeypatch) -> None:
    source = tmp_path / "checkout"
    for name in _wheel_data.DATA_FOLDERS:
        shutil.copytree(PROJECT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "recipes" / "__pycache__").mkdir()
    (source / "recipes" / "__pycache__" / "x.pyc").write_bytes(b"")
    package = tmp_path / "site-packages" / "harma_zoo"
    copied = _wheel_data.copy_data_folders(source, package / "_data")
    assert [path.name for path in copied] == list(_wheel_data.DATA_FOLDERS)  # no zoo_files/ here: skipped
    assert not (package / "_data" / "recipes" / "__pycache__").exists()
    monkeypatch.setattr(resources, "PACKAGE", package)  # an installed wheel: nothing beside the package
    assert resources.project_folder("registry") == package / "_data" / "registry"
    assert resources.recipe_path("harma_small-vit_synthetic").parent == package / "_data" / "recipes"
    assert len(load_index(resources.project_folder("registry")).backbones) == len(
        load_index(PROJECT / "registry").backbones
    )
    shutil.rmtree(source / "model_cards")
    with pytest.raises(FileNotFoundError, match="cannot package model_cards/"):
        _wheel_data.copy_data_folders(source, tmp_path / "again")
