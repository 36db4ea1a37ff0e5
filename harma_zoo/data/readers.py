"""Annotation readers: one per file layout, all with one calling convention.

Every reader is registered in ``READERS`` under its layout's name and is called as::

    read(path, image_root=None, split=None, **options) -> Annotations

``image_root`` (default: the folder of the annotation file) is where relative image
paths are resolved. ``split`` selects a split where the layout holds several in one
file (``karpathy``, a ``table`` with a ``split`` column, a folder of Parquet shards,
an AMFMN folder); where a file is one split it is ignored.

Bad input raises ``FileNotFoundError`` (a missing file, naming it) or ``ValueError``
(an empty or malformed file, a missing key or column: naming the file, and where it
applies the entry and the key expected).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from harma_zoo.data.annotations import Annotations
from harma_zoo.registry import READERS, get_class

PathLike = str | Path

__all__ = [
    "read_amfmn",
    "read_annotations",
    "read_class_folders",
    "read_harma_json",
    "read_karpathy",
    "read_parquet",
    "read_table",
    "reader_spec",
]


def reader_spec(reader: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(layout, options) of a recipe's ``data.reader``: ``dict(type=LAYOUT, **options)``, or LAYOUT alone.

    The bare name stays accepted as shorthand for ``dict(type=LAYOUT)``: recipes and published
    checkpoints written before readers took options say ``reader="harma_json"``.
    """
    if isinstance(reader, str):
        return reader, {}
    if isinstance(reader, Mapping) and isinstance(reader.get("type"), str):
        options = dict(reader)
        return options.pop("type"), options
    raise ValueError(f"data.reader must be dict(type=LAYOUT, **options) or a LAYOUT name, got {reader!r}")


def read_annotations(
    layout: str,
    path: PathLike,
    image_root: PathLike | None = None,
    split: str | None = None,
    **options: Any,
) -> Annotations:
    """Read ``path`` with the reader registered as ``layout`` (an unknown one lists the known ones)."""
    reader: Callable[..., Annotations] = get_class(READERS, layout)
    return reader(path, image_root=image_root, split=split, **options)


# --- shared helpers -------------------------------------------------------------------


def _existing_file(path: PathLike, what: str = "annotation file") -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a file")
    return path


def _read_text(path: Path, what: str = "annotation file") -> str:
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"{what} {path} is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not UTF-8 text: {error}") from None


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"annotation file {path} is not valid JSON (line {error.lineno}, column {error.colno}): {error.msg}"
        ) from None
    except RecursionError:
        raise ValueError(f"annotation file {path} nests its JSON too deeply; expected a list of entries") from None


def _image_root(path: Path, image_root: PathLike | None) -> Path:
    return Path(image_root) if image_root is not None else path.parent


def _resolve(root: Path, relative: str) -> str:
    return os.path.abspath(os.path.join(root, relative))


