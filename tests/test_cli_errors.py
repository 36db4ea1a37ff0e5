"""Bad input on the command line ends in one line naming the input and what was expected, with exit code 2
for a usage error and 1 for a failure; `--debug` adds the traceback. Each case is the real file or argument
a careless user gives."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_helpers import write_recipe

from harma_zoo.cli import main
from harma_zoo.engine.train import train

SMALL = {"train_images": 8, "val_images": 4, "size": 32, "seed": 0}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


def one_error_line(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("error:")]
    return line


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(recipe, best checkpoint) of a real one-epoch run; its method leaves ``blocks`` at its default."""
    folder = tmp_path_factory.mktemp("trained")
    recipe = write_recipe(folder, schedule__epochs=1, data__synthetic=SMALL)
    from harma_zoo.engine.recipe import load_recipe

    train(load_recipe(recipe), folder / "run")
    return recipe, folder / "run" / "best.safetensors"


def test_a_cfg_option_without_equals_is_a_usage_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["train", str(write_recipe(tmp_path)), "--cfg-options", "schedule.epochs"])
    assert exited.value.code == 2
    assert "--cfg-options: 'schedule.epochs' is not KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('_base_ = ["./recipe.py"]\n', "its _base_ files include each other without end"),
        ("schedule = dict(epochs=1\n", "syntax error at line 1"),
        ("data = dict(_delete_=True)\nbackbone = method = schedule = dict()\n", "data._delete_ is not an option"),
        ("raise RuntimeError('broken on purpose')\n", "cannot be read: RuntimeError: broken on purpose"),
    ],
)
def test_a_recipe_that_cannot_be_read_is_named(tmp_path: Path, capsys, text: str, expected: str) -> None:
    recipe = tmp_path / "recipe.py"
    recipe.write_text(text)
    code, out = run(capsys, "train", str(recipe))
    assert code == 2 and expected in one_error_line(out) and str(recipe) in out


def test_a_leftover_delete_key_is_refused(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, data__synthetic=SMALL)
    code, out = run(capsys, "train", str(recipe), "--cfg-options", "_delete_=True")
    assert code == 2 and "_delete_ is mmengine's own key" in out
    code, out = run(capsys, "train", str(recipe), "--cfg-options", "_helper=1")
    assert code == 2 and "--cfg-options _helper" in out


def test_a_recipe_file_without_an_extension(tmp_path: Path, capsys) -> None:
    recipe = tmp_path / "myrecipe"
    recipe.write_text(write_recipe(tmp_path).read_text())
    code, out = run(capsys, "train", str(recipe))
    assert code == 2 and "a recipe file ends in .py, .yml, .yaml, .json; got 'myrecipe'" in out


def test_the_hub_offline_is_a_failure_in_one_line(capsys) -> None:
    code, out = run(capsys, "params", "--backbone", "hf_clip:openai/clip-vit-base-patch32")  # the suite is offline
    assert code == 1 and "'openai/clip-vit-base-patch32' is not in the Hugging Face cache" in one_error_line(out)


def test_out_pointing_at_a_folder(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, data__synthetic=SMALL)
    (tmp_path / "folder").mkdir()
    code, out = run(capsys, "eval", str(recipe), "--out", str(tmp_path / "folder"))
    assert code == 2 and f"{tmp_path / 'folder'} is a folder; expected the path of a file" in out


def test_a_torchscript_file_given_to_convert_original(tmp_path: Path, capsys) -> None:
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "scripted.pt"))
    code, out = run(capsys, "convert-original", str(tmp_path / "scripted.pt"), str(tmp_path / "a.safetensors"),
                    "--backbone-pretrained", "x")  # fmt: skip
    assert code == 2 and "scripted.pt is a TorchScript archive" in out


def test_a_registry_file_that_is_not_utf8(tmp_path: Path, capsys) -> None:
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "backbones.yaml").write_bytes(b"- name: caf\xe9\n")
    (registry / "checkpoints.yaml").write_text("[]\n")
    code, out = run(capsys, "list", "--registry", str(registry))
    assert code == 2 and "backbones.yaml: not UTF-8 text (byte 11" in out


def test_an_annotation_file_nested_100k_levels(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "train.json").write_text("[" * 100_000 + "]" * 100_000)
    data = {"reader": {"type": "harma_json"}, "root": str(root), "train": "train.json", "val": "train.json",
            "max_words": 30}  # fmt: skip
    code, out = run(capsys, "train", str(write_recipe(tmp_path, data=data)))
    assert code == 2 and "train.json nests its JSON too deeply" in out


def test_brackets_in_messages_print_as_they_are(tmp_path: Path, capsys) -> None:
    torch.save({"model": {"not.a.harma.key": torch.zeros(1)}}, tmp_path / "other.pth")
    code, out = run(capsys, "convert-original", str(tmp_path / "other.pth"), str(tmp_path / "a.safetensors"),
                    "--backbone-pretrained", "x")  # fmt: skip
    assert code == 2 and "unexpected [not.a.harma.key]" in out and "missing [model." in out
    odd = tmp_path / "[draft]" / "recipe.py"
    code, out = run(capsys, "train", str(odd))
    assert code == 2 and "[draft]/recipe.py" in out


def test_debug_adds_the_traceback(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "nowhere.py")
    for argv in (["--debug", "train", missing], ["train", missing, "--debug"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "Traceback" in captured.err and "nowhere.py" in one_error_line(captured.out)


def test_an_explicit_default_option_is_the_same_method(trained, capsys) -> None:
    recipe, checkpoint = trained
    argv = ["eval", str(recipe), "--checkpoint", str(checkpoint), "--cfg-options", "method.blocks=None"]
    code, out = run(capsys, *argv)
    assert code == 0, out
    code, out = run(capsys, "eval", str(recipe), "--checkpoint", str(checkpoint), "--cfg-options", "method.blocks=[0]")
    assert code == 2 and "holds method" in out  # another value is another method


def test_exit_codes_are_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    assert "| 2 |" in docs and "| 1 |" in docs and "| 130 |" in docs
