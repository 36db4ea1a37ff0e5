"""The zoo commands end to end: `harma-zoo list`, `fetch`, `publish` and `convert-original`, on real
files (a copy of the registry in its own project folder), a real HTTP server on 127.0.0.1, and a
checkpoint from a real (tiny) training run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from engine_helpers import write_recipe
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import read_metadata, save_adapter
from harma_zoo.engine.evaluation import build_for_evaluation
from harma_zoo.engine.recipe import build_recipe_model, load_recipe
from harma_zoo.engine.train import train
from harma_zoo.hub.download import ChecksumError, sha256_file
from harma_zoo.hub.index import load_index, match_backbone
from harma_zoo.hub.schema import modeline
from harma_zoo.model import build_backbone
from harma_zoo.zoo import publish as publish_module
from harma_zoo.zoo.cards import card_metadata

PROJECT = Path(__file__).resolve().parents[1]
WEIGHTS = b"backbone weights " * 1000
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()
OTHER_SHA = hashlib.sha256(b"other bytes").hexdigest()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real training run (two epochs on the tiny ViT): its work dir holds best.safetensors."""
    folder = tmp_path_factory.mktemp("tiny-run")
    work_dir = folder / "work"
    train(load_recipe(write_recipe(folder)), work_dir)
    return work_dir


