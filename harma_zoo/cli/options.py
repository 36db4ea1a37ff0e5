"""Arguments that several subcommands share, declared once; parsing them imports nothing heavy."""

from __future__ import annotations

import argparse
from typing import Any

REGISTRY_HELP = "registry folder (default: $HARMA_ZOO_REGISTRY, else the project's registry/)"


class KeyValues(argparse.Action):
    """mmengine's ``DictAction`` (``key=value`` pairs, values parsed as Python literals), imported only when
    such an option is given: importing mmengine takes longer than the whole of ``harma-zoo --help``. An item
    without ``=`` is argparse's usage error, not a traceback."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from mmengine.config import DictAction

        for item in values:
            key, equals, _ = item.partition("=")
            if not equals or not key:
                raise argparse.ArgumentError(self, f"{item!r} is not KEY=VALUE (e.g. schedule.epochs=3)")
        action = DictAction(self.option_strings, self.dest, nargs=self.nargs)
        action(parser, namespace, values, option_string)


def add_cfg_options(parser: argparse.ArgumentParser, help: str = "override recipe values: key.sub=value") -> None:
    parser.add_argument("--cfg-options", nargs="+", action=KeyValues, help=help)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backbone FAMILY[:VALUE]``, ``--backbone-cfg``, ``--method``, ``--method-cfg``."""
    parser.add_argument(
        "--backbone",
        default="open_clip:harma-tiny-vit",
        help="FAMILY[:VALUE], e.g. open_clip:ViT-B-32 or hf_clip:openai/clip-vit-base-patch32",
    )
    parser.add_argument("--backbone-cfg", nargs="+", action=KeyValues, help="extra backbone options key=value")
    parser.add_argument("--method", default="harma", help="registered method name")
    parser.add_argument(
        "--method-cfg", nargs="+", action=KeyValues, help="method options key=value, e.g. 'shared_towers=(image,text)'"
    )


def backbone_from_spec(spec: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """``FAMILY`` or ``FAMILY:VALUE`` (VALUE sets the family's main option) plus extra options, as a config."""
    from harma_zoo.registry import BACKBONES, get_class

    family, _, value = spec.partition(":")
    config: dict[str, Any] = {"type": family}
    if value:
        config[get_class(BACKBONES, family).main_option] = value
    config.update(options or {})
    return config