class _Builder:
    """Collects captions per image, one image per key, in first-seen order."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.index: dict[Any, int] = {}
        self.images: list[str | bytes] = []
        self.names: list[str] = []
        self.captions: list[str] = []
        self.caption_image: list[int] = []

    def image(self, key: Any, name: str, image: str | bytes | None = None) -> int:
        """Index of the image under ``key``, adding it (``image`` defaults to ``name`` under the root)."""
        index = self.index.get(key)
        if index is None:
            index = self.index[key] = len(self.images)
            if image is None:
                assert self.root is not None
                image = _resolve(self.root, name)
            self.images.append(image)
            self.names.append(name)
        return index

    def caption(self, image_index: int, caption: str) -> None:
        self.captions.append(caption)
        self.caption_image.append(image_index)

    def build(self, source: str) -> Annotations:
        return Annotations(self.images, self.names, self.captions, self.caption_image, source)


def _require(entry: Any, keys: Iterable[str], where: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}; expected an object with keys {', '.join(keys)}")
    for key in keys:
        if key not in entry:
            raise ValueError(f"{where} has no key {key!r} (expected keys: {', '.join(repr(k) for k in keys)})")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} is a {type(value).__name__}; expected a string")
    return value


# --- HarMA JSON -----------------------------------------------------------------------


@READERS.register_module("harma_json")
def read_harma_json(path: PathLike, image_root: PathLike | None = None, split: str | None = None) -> Annotations:
    """The HarMA JSON layout: a list of entries ``{"image": PATH, "caption": ...}``.

    Train files have one entry per caption (``caption`` a string, plus ``image_id``);
    val/test files one entry per image (``caption`` a list of strings). The layout is
    told by the type of the first entry's ``caption``. Captions are grouped by image
    path in first-seen order (``image_id`` is not needed). ``split`` is ignored: a
    file is one split.
    """
    path = _existing_file(path)
    data = _load_json(path)
    if not isinstance(data, list):
        raise ValueError(f"annotation file {path} holds a {type(data).__name__}; expected a list of entries")
    if not data:
        raise ValueError(f"annotation file {path} holds no entries")
    keys = ("image", "caption")
    _require(data[0], keys, f"{path}: entry 0")
    per_image = isinstance(data[0]["caption"], list)
    builder = _Builder(_image_root(path, image_root))
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        _require(entry, keys, where)
        name = _text(entry["image"], f"{where} key 'image'")
        captions = entry["caption"]
        if per_image:
            if not isinstance(captions, list):
                raise ValueError(
                    f"{where} key 'caption' is a {type(captions).__name__}; expected a list of captions "
                    "like entry 0 (one entry per image)"
                )
            if not captions:
                raise ValueError(f"{where} key 'caption' is an empty list; expected the image's captions")
            index = builder.image(name, name)
            for k, caption in enumerate(captions):
                builder.caption(index, _text(caption, f"{where} key 'caption' item {k}"))
        else:
            if not isinstance(captions, str):
                raise ValueError(
                    f"{where} key 'caption' is a {type(captions).__name__}; expected a string "
                    "like entry 0 (one entry per caption)"
                )
            builder.caption(builder.image(name, name), captions)
    return builder.build(str(path))


# --- AMFMN precomp text files ---------------------------------------------------------


def _lines(path: Path) -> list[str]:
    text = _read_text(path)
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return [line.rstrip("\r") for line in lines]


@READERS.register_module("amfmn")
def read_amfmn(
    path: PathLike,
    image_root: PathLike | None = None,
    split: str | None = None,
    names_file: PathLike | None = None,
    captions_per_image: int = 5,
) -> Annotations:
    """AMFMN "precomp" text files: ``<split>_caps.txt`` (a caption a line) and ``<split>_filename.txt``.

    ``path`` is the caps file (or, with ``split``, the folder holding
    ``<split>_caps.txt``); the names file is its sibling ``<split>_filename.txt``
    unless ``names_file`` is given. The line counts tell the alignment: as many
    captions as names means one name per caption (the test files repeat a name once
    per caption); ``captions_per_image`` times as many captions as names means one
    name per image, its captions on consecutive lines (the train files). Blank
    caption lines are kept as (empty) captions: they hold their place in the count.
    """
    path = Path(path)
    if path.is_dir():
        if split is None:
            raise ValueError(f"{path} is a folder; give the caps file, or a split to read <split>_caps.txt from it")
        path = path / f"{split}_caps.txt"
    path = _existing_file(path)
    if names_file is None:
        if not path.name.endswith("_caps.txt"):
            raise ValueError(f"{path}: an AMFMN caps file is named <split>_caps.txt; give names_file for other names")
        names_file = path.with_name(path.name[: -len("_caps.txt")] + "_filename.txt")
    names_path = _existing_file(names_file, "AMFMN file-name file")
    captions = _lines(path)
    names = [line.strip() for line in _lines(names_path)]
    for k, name in enumerate(names):
        if not name:
            raise ValueError(f"{names_path}: line {k + 1} is blank; expected an image file name")
    source = f"{path} + {names_path.name}"
    if len(captions) == len(names):
        caption_names = names
    elif len(captions) == captions_per_image * len(names):
        caption_names = [name for name in names for _ in range(captions_per_image)]
    else:
        raise ValueError(
            f"{path} has {len(captions)} caption lines and {names_path} {len(names)} file names: expected either "
            f"{len(names)} captions (one file name per caption) or {captions_per_image * len(names)} "
            f"({captions_per_image} captions per file name)"
        )
    builder = _Builder(_image_root(path, image_root))
    for name, caption in zip(caption_names, captions, strict=True):
        builder.caption(builder.image(name, name), caption.strip())
    return builder.build(source)


# --- Karpathy-style JSON --------------------------------------------------------------


@READERS.register_module("karpathy")
def read_karpathy(
    path: PathLike,
    image_root: PathLike | None = None,
    split: str | None = None,
    restval_as_train: bool = True,
) -> Annotations:
    """Karpathy-style JSON: ``{"images": [{"filename", "split", "sentences": [{"raw"}], "filepath"?}]}``.

    ``split`` keeps the images of that split (all images when None). With
    ``restval_as_train`` (the default, as in the usual COCO practice) ``"train"``
    also takes the ``restval`` images; ``"restval"`` alone takes only those. Image
    paths are ``image_root/filepath/filename`` (``filepath`` when present).
    """
    path = _existing_file(path)
    data = _load_json(path)
    _require(data, ("images",), f"annotation file {path}")
    images = data["images"]
    if not isinstance(images, list) or not images:
        raise ValueError(f"annotation file {path}: key 'images' must be a non-empty list of image entries")
    wanted: set[str] | None = None
    if split is not None:
        wanted = {split, "restval"} if split == "train" and restval_as_train else {split}
    builder = _Builder(_image_root(path, image_root))
    found_splits: set[str] = set()
    for i, entry in enumerate(images):
        where = f"{path}: images[{i}]"
        _require(entry, ("filename", "sentences"), where)
        if wanted is not None:
            _require(entry, ("filename", "sentences", "split"), where)
            found_splits.add(str(entry["split"]))
            if entry["split"] not in wanted:
                continue
        name = _text(entry["filename"], f"{where} key 'filename'")
        if entry.get("filepath"):
            name = f"{_text(entry['filepath'], f'{where} key filepath')}/{name}"
        sentences = entry["sentences"]
        if not isinstance(sentences, list) or not sentences:
            raise ValueError(f"{where} key 'sentences' must be a non-empty list of {{'raw': caption}} objects")
        index = builder.image(name, name)
        for k, sentence in enumerate(sentences):
            _require(sentence, ("raw",), f"{where} sentences[{k}]")
            builder.caption(index, _text(sentence["raw"], f"{where} sentences[{k}] key 'raw'"))
    if not builder.images:
        raise ValueError(
            f"annotation file {path} has no images of split {split!r}; splits found: {', '.join(sorted(found_splits))}"
        )
    source = f"{path} (split {split})" if split is not None else str(path)
    return builder.build(source)


# --- CSV / JSONL tables ---------------------------------------------------------------


def _csv_rows(path: Path, delimiter: str) -> Iterable[tuple[str, dict[str, Any]]]:
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [column.strip() for column in next(reader)]
        missing = [column for column in ("image", "caption") if column not in header]
        if missing:
            raise ValueError(
                f"{path}: the header has no column {', '.join(repr(c) for c in missing)} "
                f"(expected 'image', 'caption', optional 'image_id'); columns found: {', '.join(header)}"
            )
        number = 0
        for fields in reader:
            if not fields or all(not field.strip() for field in fields):
                continue
            number += 1
            where = f"{path}: data row {number} (ending on line {reader.line_num})"
            if len(fields) != len(header):
                raise ValueError(f"{where} has {len(fields)} fields; the header has {len(header)}: {', '.join(header)}")
            yield where, dict(zip(header, fields, strict=True))
    except csv.Error as error:
        raise ValueError(f"{path}: malformed CSV near line {reader.line_num}: {error}") from None


def _jsonl_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} is not valid JSON (column {error.colno}): {error.msg}") from None
        except RecursionError:
            raise ValueError(f"{where} nests its JSON too deeply; expected an object") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where} is a {type(row).__name__}; expected an object with keys 'image', 'caption'")
        yield where, row


_TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}


@READERS.register_module("table")
def read_table(path: PathLike, image_root: PathLike | None = None, split: str | None = None) -> Annotations:
    """A CSV/TSV (header with ``image``, ``caption``, optional ``image_id``) or JSONL table, by suffix.

    One row per caption. Rows with the same ``image_id`` (when the table has one; then
    every row needs one) or else the same image path are one image. With ``split``
    and a ``split`` column only the rows of that split are kept; without that column
    ``split`` is ignored.
    """
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        known = ", ".join(_TABLE_SUFFIXES)
        raise ValueError(f"{path}: a table's name must end in one of {known}; got {suffix or 'no suffix'}")
    delimiter = _TABLE_SUFFIXES[suffix]
    rows = _jsonl_rows(path) if delimiter is None else _csv_rows(path, delimiter)
    builder = _Builder(_image_root(path, image_root))
    id_paths: dict[str, str] = {}
    uses_ids: bool | None = None
    count = 0
    for where, row in rows:
        count += 1
        _require(row, ("image", "caption"), where)
        if split is not None and "split" in row and str(row["split"]) != split:
            continue
        name = _text(row["image"], f"{where} key 'image'").strip()
        if not name:
            raise ValueError(f"{where} key 'image' is blank; expected an image path")
        caption = _text(row["caption"], f"{where} key 'caption'")
        image_id = row.get("image_id")
        has_id = image_id is not None and str(image_id).strip() != ""
        if uses_ids is None:
            uses_ids = has_id
        elif has_id != uses_ids:
            raise ValueError(
                f"{where} {'has' if has_id else 'lacks'} an 'image_id' while the first row "
                f"{'does not' if has_id else 'has one'}; give every row an image_id or none"
            )
        if has_id:
            key = str(image_id).strip()
            if id_paths.setdefault(key, name) != name:
                raise ValueError(f"{where}: image_id {key} is given to both {id_paths[key]} and {name}")
        else:
            key = name
        builder.caption(builder.image(key, name), caption)
    if count == 0:
        raise ValueError(f"annotation file {path} has no rows")
    if not builder.captions:
        raise ValueError(f"annotation file {path} has no rows of split {split!r}")
    source = f"{path} (split {split})" if split is not None else str(path)
    return builder.build(source)


# --- Parquet (the Hugging Face RSICD copy) --------------------------------------------

_CAPTION_LIST_COLUMNS = ("captions", "sentences", "caption", "sentence", "texts", "text", "raw")
_NUMBERED_CAPTION = re.compile(r"^(?:captions?|sentences?|texts?|raw)_?(\d+)$", re.IGNORECASE)
_CAPTION_STRING_COLUMNS = ("caption", "sentence", "text")
_NAME_COLUMNS = ("filename", "file_name", "image_name", "name", "imgid", "image_id", "id")


def _parquet_files(path: Path, split: str | None) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"Parquet file {path} does not exist")
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.parquet"))
    if split is not None:
        files = [f for f in files if f.stem == split or re.match(rf"^{re.escape(split)}[-_.]", f.name)]
    if not files:
        detail = f" of split {split!r} (named {split}-*.parquet)" if split is not None else ""
        raise FileNotFoundError(f"no Parquet files{detail} in folder {path}")
    return files


def _describe_columns(schema: Any) -> str:
    return ", ".join(f"{field.name} ({field.type})" for field in schema)


def _caption_layout(schema: Any, source: str) -> tuple[str, list[str]]:
    """("list", [column]) or ("columns", [numbered columns]) or ("row", [column])."""
    import pyarrow as pa

    def is_list_of_strings(type_: Any) -> bool:
        return (pa.types.is_list(type_) or pa.types.is_large_list(type_)) and (
            pa.types.is_string(type_.value_type) or pa.types.is_large_string(type_.value_type)
        )

    def is_string(type_: Any) -> bool:
        return pa.types.is_string(type_) or pa.types.is_large_string(type_)

    by_name = {field.name.lower(): field for field in schema}
    for name in _CAPTION_LIST_COLUMNS:
        field = by_name.get(name)
        if field is not None and is_list_of_strings(field.type):
            return "list", [field.name]
    numbered = []
    for field in schema:
        match = _NUMBERED_CAPTION.match(field.name)
        if match and is_string(field.type):
            numbered.append((int(match.group(1)), field.name))
    if numbered:
        return "columns", [name for _, name in sorted(numbered)]
    lists = [field.name for field in schema if is_list_of_strings(field.type) and field.name.lower() != "image"]
    if len(lists) == 1:
        return "list", lists
    for name in _CAPTION_STRING_COLUMNS:
        field = by_name.get(name)
        if field is not None and is_string(field.type):
            return "row", [field.name]
    raise ValueError(
        f"{source}: found no caption columns. Expected a list-of-strings column 'captions' or 'sentences', "
        f"numbered string columns such as sentence1..sentence5 or caption_1.., or a string column 'caption'. "
        f"Columns found: {_describe_columns(schema)}"
    )


@READERS.register_module("parquet")
def read_parquet(
    path: PathLike,
    image_root: PathLike | None = None,
    split: str | None = None,
    image_column: str = "image",
) -> Annotations:
    """Parquet with images embedded, as the Hugging Face ``datasets`` Image feature writes them.

    ``path`` is one ``.parquet`` file or a folder of shards (with ``split``: the files
    named ``<split>-*.parquet``, the hub's naming). One row per image. The image
    column is a struct ``{bytes: binary, path: string}`` (a row with null bytes is
    read from ``path`` under ``image_root``), plain binary, or a string path. The
    captions are the first found of: a list-of-strings column ``captions`` /
    ``sentences`` (or the one list-of-strings column), numbered string columns
    ``sentence1..`` / ``caption_1..`` (null cells skipped), or a string column
    ``caption`` (one caption per row). Images come back as bytes; names are the
    ``filename`` column, else the struct's path, else ``row N``.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"the parquet reader needs pyarrow ({error}): pip install 'harma-zoo[parquet]'"
        ) from error

    path = Path(path)
    files = _parquet_files(path, split)
    root = Path(image_root) if image_root is not None else (path if path.is_dir() else path.parent)
    builder = _Builder(root)
    for file in files:
        if file.stat().st_size == 0:
            raise ValueError(f"Parquet file {file} is empty")
        try:
            table = pq.read_table(file)
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"Parquet file {file} cannot be read: {error}") from None
        source = f"Parquet file {file}"
        if image_column not in table.column_names:
            raise ValueError(
                f"{source} has no image column {image_column!r}; columns found: {_describe_columns(table.schema)}"
            )
        if table.num_rows == 0:
            raise ValueError(f"{source} has no rows")
        layout, caption_columns = _caption_layout(table.schema, source)
        image_type = table.schema.field(image_column).type
        images = table.column(image_column).to_pylist()
        struct_image = pa.types.is_struct(image_type)
        if struct_image and image_type.get_field_index("bytes") < 0:
            raise ValueError(
                f"{source}: image column {image_column!r} is a struct without a 'bytes' field "
                f"(type {image_type}); expected the datasets Image feature {{bytes, path}}"
            )
        binary_image = pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)
        string_image = pa.types.is_string(image_type) or pa.types.is_large_string(image_type)
        if not (struct_image or binary_image or string_image):
            raise ValueError(
                f"{source}: image column {image_column!r} has type {image_type}; expected a struct "
                "{bytes, path}, binary, or a string path"
            )
        lower = {name.lower(): name for name in table.column_names}
        name_column = next((lower[n] for n in _NAME_COLUMNS if n in lower), None)
        row_names = table.column(name_column).to_pylist() if name_column is not None else None
        columns = [table.column(c).to_pylist() for c in caption_columns]
        for row, value in enumerate(images):
            where = f"{source}: row {row}"
            struct_path = None
            if struct_image:
                data = value.get("bytes") if value is not None else None
                struct_path = value.get("path") if value is not None else None
                if data is None and struct_path:
                    data = _resolve(root, struct_path)
            elif isinstance(value, str):
                struct_path = value
                data = _resolve(root, value) if value else None
            else:
                data = value
            if data is None:
                raise ValueError(f"{where} has no image (null {image_column!r})")
            if row_names is not None and row_names[row] is not None:
                name = str(row_names[row])
            elif struct_path:
                name = struct_path
            else:
                name = f"{file.name} row {row}" if len(files) > 1 else f"row {row}"
            if layout == "list":
                captions = columns[0][row]
                if not captions:
                    raise ValueError(f"{where} column {caption_columns[0]!r} holds no captions")
            else:
                captions = [column[row] for column in columns if column[row] is not None]
                if not captions:
                    raise ValueError(f"{where} has no caption in columns {', '.join(caption_columns)}")
            index = builder.image((file, row), name, data)
            for k, caption in enumerate(captions):
                builder.caption(index, _text(caption, f"{where} caption {k}"))
    source = str(path) if len(files) == 1 else f"{path} ({len(files)} Parquet files)"
    return builder.build(source)


