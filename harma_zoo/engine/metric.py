"""Recall@K for image-text retrieval, the reference evaluation protocol (docs/recipes.md, "Evaluation").

Every evaluation image and every caption is embedded (several captions per image, kept
as separate rows, duplicates included); the score of a pair is the dot product of the
two embeddings, which the caller has L2-normalised, so it is their cosine similarity.

- image -> text: the rank of an image is the rank of its *best* own caption among all
  captions; R@K is the share of images whose rank is below K.
- text -> image: the rank of a caption is the rank of its one image among all images;
  R@K is the share of captions whose rank is below K.
- mR is the mean of the six figures R@1, R@5, R@10 in both directions.

Ranks are 0-based and ties are broken *pessimistically*: the rank of a right answer is
the number of candidates with a strictly higher score plus the number of *wrong*
candidates with an equal score. A wrong candidate that ties with the right one is
ranked ahead of it. Under optimistic ties (a right answer ahead of every wrong one
with its score), a collapsed model that maps every input to one embedding would tie
everything with everything and score 100% R@1; pessimistic ties give it (nearly)
zero, as it deserves. For image -> text, an image's own captions that tie with each
other do not count against it (they are all right answers): its rank is the rank of
its best own caption, i.e. the number of wrong captions scoring at least as high.
Ties are no corner case: RSICD repeats caption texts across images (and within one
image), and identical texts have identical embeddings, hence exactly equal scores.

How ties stay exact: identical embeddings must score exactly alike, whatever the
matrix-multiply kernel does at different positions of a block, so caption rows are
deduplicated first (``torch.unique``); every distinct caption is scored once per image
and counted with its multiplicity, and the copies of an image are counted as tied with it
without comparing scores. Each image's block row of scores holds its own captions, so
its rank compares values of one matrix multiply. A caption's rank compares the scores of
other images against its own score computed once in float64 (products of float32 or half
values are exact there), rounded up to the compute dtype so that ``>=`` is decided as
against the exact value; scores that are exact in floating point (quantised
embeddings) thus tie exactly in both directions. On CUDA the block products run with
TF32 switched off.

Memory: the full image x caption matrix is never built (31,500 x 157,500 float32 is
19.8 GB for NWPU-Captions). One pass scores blocks of images against all distinct
captions and reads both directions off each block. By default a block and its mask
together hold at most ``DEFAULT_BLOCK_BYTES`` (256 MiB): 213 images per block at
NWPU-Captions size, all 1,966 images at once at RSICD val size. On top of that come a
copy of the distinct captions in the compute dtype, ``torch.unique``'s working memory and
a few vectors, all linear in the number of rows. Half-precision inputs (float16,
bfloat16) are scored in float32 block by block; float64 stays float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "METRIC_KEYS",
    "RECALL_KEYS",
    "metric_label",
    "metric_name",
    "recalls_from_ranks",
    "retrieval_metrics",
    "retrieval_ranks",
]

# Byte budget of one block of scores plus its mask when ``chunk_size`` is None.
DEFAULT_BLOCK_BYTES = 256 * 2**20

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# The metric keys, their order and their display names: defined here once, used by every table,
# leaderboard, registry entry and model card.
DIRECTIONS = {"i2t": "image-to-text", "t2i": "text-to-image"}
DEFAULT_KS = (1, 5, 10)
MEAN_RECALL = "mR"


def recall_key(direction: str, k: int) -> str:
    """``i2t_R@1``: the key of R@K in one direction."""
    return f"{direction}_R@{k}"


RECALL_KEYS = tuple(recall_key(direction, k) for direction in DIRECTIONS for k in DEFAULT_KS)
METRIC_KEYS = (*RECALL_KEYS, MEAN_RECALL)  # what retrieval_metrics returns with the default ks, in reading order


def metric_label(key: str) -> str:
    """The short column header of a metric: ``i2t R@1``, ``mR``; any other key as it is."""
    return key.replace("_R@", " R@")


def metric_name(key: str) -> str:
    """The full name of a metric: ``image-to-text R@1``, ``mean recall (mR)``; any other key as it is."""
    if key == MEAN_RECALL:
        return "mean recall (mR)"
    direction, found, k = key.partition("_R@")
    return f"{DIRECTIONS[direction]} R@{k}" if found and direction in DIRECTIONS else key


def _validate(image_emb: Tensor, text_emb: Tensor, caption_image: Tensor, chunk_size: int | None) -> None:
    for name, emb in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(emb, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(emb).__name__}")
        if emb.dim() != 2:
            raise ValueError(f"{name} must be 2-D (rows x embedding dim), got shape {tuple(emb.shape)}")
        if not emb.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {emb.dtype}")
        if emb.shape[0] == 0:
            raise ValueError(f"{name} has no rows")
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"embedding dims differ: image_emb is {tuple(image_emb.shape)}, text_emb is {tuple(text_emb.shape)}"
        )
    if image_emb.device != text_emb.device:
        raise ValueError(f"image_emb is on {image_emb.device} but text_emb is on {text_emb.device}")
    if not isinstance(caption_image, Tensor):
        raise TypeError(f"caption_image must be a torch.Tensor of image indices, got {type(caption_image).__name__}")
    if caption_image.dtype not in _INT_DTYPES:
        raise TypeError(f"caption_image must hold integer image indices, got {caption_image.dtype}")
    if caption_image.dim() != 1:
        raise ValueError(
            f"caption_image must be 1-D (one image index per caption), got shape {tuple(caption_image.shape)}"
        )
    n_img, n_cap = image_emb.shape[0], text_emb.shape[0]
    if caption_image.shape[0] != n_cap:
        raise ValueError(f"caption_image has {caption_image.shape[0]} entries but text_emb has {n_cap} captions")
    ci = caption_image.to(torch.int64)
    bad = ((ci < 0) | (ci >= n_img)).nonzero()
    if bad.numel():
        j = int(bad[0, 0])
        raise ValueError(
            f"caption_image[{j}] = {int(ci[j])} is out of range for {n_img} images "
            f"({bad.shape[0]} caption(s) out of range)"
        )
    missing = (torch.bincount(ci, minlength=n_img) == 0).nonzero().flatten()
    if missing.numel():
        shown = ", ".join(str(int(i)) for i in missing[:10])
        more = f" and {missing.numel() - 10} more" if missing.numel() > 10 else ""
        raise ValueError(
            f"image {int(missing[0])} has no caption: every image needs at least one "
            f"(images without a caption: {shown}{more})"
        )
    for name, emb in (("image_emb", image_emb), ("text_emb", text_emb)):
        finite = torch.isfinite(emb).all(dim=1)
        if not bool(finite.all()):
            row = int((~finite).nonzero()[0, 0])
            raise ValueError(f"{name} holds NaN or infinite values (first in row {row})")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _compute_dtype(image_emb: Tensor, text_emb: Tensor) -> torch.dtype:
    dtype = torch.promote_types(image_emb.dtype, text_emb.dtype)
    if dtype == torch.float64 or max(image_emb.shape[0], text_emb.shape[0]) >= 2**24:
        return torch.float64  # float32 counts are exact only below 2**24
    return torch.float32


def _groups(keys: Tensor, n_groups: int) -> tuple[Tensor, Tensor]:
    """Indices grouped by key: ``order[starts[g]:starts[g + 1]]`` are the indices whose key is g."""
    order = torch.argsort(keys, stable=True)
    starts = torch.zeros(n_groups + 1, dtype=torch.int64, device=keys.device)
    starts[1:] = torch.bincount(keys, minlength=n_groups).cumsum(0)
    return order, starts


def _members(order: Tensor, starts: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
    """Every (position p, member m) with m in group ``groups[p]``: two aligned 1-D tensors."""
    sizes = starts[groups + 1] - starts[groups]
    positions = torch.arange(groups.numel(), device=groups.device)
    pos = torch.repeat_interleave(positions, sizes)
    offset = torch.arange(pos.numel(), device=groups.device) - torch.repeat_interleave(sizes.cumsum(0) - sizes, sizes)
    return pos, order[torch.repeat_interleave(starts[groups], sizes) + offset]


def _own_scores(image_emb: Tensor, text_emb: Tensor, caption_image: Tensor) -> Tensor:
    """Score of every caption with its own image, in float64 (products of float32 or half values are exact)."""
    out = torch.empty(text_emb.shape[0], dtype=torch.float64, device=text_emb.device)
    step = max(1, 2**20 // text_emb.shape[1])
    for a in range(0, text_emb.shape[0], step):
        b = min(a + step, text_emb.shape[0])
        img = image_emb[caption_image[a:b]].to(torch.float64)
        out[a:b] = torch.linalg.vecdot(img, text_emb[a:b].to(torch.float64))
    return out


def _threshold(values: Tensor, dtype: torch.dtype) -> Tensor:
    """The least ``dtype`` number >= each float64 value: for x of that dtype, x >= it iff x >= the value."""
    if dtype == torch.float64:
        return values
    rounded = values.to(dtype)
    up = torch.nextafter(rounded, rounded.new_tensor(torch.inf))
    return torch.where(rounded.to(torch.float64) < values, up, rounded)


def _counts(mask: Tensor, weights: Tensor, dim: int) -> Tensor:
    """Weighted count of a 0/1 float matrix along ``dim``, as a matrix-vector product (exact: integer sums < 2**24)."""
    total = weights @ mask if dim == 0 else mask @ weights
    return total.round().to(torch.int64)


@contextlib.contextmanager
def _full_precision_matmul(device: torch.device) -> Iterator[None]:
    """Float32 matrix products in IEEE precision on CUDA (TF32 would move scores by ~1e-3)."""
    matmul = getattr(torch.backends.cuda, "matmul", None)
    if device.type != "cuda" or not hasattr(matmul, "fp32_precision"):
        yield
        return
    saved = matmul.fp32_precision
    matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision = saved


@torch.no_grad()
def _ranks(image_emb: Tensor, text_emb: Tensor, caption_image: Tensor, dtype: torch.dtype, chunk_size: int | None):
    n_img, n_cap = image_emb.shape[0], text_emb.shape[0]
    device = image_emb.device

    # Distinct caption embeddings are the columns of every block of scores; a column seen
    # c times stands for c captions.
    texts, text_col, text_count = torch.unique(text_emb.to(dtype), dim=0, return_inverse=True, return_counts=True)
    texts_t = texts.T
    n_col = texts.shape[0]
    text_weight = text_count.to(dtype)
    # Distinct images: the copies of a caption's own image tie with it exactly and are
    # counted as wrong images ahead of it, without comparing scores.
    _, image_id, image_count = torch.unique(image_emb.to(dtype), dim=0, return_inverse=True, return_counts=True)

    # image -> text: the captions of each image.
    cap_order, cap_starts = _groups(caption_image, n_img)
    cap_starts = cap_starts.tolist()

    # text -> image: a caption's score with its own image, computed once in float64, is its
    # threshold; every image of another distinct embedding scoring >= it is ahead of it.
    own_id = image_id[caption_image]
    has_copies = image_count.numel() < n_img
    if has_copies:
        own_order, own_starts = _groups(own_id, image_count.numel())
    threshold = _threshold(_own_scores(image_emb, text_emb, caption_image), dtype)
    col_order, col_starts = _groups(text_col, n_col)
    first = col_order[col_starts[:-1]]  # one caption per column: thresholds aligned to the columns
    is_first = torch.zeros(n_cap, dtype=torch.bool, device=device)
    is_first[first] = True
    extra = (~is_first).nonzero().flatten()  # the other captions of repeated embeddings
    extra_col = text_col[extra]
    first_threshold, extra_threshold = threshold[first], threshold[extra]
    first_ahead = torch.zeros(n_col, dtype=torch.int64, device=device)
    extra_ahead = torch.zeros(extra.numel(), dtype=torch.int64, device=device)
    own_ahead = torch.zeros(n_cap, dtype=torch.int64, device=device)  # own image and its copies, taken back

    size = torch.empty((), dtype=dtype).element_size()
    if chunk_size is None:  # the block of scores, its mask, and the gathered columns of repeated captions
        chunk_size = max(1, DEFAULT_BLOCK_BYTES // ((2 * n_col + extra.numel()) * size))
    rows = min(chunk_size, n_img)
    score_buf = torch.empty(rows, n_col, dtype=dtype, device=device)  # reused: no page faults per block
    mask_buf = torch.empty(rows, n_col, dtype=dtype, device=device)
    ones = torch.ones(rows, dtype=dtype, device=device)
    i2t = torch.empty(n_img, dtype=torch.int64, device=device)
    for a in range(0, n_img, rows):
        b = min(a + rows, n_img)
        scores = torch.mm(image_emb[a:b].to(dtype), texts_t, out=score_buf[: b - a])

        # Everything read from the scores is gathered before they are overwritten by masks.
        caps = cap_order[cap_starts[a] : cap_starts[b]]  # the captions of images a..b-1
        local = caption_image[caps] - a
        own = scores[local, text_col[caps]]
        best = torch.full((b - a,), -torch.inf, dtype=dtype, device=device)
        best.scatter_reduce_(0, local, own, reduce="amax")
        own_at_best = torch.bincount(local[own == best[local]], minlength=b - a)
        if has_copies:  # every (image, caption of an identical image)
            pair_img, pair_cap = _members(own_order, own_starts, image_id[a:b])
        else:
            pair_img, pair_cap = local, caps
        own_ahead.index_add_(0, pair_cap, (scores[pair_img, text_col[pair_cap]] >= threshold[pair_cap]).long())
        extra_scores = scores[:, extra_col] if extra.numel() else None

        # text -> image: this block's images scoring >= each caption's threshold.
        mask = torch.ge(scores, first_threshold, out=mask_buf[: b - a])
        first_ahead += _counts(mask, ones[: b - a], dim=0)
        if extra_scores is not None:
            extra_ahead += _counts(extra_scores.ge_(extra_threshold), ones[: b - a], dim=0)

        # image -> text: wrong captions scoring >= the image's best own caption, i.e. all
        # captions scoring >= it (with multiplicity) minus the own ones at exactly that
        # score (no own caption scores above it).
        i2t[a:b] = _counts(scores.ge_(best.unsqueeze(1)), text_weight, dim=1) - own_at_best

    ahead = torch.empty(n_cap, dtype=torch.int64, device=device)
    ahead[first] = first_ahead
    ahead[extra] = extra_ahead
    t2i = ahead - own_ahead + image_count[own_id] - 1
    return i2t, t2i


def retrieval_ranks(
    image_emb: Tensor, text_emb: Tensor, caption_image: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """0-based retrieval ranks of every image and every caption, with pessimistic ties.

    Args:
        image_emb: ``Ni x D`` image embeddings, L2-normalised by the caller (any float dtype;
            float16/bfloat16 are computed in float32 block by block).
        text_emb: ``Nc x D`` caption embeddings, likewise.
        caption_image: ``Nc`` integer tensor, the index (into ``image_emb``) of each
            caption's image. Every image must have at least one caption.
        chunk_size: images scored per block (a block is ``chunk_size x`` the number of
            distinct captions, plus a mask of the same size). None picks the most images
            whose block and mask fit ``DEFAULT_BLOCK_BYTES`` (256 MiB): 213 images per
            block at NWPU-Captions size (157,500 captions), all 1,966 at RSICD val size.

    Returns:
        ``(i2t, t2i)``: int64 tensors on the embeddings' device. ``i2t[i]`` is the number of
        wrong captions scoring at least as high as image ``i``'s best own caption (so the
        rank of that caption: strictly higher ones plus wrong ones that tie; own captions
        never count). ``t2i[j]`` is the number of images other than caption ``j``'s own
        that score at least as high as it. A wrong candidate that ties with the right one
        is ranked ahead of it: under optimistic ties a collapsed model (one embedding for
        everything) would score 100% R@1, under these it scores ~0. Duplicate captions
        (identical texts, hence identical embeddings, in several images) are the usual
        source of such ties in RSICD.

    Raises:
        TypeError: a non-tensor argument, non-float embeddings or non-integer indices.
        ValueError: wrong shapes, embedding dims that differ, a length mismatch, an index
            out of range, an image without a caption (its index is named), non-finite values.
    """
    _validate(image_emb, text_emb, caption_image, chunk_size)
    dtype = _compute_dtype(image_emb, text_emb)
    image_emb, text_emb = image_emb.detach(), text_emb.detach()
    caption_image = caption_image.to(device=image_emb.device, dtype=torch.int64)
    with _full_precision_matmul(image_emb.device):
        return _ranks(image_emb, text_emb, caption_image, dtype, chunk_size)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks:
        raise ValueError("ks is empty: give at least one K for R@K")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"every K in ks must be a positive int, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"ks repeats a value: {ks}")
    return ks


def recalls_from_ranks(i2t: Tensor, t2i: Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """R@K in percent (0-100) for both directions and their mean ``mR``, from ``retrieval_ranks``."""
    ks = _check_ks(ks)
    out: dict[str, float] = {}
    for direction, ranks in zip(DIRECTIONS, (i2t, t2i), strict=True):
        if ranks.numel() == 0:
            raise ValueError(f"no {direction} ranks to average")
        for k in ks:
            out[recall_key(direction, k)] = 100.0 * int((ranks < k).sum()) / ranks.numel()
    out[MEAN_RECALL] = sum(out.values()) / len(out)
    return out


def retrieval_metrics(
    image_emb: Tensor,
    text_emb: Tensor,
    caption_image: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """R@K of both directions and ``mR``, as Python floats in percent (0-100).

    Keys, with the default ``ks``: ``i2t_R@1``, ``i2t_R@5``, ``i2t_R@10``, ``t2i_R@1``,
    ``t2i_R@5``, ``t2i_R@10`` and ``mR``, the mean of the six. R@K is the share of
    queries whose rank (see ``retrieval_ranks``: 0-based, pessimistic ties) is below K.
    """
    ks = _check_ks(ks)
    i2t, t2i = retrieval_ranks(image_emb, text_emb, caption_image, chunk_size=chunk_size)
    return recalls_from_ranks(i2t, t2i, ks)
