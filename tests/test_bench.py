"""`harma-zoo bench`: the matrix, its leaderboard files, skipping finished runs and resuming interrupted ones."""

from __future__ import annotations

import csv
import json
import statistics
import time
from pathlib import Path

import pytest
from engine_helpers import BENCH_ARCHS, StopAfterEpoch, bench_recipe, write_recipe

from harma_zoo.bench import runs as bench
from harma_zoo.bench.runs import plan, run_bench
from harma_zoo.bench.variants import chosen_rates, with_lr_grid, with_seeds
from harma_zoo.cli import main
from harma_zoo.engine.checkpoint import read_metadata
from harma_zoo.engine.recipe import build_recipe_model, load_recipe
from harma_zoo.engine.recipe_schema import RecipeError, validate_recipe
from harma_zoo.engine.train import build_runner, train
from harma_zoo.params import parameter_summary
from harma_zoo.resources import project_folder
from harma_zoo.zoo.cards import card_metadata


def _never_train(*args, **kwargs):
    raise AssertionError("a finished run was trained again")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two tiny backbones x (frozen, harma), one epoch; the vit recipe also names a test split."""
    folder = tmp_path_factory.mktemp("bench")
    recipes = [
        bench_recipe(folder, "harma_tiny-vit_synth", data__test="val.json"),
        bench_recipe(folder, "harma_tiny-sigmoid_synth"),
    ]
    outcome = run_bench(recipes=[str(p) for p in recipes], methods=["frozen", "harma"], out=folder / "results")
    return {"out": folder / "results", "recipes": recipes, "outcome": outcome}


def test_bench_runs_the_matrix_and_writes_agreeing_leaderboards(matrix: dict) -> None:
    out, outcome = matrix["out"], matrix["outcome"]
    ids = {f"{recipe}__{method}" for recipe in BENCH_ARCHS for method in ("frozen", "harma")}
    assert set(outcome["ran"]) == ids and not outcome["failed"] and not outcome["skipped"]

    listed = json.loads((out / "leaderboard.json").read_text())
    json_runs = [row["run"] for row in listed["rows"]]
    with open(out / "leaderboard.csv", newline="") as file:
        csv_rows = list(csv.DictReader(file))
    table = (out / "leaderboard.md").read_text().split("\n\n")[2]  # title, note, then the table of runs
    md_runs = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert set(json_runs) == ids and [row["run"] for row in csv_rows] == json_runs == md_runs
    scores = [row["val_mR"] for row in listed["rows"]]
    assert scores == sorted(scores, reverse=True)
    assert [float(row["val_mR"]) for row in csv_rows] == pytest.approx(scores)
    for row in listed["rows"]:  # what each run cost, from its result.json
        seconds = json.loads((out / "runs" / row["run"] / "result.json").read_text())["wall_time_s"]
        assert row["wall_time_min"] == round(seconds / 60, 1)
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob(".*.tmp"))  # every file was written atomically

    cards = sorted(path.stem for path in (out / "cards").glob("*.md"))
    assert cards == sorted(run for run in ids if run.endswith("__harma"))  # trained runs only
    card = card_metadata((out / "cards" / "harma_tiny-vit_synth__harma.md").read_text())  # by zoo.cards
    assert card["library_name"] == "harma-zoo" and card["model-index"][0]["name"] == "harma_tiny-vit_synth__harma"
    assert {result["dataset"]["split"] for result in card["model-index"][0]["results"]} == {"val", "test"}
    text = (out / "cards" / "harma_tiny-vit_synth__harma.md").read_text()
    use = text[text.index("## Use") : text.index("## Citation")]  # a local run: used by its paths, not fetched
    assert "harma-zoo fetch" not in use.replace("`harma-zoo fetch` and", "") and "not a published zoo entry" in use
    assert "harma-zoo eval runs/harma_tiny-vit_synth__harma/harma_tiny-vit_synth__harma.py --checkpoint" in use


def test_result_json_records_the_run(matrix: dict) -> None:
    out = matrix["out"]
    trained = json.loads((out / "runs" / "harma_tiny-vit_synth__harma" / "result.json").read_text())
    assert trained["method"]["name"] == "harma" and trained["method"]["options"]["bottleneck"] == 16
    assert trained["backbone"] == {"type": "open_clip", "arch": "harma-tiny-vit"}
    assert trained["dataset"]["name"] == "synth" and trained["seed"] == 7 and trained["best_epoch"] == 1
    assert set(trained["metrics"]) == {"val", "test"} and trained["wall_time_s"] > 0 and not trained["resumed"]
    checkpoint = out / trained["checkpoint"]
    assert read_metadata(checkpoint)["metrics"]["val"]["mR"] == pytest.approx(trained["metrics"]["val"]["mR"])
    cfg = load_recipe(out / trained["config"])  # the composed recipe is saved beside the run, loadable as is
    summary = parameter_summary(build_recipe_model(cfg))
    assert trained["parameters"]["trainable"] == summary["trainable"] > 0
    assert trained["parameters"]["total"] == summary["total"]

    frozen = json.loads((out / "runs" / "harma_tiny-sigmoid_synth__frozen" / "result.json").read_text())
    assert frozen["method"]["options"] == {"type": "frozen"} and frozen["parameters"]["trainable"] == 0
    assert frozen["best_epoch"] is None and frozen["checkpoint"] is None and set(frozen["metrics"]) == {"val"}
    assert not (out / "runs" / "harma_tiny-sigmoid_synth__frozen" / "best.safetensors").exists()


def test_a_second_bench_trains_nothing(matrix: dict, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    out = matrix["out"]
    files = [path for path in out.glob("runs/*/*") if path.suffix in (".json", ".safetensors")]
    stamps = {path: path.stat().st_mtime_ns for path in files}
    monkeypatch.setattr(bench, "train", _never_train)
    started = time.perf_counter()
    argv = ["bench", "--recipes", *map(str, matrix["recipes"]), "--methods", "frozen", "harma", "--out", str(out)]
    assert main(argv) == 0
    assert time.perf_counter() - started < 30
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    capsys.readouterr()
    assert main([*argv, "--cfg-options", "schedule.lr=0.5"]) == 0  # asked differently: kept, and said so
    assert "made with another configuration" in " ".join(capsys.readouterr().out.split())
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps


def test_an_interrupted_run_resumes_and_finishes(tmp_path: Path) -> None:
    recipe = bench_recipe(tmp_path, "harma_tiny-vit_synth", schedule__epochs=2)
    run_dir = tmp_path / "out" / "runs" / "harma_tiny-vit_synth__harma"

    def interrupted(cfg, work_dir, resume=False):
        runner = build_runner(cfg, work_dir, resume=resume)
        runner.register_hook(StopAfterEpoch(1), priority="LOWEST")
        runner.train()

    with pytest.raises(KeyboardInterrupt):
        run_bench(recipes=[str(recipe)], methods=["harma"], out=tmp_path / "out", train_fn=interrupted)
    assert (run_dir / "last_checkpoint").is_file() and not (run_dir / "result.json").exists()

    calls = []

    def spy(cfg, work_dir, resume=False):
        calls.append(resume)
        return train(cfg, work_dir, resume=resume)

    outcome = run_bench(recipes=[str(recipe)], methods=["harma"], out=tmp_path / "out", train_fn=spy)
    result = json.loads((run_dir / "result.json").read_text())
    assert calls == [True] and outcome["ran"] == ["harma_tiny-vit_synth__harma"] and result["resumed"]
    assert (run_dir / "epoch_2.pth").is_file() and result["best_epoch"] in (1, 2)
    assert read_metadata(run_dir / "last.safetensors")["extra"]["epoch"] == 2

    (run_dir / "result.json").unlink()  # finished training, lost result: resuming trains no further epoch
    run_bench(recipes=[str(recipe)], methods=["harma"], out=tmp_path / "out", train_fn=spy)
    again = json.loads((run_dir / "result.json").read_text())
    assert calls == [True, True] and again["best_epoch"] == result["best_epoch"]
    assert again["metrics"] == result["metrics"]


def _based_recipe(folder: Path, name: str, method: str, body: str) -> Path:
    """A recipe on the shipped pieces (tiny ViT, RSICD, CPU schedule) plus ``body``."""
    pieces = project_folder("recipes") / "_base_"
    bases = [pieces / "backbones/tiny_vit.py", pieces / f"methods/{method}.py", pieces / "datasets/rsicd.py"]
    path = folder / f"{name}.py"
    path.write_text(f"_base_ = {[str(p) for p in [*bases, pieces / 'schedules/cpu_small.py']]!r}\n{body}\n")
    return path


def test_methods_replace_the_recipe_method_and_keep_its_own_options_of_the_same_type(tmp_path: Path) -> None:
    recipe = _based_recipe(tmp_path, "harma_tiny-vit_rsicd", "harma", "method = dict(bottleneck=32, heads=4)")
    runs = {run.method: run for run in plan([str(recipe)], ["frozen", "harma_paper", "lora"])}
    assert runs["frozen"].cfg.method.to_dict() == {"type": "frozen"} and runs["frozen"].cfg.loss.type == "harma"
    paper = runs["harma_paper"].cfg.method  # the recipe's own bottleneck stays, the piece's towers come in
    assert paper.bottleneck == 32 and paper.heads == 4 and "shared_width" not in paper  # unset: scaled to the width
    assert tuple(paper.shared_towers) == ("image", "text")
    assert runs["lora"].cfg.method.to_dict() == {"type": "lora", "rank": 8, "alpha": 16}
    assert runs["lora"].run_id == "harma_tiny-vit_rsicd__lora" == runs["lora"].cfg.name
    assert runs["lora"].dataset == "rsicd" and runs["lora"].backbone == "open_clip:harma-tiny-vit"

    own_loss = _based_recipe(tmp_path, "full_tiny-vit_rsicd", "full", "loss = dict(_delete_=True, type='contrastive')")
    runs = {run.method: run for run in plan([str(own_loss)], ["full", "harma"])}
    assert runs["full"].cfg.loss.to_dict() == {"type": "contrastive"}  # same method type: its own loss stays
    assert runs["harma"].cfg.loss.temperature == 0.07  # another method: the piece's loss

    pieces = plan(None, ["harma"], ["tiny_vit"], ["synthetic", "rsitmd"], "cpu_small", {"schedule.epochs": 1})
    assert [run.run_id for run in pieces] == ["tiny_vit__synthetic__harma", "tiny_vit__rsitmd__harma"]
    # the piece leaves HarMA's sizes to the method, which scales them to the 64-wide tiny ViT (not r=128)
    assert all(run.cfg.schedule.epochs == 1 and "bottleneck" not in run.cfg.method for run in pieces)
    with pytest.raises(ValueError, match="go together"):
        plan(None, ["harma"], ["tiny_vit"], None)
    with pytest.raises(FileNotFoundError, match="no methods piece 'nope'"):
        plan([str(recipe)], ["nope"])
    with pytest.raises(ValueError, match="share the id"):
        plan([str(recipe), str(recipe)], ["harma"])
    assert main(["bench", "--backbones", "tiny_vit", "--methods", "harma"]) == 2  # a clear error, no traceback


def test_the_demo_preset_is_the_small_vit_on_synthetic_data(tmp_path: Path) -> None:
    preset = bench.resolve_preset("demo", tmp_path)
    runs = plan(preset["recipes"], preset["methods"], cfg_options=preset["cfg_options"])
    assert [run.method for run in runs] == ["frozen", "harma", "full"]
    assert all(run.cfg.backbone.arch == "harma-small-vit" and "pretrained" not in run.cfg.backbone for run in runs)
    assert all(run.cfg.data.root == f"{tmp_path}/demo-data" and run.cfg.data.synthetic for run in runs)
    with pytest.raises(KeyError, match="unknown preset 'paper'; known: demo, rsicd-transfer, rsicd-transfer-tune"):
        bench.resolve_preset("paper", tmp_path)


def test_the_transfer_preset_runs_each_pairing_recipe_as_it_is(tmp_path: Path) -> None:
    preset = bench.resolve_preset("rsicd-transfer", tmp_path)
    runs = plan(preset["recipes"], preset["methods"], cfg_options=preset["cfg_options"])
    assert [run.method for run in runs] == ["frozen", "harma", "harma-paper", "lora", "adapter", "full"]
    for run in runs:  # the run id is the recipe's name, so a published checkpoint names a recipe in recipes/
        recipe = load_recipe(project_folder("recipes") / f"{run.run_id}.py")
        assert run.cfg.name == run.run_id and run.cfg.to_dict() == recipe.to_dict()
        assert run.dataset == "rsicd" and run.cfg.backbone.pretrained == "zoo:harma-tiny-vit-rsicd-source"
    towers = {run.method: tuple(run.cfg.method.get("shared_towers", ())) for run in runs}
    assert towers["harma"] == ("text",) and towers["harma-paper"] == ("image", "text")
    rates = {run.method: run.cfg.schedule.lr for run in runs}  # each the rate its grid chose
    assert rates == {"frozen": 5e-4, "full": 5e-4, "harma": 3e-2, "harma-paper": 1e-2, "lora": 3e-3, "adapter": 1e-2}
    assert preset["seeds"] == [0, 1, 2]
    seeded = with_seeds(runs, preset["seeds"])
    assert [run.run_id for run in seeded][:4] == [
        "frozen_tiny-vit-rsicd-source_rsicd",  # nothing trained: no seed to vary
        *(f"harma_tiny-vit-rsicd-source_rsicd__seed{seed}" for seed in (0, 1, 2)),
    ]
    assert len(seeded) == 1 + 5 * 3
    schedules = {json.dumps({**run.cfg.schedule.to_dict(), "lr": None}, sort_keys=True) for run in runs}
    assert len(schedules) == 1  # one schedule but for the learning rate
    with pytest.raises(ValueError, match="runs recipes as they are"):
        plan(None, ["recipe"], ["tiny_vit"], ["synthetic"])


def test_a_bench_where_every_run_fails_writes_no_leaderboard_and_names_the_logs(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, data__synthetic=None, data__root=str(tmp_path / "nowhere"), schedule__epochs=1)
    recipe = recipe.rename(recipe.with_name("harma_tiny-vit_synth.py"))
    out = tmp_path / "out"
    assert main(["bench", "--recipes", str(recipe), "--methods", "frozen", "harma", "--out", str(out)]) == 1
    shown = " ".join(capsys.readouterr().out.split())
    assert not list(out.glob("leaderboard.*")) and not (out / "cards").exists()
    assert "no run under" in shown and "2 of 2 run(s) failed" in shown
    for run in ("harma_tiny-vit_synth__frozen", "harma_tiny-vit_synth__harma"):
        log = out / "runs" / run / "error.log"
        assert f"{run}: {log}" in shown
        assert "Traceback" in log.read_text() and "nowhere does not exist" in log.read_text()


def _rows(*methods: str) -> list[dict]:
    """Leaderboard rows of one run per method, all on the same dataset, scored alike."""
    return [
        {"run": method, "group": method, "method": method, "seed": 0, "lr": 1e-2, "dataset": "rsicd",
         "trainable_params": 37_995 if method.startswith("harma") else 10**index, "val_mR": 3.5 + 0.01 * index,
         "val_zs_top1": 20.0, "wall_time_min": 1.0}
        for index, method in enumerate(methods)
    ]  # fmt: skip


def test_the_plot_keeps_a_colour_per_method_and_everything_inside_the_figure() -> None:
    from matplotlib.colors import to_hex

    from harma_zoo.bench.leaderboard import figure

    def colours(chart) -> dict[str, str]:
        axes = chart.axes[0]
        return {c.get_label(): to_hex(c.lines[0].get_markeredgecolor()) for c in axes.containers}

    alone = figure(_rows("harma", "full"))
    many = figure(_rows("adapter", "frozen", "full", "harma", "harma-paper", "lora", "mine"))
    assert colours(alone)["harma"] == colours(many)["harma"] and colours(alone)["full"] == colours(many)["full"]
    assert len(set(colours(many).values())) == 7  # one colour each, an unknown name included
    axes = many.axes[0]
    assert axes.get_title() == "rsicd, validation split: mR against trainable parameters"
    assert not axes.texts  # methods are named in the legend, not by labels that overlap beside the points
    renderer = many.canvas.get_renderer()
    many.draw(renderer)
    inside = many.bbox
    for artist in [axes.title, axes.xaxis.label, axes.yaxis.label, axes.get_legend()]:
        box = artist.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, artist


def test_seeds_run_each_cell_per_seed_and_the_leaderboard_pools_them(tmp_path: Path) -> None:
    recipe = bench_recipe(tmp_path, "harma_tiny-vit_synth", zeroshot={"labels": "file_name"})
    out = tmp_path / "results"
    outcome = run_bench(recipes=[str(recipe)], methods=["frozen", "harma"], seeds=[0, 1], out=out)
    cell = "harma_tiny-vit_synth__harma"
    assert sorted(outcome["ran"]) == ["harma_tiny-vit_synth__frozen", f"{cell}__seed0", f"{cell}__seed1"]
    results = {run: json.loads((out / "runs" / run / "result.json").read_text()) for run in outcome["ran"]}
    assert [results[f"{cell}__seed{seed}"]["seed"] for seed in (0, 1)] == [0, 1]
    assert {result["group"] for result in results.values()} == {cell, "harma_tiny-vit_synth__frozen"}
    assert all(set(result["zeroshot"]["val"]["metrics"]) >= {"top1", "top5"} for result in results.values())

    document = json.loads((out / "leaderboard.json").read_text())
    [pooled] = [group for group in document["groups"] if group["group"] == cell]
    scores = [results[f"{cell}__seed{seed}"]["metrics"]["val"]["mR"] for seed in (0, 1)]
    top1 = [results[f"{cell}__seed{seed}"]["zeroshot"]["val"]["metrics"]["top1"] for seed in (0, 1)]
    assert pooled["seeds"] == [0, 1] and pooled["lr"] == 1e-3  # in seed order, whichever scored higher
    assert pooled["runs"] == [f"{cell}__seed0", f"{cell}__seed1"]
    assert pooled["val_mR_mean"] == pytest.approx(statistics.fmean(scores))
    assert pooled["val_mR_std"] == pytest.approx(statistics.stdev(scores))
    assert pooled["val_zs_top1_mean"] == pytest.approx(statistics.fmean(top1))
    text = (out / "leaderboard.md").read_text()
    assert "## Seeds pooled" in text
    mean, std = pooled["val_mR_mean"], pooled["val_mR_std"]
    assert f"| {cell} | harma | 0.001 | 0, 1 |" in text and f"{mean:.2f} ± {std:.2f}" in text


def test_tune_runs_each_rate_of_the_grid_and_chooses_on_validation(tmp_path: Path, capsys) -> None:
    recipe = bench_recipe(tmp_path, "harma_tiny-vit_synth", schedule__epochs=2, tuning={"lrs": [1e-4, 3e-2]})
    out = tmp_path / "tune"
    argv = ["bench", "--recipes", str(recipe), "--methods", "frozen", "harma", "--tune", "--out", str(out)]
    assert main(argv) == 0
    cell = "harma_tiny-vit_synth__harma"
    runs = {path.name for path in (out / "runs").iterdir()}
    assert runs == {f"{cell}__lr0.0001", f"{cell}__lr0.03"}  # frozen has no rate to tune
    scores = {}
    for lr in (1e-4, 3e-2):
        result = json.loads((out / "runs" / f"{cell}__lr{lr:g}" / "result.json").read_text())
        assert result["lr"] == lr and result["best_epoch"] == 1  # tuning.epochs (1) replaces the recipe's 2
        scores[lr] = result["metrics"]["val"]["mR"]
    tuning = json.loads((out / "tuning.json").read_text())["groups"][cell]
    assert {float(lr): score for lr, score in tuning["val_mR"].items()} == scores
    assert tuning["chosen"] == max(scores, key=lambda lr: (scores[lr], -lr))
    assert f"{cell}: val mR by rate (1 epoch(s))" in " ".join(capsys.readouterr().out.split())
    groups = json.loads((out / "leaderboard.json").read_text())["groups"]  # the rates are no seeds: not pooled
    assert sorted((group["lr"], group["val_mR_mean"], group["val_mR_std"]) for group in groups) == [
        (lr, scores[lr], None) for lr in sorted(scores)
    ]
    assert "## Seeds pooled" not in (out / "leaderboard.md").read_text()
    with pytest.raises(ValueError, match="--tune trains each rate with the recipe's seed"):
        run_bench(recipes=[str(recipe)], methods=["harma"], tune=True, seeds=[0, 1], out=out)


def test_the_chosen_rate_is_the_lowest_within_the_tolerance_and_a_failed_rate_never_wins(tmp_path: Path) -> None:
    [run] = plan([str(bench_recipe(tmp_path, "harma_tiny-vit_synth"))], ["harma"])
    run.cfg.tuning = {"lrs": [3e-3, 1e-2, 3e-2], "tolerance": 0.1}
    grid = with_lr_grid([run])

    def result(score: float) -> dict:
        return {"metrics": {"val": {"mR": score}}}

    ids = [r.run_id for r in grid]
    close = chosen_rates(grid, {ids[0]: result(2.70), ids[1]: result(3.03), ids[2]: result(3.05)})
    assert close[run.group]["chosen"] == 1e-2  # 3e-2 is better by 0.02, within the tolerance of 0.1
    apart = chosen_rates(grid, {ids[0]: result(2.70), ids[1]: result(2.90), ids[2]: result(3.05)})
    assert apart[run.group]["chosen"] == 3e-2
    diverged = chosen_rates(grid, {ids[0]: result(2.70), ids[1]: result(2.90)}, failed=[ids[2]])
    assert diverged[run.group]["chosen"] == 1e-2 and diverged[run.group]["val_mR"][3e-2] is None
    waiting = chosen_rates(grid, {ids[0]: result(2.70)})
    assert waiting[run.group]["chosen"] is None  # not all rates have finished
    run.cfg.tuning = {"lrs": [1e-2]}
    with pytest.raises(RecipeError, match="tuning.lrs must hold at least two positive rates"):
        validate_recipe(run.cfg, "test")
