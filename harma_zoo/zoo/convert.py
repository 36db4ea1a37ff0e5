"""Convert checkpoints saved by the HarMA authors' code into harma-zoo adapter checkpoints.

A released HarMA checkpoint is ``torch.save({'model': state_dict, 'config': ...})`` of the
whole retrieval model: the frozen OpenCLIP ViT-B/32 backbone under ``model.`` plus the
trained gates, adapters, shared modules and the temperature ``temp`` (651 keys; the layout is
``reference_key_map`` below, and docs/zoo.md describes it). ``convert_original`` checks that
layout, renames the trained tensors to harma-zoo's HarMA modules (``shared_towers=("text",)``,
r=128, s=64, 8 heads, as the released code runs them), loads the checkpoint's own backbone
weights so the adapter checkpoint's backbone fingerprint is the one of the weights it was
trained on, and writes an adapter checkpoint with ``save_adapter``. The backbone weights can be
written too, with the OpenCLIP family's ``save_weights`` (``pretrained=path`` loads them back).

Safe loading. The checkpoint is first read with ``torch.load(weights_only=True)``. Its
``config`` entry may hold objects of classes that the weights-only unpickler refuses (a YAML
mapping object, say). Allow-listing those classes with ``torch.serialization.safe_globals``
would construct them, and torch's weights-only unpickler cannot stand a placeholder in for
every kind of object (it only applies dict items to exact ``dict``/``OrderedDict`` objects and
list items to lists), so in that case the file is read again through ``torch.load`` with
``RestrictedUnpickler`` as the pickle module: torch still rebuilds every tensor from the
archive itself, while the unpickler resolves a global only from the very allow-list torch's
``weights_only`` mode uses, turns every other class or function into an inert
``UnpickledObject`` that records the pickled data and runs none of its code, and, like torch's
weights-only unpickler, calls, builds and fills only allow-listed objects and placeholders.
"""

from __future__ import annotations

import _compat_pickle
import logging
import pickle
import sys
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import open_clip
import torch
from torch import _weights_only_unpickler

from harma_zoo.engine.checkpoint import save_adapter
from harma_zoo.model import RetrievalModel, build_backbone, build_loss, build_method

logger = logging.getLogger(__name__)

ARCHITECTURES = {False: "ViT-B-32", True: "ViT-B-32-quickgelu"}  # keyed by quick_gelu
METHOD = {"type": "harma", "bottleneck": 128, "shared_width": 64, "heads": 8, "shared_towers": ["text"]}
LOSS = {"type": "harma"}
RECIPE = "convert-original"

TOWER_PREFIXES = {"image": "model.visual.transformer.resblocks.", "text": "model.transformer.resblocks."}
_ATTENTION = ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")
# reference name inside block N of a tower -> name inside harma-zoo's GatedAdapter of that block
ADAPTER_NAMES = {
    "gate1": "block_gate",
    "mmadapter.gate1": "gate",
    "mmadapter.img_proj_down.weight": "down.weight",
    "mmadapter.img_proj_down.bias": "down.bias",
    **{f"mmadapter.multihead_attention.{name}": f"attn.attn.{name}" for name in _ATTENTION},
    "mmadapter.img_proj_up.weight": "up.weight",
    "mmadapter.img_proj_up.bias": "up.bias",
}
# reference name inside text block N -> name inside harma-zoo's SharedModule of block N
SHARED_NAMES = {
    "mmadapter.BiShareAdapterxx.gate1": "gate",
    "mmadapter.BiShareAdapterxx.l1.weight": "l1.weight",
    "mmadapter.BiShareAdapterxx.l1.bias": "l1.bias",
    **{f"mmadapter.BiShareAdapterxx.multihead_attention1.{name}": f"attn.attn.{name}" for name in _ATTENTION},
    "mmadapter.BiShareAdapterxx.l2.weight": "l2.weight",
    "mmadapter.BiShareAdapterxx.l2.bias": "l2.bias",
}
TEMPERATURE = {"temp": "loss.contrastive.temperature"}


def reference_key_map(blocks: int = 12) -> dict[str, str]:
    """Reference name -> harma-zoo name (in ``RetrievalModel``) of every trained tensor."""
    names = dict(TEMPERATURE)
    for block in range(blocks):
        for tower, prefix in TOWER_PREFIXES.items():
            for original, ours in ADAPTER_NAMES.items():
                names[f"{prefix}{block}.{original}"] = f"method.adapters.{tower}.{block}.{ours}"
        for original, ours in SHARED_NAMES.items():
            names[f"{TOWER_PREFIXES['text']}{block}.{original}"] = f"method.shared.{block}.{ours}"
    return names