@pytest.fixture(autouse=True)
def _zoo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMA_ZOO_HOME", str(tmp_path / "zoo-home"))  # the download cache of this test
    monkeypatch.delenv("HARMA_ZOO_REGISTRY", raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: names are never folded


def add_backbone(registry: Path, **entry) -> None:
    path = registry / "backbones.yaml"
    entries = yaml.safe_load(path.read_text())
    entry = {"family": "open_clip", "architecture": {"arch": "harma-tiny-vit"}, "license": "apache-2.0",
             "citation": "test weights", **entry}  # fmt: skip
    path.write_text(yaml.safe_dump([*entries, entry], sort_keys=False))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


# --- list --------------------------------------------------------------------------------------------
def test_list_backbones_as_json_with_filters(registry: Path, capsys) -> None:
    code, out = run(capsys, "list", "backbones", "--json", "--registry", str(registry), "--family", "hf_blip")
    assert code == 0
    rows = json.loads(out)
    assert [row["name"] for row in rows] == ["blip-itm-base-coco"]
    assert rows[0]["weights"] == {"kind": "hub", "source": "Salesforce/blip-itm-base-coco", "sha256": None}
    code, out = run(capsys, "list", "backbones", "--json", "--registry", str(registry), "--filter", "remoteCLIP")
    assert {row["name"] for row in json.loads(out)} == {"remoteclip-vit-b32", "remoteclip-vit-l14"}


def test_list_prints_tables(registry: Path, capsys) -> None:
    code, out = run(capsys, "list", "--registry", str(registry))
    assert code == 0
    assert "georsclip-vit-b32-ret2" in out and "hf://Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32_RET-2.pt" in out
    assert "no checkpoints published yet" in out
    assert "harma_georsclip-vit-b32-ret2_rsitmd" in out  # the recipes table


def test_list_recipes_with_filters(registry: Path, capsys) -> None:
    code, out = run(capsys, "list", "recipes", "--json", "--registry", str(registry), "--dataset", "rsitmd")
    rows = json.loads(out)
    assert code == 0 and rows and {row["dataset"] for row in rows} == {"rsitmd"}
    assert "harma_georsclip-vit-b32-ret2_rsitmd" in {row["name"] for row in rows}
    code, out = run(capsys, "list", "recipes", "--json", "--registry", str(registry), "--family", "hf_blip")
    assert [row["backbone"] for row in json.loads(out)] == ["blip-itm-base-coco"] * len(json.loads(out))
    code, out = run(capsys, "list", "backbones", "--method", "harma", "--registry", str(registry))
    assert code == 2 and "no method or dataset" in out


def test_a_malformed_registry_is_named_on_the_command_line(registry: Path, capsys) -> None:
    text = (registry / "backbones.yaml").read_text().replace("family: hf_blip", "family: blip", 1)
    (registry / "backbones.yaml").write_text(text)
    code, out = run(capsys, "list", "--registry", str(registry))
    assert code == 2
    assert "backbones.yaml: entry 'blip-itm-base-coco': field 'family' names an unknown family 'blip'" in out


# --- fetch -------------------------------------------------------------------------------------------
def test_fetch_has_the_family_loader_download_tags_and_hub_ids(registry: Path, capsys) -> None:
    # the hubs are offline here (conftest): one line naming the entry and why, no traceback
    code, out = run(capsys, "fetch", "siglip-vit-b16", "--registry", str(registry))
    assert code == 1 and out.count("\n") == 1 and "Traceback" not in out
    assert "siglip-vit-b16: open_clip: the weights of pretrained tag 'webli' of ViT-B-16-SigLIP" in out
    assert "HF_HUB_OFFLINE=1" in out
    code, out = run(capsys, "fetch", "blip-itm-base-coco", "--registry", str(registry))
    assert code == 1 and out.count("\n") == 1
    assert "blip-itm-base-coco: hf_blip: the model of Hugging Face model 'Salesforce/blip-itm-base-coco'" in out
    code, out = run(capsys, "fetch", "harma-tiny-vit", "--registry", str(registry))
    assert code == 0 and "random weights" in out
    code, out = run(capsys, "fetch", "no-such-model", "--registry", str(registry))
    assert code == 2 and "no zoo entry 'no-such-model'" in out and "georsclip-vit-b32" in out


def test_fetch_a_repo_relative_file(registry: Path, tmp_path: Path, capsys) -> None:
    (registry.parent / "zoo_files").mkdir()
    (registry.parent / "zoo_files" / "w.safetensors").write_bytes(WEIGHTS)
    add_backbone(registry, name="local-w", weights={"kind": "file", "source": "zoo_files/w.safetensors",
                                                    "sha256": WEIGHTS_SHA})  # fmt: skip
    code, out = run(capsys, "fetch", "local-w", "--registry", str(registry))
    path = Path(out.strip().splitlines()[-1])  # the last line is the file
    assert code == 0 and "verified" in out
    assert path == tmp_path / "zoo-home" / "downloads" / WEIGHTS_SHA / "w.safetensors"
    assert path.read_bytes() == WEIGHTS
    code, out = run(
        capsys, "fetch", "local-w", "--json", "--registry", str(registry), "--cache-dir", str(tmp_path / "c")
    )
    result = json.loads(out)
    assert result["verified"] and result["sha256"] == WEIGHTS_SHA
    assert result["config"] == {"type": "open_clip", "arch": "harma-tiny-vit", "pretrained": result["path"]}
    assert Path(result["path"]).read_bytes() == WEIGHTS


def test_fetch_over_http_verifies_and_a_mismatch_names_both_hashes(registry: Path, server, tmp_path, capsys) -> None:
    base, folder = server
    (folder / "w.pt").write_bytes(WEIGHTS)
    add_backbone(registry, name="served-w", weights={"kind": "url", "source": f"{base}/w.pt", "sha256": WEIGHTS_SHA})
    add_backbone(registry, name="served-bad", weights={"kind": "url", "source": f"{base}/w.pt", "sha256": OTHER_SHA})
    add_backbone(registry, name="served-unknown", weights={"kind": "url", "source": f"{base}/w.pt", "sha256": None})
    code, out = run(capsys, "fetch", "served-w", "--registry", str(registry))
    assert code == 0 and Path(out.strip().splitlines()[-1]).read_bytes() == WEIGHTS
    code, out = run(capsys, "fetch", "served-bad", "--registry", str(registry))
    assert code == 1
    assert OTHER_SHA in out and WEIGHTS_SHA in out and f"{base}/w.pt" in out
    assert not (tmp_path / "zoo-home" / "downloads" / OTHER_SHA / "w.pt").exists()
    code, out = run(capsys, "fetch", "served-unknown", "--registry", str(registry))
    assert code == 0 and "NOT verified" in out and WEIGHTS_SHA in out  # says what the hash is, to record it
    code, out = run(capsys, "fetch", "served-w", "--registry", str(registry))  # from the cache now
    (folder / "w.pt").unlink()
    add_backbone(registry, name="gone", weights={"kind": "url", "source": f"{base}/gone.pt", "sha256": None})
    code, out = run(capsys, "fetch", "gone", "--registry", str(registry))
    assert code == 1 and "HTTP 404" in out


# --- publish -----------------------------------------------------------------------------------------
def test_publish_then_list_fetch_and_use(trained_run: Path, registry: Path, tmp_path: Path, capsys) -> None:
    checkpoint = trained_run / "best.safetensors"
    metadata = read_metadata(checkpoint)
    digest = sha256_file(checkpoint)
    code, out = run(capsys, "publish", str(trained_run), "--registry", str(registry), "--name", "tiny-harma")
    assert code == 0, out
    project = registry.parent
    entry = load_index(registry).checkpoint("tiny-harma")
    stored = f"zoo_files/tiny-harma-{digest[:8]}.safetensors"
    assert entry.urls == [stored] and (project / stored).read_bytes() == checkpoint.read_bytes()
    assert (entry.sha256, entry.size) == (digest, checkpoint.stat().st_size)
    assert entry.backbone == "harma-tiny-vit" and entry.recipe == "tiny_recipe"
    assert entry.method == {"type": "harma", "bottleneck": 16, "shared_width": 8, "heads": 2, "blocks": None,
                            "gate_init": 0.6, "shared_towers": ["text"]}  # fmt: skip
    assert entry.dataset["name"] == "synthetic" and entry.dataset["train_images"] == 24
    assert entry.selected_on == "val" and entry.epoch == metadata["extra"]["epoch"]
    assert entry.metrics == metadata["metrics"]
    assert entry.parameters["trainable"] == sum(t.numel() for t in load_file(checkpoint).values())
    assert sum(entry.parameters["groups"].values()) == entry.parameters["trainable"]
    assert entry.backbone_fingerprint == metadata["backbone_fingerprint"]

    card = (project / entry.card).read_text()
    front = card_metadata(card)
    assert front["library_name"] == "harma-zoo" and front["datasets"] == ["synthetic"]
    (result,) = front["model-index"][0]["results"]
    assert result["dataset"]["split"] == "val"
    assert {m["type"]: m["value"] for m in result["metrics"]} == pytest.approx(metadata["metrics"]["val"], abs=1e-4)
    assert "text tower only" in card and "harma-zoo fetch tiny-harma" in card

    code, out = run(capsys, "list", "checkpoints", "--json", "--registry", str(registry), "--dataset", "synthetic")
    (row,) = json.loads(out)
    assert row["name"] == "tiny-harma" and row["family"] == "open_clip"
    code, out = run(capsys, "list", "checkpoints", "--json", "--registry", str(registry), "--method", "lora")
    assert json.loads(out) == []
    code, out = run(capsys, "list", "checkpoints", "--registry", str(registry))
    assert "tiny-harma" in out and "harma shared=text" in out

    code, out = run(capsys, "fetch", "tiny-harma", "--registry", str(registry))
    fetched = Path(out.strip().splitlines()[-1])
    assert code == 0 and fetched.read_bytes() == checkpoint.read_bytes()
    assert fetched.is_relative_to(tmp_path / "zoo-home")
    model, loaded = build_for_evaluation(load_recipe(trained_run.parent / "tiny_recipe.py"), fetched)
    assert loaded["backbone_fingerprint"] == model.backbone_fingerprint  # the published adapter loads

    command = [sys.executable, "-m", "harma_zoo.cli", "list", "checkpoints", "--json", "--registry", str(registry)]
    shown = subprocess.run(command, capture_output=True, text=True, check=True)
    assert [row["name"] for row in json.loads(shown.stdout)] == ["tiny-harma"]


def test_republishing_replaces_the_entry(trained_run: Path, registry: Path, capsys) -> None:
    digest = sha256_file(trained_run / "best.safetensors")
    assert run(capsys, "publish", str(trained_run), "--registry", str(registry), "--name", "a")[0] == 0
    assert run(capsys, "publish", str(trained_run), "--registry", str(registry), "--name", "b")[0] == 0
    argv = ["publish", str(trained_run), "--registry", str(registry), "--name", "a", "--base-url", "https://x.org/zoo/"]
    assert run(capsys, *argv)[0] == 0
    text = (registry / "checkpoints.yaml").read_text()
    assert text.startswith(modeline("checkpoints.yaml") + "\n")  # editors still find the schema
    entries = yaml.safe_load(text)
    assert [entry["name"] for entry in entries] == ["a", "b"]  # replaced in place, not duplicated
    assert entries[0]["urls"] == [f"https://x.org/zoo/a-{digest[:8]}.safetensors"]
    assert (registry.parent / "zoo_files" / f"a-{digest[:8]}.safetensors").is_file()  # the copy to upload
    assert sorted(p.name for p in (registry.parent / "model_cards").iterdir()) == ["a.md", "b.md"]


def test_publish_writes_nothing_when_a_step_fails(trained_run: Path, registry: Path, monkeypatch) -> None:
    publish_module.publish(trained_run, registry=registry, name="kept")
    project = registry.parent
    before = (registry / "checkpoints.yaml").read_bytes()
    card_before = (project / "model_cards" / "kept.md").read_bytes()
    files_before = sorted((project / "zoo_files").iterdir())

    def broken(path, entries):
        raise OSError("disk full")

    monkeypatch.setattr(publish_module, "_write_registry", broken)
    other = trained_run.parent / "other.safetensors"
    tensors = {name: tensor + 1 for name, tensor in load_file(trained_run / "best.safetensors").items()}
    with safe_open(str(trained_run / "best.safetensors"), framework="pt") as handle:
        save_file(tensors, str(other), metadata=handle.metadata())
    for name in ("kept", "new"):
        with pytest.raises(OSError, match="disk full"):
            publish_module.publish(other, registry=registry, name=name, dataset="synthetic")
    assert (registry / "checkpoints.yaml").read_bytes() == before
    assert (project / "model_cards" / "kept.md").read_bytes() == card_before  # the old card is back
    assert not (project / "model_cards" / "new.md").exists()
    assert sorted((project / "zoo_files").iterdir()) == files_before  # the new copies were removed


def _with_metadata(source: Path, target: Path, **changes: object) -> Path:
    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
    for key, value in changes.items():
        metadata[key] = json.dumps(value)
    save_file(load_file(source), str(target), metadata=metadata)
    return target


def test_publish_refuses_what_it_cannot_describe(trained_run: Path, registry: Path, tmp_path: Path, capsys) -> None:
    code, out = run(capsys, "publish", str(tmp_path / "nowhere"), "--registry", str(registry))
    assert code == 2 and "best.safetensors does not exist" in out
    code, out = run(capsys, "publish", str(trained_run), "--registry", str(registry), "--backbone", "siglip-vit-b16")
    assert code == 2 and "which is not entry 'siglip-vit-b16'" in out
    code, out = run(capsys, "publish", str(trained_run), "--registry", str(registry), "--name", "siglip-vit-b16")
    assert code == 2 and "is the name of a backbone entry" in out
    on_test = _with_metadata(trained_run / "best.safetensors", tmp_path / "t.safetensors",
                             extra={"epoch": 1, "selected_on": "test"})  # fmt: skip
    code, out = run(capsys, "publish", str(on_test), "--registry", str(registry), "--dataset", "synthetic")
    assert code == 2 and "selected on the test split" in out
    mine = {"type": "open_clip", "arch": "ViT-B-32", "pretrained": "/w/mine.pt"}
    elsewhere = _with_metadata(trained_run / "best.safetensors", tmp_path / "e.safetensors", backbone=mine)
    code, out = run(capsys, "publish", str(elsewhere), "--registry", str(registry), "--dataset", "synthetic")
    assert code == 2 and "no entry in" in out and "add one" in out
    code, out = run(capsys, "publish", str(trained_run / "best.safetensors"), "--registry", str(registry))
    assert code == 0  # the file itself: its run folder still holds the recipe, so the dataset is known
    assert yaml.safe_load((registry / "checkpoints.yaml").read_text())[0]["name"] == "tiny_recipe"


# --- convert-original --------------------------------------------------------------------------------
def test_convert_original_errors_on_the_command_line(tmp_path: Path, capsys) -> None:
    out_file = str(tmp_path / "adapter.safetensors")
    code, out = run(capsys, "convert-original", str(tmp_path / "missing.pth"), out_file, "--backbone-pretrained", "x")
    assert code == 2 and "missing.pth does not exist" in out
    code, out = run(capsys, "convert-original", str(tmp_path / "missing.pth"), out_file)
    assert code == 2 and "give backbone_output" in out
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "other.pth")
    code, out = run(capsys, "convert-original", str(tmp_path / "other.pth"), out_file, "--backbone-pretrained", "x")
    assert code == 2 and "expected a dict with a 'model' state dict" in out
    assert not Path(out_file).exists()


