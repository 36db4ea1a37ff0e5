"""Plug-ins: a family in one file, installed with pip, works with every subcommand.

tests/toy_plugin is a real plug-in package (pyproject.toml with a ``harma_zoo.plugins`` entry point,
its family in one module). It is installed with pip into a folder that the ``harma-zoo`` subprocesses
get on PYTHONPATH: once found through its entry point, once through ``--import`` (entry points off),
where training runs under torchrun so that every process has to import it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import write_recipe
from mmengine.config import Config

from harma_zoo import plugins
from harma_zoo.bench.compose import compose_method, recipe_from_pieces
from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.registry import BACKBONES, registered_names

TESTS = Path(__file__).resolve().parent
PLUGIN_PACKAGE = TESTS / "toy_plugin"
PLUGIN_MODULE = "harma_toy_family"
FAMILY = "toy_dual_encoder"
HARMA_ZOO = Path(sys.executable).with_name("harma-zoo")  # the installed console script
TOY_DATA = {"train_images": 16, "val_images": 8, "size": 16, "seed": 0}
SMALL_HARMA = {"type": "harma", "bottleneck": 8, "shared_width": 8, "heads": 2}


def pip_install(package: Path, target: Path) -> Path:
    """``pip install`` a copy of ``package`` into ``target`` (a copy: pip builds in the source folder)."""
    source = target.parent / f"{package.name}-source"
    shutil.copytree(package, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    result = subprocess.run([*command, "--target", str(target), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/toy_plugin, installed (module, dist-info with its entry point) into a folder of its own."""
    site = pip_install(PLUGIN_PACKAGE, tmp_path_factory.mktemp("plugin") / "site")
    assert (site / f"{PLUGIN_MODULE}.py").is_file()
    [dist_info] = site.glob("harma_zoo_toy_plugin-*.dist-info")
    assert "toy = harma_toy_family" in (dist_info / "entry_points.txt").read_text()
    return site


def run_cli(args: list[str], site: Path | None, autoload: bool = True, launcher: list[str] | None = None):
    """``harma-zoo ARGS`` in a fresh process (or ``launcher -m harma_zoo.cli ARGS``) with ``site`` on PYTHONPATH."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    environment.pop(plugins.DISABLE_AUTOLOAD, None)
    environment.pop("PYTHONPATH", None)
    if site is not None:
        environment["PYTHONPATH"] = str(site)
    if not autoload:
        environment[plugins.DISABLE_AUTOLOAD] = "1"
    command = [sys.executable, *launcher, "-m", "harma_zoo.cli"] if launcher else [str(HARMA_ZOO)]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=environment, timeout=600)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def toy_recipe(folder: Path, **sections) -> Path:
    return write_recipe(
        folder,
        backbone={"type": FAMILY, "width": 32},
        method=SMALL_HARMA,
        data__synthetic=TOY_DATA,
        schedule__epochs=1,
        schedule__batch_size=8,
        **sections,
    )


@pytest.mark.parametrize("way", ["entry point", "--import"])
def test_a_plugin_family_works_with_every_subcommand(plugin_site: Path, tmp_path: Path, way: str) -> None:
    recipe, run, out = toy_recipe(tmp_path), tmp_path / "run", tmp_path / "bench"
    if way == "entry point":
        imports, autoload, launcher, launch = [], True, None, []
    else:  # entry points off: the family is there only because --import (before or after the command) says so
        imports, autoload = ["--import", PLUGIN_MODULE], False
        launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        launch = ["--launcher", "pytorch"]  # every torchrun process parses --import and imports the family
        refused = run_cli(["params", "--backbone", FAMILY], plugin_site, autoload=False)
        assert refused.returncode == 2 and f"unknown backbone family '{FAMILY}'" in refused.stdout

    report = json.loads(ok(run_cli(["params", "--backbone", FAMILY, "--json", *imports], plugin_site, autoload)))
    assert report["backbone"] == FAMILY and report["trainable"] > 0 and report["backbone_parameters"] > 0

    ok(run_cli(["train", str(recipe), "--work-dir", str(run), *launch, *imports], plugin_site, autoload, launcher))
    assert read_metadata(run / "best.safetensors")["backbone"]["type"] == FAMILY

    evaluated = ["eval", str(recipe), "--checkpoint", str(run / "best.safetensors"), "--out", str(tmp_path / "m.json")]
    ok(run_cli([*imports, *evaluated], plugin_site, autoload))
    stored = read_metadata(run / "best.safetensors")["metrics"]["val"]
    assert json.loads((tmp_path / "m.json").read_text())["metrics"] == pytest.approx(stored, abs=1e-9)

    method = "recipe" if way == "entry point" else "frozen"  # trained once more, with a card; or zero-shot
    ok(run_cli(["bench", "--recipes", str(recipe), "--methods", method, "--out", str(out), *imports], plugin_site,
               autoload))  # fmt: skip
    [row] = json.loads((out / "leaderboard.json").read_text())["rows"]
    assert row["backbone"] == f"{FAMILY}:32" and row["val_mR"] is not None
    assert (out / "cards" / f"{row['run']}.md").is_file() == (method == "recipe")


def test_import_takes_a_python_file(tmp_path: Path) -> None:
    """A family in one file needs no package: ``--import path/to/file.py``."""
    module = PLUGIN_PACKAGE / f"{PLUGIN_MODULE}.py"
    report = json.loads(ok(run_cli(["--import", str(module), "params", "--backbone", FAMILY, "--json"], None)))
    assert report["backbone"] == FAMILY


def test_a_recipe_imports_its_plugins_through_custom_imports(plugin_site: Path, tmp_path: Path) -> None:
    """mmengine's ``custom_imports`` in a recipe: no --import, no entry points, and bench keeps them."""
    custom = {"imports": [PLUGIN_MODULE], "allow_failed_imports": False}
    recipe = toy_recipe(tmp_path, custom_imports=custom)
    ok(run_cli(["bench", "--recipes", str(recipe), "--methods", "frozen", "--out", str(tmp_path / "out")],
               plugin_site, autoload=False))  # fmt: skip
    [saved] = (tmp_path / "out" / "runs").glob("*/*.py")
    assert Config.fromfile(str(saved), import_custom_modules=False).custom_imports == custom


