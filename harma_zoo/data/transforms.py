"""Image transforms of the reference protocol (docs/recipes.md, "Preprocessing").

Each backbone family supplies its input size and normalisation; the policy is the
same for all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.data.auto_augment import AugmentOp, RandAugment
from torchvision import transforms as T

RAND_AUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
    "Rotate",
)


def rand_augment(num_ops: int = 2, magnitude: int = 7, prob: float = 0.5) -> RandAugment:
    """RandAugment over the reference protocol's ten ops, each applied with probability ``prob``.

    timm has no identity op; an op whose probability is zero is one, and keeps the
    identity as one of the ten equally likely choices, as in the reference policy.
    """
    ops = [AugmentOp(name, prob=prob, magnitude=magnitude) for name in RAND_AUGMENT_OPS]
    ops.append(AugmentOp("Rotate", prob=0.0, magnitude=magnitude))
    return RandAugment(ops, num_layers=num_ops)


def train_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Random resized crop (scale 0.5-1, bicubic), flip, RandAugment, normalise."""
    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            rand_augment(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Resize straight to the square input size (no centre crop), bicubic, normalise."""
    return T.Compose(
        [
            T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