# --- zoo: weights and export-backbone ------------------------------------------------------------------
def _perturbed_tiny_backbone():
    """The tiny ViT with tower weights no fresh build has: what a pretraining run (`full`) would leave."""
    backbone = build_backbone({"type": "open_clip", "arch": "harma-tiny-vit"})
    with torch.no_grad():
        for _, parameter in backbone.embedding_parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return backbone


def test_zoo_weights_are_fetched_verified_and_loaded(registry: Path, server, monkeypatch, tmp_path: Path) -> None:
    base, folder = server
    backbone = _perturbed_tiny_backbone()
    backbone.save_weights(folder / "pre.safetensors")
    digest = sha256_file(folder / "pre.safetensors")
    add_backbone(registry, name="pre", weights={"kind": "url", "source": f"{base}/pre.safetensors", "sha256": digest})
    add_backbone(registry, name="pre-bad", weights={"kind": "url", "source": f"{base}/pre.safetensors",
                                                    "sha256": OTHER_SHA})  # fmt: skip
    monkeypatch.setenv("HARMA_ZOO_REGISTRY", str(registry))
    config = {"type": "open_clip", "arch": "harma-tiny-vit", "pretrained": "zoo:pre"}
    assert build_backbone(config).fingerprint() == backbone.fingerprint()
    assert (tmp_path / "zoo-home" / "downloads" / digest / "pre.safetensors").is_file()
    assert match_backbone(load_index(registry), config).name == "pre"  # what publish records
    with pytest.raises(ChecksumError, match=OTHER_SHA):
        build_backbone({**config, "pretrained": "zoo:pre-bad"})
    with pytest.raises(ValueError, match="zoo entry 'pre' is"):
        build_backbone({**config, "arch": "harma-small-vit"})  # never loads weights into another model
    torch.manual_seed(1)
    random = build_backbone({**config, "pretrained": "zoo:harma-tiny-vit"})  # an entry with random weights
    torch.manual_seed(1)
    assert random.fingerprint() == build_backbone({"type": "open_clip", "arch": "harma-tiny-vit"}).fingerprint()
    with pytest.raises(KeyError, match="no backbone entry 'nothing'"):
        build_backbone({**config, "pretrained": "zoo:nothing"})


