"""Resume checkpoints under attack and accident: a real SIGKILL while one is saved, a crafted pickle with
torch's safety turned off by the environment, a config string in a checkpoint, a copied work dir, and a run
resumed with other data or batch size. Every `harma-zoo` here is a real process or a real Runner."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from engine_helpers import StopAfterEpoch, tiny_cfg, write_recipe

from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.engine.recipe import load_recipe
from harma_zoo.engine.train import build_runner

PROJECT = Path(__file__).resolve().parents[1]

# Loaded at start-up by the `harma-zoo train` process under test (through PYTHONPATH): when the resume
# checkpoint of epoch $HOLD_EPOCH is being written to disk, half of its bytes go out, a marker file says
# so, and the process waits there for the test's signal. Both mmengine's saving and ours write through
# mmengine's LocalBackend.put, so this is the moment a kill lands in whatever the saving code does.
SITECUSTOMIZE = """
import os, re, time
from mmengine.fileio.backends import local_backend

_put = local_backend.LocalBackend.put

def put(self, obj, filepath):
    if re.fullmatch(r"epoch_%s[.]pth.*" % os.environ["HOLD_EPOCH"], os.path.basename(str(filepath))):
        with open(filepath, "wb") as file:
            file.write(obj[: len(obj) // 2])
            file.flush()
        with open(os.environ["HOLD_MARKER"], "w") as marker:
            marker.write(str(filepath))
        time.sleep(600)
    return _put(self, obj, filepath)

local_backend.LocalBackend.put = put
"""


WAIT_S = 1200  # only a guard against waiting forever; a run here takes seconds on an idle machine


def _harma_zoo(*argv: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A real `harma-zoo` process; its stdout and stderr go to ``log`` (a pipe nobody reads could block it)."""
    command = [sys.executable, "-m", "harma_zoo.cli", *argv]
    with log.open("w") as output:
        return subprocess.Popen(command, env={**os.environ, **(env or {})}, cwd=PROJECT, stdout=output,
                                stderr=subprocess.STDOUT)  # fmt: skip


def _held_train(tmp_path: Path, recipe: Path, work_dir: Path, epoch: int) -> tuple[subprocess.Popen, Path, Path]:
    """A real `harma-zoo train`, held while it writes the resume checkpoint of ``epoch``: (process, marker, log)."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker, log = tmp_path / "saving", tmp_path / "held.log"
    env = {"PYTHONPATH": str(hook), "HOLD_EPOCH": str(epoch), "HOLD_MARKER": str(marker)}
    process = _harma_zoo("train", str(recipe), "--work-dir", str(work_dir), log=log, env=env)
    deadline = time.monotonic() + WAIT_S
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(f"train ended before epoch {epoch} was saved: {log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"epoch {epoch}'s checkpoint was never written: {log.read_text()}")
        time.sleep(0.2)
    return process, marker, log


SMALL = {"train_images": 8, "val_images": 4, "size": 32, "seed": 0}  # 40 captions: 5 iterations an epoch


def test_a_kill_while_a_resume_checkpoint_is_saved_leaves_one_to_resume_from(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, schedule__epochs=3, data__synthetic=SMALL)
    work_dir = tmp_path / "run"
    process, marker, _ = _held_train(tmp_path, recipe, work_dir, epoch=2)
    os.kill(process.pid, signal.SIGKILL)  # in the middle of writing epoch 2's checkpoint, its old one kept=1
    assert process.wait(WAIT_S) == -signal.SIGKILL
    assert Path(marker.read_text()).name != "epoch_2.pth"  # the half-written bytes never had the final name
    assert (work_dir / "epoch_1.pth").is_file()  # the previous checkpoint is still there, whole

    log = tmp_path / "resumed.log"
    resumed = _harma_zoo("train", str(recipe), "--work-dir", str(work_dir), "--resume", log=log)
    assert resumed.wait(WAIT_S) == 0, log.read_text()
    assert read_metadata(work_dir / "last.safetensors")["extra"]["epoch"] == 3
    assert sorted(path.name for path in work_dir.glob("epoch_*")) == ["epoch_3.pth"]  # the leftover .tmp is gone
    assert Path((work_dir / "last_checkpoint").read_text()).name == "epoch_3.pth"


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, schedule__epochs=2, data__synthetic=SMALL)
    process, _, log = _held_train(tmp_path, recipe, tmp_path / "run", epoch=1)
    os.kill(process.pid, signal.SIGINT)
    assert process.wait(WAIT_S) == 130
    output = log.read_text()
    assert "interrupted" in output.splitlines()[-1] and "Traceback" not in output


# --- what a resume checkpoint may hold ------------------------------------------------------------
class _MakesADirectory:
    """Unpickling this runs os.mkdir: the marker proves whether any code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_crafted_resume_checkpoint_runs_no_code_even_with_torchs_safety_off(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, schedule__epochs=2, data__synthetic=SMALL)
    work_dir = tmp_path / "run"
    work_dir.mkdir()
    marker = tmp_path / "code-ran"
    torch.save({"meta": {"epoch": 1, "iter": 15}, "state_dict": {}, "message_hub": _MakesADirectory(marker)},
               work_dir / "epoch_1.pth")  # fmt: skip
    (work_dir / "last_checkpoint").write_text(str(work_dir / "epoch_1.pth"))
    unsafe = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    log = tmp_path / "train.log"
    process = _harma_zoo("train", str(recipe), "--work-dir", str(work_dir), "--resume", log=log, env=unsafe)
    assert process.wait(WAIT_S) == 2
    assert not marker.exists()
    output = log.read_text()
    assert "Traceback" not in output
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "epoch_1.pth" in line and "more than tensors and plain data" in line


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of a 2-epoch recipe stopped after epoch 1: its folder holds the recipe and work dir ``run``."""
    folder = tmp_path_factory.mktemp("interrupted")
    runner = build_runner(tiny_cfg(folder, data__synthetic=SMALL), folder / "run")
    runner.register_hook(StopAfterEpoch(1), priority="LOWEST")
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    return folder


def _copy(interrupted: Path, tmp_path: Path) -> Path:
    """The interrupted run copied, with its recipe reading the copy's data files as they are (no generator)."""
    folder = tmp_path / "copy"
    shutil.copytree(interrupted, folder)
    data = {"reader": "harma_json", "root": str(folder / "data"), "train": "train.json", "val": "val.json",
            "max_words": 30}  # fmt: skip
    write_recipe(folder, data=data)
    # what mmengine would have written, had the run been made here: the full path of its checkpoint
    (folder / "run" / "last_checkpoint").write_text(str(folder / "run" / "epoch_1.pth"))
    return folder


def test_a_config_stored_in_a_resume_checkpoint_is_never_run(interrupted: Path, tmp_path: Path) -> None:
    folder = _copy(interrupted, tmp_path)
    marker = tmp_path / "config-ran"
    checkpoint = folder / "run" / "epoch_1.pth"
    state = torch.load(checkpoint, weights_only=True)
    state["meta"]["config"] = f"import os\nos.mkdir({str(marker)!r})\ngpu_ids = [0, 1]\n"  # mmengine runs this
    torch.save(state, checkpoint)
    assert main(["train", str(folder / "tiny_recipe.py"), "--work-dir", str(folder / "run"), "--resume"]) == 0
    assert not marker.exists()
    assert read_metadata(folder / "run" / "last.safetensors")["extra"]["epoch"] == 2


def test_a_copied_work_dir_resumes_from_its_own_checkpoint(interrupted: Path, tmp_path: Path) -> None:
    original = _copy(interrupted, tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    write_recipe(copy, data={**load_recipe(copy / "tiny_recipe.py").data.to_dict(), "root": str(copy / "data")})
    assert str(original) in (copy / "run" / "last_checkpoint").read_text()  # mmengine wrote a full path
    shutil.rmtree(original)  # the original run is gone; the copy is all there is
    assert main(["train", str(copy / "tiny_recipe.py"), "--work-dir", str(copy / "run"), "--resume"]) == 0
    assert read_metadata(copy / "run" / "last.safetensors")["extra"]["epoch"] == 2
    assert (copy / "run" / "epoch_2.pth").is_file()


def test_resume_refuses_another_batch_size_or_other_data_naming_the_change(
    interrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _copy(interrupted, tmp_path)
    train = ["train", str(folder / "tiny_recipe.py"), "--work-dir", str(folder / "run"), "--resume"]
    assert main([*train, "--cfg-options", "schedule.batch_size=4"]) == 2
    line = capsys.readouterr().out
    assert "schedule.batch_size: 8 -> 4" in line and "--resume-anyway" in line

    annotations = folder / "data" / "train.json"
    entries = json.loads(annotations.read_text())
    entries[0]["caption"] = "a caption that was edited after the run began"
    annotations.write_text(json.dumps(entries))
    assert main(train) == 2
    assert "data.train_content_sha256" in capsys.readouterr().out
    assert not (folder / "run" / "epoch_2.pth").exists()  # nothing trained

    assert main([*train, "--resume-anyway"]) == 0  # the user's explicit choice
    assert read_metadata(folder / "run" / "last.safetensors")["extra"]["epoch"] == 2


def test_resume_without_a_checkpoint_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe(tmp_path, data__synthetic=SMALL)
    assert main(["train", str(recipe), "--work-dir", str(tmp_path / "empty"), "--resume"]) == 2
    assert "nothing to resume in" in capsys.readouterr().out


def test_the_resume_loader_refuses_pickled_objects_whatever_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harma_zoo.engine.resume import load_weights_only

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "ran"
    path = tmp_path / "epoch_1.pth"
    torch.save({"x": _MakesADirectory(marker)}, path)
    with pytest.raises(ValueError, match="more than tensors and plain data"):
        load_weights_only(f"harma-zoo-weights-only:{path}")
    assert not marker.exists()