# --- a folder per class ---------------------------------------------------------------

CLASS_FOLDER_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


@READERS.register_module("class_folders")
def read_class_folders(
    path: PathLike, image_root: PathLike | None = None, split: str | None = None, caption: str = "{}"
) -> Annotations:
    """A scene-classification archive (AID, UCM, RESISC45): ``path/<class>/<image>``, one folder per class.

    Each image gets one caption, ``caption`` with its class name (underscores as spaces), so the archive
    also reads as a retrieval split; zero-shot classification takes the class from the folder
    (``zeroshot.labels="folder"``). ``image_root`` is not used: the images are where the folders are.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"class folder archive {root} does not exist or is not a folder")
    if caption.count("{}") != 1:
        raise ValueError(f"data.reader.caption {caption!r} must hold one '{{}}' for the class name")
    builder = _Builder(root)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in CLASS_FOLDER_SUFFIXES and p.is_file()):
            index = builder.image(file, f"{folder.name}/{file.name}")
            builder.caption(index, caption.format(folder.name.replace("_", " ")))
    if not builder.images:
        raise ValueError(
            f"class folder archive {root}: no images; expected {root}/<class>/<image> with suffixes "
            f"{', '.join(CLASS_FOLDER_SUFFIXES)}"
        )
    return builder.build(str(root))