def test_export_backbone_writes_the_trained_weights_and_their_entry(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, method={"type": "full"})
    model = build_recipe_model(load_recipe(recipe))
    trained = _perturbed_tiny_backbone()
    model.backbone.load_state_dict(trained.state_dict())
    cfg = load_recipe(recipe)
    checkpoint = save_adapter(model, tmp_path / "best.safetensors", backbone=cfg.backbone.to_dict(),
                              method=cfg.method.to_dict(), loss=cfg.loss.to_dict())  # fmt: skip
    out = tmp_path / "zoo_files" / "mine.safetensors"
    code, printed = run(capsys, "export-backbone", str(recipe), "--checkpoint", str(checkpoint), "--out", str(out))
    assert code == 0
    entry = yaml.safe_load(printed[printed.index("- name") :])[0]
    assert entry["weights"] == {"kind": "file", "source": out.as_posix(), "sha256": sha256_file(out)}
    assert entry["family"] == "open_clip" and entry["architecture"] == {"arch": "harma-tiny-vit"}
    loaded = build_backbone({"type": "open_clip", "arch": "harma-tiny-vit", "pretrained": str(out)})
    assert loaded.fingerprint() == trained.fingerprint()


def test_export_backbone_refuses_adapter_checkpoints(trained_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "w.safetensors"
    recipe = trained_run.parent / "tiny_recipe.py"
    code, printed = run(capsys, "export-backbone", str(recipe), "--checkpoint", str(trained_run / "best.safetensors"),
                        "--out", str(out))  # fmt: skip
    assert code == 2 and "method 'harma' trains adapters" in printed and not out.exists()
