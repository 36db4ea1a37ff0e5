"""Indexing an archive and searching it, in process: exact scores and ranks, incremental runs, bad input."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from search_helpers import OTHER, TRANSFER, write_archive

from harma_zoo.data.images import UnreadableImageError, load_image
from harma_zoo.search import IndexOptions, SearchError, SearchIndex, index_archive, write_synthetic_scene
from harma_zoo.search.decode import read_item


@pytest.fixture(scope="module", autouse=True)
def zoo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One zoo cache for the module: the published adapters are copied from zoo_files/ once."""
    home = tmp_path_factory.mktemp("zoo-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARMA_ZOO_HOME", str(home))
        patch.delenv("HARMA_ZOO_REGISTRY", raising=False)
        yield home


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    write_archive(folder, 10)
    write_synthetic_scene(folder / "scenes" / "scene.tif", tiles=2, tile_size=64, seed=1)
    return folder


@pytest.fixture(scope="module")
def built(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("built") / "index"
    index_archive(archive, TRANSFER, out, chip=64, workers=0, progress=False)
    return out


def _manifest(folder: Path) -> list[dict]:
    return pq.read_table(folder / "manifest.parquet").to_pylist()


def test_text_queries_get_the_exact_top_k_with_exact_scores(built: Path, archive: Path) -> None:
    index = SearchIndex(built)
    assert len(index) == 14  # 10 images and the 4 chips of the scene
    hits = index.search("many planes parked next to a long terminal", k=5)
    model, _, tokenizer = index.pretrained
    with torch.no_grad():
        query = model.encode_text(tokenizer(["many planes parked next to a long terminal"]))[0].double().numpy()
    every = np.asarray(index.vectors, dtype=np.float64) @ query
    best = np.argsort(-every, kind="stable")[:5]
    assert [hit.id for hit in hits] == [int(index.ids[row]) for row in best]
    assert [hit.score for hit in hits] == pytest.approx(every[best].tolist(), abs=1e-12)
    assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]


def test_stored_vectors_are_the_models_embeddings_of_files_and_chips(built: Path) -> None:
    index = SearchIndex(built)
    model, transform, _ = index.pretrained
    chips = [row for row in _manifest(built) if row["window"] is not None]
    rows = [row for row in _manifest(built) if row["window"] is None][:2] + [chips[-1]]
    for row in rows:
        item = index.item(row["id"])
        with torch.no_grad():
            expected = model.encode_image(transform(read_item(item)).unsqueeze(0))[0].numpy()
        assert np.allclose(index.vectors[index.row_of(row["id"])], expected, atol=1e-6), item.label()
    assert rows[-1]["window"] == {"col_off": 64, "row_off": 64, "width": 64, "height": 64}
    assert rows[-1]["crs"] == "EPSG:32631" and len(rows[-1]["footprint"]) == 5


def test_an_image_finds_itself_first_and_identical_images_share_the_last_place(archive: Path, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    shutil.copytree(archive, folder)
    first = sorted(folder.glob("*.png"))[0]
    shutil.copy(first, folder / "copy-of-first.png")
    index_archive(folder, TRANSFER, tmp_path / "index", chip=64, workers=0, progress=False)
    index = SearchIndex(tmp_path / "index")
    hits = index.search(image=first, k=3)
    assert {Path(hit.path).name for hit in hits[:2]} == {first.name, "copy-of-first.png"}
    assert hits[0].score == hits[1].score == pytest.approx(1.0, abs=1e-6)
    assert hits[0].rank == hits[1].rank == 2 and hits[2].rank == 3  # the evaluation's pessimistic ties
    by_id = index.search_ids([hits[2].id], k=1)[0][0]
    assert by_id.id == hits[2].id and by_id.score == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UnreadableImageError, match="cannot decode image file .*broken.png"):
        (tmp_path / "broken.png").write_bytes(b"not a png")
        index.search(image=tmp_path / "broken.png")


def _by_key(folder: Path) -> dict[tuple, dict]:
    return {(row["path"], str(row["window"])): row for row in _manifest(folder)}


