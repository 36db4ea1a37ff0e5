"""`harma-zoo params`: the parameter report as a table and as JSON."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harma_zoo.cli import main


def test_params_json_counts_match_the_model(capsys) -> None:
    assert main(["params", "--backbone", "open_clip:harma-tiny-vit", "--method", "harma", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {(row["tower"], row["kind"]): row for row in report["rows"]}
    assert report["trainable"] == sum(row["trainable"] for row in report["rows"])
    assert report["total"] == sum(row["total"] for row in report["rows"])
    assert rows[("image", "backbone")]["trainable"] == rows[("text", "backbone")]["trainable"] == 0
    assert rows[("other", "temperature")] == {"tower": "other", "kind": "temperature", "total": 1, "trainable": 1}
    # tiny ViT: 2 blocks per tower at width 64, so r=16, s=8, 1 head (scaled to the width, not the paper's 128):
    # per block, down + up 2 x 64 x 16 + 64 + 16, attention 4 x 16 x 16 + 4 x 16, two gates
    assert report["method_options"] | {"shared_towers": None} == {
        "bottleneck": 16,
        "shared_width": 8,
        "heads": 1,
        "blocks": None,
        "gate_init": 0.6,
        "shared_towers": None,
    }
    assert rows[("image", "adapter")]["trainable"] == 2 * (2 * 64 * 16 + 64 + 16 + 4 * 16 * 16 + 4 * 16 + 1)
    # per block: l1 16 x 8 + 8, attention 4 x 8 x 8 + 4 x 8, gate, l2 8 x 16 + 16
    assert rows[("shared", "shared module")]["trainable"] == 2 * (16 * 8 + 8 + 4 * 8 * 8 + 4 * 8 + 1 + 8 * 16 + 16)
    assert report["method_options"]["shared_towers"] == ["text"]


def test_method_options_from_the_command_line(capsys) -> None:
    argv = ["params", "--method", "harma", "--method-cfg", "bottleneck=16", "shared_towers=(image,text)", "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method_options"]["bottleneck"] == 16
    assert report["method_options"]["shared_towers"] == ["image", "text"]


@pytest.mark.parametrize(("given", "expected"), [("text", ["text"]), ("image", ["image"])])
def test_a_single_tower_name_is_one_tower_not_its_letters(capsys, given: str, expected: list[str]) -> None:
    argv = ["params", "--method", "harma", "--method-cfg", f"shared_towers={given}", "blocks=-1", "--json"]
    assert main(argv) == 0
    options = json.loads(capsys.readouterr().out)["method_options"]
    assert options["shared_towers"] == expected and options["blocks"] == [-1]


def test_full_trains_every_tower_parameter_and_frozen_nothing(capsys) -> None:
    main(["params", "--method", "full", "--json"])
    full = json.loads(capsys.readouterr().out)
    main(["params", "--method", "frozen", "--json"])
    frozen = json.loads(capsys.readouterr().out)
    towers = sum(row["total"] for row in full["rows"] if row["tower"] in ("image", "text"))
    assert full["trainable"] == towers + 1  # the two towers and the temperature; never the logit scale
    assert frozen["trainable"] == 0


def test_the_console_script_prints_a_table_and_rejects_unknown_names() -> None:
    command = [sys.executable, "-m", "harma_zoo.cli", "params", "--backbone", "open_clip:harma-tiny-vit"]
    shown = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "shared module" in shown.stdout and "trainable:" in shown.stdout
    wrong = subprocess.run([*command[:-1], "clip:whatever"], capture_output=True, text=True)
    assert wrong.returncode == 2
    assert "unknown backbone family 'clip'" in wrong.stdout and "open_clip" in wrong.stdout
    wrong = subprocess.run([*command, "--method", "prefix"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "unknown method 'prefix'" in wrong.stdout and "harma" in wrong.stdout
