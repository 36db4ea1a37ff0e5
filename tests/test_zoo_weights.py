"""One path from a zoo name to weights: ``zoo:NAME`` through the cache, a local folder, the family's own
cache, or one clear line when none has them; and ``export-backbone`` for every family, loaded back by name.

Everything runs offline (conftest sets HF_HUB_OFFLINE=1): files come from 127.0.0.1 or from folders
written here, and a Hugging Face cache is laid out here with a tiny model in it.
"""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from engine_helpers import write_recipe

import harma_zoo
from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import save_adapter
from harma_zoo.engine.evaluation import build_for_evaluation
from harma_zoo.engine.recipe import build_recipe_model, load_recipe
from harma_zoo.hub.download import ChecksumError, WeightsUnavailable, sha256_file
from harma_zoo.model import build_backbone
from harma_zoo.registry import BACKBONES, get_class, registered_names

PROJECT = Path(__file__).resolve().parents[1]
PACKAGE = "harma_zoo."
# the families this package ships (a plug-in registered by another test module is not one of them)
FAMILIES = [name for name in registered_names(BACKBONES) if get_class(BACKBONES, name).__module__.startswith(PACKAGE)]
UNREACHABLE = "http://127.0.0.1:9/weights"  # the discard port: nothing answers, so a download would fail


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARMA_ZOO_HOME", str(tmp_path / "zoo-home"))
    monkeypatch.delenv("HARMA_ZOO_WEIGHTS", raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # messages on one line


@pytest.fixture
def registry(registry: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared copy of the shipped registry (conftest), used by every build in the test."""
    monkeypatch.setenv("HARMA_ZOO_REGISTRY", str(registry))
    return registry


def add_backbone(registry: Path, name: str, weights: dict, family: str = "open_clip", architecture=None) -> None:
    path = registry / "backbones.yaml"
    architecture = {"arch": "harma-tiny-vit"} if architecture is None else architecture
    entry = {"name": name, "family": family, "architecture": architecture,
             "weights": weights, "license": "apache-2.0", "citation": "test weights"}  # fmt: skip
    path.write_text(yaml.safe_dump([*yaml.safe_load(path.read_text()), entry], sort_keys=False))


def trained_tiny(path: Path):
    """The tiny ViT with tower weights no fresh build has, saved to ``path``: (backbone, sha256)."""
    backbone = build_backbone({"type": "open_clip", "arch": "harma-tiny-vit"})
    with torch.no_grad():
        for _, parameter in backbone.embedding_parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    backbone.save_weights(path)
    return backbone, sha256_file(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# --- $HARMA_ZOO_WEIGHTS and the cache ---------------------------------------------------------------
def test_a_local_weights_folder_is_used_before_the_cache_and_checked(registry, tmp_path, monkeypatch, caplog) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    backbone, digest = trained_tiny(folder / "pre.safetensors")
    add_backbone(registry, "pre", {"kind": "url", "source": f"{UNREACHABLE}/pre.safetensors", "sha256": digest})
    add_backbone(registry, "pre-unhashed", {"kind": "url", "source": f"{UNREACHABLE}/pre.safetensors", "sha256": None})
    monkeypatch.setenv("HARMA_ZOO_WEIGHTS", str(folder))
    config = {"type": "open_clip", "arch": "harma-tiny-vit", "pretrained": "zoo:pre"}
    assert build_backbone(config).fingerprint() == backbone.fingerprint()  # no download: nothing answers there
    assert not (tmp_path / "zoo-home").exists()
    # without a sha256 in the registry the file is used, and its hash logged for the record
    with caplog.at_level("WARNING", logger="harma_zoo.hub.references"):
        assert build_backbone({**config, "pretrained": "zoo:pre-unhashed"}).fingerprint() == backbone.fingerprint()
    assert f"unverified: the registry has no sha256 for it (the file's is {digest})" in caplog.text
    # a file with another hash is never used
    trained_tiny(folder / "pre.safetensors")
    with pytest.raises(ChecksumError, match=rf"pre.safetensors \(in \$HARMA_ZOO_WEIGHTS\) is not .*'pre'.*{digest}"):
        build_backbone(config)


def test_what_fetch_puts_in_the_cache_is_what_a_build_reads(registry, server, tmp_path, monkeypatch, capsys) -> None:
    base, served = server
    backbone, digest = trained_tiny(served / "pre.safetensors")
    add_backbone(registry, "pre", {"kind": "url", "source": f"{base}/pre.safetensors", "sha256": digest})
    monkeypatch.setenv("HARMA_ZOO_WEIGHTS", str(tmp_path / "empty"))  # a folder without the file: the cache serves
    code, out = run(capsys, "fetch", "pre")
    cached = Path(out.strip().splitlines()[-1])
    assert code == 0 and cached == tmp_path / "zoo-home" / "downloads" / digest / "pre.safetensors"
    (served / "pre.safetensors").unlink()  # the server no longer has it: only the cache can
    config = {"type": "open_clip", "arch": "harma-tiny-vit", "pretrained": "zoo:pre"}
    assert build_backbone(config).fingerprint() == backbone.fingerprint()
    code, out = run(capsys, "params", "--backbone", "open_clip:harma-tiny-vit", "--backbone-cfg", "pretrained=zoo:pre")
    assert code == 0, out


# --- weights no cache has, offline: one line -----------------------------------------------------------
OFFLINE_BACKBONES = {  # a zoo name of each kind whose weights are on a hub
    "url": ("georsclip-vit-b32-ret2", "open_clip:ViT-B-32-quickgelu", "pretrained"),
    "tag": ("openai-clip-vit-b32", "open_clip:ViT-B-32-quickgelu", "pretrained"),
    "hub": ("hf-clip-vit-b32", "hf_clip", "source"),
}


def _assert_one_clear_line(text: str, name: str) -> None:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert f"zoo backbone {name!r}" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert f"`harma-zoo fetch {name}` on a machine with network access" in lines[0]


@pytest.mark.parametrize("kind", list(OFFLINE_BACKBONES))
def test_missing_hub_weights_offline_are_one_line_on_the_command_line(registry, kind, capsys) -> None:
    assert huggingface_hub.is_offline_mode()
    name, backbone, option = OFFLINE_BACKBONES[kind]
    code, out = run(capsys, "params", "--backbone", backbone, "--backbone-cfg", f"{option}=zoo:{name}")
    assert code == 1  # the input was right; the hub could not give the weights (docs/security.md: exit codes)
    _assert_one_clear_line(out.removeprefix("error: "), name)
    if kind == "url":
        assert "$HARMA_ZOO_WEIGHTS" in out and "RS5M_ViT-B-32_RET-2.pt" in out


def test_missing_hub_weights_offline_stop_training_in_one_line(registry, tmp_path, capsys) -> None:
    backbone = {"type": "open_clip", "arch": "ViT-B-32-quickgelu", "pretrained": "zoo:georsclip-vit-b32-ret2"}
    recipe = write_recipe(tmp_path, backbone=backbone)
    code, out = run(capsys, "train", str(recipe), "--work-dir", str(tmp_path / "run"))
    assert code == 1  # the input was right; the hub could not give the weights (docs/security.md: exit codes)
    _assert_one_clear_line(out.removeprefix("error: "), "georsclip-vit-b32-ret2")


@pytest.mark.parametrize("kind", list(OFFLINE_BACKBONES))
def test_missing_hub_weights_offline_are_one_line_in_the_python_api(registry, tmp_path, kind) -> None:
    name, backbone, option = OFFLINE_BACKBONES[kind]
    family, _, value = backbone.partition(":")
    config = {"type": family, **({"arch": value} if value else {}), option: f"zoo:{name}"}
    with pytest.raises(WeightsUnavailable) as raised:
        harma_zoo.build_model(config, {"type": "frozen"})
    _assert_one_clear_line(str(raised.value), name)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__  # no chain of hub errors
    # an adapter file that names those weights: load_pretrained says the same
    model = harma_zoo.build_model({"type": "open_clip", "arch": "harma-tiny-vit"}, {"type": "adapter", "bottleneck": 4})
    adapter = save_adapter(model, tmp_path / "adapter.safetensors", backbone=config,
                           method={"type": "adapter", "bottleneck": 4}, loss={"type": "harma"})  # fmt: skip
    with pytest.raises(WeightsUnavailable) as raised:
        harma_zoo.load_pretrained(adapter)
    _assert_one_clear_line(str(raised.value), name)


# --- hub ids through the family's own cache ------------------------------------------------------------
def test_a_hub_id_in_the_hugging_face_cache_resolves_offline(registry, tmp_path, monkeypatch, capsys) -> None:
    """The cache `harma-zoo fetch` fills for a hub id is the one a build reads: here laid out by hand."""
    import huggingface_hub.constants

    original = build_backbone({"type": "hf_clip", **get_class(BACKBONES, "hf_clip").tiny_options()})
    commit = "f00d" + "0" * 36
    repo = tmp_path / "hf-cache" / "models--test--tiny-clip"
    original.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    add_backbone(registry, "tiny-hub", {"kind": "hub", "source": "test/tiny-clip", "sha256": None},
                 family="hf_clip", architecture={})  # fmt: skip
    code, out = run(capsys, "fetch", "tiny-hub")
    assert code == 0 and "tiny-hub: Hugging Face model id 'test/tiny-clip'" in out, out
    assert build_backbone({"type": "hf_clip", "source": "zoo:tiny-hub"}).fingerprint() == original.fingerprint()


# --- export-backbone for every family --------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_export_backbone_writes_weights_that_load_back_by_zoo_name(family, registry, tmp_path, capsys) -> None:
    options = get_class(BACKBONES, family).tiny_options()
    recipe = write_recipe(tmp_path, backbone={"type": family, **options}, method={"type": "full"})
    cfg = load_recipe(recipe)
    model = build_recipe_model(cfg)
    with torch.no_grad():  # what a `full` run leaves: tower weights no fresh build has
        for _, parameter in model.backbone.embedding_parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    checkpoint = save_adapter(model, tmp_path / "best.safetensors", backbone=cfg.backbone.to_dict(),
                              method=cfg.method.to_dict(), loss=cfg.loss.to_dict())  # fmt: skip
    out = tmp_path / "project" / "zoo_files" / "mine.safetensors"
    code, printed = run(capsys, "export-backbone", str(recipe), "--checkpoint", str(checkpoint), "--out", str(out))
    assert code == 0, printed
    entry = yaml.safe_load(printed[printed.index("- name") :])[0]
    assert entry["family"] == family
    assert entry["weights"] == {"kind": "file", "source": out.as_posix(), "sha256": sha256_file(out)}
    # registered under a name, the file loads back through the family's weights option
    entry["weights"]["source"] = "zoo_files/mine.safetensors"
    add_backbone(registry, "mine", entry["weights"], family=family, architecture=entry["architecture"])
    weights = get_class(BACKBONES, family).weights_option
    loaded = build_backbone({"type": family, **entry["architecture"], weights: "zoo:mine"})
    expected, _ = build_for_evaluation(cfg, checkpoint)
    assert loaded.fingerprint() == expected.backbone.fingerprint()
    trained = dict(model.backbone.embedding_parameters())
    assert all(torch.equal(trained[name], parameter) for name, parameter in loaded.embedding_parameters())