# --- safe loading -----------------------------------------------------------------------------
class UnpickledObject(dict):
    """Inert stand-in for an object of a class that the restricted unpickler does not construct.

    It keeps what the pickle said about the object as plain data: the class path
    (``pickled_class``), the constructor arguments, the state and any list items; mapping
    items land in the object itself. No code of the pickled class runs. Hashed and compared
    by identity, so it can also stand in for a dictionary key (an enum member, say).
    """

    pickled_class: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> UnpickledObject:
        placeholder = super().__new__(cls)
        placeholder.pickled_args, placeholder.pickled_kwargs = args, kwargs
        placeholder.pickled_state, placeholder.pickled_items = None, []
        return placeholder

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Keep the arguments uninterpreted (``dict.__init__`` would read them as items)."""

    def __setstate__(self, state: Any) -> None:
        self.pickled_state = state

    def append(self, item: Any) -> None:
        self.pickled_items.append(item)

    def extend(self, items: Any) -> None:
        self.pickled_items.extend(items)

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"<unpickled {self.pickled_class}>"


class RestrictedUnpickler(pickle._Unpickler):
    """Python's unpickler restricted like ``torch.load(weights_only=True)``, with placeholders.

    Globals resolve only through torch's own weights-only allow-list (tensor rebuild
    functions, storages, dtypes, ``OrderedDict``...); any other global becomes a subclass of
    ``UnpickledObject`` named after it, and nothing is imported. Only those objects may be
    called (REDUCE, NEWOBJ, INST, OBJ); BUILD applies only to instances of allow-listed classes
    and placeholders; dict items go only into ``dict``/``OrderedDict``/``Counter`` objects and
    placeholders, list items only into lists and placeholders, set items only into sets.
    Use it as ``torch.load(..., weights_only=False, pickle_module=restricted_pickle_module())``
    so torch keeps reading the tensors from the archive.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    replaced: ClassVar[set[str] | None] = None  # collects replaced paths in restricted_pickle_module's subclasses

    def __init__(self, file, **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._allowed = _weights_only_unpickler._get_allowed_globals()
        self._allowed_ids = {id(value) for value in self._allowed.values()}
        self._allowed_types = tuple(value for value in self._allowed.values() if isinstance(value, type))
        self._placeholders: dict[str, type[UnpickledObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        sys.audit("pickle.find_class", module, name)
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as pickle's own find_class maps them
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        path = f"{module}.{name}"
        if path in self._allowed:
            return self._allowed[path]
        if path not in self._placeholders:
            self._placeholders[path] = type(f"Unpickled[{path}]", (UnpickledObject,), {"pickled_class": path})
            if self.replaced is not None:
                self.replaced.add(path)
        return self._placeholders[path]

    # --- what may be called, built and filled -------------------------------------------------
    def _callable(self, func: Any) -> Any:
        if id(func) in self._allowed_ids or (isinstance(func, type) and issubclass(func, UnpickledObject)):
            return func
        raise pickle.UnpicklingError(f"refusing to call {func!r}: not an allow-listed global")

    def _class(self, cls: Any) -> type:
        if not isinstance(cls, type):
            raise pickle.UnpicklingError(f"refusing to create an object of {cls!r}: not a class")
        return self._callable(cls)

    def _target(self, target: Any, kinds: tuple[type, ...], opcode: str) -> Any:
        if type(target) in kinds or isinstance(target, UnpickledObject):
            return target
        raise pickle.UnpicklingError(f"refusing {opcode} on an object of type {type(target).__name__}")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._callable(self.stack[-1])(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self._class(self.stack.pop())
        self.append(cls.__new__(cls, *args))

    def load_newobj_ex(self) -> None:
        kwargs, args = self.stack.pop(), self.stack.pop()
        cls = self._class(self.stack.pop())
        self.append(cls.__new__(cls, *args, **kwargs))

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ
        super()._instantiate(self._callable(klass), args)

    def load_build(self) -> None:
        inst = self.stack[-2]
        if type(inst) is torch.Tensor:  # legacy tensor state, handled as torch's weights-only unpickler does
            inst.set_(*self.stack.pop())
            return
        if not (type(inst) in self._allowed_types or isinstance(inst, UnpickledObject)):
            raise pickle.UnpicklingError(f"refusing to set the state of an object of type {type(inst).__name__}")
        super().load_build()

    def load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._target(self.stack[-1], (dict, OrderedDict, Counter), "SETITEM")[key] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target(self.stack[-1], (dict, OrderedDict, Counter), "SETITEMS")
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target(self.stack[-1], (list,), "APPEND").append(value)

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target(self.stack[-1], (list,), "APPENDS").extend(items)

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._target(self.stack[-1], (set,), "ADDITEMS").update(items)

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.ADDITEMS[0]] = load_additems


def restricted_pickle_module(replaced: set[str] | None = None) -> SimpleNamespace:
    """A ``pickle_module`` for ``torch.load`` whose unpickler is ``RestrictedUnpickler``.

    The paths of the globals it replaced by placeholders are added to ``replaced``.
    """
    collected = set() if replaced is None else replaced
    unpickler = type("RestrictedUnpickler", (RestrictedUnpickler,), {"replaced": collected})

    def load(file, **kwargs: Any) -> Any:
        return unpickler(file, **kwargs).load()

    return SimpleNamespace(__name__="harma_zoo.zoo.convert.restricted_pickle", Unpickler=unpickler, load=load)


def _refused_globals(path: Path) -> list[str]:
    """Globals in the archive's pickle that ``weights_only=True`` refuses, by torch's own static scan."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip archive, TorchScript, opcodes the scanner skips: let torch.load decide
        return []


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (``code/``, ``constants.pkl``) that only ``torch.jit.load`` runs."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def load_reference_checkpoint(path: str | Path) -> Any:
    """Read a ``torch.save``d checkpoint without unpickling anything but tensors and plain data.

    ``torch.load(weights_only=True)`` when it can read the file; when some global (a config
    object of an unknown class) stops it, the file is read with ``RestrictedUnpickler`` and such
    objects come back as inert ``UnpickledObject`` placeholders. TorchScript archives are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference checkpoint {path} does not exist")
    if _is_torchscript(path):
        raise ValueError(f"{path} is a TorchScript archive; expected a torch.save({{'model': ...}}) checkpoint")
    refused = _refused_globals(path)  # scanning first spares reading the tensors twice
    if not refused:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            refused = [str(error)]
    replaced: set[str] = set()
    try:
        loaded = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle_module(replaced)
        )
    except Exception as error:  # a malformed or hostile pickle fails in many ways; name the file
        raise ValueError(f"{path}: cannot be read safely ({error}); weights-only loading refused {refused}") from error
    logger.info("%s: read %s as inert placeholders (none of their code ran)", path, ", ".join(sorted(replaced)))
    return loaded


# --- conversion ----------------------------------------------------------------------------------
def _names(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def architecture_layout(arch: str) -> tuple[list[str], int]:
    """(state-dict names, number of blocks per tower) of an OpenCLIP ``arch``, without building its weights."""
    with torch.device("meta"):
        model = open_clip.create_model(arch, device="meta")
    return list(model.state_dict()), len(model.visual.transformer.resblocks)


def split_reference_state(
    state: Mapping[str, Any], *, arch: str, source: str | Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Check the reference key layout; return (backbone weights without ``model.``, trained tensors).

    Raises ``ValueError`` naming ``source`` and the missing / unexpected keys.
    """
    names, blocks = architecture_layout(arch)
    trained_keys = set(reference_key_map(blocks))
    backbone_keys = {f"model.{name}" for name in names}
    expected = backbone_keys | trained_keys
    # for ViT-B/32: 302 backbone names + 12 x (10 image + 10 text + 9 shared) + temp = 651 keys
    missing, unexpected = sorted(expected - set(state)), sorted(map(str, set(state) - expected))
    if missing or unexpected:
        hint = ""
        if trained_keys.isdisjoint(state):
            hint = " It holds none of the trained HarMA tensors: is it a plain backbone checkpoint?"
        raise ValueError(
            f"{source}: not a checkpoint of the HarMA reference code for {arch} "
            f"({len(expected)} keys expected, {len(state)} found): {len(missing)} missing "
            f"[{_names(missing)}], {len(unexpected)} unexpected [{_names(unexpected)}].{hint}"
        )
    not_tensors = sorted(key for key, value in state.items() if not isinstance(value, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{source}: entries that are not tensors: {_names(not_tensors)}")
    weights = {key.removeprefix("model."): state[key] for key in sorted(backbone_keys)}
    trained = {key: state[key] for key in sorted(trained_keys)}
    return weights, trained


def load_reference_tensors(model: RetrievalModel, trained: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Copy the reference trained tensors into ``model``: every trainable tensor filled exactly once.

    A scalar stored as shape [] or [1] fits either; any other shape must match exactly.
    """
    blocks = len(model.backbone.model.visual.transformer.resblocks)
    key_map = reference_key_map(blocks)
    targets = {ours: original for original, ours in key_map.items()}
    if len(targets) != len(key_map):
        raise AssertionError("two reference names map to the same harma-zoo tensor")
    expected = dict(model.trainable_parameters())
    problems = {
        "trainable tensors left unfilled": sorted(set(expected) - set(targets)),
        "targets this model lacks": sorted(set(targets) - set(expected)),
        "reference tensors missing": sorted(set(key_map) - set(trained)),
        "unknown reference tensors": sorted(set(trained) - set(key_map)),
    }
    if any(problems.values()):
        found = "; ".join(f"{what}: {_names(names)}" for what, names in problems.items() if names)
        raise ValueError(f"{source}: the reference tensors do not fill this model exactly ({found})")
    with torch.no_grad():
        for ours, original in targets.items():
            tensor, parameter = trained[original], expected[ours]
            if tensor.shape != parameter.shape:
                if tensor.numel() == parameter.numel() == 1:
                    tensor = tensor.reshape(parameter.shape)
                else:
                    raise ValueError(
                        f"{source}: {original} has shape {tuple(tensor.shape)}, but {ours} "
                        f"needs {tuple(parameter.shape)}"
                    )
            parameter.copy_(tensor)


def convert_original(
    checkpoint: str | Path,
    output: str | Path,
    *,
    quick_gelu: bool,
    backbone_output: str | Path | None = None,
    backbone_pretrained: str | None = None,
) -> Path:
    """Convert a checkpoint of the HarMA reference code into a harma-zoo adapter checkpoint.

    Args:
        checkpoint: the authors' ``torch.save({'model': ..., 'config': ...})`` file.
        output: the adapter checkpoint to write (safetensors).
        quick_gelu: True for checkpoints trained from GeoRSCLIP (OpenCLIP ``ViT-B-32-quickgelu``),
            False for those trained from LAION weights (``ViT-B-32``). The weights cannot tell.
        backbone_output: where to write the checkpoint's backbone weights (``.safetensors``).
        backbone_pretrained: what the adapter's metadata names as the backbone's ``pretrained``
            (an OpenCLIP tag or a file holding the same weights, GeoRSCLIP's ``.pt`` say);
            defaults to ``backbone_output``. One of the two is required. Loading the adapter
            checks the backbone's fingerprint, so weights that differ are refused then.

    Returns the path of the adapter checkpoint.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    if backbone_output is None and backbone_pretrained is None:
        raise ValueError(
            "give backbone_output (write the checkpoint's backbone weights there) or backbone_pretrained "
            "(where the same backbone weights already are) so the adapter names its backbone"
        )
    if backbone_output is not None and Path(backbone_output).suffix != ".safetensors":
        raise ValueError(f"{backbone_output}: the backbone file must end in .safetensors")
    loaded = load_reference_checkpoint(checkpoint)
    state = loaded.get("model") if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping):
        found = sorted(map(str, loaded)) if isinstance(loaded, Mapping) else type(loaded).__name__
        raise ValueError(f"{checkpoint}: expected a dict with a 'model' state dict, found {found}")

    arch = ARCHITECTURES[bool(quick_gelu)]
    weights, trained = split_reference_state(state, arch=arch, source=checkpoint)
    backbone = build_backbone({"type": "open_clip", "arch": arch})
    try:  # OpenCLIP's own CLIP key names, checked above: none of open_clip.load_checkpoint's conversions applies
        backbone.model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint}: its backbone weights do not fit {arch}: {error}") from error
    method = build_method(METHOD, backbone)
    model = RetrievalModel(backbone, method, build_loss(LOSS))  # fingerprints the loaded weights
    load_reference_tensors(model, trained, checkpoint)

    if backbone_output is not None:
        backbone.save_weights(backbone_output)
    pretrained = backbone_pretrained if backbone_pretrained is not None else str(backbone_output)
    return save_adapter(
        model,
        output,
        backbone={"type": "open_clip", "arch": arch, "pretrained": pretrained},
        method=METHOD,
        loss=LOSS,
        recipe=RECIPE,
        extra={"source": str(checkpoint), "converted_from": "HarMA reference code"},
    )