def test_a_plugin_that_fails_to_import_is_named_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    package = tmp_path / "broken"
    package.mkdir()
    (package / "harma_broken_plugin.py").write_text('raise RuntimeError("this plug-in is broken")\n')
    toml = (PLUGIN_PACKAGE / "pyproject.toml").read_text()
    toml = toml.replace("harma-zoo-toy-plugin", "harma-zoo-broken-plugin").replace(PLUGIN_MODULE, "harma_broken_plugin")
    (package / "pyproject.toml").write_text(toml.replace("toy = ", "broken = "))
    site = pip_install(package, tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    plugins.load_entry_points.cache_clear()
    try:
        with pytest.raises(SystemExit) as help_exit:  # --help imports no plug-in
            main(["--help"])
        assert help_exit.value.code == 0
        capsys.readouterr()
        assert main(["list", "backbones"]) == 2
        message = capsys.readouterr().out
        assert message.count("\n") == 1 and "Traceback" not in message, message
        assert (
            "plug-in 'broken' of package harma-zoo-broken-plugin (entry point harma_zoo.plugins: broken = "
            "harma_broken_plugin) failed to import: RuntimeError: this plug-in is broken"
        ) in message
        with pytest.raises(plugins.PluginError, match="'broken'"):  # library use names it the same way
            registered_names(BACKBONES)
        monkeypatch.setenv(plugins.DISABLE_AUTOLOAD, "1")  # and the way around it
        assert main(["list", "backbones", "--json"]) == 0
    finally:
        plugins.load_entry_points.cache_clear()


def test_an_import_that_fails_is_named_in_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "harma_failing_import.py"
    broken.write_text("import harma_zoo_no_such_module\n")
    assert main(["--import", str(broken), "list", "backbones"]) == 2
    message = capsys.readouterr().out
    assert f"plug-in --import {broken} failed to import: ModuleNotFoundError" in message and message.count("\n") == 1
    assert "harma_failing_import" not in sys.modules
    assert main(["list", "backbones", "--import", "harma_zoo_no_such_plugin"]) == 2
    assert "--import harma_zoo_no_such_plugin failed to import: ModuleNotFoundError" in capsys.readouterr().out


def test_a_file_is_not_imported_over_another_module_of_its_name(tmp_path: Path) -> None:
    (tmp_path / "json.py").write_text("")
    with pytest.raises(plugins.PluginError, match="another module named 'json' is already imported"):
        plugins.import_plugin(str(tmp_path / "json.py"))


def test_a_recipe_whose_custom_imports_fail_is_named_in_one_line(tmp_path: Path, capsys) -> None:
    recipe = toy_recipe(tmp_path, custom_imports={"imports": ["harma_zoo_no_such_plugin"]})
    assert main(["eval", str(recipe)]) == 2
    message = capsys.readouterr().out
    assert message.count("\n") == 1, message
    assert f"recipe {recipe}: Failed to import harma_zoo_no_such_plugin (ModuleNotFoundError" in message


def test_composed_recipes_keep_the_custom_imports_of_their_pieces(tmp_path: Path) -> None:
    backbone = tmp_path / "toy_backbone.py"
    backbone.write_text(f"custom_imports = dict(imports=[{PLUGIN_MODULE!r}])\nbackbone = dict(type={FAMILY!r})\n")
    method = tmp_path / "my_method.py"
    method.write_text(f"custom_imports = dict(imports=['json', {PLUGIN_MODULE!r}])\nmethod = dict(type='harma')\n")
    cfg = compose_method(recipe_from_pieces(str(backbone), "synthetic", "cpu_small"), str(method))
    assert cfg.custom_imports == {"imports": [PLUGIN_MODULE, "json"], "allow_failed_imports": False}
    plain = compose_method(recipe_from_pieces("tiny_vit", "synthetic", "cpu_small"), "harma")
    assert "custom_imports" not in plain
