"""The data layer: caption cleaning, every annotation reader (on the real files where
they exist), image checks on real and broken files, and the datasets with a real
family transform."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from harma_zoo.data.annotations import Annotations
from harma_zoo.data.datasets import CaptionPairs, ImagesOnly, cleaned_captions, collate_images, collate_pairs
from harma_zoo.data.images import UnreadableImageError, check_images, load_image
from harma_zoo.data.readers import (
    read_amfmn,
    read_annotations,
    read_harma_json,
    read_karpathy,
    read_parquet,
    read_table,
)
from harma_zoo.data.text import clean_caption
from harma_zoo.registry import READERS, registered_names

# --- caption cleaning -----------------------------------------------------------------


@pytest.mark.parametrize("character", list(",.'!?\"()*#:;~"))
def test_clean_caption_deletes_each_listed_character(character: str) -> None:
    assert clean_caption(f"Two{character}planes") == "twoplanes"
    assert clean_caption(f"two {character} planes") == "two planes"


def test_clean_caption_spaces_hyphen_and_slash_and_collapses_whitespace() -> None:
    assert clean_caption("Red-roofed/white HOUSES") == "red roofed white houses"
    assert (
        clean_caption("  many   planes\t\tare\nparked  near - the / runway  ")
        == "many planes are parked near the runway"
    )
    assert clean_caption("a--b//c") == "a b c"


def test_clean_caption_keeps_other_characters() -> None:
    assert clean_caption("2 tanks & [3] roads + 50%") == "2 tanks & [3] roads + 50%"


def test_clean_caption_on_real_captions() -> None:
    assert (
        clean_caption("many planes are parked next to a long building in an airport .")
        == "many planes are parked next to a long building in an airport"
    )
    assert clean_caption('The "green" (park), isn\'t it? Yes: it is; ~*#!') == "the green park isnt it yes it is"
    assert clean_caption(" . , ") == ""


def test_clean_caption_keeps_at_most_max_words() -> None:
    words = [f"w{i}" for i in range(40)]
    assert clean_caption(" ".join(words)) == " ".join(words[:30])
    assert clean_caption(" ".join(words), max_words=3) == "w0 w1 w2"
    assert clean_caption("a - b - c - d", max_words=3) == "a b c"  # counted after cleaning
    assert clean_caption("one two", max_words=30) == "one two"
    with pytest.raises(ValueError, match="max_words"):
        clean_caption("x", max_words=0)


# --- Annotations ----------------------------------------------------------------------


def _annotations(**changes) -> Annotations:
    fields = {
        "images": ["/a.jpg", "/b.jpg", "/c.jpg"],
        "names": ["a.jpg", "b.jpg", "c.jpg"],
        "captions": ["a1", "b1", "a2", "c1", "b2"],
        "caption_image": [0, 1, 0, 2, 1],
        "source": "test.json",
    }
    fields.update(changes)
    return Annotations(**fields)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images": [], "names": [], "captions": [], "caption_image": []}, "no images"),
        ({"captions": [], "caption_image": []}, "no captions"),
        ({"names": ["a.jpg"]}, "1 names for 3 images"),
        ({"caption_image": [0, 1]}, "2 caption->image indices for 5 captions"),
        ({"caption_image": [0, 1, 0, 3, 1]}, r"caption 3 points at image 3; expected an index in \[0, 3\)"),
        ({"caption_image": [0, 1, 0, -1, 1]}, "caption 3 points at image -1"),
        ({"captions": ["a1", "b1", None, "c1", "b2"]}, "caption 2 is a NoneType"),
    ],
)
def test_annotations_validate(changes, message) -> None:
    with pytest.raises(ValueError, match=f"test.json.*{message}"):
        _annotations(**changes)


def test_annotations_subset_remaps_captions() -> None:
    annotations = _annotations()
    sub = annotations.subset([2, 0])
    assert sub.names == ["c.jpg", "a.jpg"]
    assert sub.captions == ["a1", "a2", "c1"]
    assert sub.caption_image == [1, 1, 0]
    assert sub.source == "test.json"
    assert annotations.captions_of(1) == [1, 4]
    with pytest.raises(IndexError):
        annotations.subset([3])
    with pytest.raises(ValueError, match="twice"):
        annotations.subset([0, 0])


# --- readers on the real files --------------------------------------------------------


def _per_image_counts(annotations: Annotations) -> Counter:
    return Counter(Counter(annotations.caption_image).values())


def test_every_reader_is_registered() -> None:
    assert {"harma_json", "amfmn", "karpathy", "table", "parquet"} <= set(registered_names(READERS))


def test_harma_json_rsicd_train(shared_data: Path) -> None:
    root = shared_data / "rsicd" / "images"
    annotations = read_annotations("harma_json", shared_data / "rsicd" / "rsicd_train.json", image_root=root)
    assert annotations.num_images == 7862
    assert annotations.num_captions == 39310
    assert _per_image_counts(annotations) == Counter({5: 7862})
    assert annotations.names[0] == "airport_1.jpg"
    assert annotations.images[0] == str(root / "airport_1.jpg")
    assert annotations.captions[0] == "many planes are parked next to a long building in an airport ."
    # captions keep file order within an image, and every listed image file is there
    raw = json.loads((shared_data / "rsicd" / "rsicd_train.json").read_text())
    first = [entry["caption"] for entry in raw if entry["image"] == "airport_1.jpg"]
    assert [annotations.captions[j] for j in annotations.captions_of(0)] == first
    assert all(os.path.isfile(image) for image in annotations.images)


def test_harma_json_rsicd_val_images_all_decode(shared_data: Path) -> None:
    root = shared_data / "rsicd" / "images"
    annotations = read_harma_json(shared_data / "rsicd" / "rsicd_val.json", image_root=root)
    assert annotations.num_images == 1966
    assert annotations.num_captions == 9830
    assert _per_image_counts(annotations) == Counter({5: 1966})
    assert annotations.names[0] == "00017.jpg"
    checked, skipped = check_images(annotations)
    assert checked is annotations and skipped == []


@pytest.mark.parametrize(("split", "images"), [("train", 3435), ("val", 856), ("test", 452)])
def test_harma_json_rsitmd(shared_data: Path, split: str, images: int) -> None:
    path = shared_data / "annotations" / "rsitmd_harma" / f"rsitmd_{split}.json"
    annotations = read_harma_json(path)
    assert annotations.num_images == images
    assert annotations.num_captions == 5 * images
    assert all(name.startswith(f"{split}/") for name in annotations.names)
    # image_root defaults to the annotation file's folder
    assert annotations.images[0] == str(path.parent / annotations.names[0])


def test_amfmn_rsitmd_agrees_with_the_harma_json_files(shared_data: Path) -> None:
    folder = shared_data / "annotations"
    train = read_amfmn(folder / "rsitmd_amfmn" / "train_caps.txt")  # one name per image, 5 caption lines each
    test = read_amfmn(folder / "rsitmd_amfmn" / "test_caps.txt")  # the name repeated once per caption
    assert (train.num_images, train.num_captions) == (4291, 21455)
    assert (test.num_images, test.num_captions) == (452, 2260)
    assert _per_image_counts(train) == Counter({5: 4291})
    assert _per_image_counts(test) == Counter({5: 452})
    # the same captions per image as the HarMA layout of RSITMD (its train + val = AMFMN train)
    harma_test = read_harma_json(folder / "rsitmd_harma" / "rsitmd_test.json")
    by_name = {name.split("/")[-1]: i for i, name in enumerate(harma_test.names)}
    for i, name in enumerate(test.names):
        mine = [test.captions[j] for j in test.captions_of(i)]
        theirs = [harma_test.captions[j] for j in harma_test.captions_of(by_name[name])]
        assert mine == theirs, name
    harma_train_val = [
        name.split("/")[-1]
        for split in ("train", "val")
        for name in read_harma_json(folder / "rsitmd_harma" / f"rsitmd_{split}.json").names
    ]
    assert set(train.names) == set(harma_train_val)
    # blank caption lines hold their place: four images of RSITMD have five empty captions
    blank = {train.names[i] for i in set(train.caption_image[j] for j, c in enumerate(train.captions) if not c)}
    assert blank == {"mountain_2378.tif", "railwaystation_3254.tif", "storagetanks_4367.tif", "viaduct_4635.tif"}


def test_amfmn_ucm(shared_data: Path) -> None:
    folder = shared_data / "annotations" / "ucm_amfmn"
    train = read_annotations("amfmn", folder / "train_caps.txt")
    test = read_amfmn(folder, split="test")  # a folder and a split name the files too
    assert (train.num_images, train.num_captions) == (1890, 9450)
    assert (test.num_images, test.num_captions) == (210, 1050)
    assert set(train.names) | set(test.names) == {f"{i}.tif" for i in range(1, 2101)}
    assert not set(train.names) & set(test.names)
    assert train.images[0] == str(folder / "1.tif")


def test_karpathy_sydney(shared_data: Path) -> None:
    path = shared_data / "annotations" / "sydney_karpathy" / "dataset_sydney_modified.json"
    everything = read_karpathy(path)
    splits = {split: read_karpathy(path, split=split) for split in ("train", "val", "test")}
    assert everything.num_images == 613
    assert sum(a.num_images for a in splits.values()) == 613
    assert {s: a.num_images for s, a in splits.items()} == {"train": 497, "val": 58, "test": 58}
    assert everything.num_captions == 5 * 613
    assert not set(splits["train"].names) & set(splits["test"].names)
    assert everything.captions[0] == "A residential area with houses arranged neatly ."
    with pytest.raises(ValueError, match=r"no images of split 'restval'; splits found: test, train, val"):
        read_karpathy(path, split="restval")


def test_karpathy_restval_and_filepath(tmp_path: Path) -> None:
    data = {
        "images": [
            {"filename": "a.jpg", "filepath": "train2014", "split": "train", "sentences": [{"raw": "A."}]},
            {"filename": "b.jpg", "filepath": "val2014", "split": "restval", "sentences": [{"raw": "B."}]},
            {"filename": "c.jpg", "split": "test", "sentences": [{"raw": "C1"}, {"raw": "C2"}]},
        ]
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    assert read_karpathy(path, split="train").names == ["train2014/a.jpg", "val2014/b.jpg"]
    assert read_karpathy(path, split="train", restval_as_train=False).names == ["train2014/a.jpg"]
    assert read_karpathy(path, split="restval").names == ["val2014/b.jpg"]
    test = read_karpathy(path, image_root=tmp_path / "img", split="test")
    assert test.images == [str(tmp_path / "img" / "c.jpg")] and test.captions == ["C1", "C2"]


# --- tables and Parquet written here --------------------------------------------------


def test_table_csv_groups_by_image_id(tmp_path: Path) -> None:
    path = tmp_path / "captions.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption", "image_id"])
        writer.writerow(["x/1.jpg", "a port, with ships.", "7"])
        writer.writerow(["x/2.jpg", 'a "green" park', "3"])
        writer.writerow(["x/1.jpg", "ships\nin a port", "7"])
    annotations = read_annotations("table", path, image_root="/data")
    assert annotations.names == ["x/1.jpg", "x/2.jpg"]
    assert annotations.images == ["/data/x/1.jpg", "/data/x/2.jpg"]
    assert annotations.captions == ["a port, with ships.", 'a "green" park', "ships\nin a port"]
    assert annotations.caption_image == [0, 1, 0]


def test_table_jsonl_groups_by_path_and_selects_a_split(tmp_path: Path) -> None:
    rows = [
        {"image": "1.png", "caption": "one", "split": "train"},
        {"image": "2.png", "caption": "two", "split": "test"},
        {"image": "1.png", "caption": "uno", "split": "train"},
    ]
    path = tmp_path / "captions.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n\n")
    everything = read_table(path)
    assert everything.names == ["1.png", "2.png"] and everything.caption_image == [0, 1, 0]
    assert everything.images[0] == str(tmp_path / "1.png")
    train = read_table(path, split="train")
    assert train.names == ["1.png"] and train.captions == ["one", "uno"]


def test_table_errors(tmp_path: Path) -> None:
    bad_header = tmp_path / "a.csv"
    bad_header.write_text("image,text\n1.jpg,hello\n")
    with pytest.raises(ValueError, match=r"a\.csv.*no column 'caption'.*columns found: image, text"):
        read_table(bad_header)
    short_row = tmp_path / "b.csv"
    short_row.write_text("image,caption\n1.jpg,hello\n2.jpg\n")
    with pytest.raises(ValueError, match=r"b\.csv: data row 2 .* has 1 fields; the header has 2"):
        read_table(short_row)
    conflicting = tmp_path / "c.jsonl"
    conflicting.write_text(
        '{"image": "1.jpg", "caption": "a", "image_id": 1}\n{"image": "2.jpg", "caption": "b", "image_id": 1}\n'
    )
    with pytest.raises(ValueError, match="image_id 1 is given to both 1.jpg and 2.jpg"):
        read_table(conflicting)
    broken = tmp_path / "d.jsonl"
    broken.write_text('{"image": "1.jpg", "caption": "a"}\n{"image": "2.jpg", "caption": \n')
    with pytest.raises(ValueError, match=r"d\.jsonl: line 2 is not valid JSON"):
        read_table(broken)
    missing = tmp_path / "e.jsonl"
    missing.write_text('{"image": "1.jpg", "caption": "a"}\n{"image": "2.jpg"}\n')
    with pytest.raises(ValueError, match=r"e\.jsonl: line 2 has no key 'caption'"):
        read_table(missing)
    with pytest.raises(ValueError, match=r"must end in one of \.csv"):
        (tmp_path / "f.txt").write_text("image,caption\n")
        read_table(tmp_path / "f.txt")


def _jpeg(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_parquet_hf_image_struct_with_caption_list(tmp_path: Path) -> None:
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "filename": ["red.jpg", "blue.jpg"],
            "captions": [["a red square", "red"], ["a blue square", "blue", "blue again"]],
            "image": pa.array(
                [{"bytes": _jpeg((255, 0, 0)), "path": "red.jpg"}, {"bytes": _jpeg((0, 0, 255)), "path": None}],
                type=image_type,
            ),
        }
    )
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(table, path)
    annotations = read_annotations("parquet", path)
    assert annotations.names == ["red.jpg", "blue.jpg"]
    assert annotations.captions == ["a red square", "red", "a blue square", "blue", "blue again"]
    assert annotations.caption_image == [0, 0, 1, 1, 1]
    assert all(isinstance(image, bytes) for image in annotations.images)
    blue = load_image(annotations.images[1], annotations.names[1])
    assert blue.mode == "RGB" and blue.size == (32, 32)
    assert blue.getpixel((16, 16))[2] > 200
    # a folder of shards with a split selects the files by the hub's naming
    assert read_parquet(tmp_path, split="train").num_images == 2
    with pytest.raises(FileNotFoundError, match="no Parquet files of split 'test'"):
        read_parquet(tmp_path, split="test")


def test_parquet_numbered_sentence_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "image": pa.array([{"bytes": _jpeg((0, 255, 0)), "path": "g.jpg"}]),
            "sentence2": ["second"],
            "sentence1": ["first"],
            "sentence3": pa.array([None], type=pa.string()),
        }
    )
    path = tmp_path / "numbered.parquet"
    pq.write_table(table, path)
    annotations = read_parquet(path)
    assert annotations.captions == ["first", "second"]  # numeric order, null cells skipped
    assert annotations.names == ["g.jpg"]


def test_parquet_without_captions_lists_the_columns(tmp_path: Path) -> None:
    table = pa.table({"image": pa.array([{"bytes": _jpeg((0, 0, 0)), "path": None}]), "label": [3]})
    path = tmp_path / "nocaps.parquet"
    pq.write_table(table, path)
    with pytest.raises(
        ValueError, match=r"nocaps\.parquet: found no caption columns.*Columns found: image \(struct.*label \(int64\)"
    ):
        read_parquet(path)
    no_image = tmp_path / "noimage.parquet"
    pq.write_table(pa.table({"captions": [["a"]]}), no_image)
    with pytest.raises(ValueError, match=r"no image column 'image'; columns found: captions"):
        read_parquet(no_image)
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match=r"garbage\.parquet cannot be read"):
        read_parquet(garbage)


# --- bad annotation files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "name"),
    [
        ("harma_json", "a.json"),
        ("karpathy", "a.json"),
        ("table", "a.csv"),
        ("table", "a.jsonl"),
        ("amfmn", "x_caps.txt"),
    ],
)
def test_empty_annotation_file(tmp_path: Path, layout: str, name: str) -> None:
    path = tmp_path / name
    path.write_text("  \n")
    (tmp_path / "x_filename.txt").write_text("1.tif\n")
    with pytest.raises(ValueError, match=rf"{path.name} is empty"):
        read_annotations(layout, path)


@pytest.mark.parametrize("layout", ["harma_json", "amfmn", "karpathy", "table", "parquet"])
def test_missing_annotation_file(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "nothing_caps.csv"
    with pytest.raises(FileNotFoundError, match="nothing_caps.csv"):
        read_annotations(layout, path)


def test_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[{"image": "a.jpg", "caption": "x"},\n {"image": ')
    for layout in ("harma_json", "karpathy"):
        with pytest.raises(ValueError, match=r"broken\.json is not valid JSON \(line 2"):
            read_annotations(layout, path)


def test_missing_key_names_the_entry_and_key(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    entries = [{"image": f"{i}.jpg", "caption": "c", "image_id": i} for i in range(3)]
    del entries[2]["caption"]
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"train\.json: entry 2 has no key 'caption'"):
        read_harma_json(path)
    entries = [{"image": "0.jpg", "caption": ["a", "b"]}, {"caption": ["c"]}]
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"entry 1 has no key 'image'"):
        read_harma_json(path)
    entries = [{"image": "0.jpg", "caption": ["a", "b"]}, {"image": "1.jpg", "caption": "c"}]
    path.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match=r"entry 1 key 'caption' is a str; expected a list"):
        read_harma_json(path)
    path.write_text(json.dumps({"images": [{"filename": "1.tif", "sentences": [{"tokens": []}]}]}))
    with pytest.raises(ValueError, match=r"images\[0\] sentences\[0\] has no key 'raw'"):
        read_karpathy(path)
    path.write_text("[]")
    with pytest.raises(ValueError, match="holds no entries"):
        read_harma_json(path)


def test_amfmn_counts_that_fit_no_layout(tmp_path: Path) -> None:
    (tmp_path / "train_caps.txt").write_text("".join(f"caption {i}\n" for i in range(7)))
    (tmp_path / "train_filename.txt").write_text("1.tif\n2.tif\n")
    with pytest.raises(ValueError, match=r"7 caption lines .* 2 file names: expected either 2 captions .* or 10"):
        read_amfmn(tmp_path / "train_caps.txt")
    (tmp_path / "train_caps.txt").write_text("".join(f"caption {i}\n" for i in range(10)))
    assert read_amfmn(tmp_path / "train_caps.txt").caption_image == [0] * 5 + [1] * 5
    (tmp_path / "train_filename.txt").unlink()
    with pytest.raises(FileNotFoundError, match="train_filename.txt"):
        read_amfmn(tmp_path / "train_caps.txt")


# --- images -----------------------------------------------------------------------------


def _image_folder(tmp_path: Path) -> tuple[Annotations, Path, Path]:
    """Three images: good, truncated JPEG, garbage .jpg; two captions each."""
    good = _jpeg((10, 200, 10), size=64)
    (tmp_path / "good.jpg").write_bytes(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpeg((200, 10, 10), size=64)[:-200])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff this is no image" * 10)
    names = ["good.jpg", "truncated.jpg", "garbage.jpg"]
    annotations = Annotations(
        images=[str(tmp_path / name) for name in names],
        names=names,
        captions=["g1", "t1", "x1", "g2", "t2", "x2"],
        caption_image=[0, 1, 2, 0, 1, 2],
        source="captions.json",
    )
    return annotations, truncated, garbage


def test_load_image_errors_name_the_file(tmp_path: Path) -> None:
    annotations, truncated, garbage = _image_folder(tmp_path)
    image = load_image(annotations.images[0], "good.jpg")
    assert image.mode == "RGB" and image.size == (64, 64)
    gray = tmp_path / "gray.png"
    Image.new("L", (8, 8), 128).save(gray)
    assert load_image(str(gray), "gray.png").mode == "RGB"
    for path in (truncated, garbage):
        with pytest.raises(UnreadableImageError, match=path.name):
            load_image(str(path), path.name)
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        load_image(str(tmp_path / "absent.jpg"), "absent.jpg")
    with pytest.raises(UnreadableImageError, match=r"image row 3 \(embedded, 7 bytes\)"):
        load_image(b"garbage", "row 3")


def test_check_images_corrupt_files(tmp_path: Path) -> None:
    annotations, truncated, garbage = _image_folder(tmp_path)
    with pytest.raises(UnreadableImageError, match=r"2 of 3 images listed in captions\.json do not decode") as error:
        check_images(annotations)
    assert str(truncated) in str(error.value) and str(garbage) in str(error.value)
    kept, skipped = check_images(annotations, skip_unreadable=True)
    assert skipped == ["truncated.jpg", "garbage.jpg"]
    assert kept.names == ["good.jpg"]
    assert kept.captions == ["g1", "g2"] and kept.caption_image == [0, 0]


def test_check_images_missing_file_is_always_an_error(tmp_path: Path) -> None:
    annotations, _, _ = _image_folder(tmp_path)
    (tmp_path / "good.jpg").unlink()
    for skip in (False, True):
        with pytest.raises(
            FileNotFoundError, match=r"1 of 3 image files listed in captions\.json do not exist: .*good\.jpg"
        ):
            check_images(annotations, skip_unreadable=skip)


def test_check_images_on_embedded_bytes() -> None:
    annotations = Annotations(
        images=[_jpeg((1, 2, 3)), b"nope"],
        names=["row 0", "row 1"],
        captions=["a", "b"],
        caption_image=[0, 1],
        source="x.parquet",
    )
    kept, skipped = check_images(annotations, skip_unreadable=True)
    assert skipped == ["row 1"] and kept.captions == ["a"]
    with pytest.raises(UnreadableImageError, match=r"image row 1 \(embedded, 4 bytes\)"):
        check_images(annotations)


# --- datasets with a real family transform --------------------------------------------


@pytest.fixture(scope="module")
def tiny_backbone():
    from harma_zoo.model import build_backbone

    return build_backbone({"type": "open_clip", "arch": "harma-tiny-vit"})


def test_caption_pairs_and_images_only_on_real_rsicd(shared_data: Path, tiny_backbone) -> None:
    root = shared_data / "rsicd" / "images"
    annotations = read_harma_json(shared_data / "rsicd" / "rsicd_val.json", image_root=root).subset([0, 1, 2])
    size = tiny_backbone.image_size

    pairs = CaptionPairs(annotations, tiny_backbone.train_transform())
    assert len(pairs) == 15
    sample = pairs[6]
    assert sample["image_id"] == 1
    assert sample["caption"] == clean_caption(annotations.captions[6])
    assert sample["pixels"].shape == (3, size, size) and sample["pixels"].dtype == torch.float32

    batch = next(iter(DataLoader(pairs, batch_size=4, shuffle=False, collate_fn=collate_pairs)))
    assert batch["pixels"].shape == (4, 3, size, size)
    assert batch["captions"] == cleaned_captions(annotations)[:4]
    assert all("." not in caption for caption in batch["captions"])
    assert batch["image_ids"].dtype == torch.long and batch["image_ids"].tolist() == [0, 0, 0, 0]
    tokens = tiny_backbone.tokenize(batch["captions"])
    with torch.no_grad():
        assert tiny_backbone.encode_text(tokens).shape[0] == 4

    images = ImagesOnly(annotations, tiny_backbone.eval_transform())
    batch = collate_images([images[i] for i in range(3)])
    assert batch["pixels"].shape == (3, 3, size, size)
    assert batch["indices"].tolist() == [0, 1, 2] and batch["indices"].dtype == torch.long
    torch.testing.assert_close(images[2]["pixels"], batch["pixels"][2])  # eval transform is deterministic
    with torch.no_grad():
        assert tiny_backbone.encode_image(batch["pixels"]).shape[0] == 3


def test_caption_pairs_on_embedded_images(tmp_path: Path) -> None:
    annotations = Annotations(
        images=[_jpeg((255, 0, 0)), _jpeg((0, 0, 255))],
        names=["row 0", "row 1"],
        captions=["A red-square!", "Blue / square.", "blue"],
        caption_image=[0, 1, 1],
        source="x.parquet",
    )
    from torchvision import transforms as T

    pairs = CaptionPairs(annotations, T.Compose([T.Resize((16, 16)), T.ToTensor()]), max_words=1)
    assert [pairs[i]["caption"] for i in range(3)] == ["a", "blue", "blue"]
    assert pairs[0]["pixels"][0].mean() > 0.9 and pairs[2]["image_id"] == 1
