"""The losses against values worked out by hand, and against themselves across two processes.

Expected numbers are computed with plain ``math`` from the formulas of
docs/methods.md ("Losses"), never with the torch code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harma_zoo.losses import ContrastiveLoss, HarmaLoss, TripletLoss, gather_ids, gather_with_grad
from harma_zoo.registry import LOSSES, get_class, registered_names

R3 = math.sqrt(3) / 2  # cos 30° = sin 60°

# The shared batch: three rows, rows 0 and 1 are two captions of the same image.
#   images   I0 = I1 = (1, 0)   I2 = (0, 1)
#   captions T0 = (1, 0)   T1 = (cos 60°, sin 60°) = (1/2, √3/2)   T2 = (0, 1)
#   S = I Tᵀ = [[1, 1/2, 0],
#               [1, 1/2, 0],
#               [0, √3/2, 1]]
IMAGES = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
TEXTS = [[1.0, 0.0], [0.5, R3], [0.0, 1.0]]
S = [[1.0, 0.5, 0.0], [1.0, 0.5, 0.0], [0.0, R3, 1.0]]
SHARED_IDS = [0, 0, 1]


def batch(ids: list[int] = SHARED_IDS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.tensor(IMAGES), torch.tensor(TEXTS), torch.tensor(ids)


def lse(xs: list[float]) -> float:
    return math.log(sum(math.exp(x) for x in xs))


def softmax(xs: list[float]) -> list[float]:
    total = sum(math.exp(x) for x in xs)
    return [math.exp(x) / total for x in xs]


def focal(c: float) -> float:
    """One triplet entry, (1 - e^{-c})² c."""
    return (1 - math.exp(-c)) ** 2 * c


def focal_slope(c: float) -> float:
    """d/dc of (1 - e^{-c})² c = 2 (1 - e^{-c}) e^{-c} c + (1 - e^{-c})² (the weight is not detached)."""
    return 2 * (1 - math.exp(-c)) * math.exp(-c) * c + (1 - math.exp(-c)) ** 2


# ----------------------------------------------------------------------------- contrastive


def test_contrastive_one_caption_per_image():
    # τ = 1/2, so logits = 2S = [[2, 1, 0], [2, 1, 0], [0, √3, 2]]; targets = identity.
    # image -> text: row i costs lse(row i) - logit_ii
    i2t = ((lse([2, 1, 0]) - 2) + (lse([2, 1, 0]) - 1) + (lse([0, 2 * R3, 2]) - 2)) / 3
    # text -> image on the columns [2, 2, 0], [1, 1, √3], [0, 0, 2]
    t2i = ((lse([2, 2, 0]) - 2) + (lse([1, 1, 2 * R3]) - 1) + (lse([0, 0, 2]) - 2)) / 3
    loss = ContrastiveLoss(temperature=0.5)(*batch([0, 1, 2]))
    assert loss.item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_contrastive_two_captions_of_one_image_are_both_positives():
    # Rows 0 and 1 are two captions of image 0 with different image embeddings (two views):
    # with identical image rows the multi-positive loss equals the one-hot one, so this
    # batch is what tells them apart.
    #   images   I0 = (1, 0)   I1 = (0, 1)   I2 = (-1, 0)      ids [0, 0, 1]
    #   captions T0 = (1, 0)   T1 = (0, 1)   T2 = (1/2, √3/2)
    #   S = [[1, 0, 1/2], [0, 1, √3/2], [-1, 0, -1/2]];  τ = 1/2 so logits = 2S:
    #   [[2, 0, 1], [0, 2, √3], [-2, 0, -1]]
    # P = [[1, 1, 0], [1, 1, 0], [0, 0, 1]]: rows 0 and 1 target (1/2, 1/2, 0).
    # image -> text: row 0 lse(2, 0, 1) - (2 + 0)/2, row 1 lse(0, 2, √3) - (0 + 2)/2, row 2 lse(-2, 0, -1) + 1
    i2t = ((lse([2, 0, 1]) - 1) + (lse([0, 2, 2 * R3]) - 1) + (lse([-2, 0, -1]) + 1)) / 3
    # text -> image on the columns [2, 0, -2], [0, 2, 0], [1, √3, -1]:
    #   captions 0 and 1 target images 0, 1 by halves; caption 2 targets image 2 (logit -1)
    t2i = ((lse([2, 0, -2]) - 1) + (lse([0, 2, 0]) - 1) + (lse([1, 2 * R3, -1]) + 1)) / 3
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, R3]])
    loss = ContrastiveLoss(temperature=0.5)(images, texts, torch.tensor([0, 0, 1]))
    assert loss.item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)


def test_contrastive_temperature_gradient_by_hand():
    # With z = S/τ, dCE_row/dz_j = p_j - t_j and dz_j/dτ = -S_j/τ², so
    # dL/dτ = 1/2 · mean over rows of Σ_j (p_j - t_j)(-S_j/τ²), for both directions.
    tau = 0.5
    targets = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]  # symmetric, so it serves both directions

    def direction(scores: list[list[float]]) -> float:
        total = 0.0
        for row, target in zip(scores, targets, strict=True):
            probs = softmax([s / tau for s in row])
            total += sum((p - t) * (-s / tau**2) for p, t, s in zip(probs, target, row, strict=True))
        return total / len(scores)

    columns = [list(col) for col in zip(*S, strict=True)]
    expected = (direction(S) + direction(columns)) / 2
    loss_fn = ContrastiveLoss(temperature=tau)
    loss_fn(*batch()).backward()
    assert loss_fn.temperature.grad.item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_temperature_defaults_and_learnable_flag():
    learnable = ContrastiveLoss()
    assert isinstance(learnable.temperature, torch.nn.Parameter)
    assert learnable.temperature.item() == pytest.approx(0.07)
    assert learnable.temperature.requires_grad

    fixed = ContrastiveLoss(learnable=False)
    assert not fixed.temperature.requires_grad
    assert not any(p.requires_grad for p in fixed.parameters())
    image, text, ids = batch()
    image.requires_grad_(True)
    fixed(image, text, ids).backward()
    assert fixed.temperature.grad is None
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_contrastive_is_stable_at_a_tiny_temperature():
    # τ = 1e-4 puts logits near 1e4; a naive softmax overflows, log_softmax does not.
    loss = ContrastiveLoss(temperature=1e-4)(*batch([0, 1, 2]))
    assert torch.isfinite(loss)


# ----------------------------------------------------------------------------- triplet

# On S above, margin m = 0.2, diag(S) = [1, 1/2, 1]:
#   C1_ij = max(0, m + S_ij - S_ii), row-wise:
#     row 0: j=1 0.2 + 1/2 - 1 < 0, j=2 0.2 + 0 - 1 < 0            -> 0, 0
#     row 1: j=0 0.2 + 1 - 1/2 = 0.7, j=2 0.2 + 0 - 1/2 < 0        -> 0.7, 0
#     row 2: j=0 0.2 + 0 - 1 < 0, j=1 0.2 + √3/2 - 1 = √3/2 - 0.8   -> 0, ≈0.066
#   C2_ij = max(0, m + S_ij - S_jj), column-wise:
#     col 0: i=1 0.2 + 1 - 1 = 0.2, i=2 0.2 + 0 - 1 < 0              -> 0.2, 0
#     col 1: i=0 0.2 + 1/2 - 1/2 = 0.2, i=2 0.2 + √3/2 - 1/2        -> 0.2, √3/2 - 0.3
#     col 2: i=0, i=1 0.2 + 0 - 1 < 0                                -> 0, 0
C1 = {(1, 0): 0.7, (2, 1): R3 - 0.8}
C2 = {(1, 0): 0.2, (0, 1): 0.2, (2, 1): R3 - 0.3}


def test_triplet_reference_masks_only_the_diagonal():
    # Rows 0 and 1 share image 0, but (0, 1) and (1, 0) still count as negatives.
    expected = (sum(focal(c) for c in C1.values()) + sum(focal(c) for c in C2.values())) / 2
    loss = TripletLoss()(*batch())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_mask_same_image_drops_same_image_pairs():
    # Masking (0, 1) and (1, 0) leaves only the (2, 1) entries of C1 and C2.
    expected = (focal(R3 - 0.8) + focal(R3 - 0.3)) / 2
    loss = TripletLoss(mask_same_image=True)(*batch())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_is_a_sum_with_focal_weights():
    # A larger margin, 0.5, on distinct ids: every entry is written out, and the total is
    # their plain sum (halved), not a mean.
    #   C1: (0,1) 0.5+1/2-1 = 0    (0,2) 0.5-1 < 0   (1,0) 0.5+1-1/2 = 1   (1,2) 0.5-1/2 = 0
    #       (2,0) 0.5-1 < 0        (2,1) 0.5+√3/2-1 = √3/2-0.5
    #   C2: (1,0) 0.5+1-1 = 0.5    (2,0) < 0         (0,1) 0.5+1/2-1/2 = 0.5   (2,1) 0.5+√3/2-1/2 = √3/2
    #       (0,2) 0.5-1 < 0        (1,2) < 0
    c1 = [1.0, R3 - 0.5]
    c2 = [0.5, 0.5, R3]
    expected = (sum(focal(c) for c in c1) + sum(focal(c) for c in c2)) / 2
    loss = TripletLoss(margin=0.5)(*batch([0, 1, 2]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_gamma_option():
    # γ = 1: each entry is (1 - e^{-c}) c instead.
    expected = sum((1 - math.exp(-c)) * c for c in [*C1.values(), *C2.values()]) / 2
    loss = TripletLoss(gamma=1.0)(*batch())
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_triplet_gradient_includes_the_focal_weight():
    # Images are the unit axes, so S_ij = T_j[i] and dL/dT_j[i] = dL/dS_ij.
    #   T0 = (1, 0), T1 = (0.96, 0.28) (a 7-24-25 triangle): S = [[1, 0.96], [0, 0.28]]
    #   C1_01 = 0.2 + 0.96 - 1 = 0.16    C1_10 = 0.2 + 0 - 0.28 < 0
    #   C2_01 = 0.2 + 0.96 - 0.28 = 0.88 C2_10 = 0.2 + 0 - 1 < 0
    #   L = (f(0.16) + f(0.88)) / 2
    #   dL/dS00 = -f'(0.16)/2   dL/dS01 = (f'(0.16) + f'(0.88))/2   dL/dS10 = 0   dL/dS11 = -f'(0.88)/2
    images = torch.eye(2)
    texts = torch.tensor([[1.0, 0.0], [0.96, 0.28]], requires_grad=True)
    loss = TripletLoss()(images, texts, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx((focal(0.16) + focal(0.88)) / 2, rel=1e-5)
    loss.backward()
    a, b = focal_slope(0.16), focal_slope(0.88)
    expected = torch.tensor([[-a / 2, 0.0], [(a + b) / 2, -b / 2]])  # row j = (dL/dS0j, dL/dS1j)
    torch.testing.assert_close(texts.grad, expected, rtol=1e-5, atol=1e-6)


def test_triplet_has_no_parameters():
    assert list(TripletLoss().parameters()) == []


# ----------------------------------------------------------------------------- harma


def test_harma_is_contrastive_plus_triplet():
    contrastive = ContrastiveLoss(temperature=0.5)(*batch()).item()
    triplet = TripletLoss()(*batch()).item()
    harma = HarmaLoss(temperature=0.5)
    terms = harma.terms(*batch())
    assert set(terms) == {"loss_contrastive", "loss_triplet", "loss"}
    assert terms["loss_contrastive"].item() == pytest.approx(contrastive, rel=1e-6)
    assert terms["loss_triplet"].item() == pytest.approx(triplet, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(contrastive + triplet, rel=1e-6)
    assert harma(*batch()).item() == pytest.approx(contrastive + triplet, rel=1e-6)


def test_harma_forwards_its_options():
    harma = HarmaLoss(temperature=0.5, margin=0.5, gamma=1.0, mask_same_image=True, learnable=False)
    assert harma.temperature.item() == 0.5 and not harma.temperature.requires_grad
    assert (harma.triplet.margin, harma.triplet.gamma, harma.triplet.mask_same_image) == (0.5, 1.0, True)


def test_harma_trains_exactly_one_scalar_the_temperature():
    harma = HarmaLoss()
    trainable = [p for p in harma.parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].numel() == 1
    assert trainable[0] is harma.temperature
    assert harma.temperature.item() == pytest.approx(0.07)


def test_harma_gradient_reaches_temperature_and_embeddings():
    image, text, ids = batch()
    image.requires_grad_(True)
    text.requires_grad_(True)
    harma = HarmaLoss()
    harma(image, text, ids).backward()
    assert harma.temperature.grad is not None and harma.temperature.grad.item() != 0
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0


def test_every_loss_returns_terms_with_a_total():
    for loss_fn, part in [(ContrastiveLoss(), "loss_contrastive"), (TripletLoss(), "loss_triplet")]:
        terms = loss_fn.terms(*batch())
        assert set(terms) == {part, "loss"}
        assert terms["loss"].ndim == 0
        assert loss_fn(*batch()).item() == terms["loss"].item()


def test_losses_are_registered():
    assert {"contrastive", "triplet", "harma"} <= set(registered_names(LOSSES))
    assert get_class(LOSSES, "harma") is HarmaLoss
    built = LOSSES.build({"type": "triplet", "margin": 0.3})
    assert isinstance(built, TripletLoss) and built.margin == 0.3


def test_gathers_are_identity_in_one_process():
    image, _, ids = batch()
    assert gather_with_grad(image) is image
    assert gather_ids(ids) is ids


# ----------------------------------------------------------------------------- two processes

WORLD_SIZE = 2
# Image 1 has a caption on each rank, so the multi-positive targets only come out right
# if the ids are gathered too.
DIST_IDS = [0, 1, 1, 2]


def _dist_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    image = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator, dtype=torch.float64), dim=1)
    text = torch.nn.functional.normalize(torch.randn(4, 8, generator=generator, dtype=torch.float64), dim=1)
    return image, text, torch.tensor(DIST_IDS)


def _rank_worker(rank: int, store_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=WORLD_SIZE)
    try:
        image, text, ids = _dist_batch()
        rows = slice(2 * rank, 2 * rank + 2)
        image = image[rows].clone().requires_grad_(True)
        text = text[rows].clone().requires_grad_(True)
        harma = HarmaLoss()
        terms = harma.terms(image, text, ids[rows])
        terms["loss"].backward()
        result = {name: value.detach() for name, value in terms.items()}
        result |= {"image_grad": image.grad, "text_grad": text.grad, "temperature_grad": harma.temperature.grad}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_match_one_process(tmp_path: Path):
    mp.spawn(_rank_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)

    image, text, ids = _dist_batch()
    image.requires_grad_(True)
    text.requires_grad_(True)
    harma = HarmaLoss()
    terms = harma.terms(image, text, ids)
    terms["loss"].backward()

    for rank in range(WORLD_SIZE):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        rows = slice(2 * rank, 2 * rank + 2)
        # The embeddings are gathered with gradients, so every rank computes the whole global loss.
        for name in ("loss_contrastive", "loss_triplet", "loss"):
            torch.testing.assert_close(result[name], terms[name].detach())
        # The gather's backward sums over ranks what every rank's (identical) loss sends to these
        # rows: WORLD_SIZE x the single-process gradient. DDP's average over ranks divides it out.
        torch.testing.assert_close(result["image_grad"], WORLD_SIZE * image.grad[rows])
        torch.testing.assert_close(result["text_grad"], WORLD_SIZE * text.grad[rows])
        # The temperature is not gathered: its gradient is the single-process one on each rank.
        torch.testing.assert_close(result["temperature_grad"], harma.temperature.grad)
