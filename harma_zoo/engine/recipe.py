"""Reading a recipe: its config file, command-line overrides, and the data splits it names.

Trust: a ``.py`` recipe is Python and runs as code when it is read (only recipes the user names
are read). A ``.yml``/``.yaml`` recipe is data: it is read with PyYAML's safe loader.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from mmengine.config import Config
from mmengine.dist import barrier, is_main_process
from mmengine.fileio import register_handler
from mmengine.fileio.handlers import YamlHandler
from mmengine.logging import MMLogger
from mmengine.runner import set_random_seed

from harma_zoo.data.annotations import Annotations
from harma_zoo.data.images import DEFAULT_MAX_IMAGE_PIXELS, check_images
from harma_zoo.data.readers import read_annotations, reader_spec
from harma_zoo.data.synthetic import write_synthetic_dataset
from harma_zoo.engine.console import quiet_console
from harma_zoo.engine.recipe_schema import MMENGINE_KEYS, PRIVATE_PREFIX, validate_recipe
from harma_zoo.model import RetrievalModel, build_model
from harma_zoo.plaindata import as_json_data
from harma_zoo.plugins import PluginError
from harma_zoo.resources import checkout_root

RECIPE_SUFFIXES = (".py", ".yml", ".yaml", ".json")


@register_handler(["yaml", "yml"])
class SafeYamlHandler(YamlHandler):
    """mmengine reads YAML with PyYAML's full loader, which builds Python objects (``!!python/object/apply``
    runs code); YAML recipes, and the ``_base_`` files they name, are data, so they get the safe loader."""

    def load_from_fileobj(self, file: Any, **kwargs: Any) -> Any:
        kwargs["Loader"] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(file, **kwargs)


def read_config(path: Path) -> Config:
    """The config file at ``path`` as mmengine composes it; whatever goes wrong names the file."""
    if path.suffix not in RECIPE_SUFFIXES:
        raise ValueError(f"recipe {path}: a recipe file ends in {', '.join(RECIPE_SUFFIXES)}; got {path.name!r}")
    try:
        return Config.fromfile(str(path))  # imports the recipe's custom_imports (mmengine does)
    except ImportError as error:
        raise PluginError(f"recipe {path}: {_import_failure(error)}") from error
    except SyntaxError as error:
        raise ValueError(f"recipe {path}: syntax error at line {error.lineno}: {error.msg}") from error
    except RecursionError:
        raise ValueError(f"recipe {path}: its _base_ files include each other without end") from None
    except yaml.YAMLError as error:
        raise ValueError(f"recipe {path}: not a safe YAML recipe ({' '.join(str(error).split())})") from error
    except Exception as error:  # running a Python recipe can raise anything; say which recipe did
        raise ValueError(f"recipe {path} cannot be read: {type(error).__name__}: {error}") from error


logger = logging.getLogger(__name__)


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The recipe at ``path`` with ``key.sub=value`` overrides merged in, checked against the recipe schema.

    A recipe's ``custom_imports = dict(imports=[...], allow_failed_imports=False)`` (its own or a
    ``_base_``'s) are imported here, so the plug-ins it names are registered before anything is built.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    quiet_console(MMLogger.get_current_instance())  # mmengine logs each environment variable a recipe reads
    cfg = read_config(path)
    private = sorted(key for key in overrides or {} if key.startswith(PRIVATE_PREFIX) and key not in MMENGINE_KEYS)
    if private:
        raise ValueError(
            f"recipe {path}: --cfg-options {private[0]}: names starting with '_' are a recipe file's own helper "
            "variables, which harma-zoo does not read"
        )
    if overrides:
        try:
            cfg.merge_from_dict(overrides)
        except (KeyError, TypeError, ValueError) as error:  # e.g. a value where the recipe holds a section
            raise ValueError(f"recipe {path}: cannot apply --cfg-options {overrides}: {error}") from None
    cfg.setdefault("loss", {"type": "harma"})
    cfg.setdefault("name", path.stem)
    validate_recipe(cfg, str(path))
    return cfg


def _import_failure(error: ImportError) -> str:
    """The first line of mmengine's message and the import's own error (mmengine's goes on with sys.path)."""
    inner = error.__cause__ or error
    cause = inner.__cause__ or inner.__context__
    first = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return f"{first} ({type(cause).__name__}: {cause})" if cause is not None else first


def dataset_name(data: dict[str, Any]) -> str:
    """A recipe's dataset, by name: ``synthetic`` for the built-in one, else the data root's folder name."""
    if data.get("synthetic"):
        return "synthetic"
    return Path(str(data.get("root", ""))).name or "unknown"


def build_recipe_model(cfg: Config) -> RetrievalModel:
    """The recipe's model, built right after seeding with the recipe's seed.

    Random initialisations (tiny backbones, adapters) are then the same in training
    and in every later evaluation, so the backbone fingerprint in a checkpoint matches.
    ``model.checkpoint_blocks=True`` recomputes the backbone's blocks in the backward pass
    (``DualEncoder.checkpoint_blocks``): less memory, the same gradients.
    """
    # Frozen random or small weights produce subnormal floats that slow CPU math ~20x; every run and
    # evaluation builds its model here, so this is where they are flushed, before any compute starts.
    torch.set_flush_denormal(True)
    set_random_seed(cfg.schedule.seed)
    model = build_model(cfg.backbone, cfg.method, cfg.get("loss"))
    if (cfg.get("model") or {}).get("checkpoint_blocks"):  # keys checked with the recipe (recipe_schema)
        model.backbone.checkpoint_blocks()
    return model


DATA_VARIABLE = "HARMA_ZOO_DATA"  # where the recipes look for the shared datasets (default ../shared/data)


def data_root(cfg: Config) -> Path:
    """``data.root``. A relative one is taken from the current directory when it is there, else, in a
    checkout, from the project root: the recipes' default ``../shared/data`` is the data beside the
    project, wherever the command runs. A root found in neither place is an error that says how to set it.
    """
    root = Path(cfg.data.root)
    if root.is_absolute() or root.is_dir():
        candidate = root
    else:
        checkout = checkout_root()
        candidate = checkout / root if checkout is not None else root
    if not candidate.is_dir():
        looked = str(root) if candidate == root else f"{root} (from {Path.cwd()} and from {candidate.parent})"
        raise FileNotFoundError(
            f"recipe {cfg.name}: its data folder {looked} does not exist; set {DATA_VARIABLE} to the folder "
            f"that holds the datasets (e.g. rsicd/), or pass --cfg-options data.root=PATH"
        )
    return candidate


def split_paths(cfg: Config, split: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of a split, relative paths taken from ``data_root``."""
    data = cfg.data
    if not data.get(split):
        raise KeyError(f"recipe {cfg.name} defines no {split!r} split (data.{split})")
    root = data_root(cfg)
    return root / data[split], root / data.get("image_root", "")


def _first_images(annotations: Annotations, limit: int) -> Annotations:
    """The first ``limit`` images of a split and their captions (``data.limit``, checked by the recipe schema)."""
    return annotations.subset(range(min(limit, annotations.num_images)))


def load_split(cfg: Config, split: str) -> Annotations:
    """Read and check one split; unreadable images are skipped and counted if the recipe allows.

    A recipe whose ``data.synthetic`` holds generator options draws the built-in
    synthetic dataset into ``data.root`` first (nothing is redrawn when it is there).
    ``data.limit=N`` keeps the first N images (after ``data.<split>_classes``) and their captions.
    """
    if cfg.data.get("synthetic"):
        if is_main_process():  # one process draws, the others wait for the finished files
            write_synthetic_dataset(cfg.data.root, **cfg.data.synthetic)
        barrier()
    annotation_file, image_root = split_paths(cfg, split)
    layout, options = reader_spec(cfg.data.reader)
    annotations = read_annotations(
        layout, annotation_file, image_root=image_root, split=cfg.data.get(f"{split}_split"), **options
    )
    if cfg.data.get(f"{split}_classes"):
        annotations = annotations.of_classes(cfg.data[f"{split}_classes"])
    if cfg.data.get("limit") is not None:
        annotations = _first_images(annotations, cfg.data.limit)
    try:
        annotations, skipped = check_images(
            annotations,
            skip_unreadable=cfg.data.get("skip_unreadable", False),
            root=None if cfg.data.get("images_outside_root", False) else image_root,
            max_pixels=cfg.data.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
        )
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}; the images are looked for under {image_root} (data.root, from {DATA_VARIABLE}): "
            "set it to the folder that holds the datasets if that is not where they are"
        ) from None
    if skipped:
        logger.warning(
            "%s: skipped %d unreadable image(s), e.g. %s", annotation_file, len(skipped), ", ".join(skipped[:3])
        )
    return annotations


def save_info(cfg: Config, train: Annotations, val: Annotations) -> dict[str, Any]:
    """What an adapter checkpoint records about the run that made it.

    The dataset's ``name`` is recorded so that ``publish`` reads it as data and never needs the recipe;
    the reader as its layout name (what checkpoints always recorded), its options apart when it has any.
    """
    layout, reader_options = reader_spec(cfg.data.reader)
    return {
        "backbone": cfg.backbone.to_dict(),
        "method": cfg.method.to_dict(),
        "loss": dict(cfg.loss),
        "recipe": cfg.name,
        "seed": cfg.schedule.seed,
        "dataset": {
            "name": dataset_name(cfg.data),
            "reader": layout,
            **({"reader_options": as_json_data(reader_options)} if reader_options else {}),
            "train": str(cfg.data.train),
            "val": str(cfg.data.val),
            "train_images": len(train.images),
            "train_captions": len(train.captions),
            "val_images": len(val.images),
            "selected_on": "val",
        },
    }
