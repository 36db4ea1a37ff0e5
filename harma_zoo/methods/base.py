"""What every method shares: options as a dataclass, attach/detach, parameter groups."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn

from harma_zoo.backbones.base import DualEncoder
from harma_zoo.insertion import Attachment


def _one_as_many(field: dataclasses.Field, value: Any) -> Any:
    """A lone name or index given to a tuple option is a 1-tuple: ``--method-cfg shared_towers=text`` means
    ``("text",)``, where ``tuple("text")`` would split it into letters."""
    if "tuple" in str(field.type) and isinstance(value, (str, int)) and not isinstance(value, bool):
        return (value,)
    return value


class Method(nn.Module):
    """A way of adapting a frozen (or not) backbone, attached through the hook API.

    A subclass declares its options in ``Options`` (a dataclass), builds its modules
    in ``__init__`` from the backbone's insertion points, and places them in
    ``_attach``. ``attach`` first freezes the whole backbone; ``detach`` removes the
    hooks and restores every ``requires_grad`` flag, so the backbone is as it was.
    """

    @dataclasses.dataclass
    class Options:
        pass

    trains_temperature: ClassVar[bool] = True

    def __init__(self, backbone: DualEncoder, **options: Any) -> None:
        super().__init__()
        self.options = self.make_options(**options)
        self._attachment: Attachment | None = None
        self._saved_flags: dict[str, bool] | None = None
        self._backbone: list[DualEncoder] = []  # a list keeps it out of this module's children

    @classmethod
    def make_options(cls, **options: Any) -> Any:
        """``Options`` from config values; an unknown name is refused with the known ones."""
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise TypeError(
                f"{cls.__name__}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields)) or 'none'}"
            )
        return cls.Options(**{key: _one_as_many(fields[key], value) for key, value in options.items()})

    @property
    def attached(self) -> bool:
        return bool(self._backbone)

    def attach(self, backbone: DualEncoder) -> None:
        if self.attached:
            raise RuntimeError(f"{type(self).__name__} is already attached to a backbone")
        self._saved_flags = {name: p.requires_grad for name, p in backbone.named_parameters()}
        backbone.requires_grad_(False)
        self._backbone = [backbone]
        try:
            self._attachment = self._attach(backbone)
        except BaseException:
            self._restore_flags(backbone)
            raise

    def detach(self) -> None:
        if not self.attached:
            return
        backbone = self._backbone[0]
        if self._attachment is not None:
            self._attachment.detach()
        self._detach(backbone)
        self._restore_flags(backbone)

    def _restore_flags(self, backbone: DualEncoder) -> None:
        for name, parameter in backbone.named_parameters():
            parameter.requires_grad_(self._saved_flags[name])
        self._backbone, self._attachment, self._saved_flags = [], None, None

    def _attach(self, backbone: DualEncoder) -> Attachment | None:
        """Place this method's modules; return the hook handles (or None)."""
        return None

    def _detach(self, backbone: DualEncoder) -> None:
        """Undo what ``_attach`` did beyond hooks (for methods that replace modules)."""

    def parameter_group(self, name: str) -> tuple[str, str]:
        """(tower, kind) of one of this method's own parameters, for the parameter report.

        Methods whose modules belong to a tower override this; by default they are reported apart.
        """
        return "other", type(self).__name__.lower()

    def backbone_parameter_kind(self, name: str) -> str:
        """Kind of a backbone parameter in the report; methods that inject into the backbone override it."""
        return "backbone"

    def options_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options)
