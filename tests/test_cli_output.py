"""What a user sees: `--json` prints JSON alone, mmengine stays quiet, tables stay whole in a pipe, and
`--help` and `--version` answer plainly."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import write_recipe

from harma_zoo.cli import build_parser, main
from harma_zoo.model import build_backbone

PROJECT = Path(__file__).resolve().parents[1]

# A recipe that reads both environment variables, as the shipped ones do (mmengine prints a line for each).
ENV_RECIPE = """\
_base_ = ["{base}"]
data = dict(root="{{{{$HARMA_ZOO_DATA:nowhere}}}}/synth", synthetic=dict(train_images=8, val_images=6, size=32, seed=0))
_work = "{{{{$HARMA_ZOO_HOME:nowhere}}}}"  # a helper variable: only read, for its environment line
"""


@pytest.fixture(scope="module")
def env_recipe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A recipe reading $HARMA_ZOO_DATA and $HARMA_ZOO_HOME, and an environment that sets both."""
    folder = tmp_path_factory.mktemp("env")
    base = write_recipe(folder / "base")
    recipe = folder / "env_recipe.py"
    recipe.write_text(ENV_RECIPE.format(base=base))
    env = {**os.environ, "HARMA_ZOO_DATA": str(folder / "data"), "HARMA_ZOO_HOME": str(folder / "home")}
    return recipe, env


def _cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """The console script in a process of its own: its real stdout and stderr."""
    command = [sys.executable, "-m", "harma_zoo.cli", *argv]
    shown = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    assert shown.returncode == 0, shown.stderr
    return shown


def test_eval_json_is_json_alone_quiet_and_limited_to_n_images(env_recipe, tmp_path: Path) -> None:
    recipe, env = env_recipe
    shown = _cli(["eval", str(recipe), "--json", "--limit", "4", "--device", "cpu"], env, tmp_path)
    document = json.loads(shown.stdout)  # nothing but the JSON
    assert document["images"] == 4 and document["captions"] == 20 and document["device"] == "cpu"
    assert set(document["metrics"]) >= {"i2t_R@1", "t2i_R@10", "mR"}
    assert "Using env variable" not in shown.stderr  # mmengine's lines are not shown by default
    assert "No pretrained weights" not in shown.stderr  # a random tiny build is what the recipe asked for


def test_mmengine_lines_shown_with_verbose_go_to_stderr_not_into_the_json(env_recipe, tmp_path: Path) -> None:
    _, env = env_recipe
    shown = _cli(["list", "recipes", "--json", "--filter", "tiny-vit_rsicd", "--verbose"], env, tmp_path)
    assert "full_tiny-vit_rsicd" in [row["name"] for row in json.loads(shown.stdout)]
    assert "Using env variable `HARMA_ZOO_DATA`" in shown.stderr


@pytest.mark.parametrize(
    "argv", [["params", "--json"], ["fetch", "harma-tiny-vit-rsicd-source", "--json", "--cache-dir", "CACHE"]]
)
def test_other_json_commands_print_json_alone(env_recipe, tmp_path, monkeypatch, capsys, argv: list[str]) -> None:
    _, env = env_recipe
    for variable in ("HARMA_ZOO_DATA", "HARMA_ZOO_HOME"):
        monkeypatch.setenv(variable, env[variable])
    assert main([str(tmp_path) if a == "CACHE" else a for a in [*argv, "--verbose"]]) == 0
    assert json.loads(capsys.readouterr().out)


def test_eval_names_how_many_images_and_captions_it_scored(env_recipe, monkeypatch, capsys) -> None:
    recipe, env = env_recipe
    monkeypatch.setenv("HARMA_ZOO_DATA", env["HARMA_ZOO_DATA"])
    assert main(["eval", str(recipe), "--limit", "5"]) == 0
    assert "5 images, 25 captions" in " ".join(capsys.readouterr().out.split())


def test_training_shows_progress_and_tables_not_mmengine_logs_which_stay_in_the_log_file(
    tmp_path: Path, capsys
) -> None:
    recipe = write_recipe(tmp_path, schedule__epochs=1)
    assert main(["train", str(recipe), "--work-dir", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert "best epoch 1" in " ".join(shown.split())
    for boilerplate in ("System environment", "Epoch(train)", "FileClient", "after_train_iter", "Config:"):
        assert boilerplate not in shown
    (log,) = (tmp_path / "run").glob("*/*.log")
    assert "System environment" in log.read_text() and "Epoch(train)" in log.read_text()
    assert len(shown.splitlines()) < 40


def test_a_table_printed_into_a_pipe_keeps_each_row_on_one_line(capsys) -> None:
    assert main(["list", "backbones"]) == 0  # stdout is captured: not a terminal
    lines = capsys.readouterr().out.splitlines()
    (row,) = [line for line in lines if "georsclip-vit-b32-ret2 " in line]
    assert "hf://Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32_RET-2.pt" in row and "open_clip" in row


def test_help_is_plain_text_and_version_answers(capsys) -> None:
    probe = "import sys; from harma_zoo.cli import build_parser; build_parser(); print(sorted(set(sys.modules) & {m}))"
    heavy = {"torch", "mmengine"}  # what --help must not wait for (benchmarks/run.py times it)
    shown = subprocess.run([sys.executable, "-c", probe.format(m=heavy)], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
    help_text = build_parser().format_help()
    assert "``" not in help_text and "harma-zoo list checkpoints" in help_text
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip().startswith("harma-zoo ")


def test_a_random_open_clip_build_does_not_warn_that_it_is_random(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        build_backbone({"type": "open_clip", "arch": "harma-tiny-vit"})
    assert "No pretrained weights" not in caplog.text
    assert logging.getLogger().filters == []  # the filter is gone again


def test_eval_draws_a_progress_bar_in_a_terminal(env_recipe, monkeypatch) -> None:
    import io

    import rich
    from rich.console import Console

    recipe, env = env_recipe
    monkeypatch.setenv("HARMA_ZOO_DATA", env["HARMA_ZOO_DATA"])
    screen = io.StringIO()  # rich's global console, as in a terminal
    monkeypatch.setattr(rich, "_console", Console(file=screen, force_terminal=True, width=100))
    assert main(["eval", str(recipe), "--limit", "3"]) == 0
    drawn = screen.getvalue()
    assert "embedding images" in drawn and "3/3" in drawn and "embedding captions" in drawn and "15/15" in drawn