def test_a_second_run_embeds_only_new_and_changed_files_and_drops_removed_ones(archive: Path, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    shutil.copytree(archive, folder)
    out = tmp_path / "index"
    index_archive(folder, TRANSFER, out, chip=64, workers=0, progress=False)
    before = _by_key(out)
    old = SearchIndex(out)
    old_vectors = {key: np.array(old.vectors[old.row_of(row["id"])]) for key, row in before.items()}
    images = sorted(p for p in folder.rglob("*.png"))
    images[0].unlink()
    changed = images[1]
    load_image(str(images[2]), "").save(changed)  # other pixels, other size
    write_archive(folder / "new", 2, seed=5)

    report = index_archive(folder, TRANSFER, out, chip=64, workers=0, progress=False)
    assert (report.added, report.changed, report.removed, report.embedded) == (2, 1, 1, 3)
    assert report.kept == report.vectors - 3 == 12
    after = _by_key(out)
    assert (str(images[0]), "None") not in after
    assert after[(str(changed), "None")]["id"] > max(row["id"] for row in before.values())  # changed: a new id
    new = SearchIndex(out)
    unchanged = [key for key in after if key in before and key != (str(changed), "None")]
    assert len(unchanged) == 12
    for key in unchanged:
        assert after[key]["id"] == before[key]["id"]
        assert np.array_equal(new.vectors[new.row_of(after[key]["id"])], old_vectors[key])
    assert [row["id"] for row in _manifest(out)] == sorted(row["id"] for row in after.values())
    again = index_archive(folder, TRANSFER, out, chip=64, workers=0, progress=False)
    assert (again.embedded, again.kept) == (0, 15)


def test_unreadable_images_are_skipped_and_listed_or_refused_when_strict(archive: Path, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    shutil.copytree(archive, folder)
    jpeg = next(folder.rglob("*.jpg"))
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])  # truncated
    (folder / "garbage.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "index"
    with pytest.raises(SearchError, match=r"2 of 15 items do not decode: .*the index was left as it was") as refused:
        index_archive(folder, TRANSFER, out, chip=64, workers=2, strict=True, progress=False)
    message = str(refused.value)
    assert f"{jpeg}: image file is truncated" in message and "garbage.png: cannot identify" in message
    assert not (out / "manifest.parquet").exists()  # nothing committed
    report = index_archive(folder, TRANSFER, out, chip=64, workers=2, progress=False)
    assert sorted(Path(label).name for label, _ in report.skipped) == ["garbage.png", jpeg.name]
    assert report.vectors == 13 and report.resumed == 15  # taken from the strict run's shards
    assert len(SearchIndex(out).search("a lake", k=3)) == 3


def test_another_model_is_refused_naming_both_and_the_index_stays(built: Path, archive: Path) -> None:
    before = (built / "manifest.parquet").read_bytes()
    with pytest.raises(SearchError, match=f"holds vectors of {TRANSFER} .*--model {OTHER} .*makes other vectors"):
        index_archive(archive, OTHER, built, chip=64, progress=False)
    assert (built / "manifest.parquet").read_bytes() == before
    assert len(SearchIndex(built)) == 14


def test_missing_foreign_and_unfinished_index_folders_are_refused(tmp_path: Path, archive: Path) -> None:
    with pytest.raises(FileNotFoundError, match="index folder .*nowhere does not exist"):
        SearchIndex(tmp_path / "nowhere")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SearchError, match="is not a harma-zoo search index"):
        SearchIndex(foreign)
    with pytest.raises(SearchError, match="--out .*foreign is a folder that is not a harma-zoo search index"):
        index_archive(archive, TRANSFER, foreign, progress=False)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    with pytest.raises(SearchError, match="holds no JPEG, PNG or TIFF"):
        index_archive(tmp_path / "foreign-empty" if (tmp_path / "foreign-empty").mkdir() is None else None,
                      TRANSFER, tmp_path / "new", progress=False)  # fmt: skip
    assert not (tmp_path / "new" / "identity.json").exists()


def test_ivfpq_finds_what_the_exact_index_finds(tmp_path: Path) -> None:
    scene = write_synthetic_scene(tmp_path / "scene.tif", tiles=2, tile_size=160)
    out = tmp_path / "index"
    exact = index_archive(scene, TRANSFER, out, chip=16, workers=0, progress=False)
    assert exact.vectors == 400
    flat = SearchIndex(out)
    queries = np.asarray(flat.vectors[::40])
    exact_hits = flat.search_vectors(queries, k=10)
    expected = [[hit.id for hit in hits] for hits in exact_hits]
    report = index_archive(scene, TRANSFER, out, chip=16, options=IndexOptions("ivfpq", 4, 8), progress=False)
    assert report.embedded == 0  # the stored vectors, in a new FAISS index
    ivf = SearchIndex(out, nprobe=4)
    found = [[hit.id for hit in hits] for hits in ivf.search_vectors(queries, k=10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(expected, found, strict=True)])
    assert recall >= 0.8, recall
    for query, hits in zip(queries, ivf.search_vectors(queries, k=10), strict=True):  # approximate hits, exact scores
        rows = [ivf.row_of(hit.id) for hit in hits]
        exact = (np.asarray(ivf.vectors[rows], np.float64) * query.astype(np.float64)).sum(axis=1)
        assert [hit.score for hit in hits] == exact.tolist() and exact.tolist() == sorted(exact, reverse=True)
    with pytest.raises(SearchError, match="--pq 7 must divide the embedding dimension 64"):
        index_archive(scene, TRANSFER, out, chip=16, options=IndexOptions("ivfpq", 4, 7), progress=False)
