"""harma-zoo: HarMA-style parameter-efficient transfer for any dual-encoder vision-language model.

The public API, imported on first use so that ``import harma_zoo`` (and ``harma-zoo --help``) stays
instant::

    import harma_zoo
    model, transform, tokenizer = harma_zoo.load_pretrained("harma_tiny-vit-rsicd-source_rsicd")
"""

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "CaptionTokenizer",
    "Pretrained",
    "__version__",
    "build_model",
    "list_backbones",
    "list_checkpoints",
    "list_recipes",
    "load_pretrained",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from harma_zoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'harma_zoo' has no attribute {name!r}")
