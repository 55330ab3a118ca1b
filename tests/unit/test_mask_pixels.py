"""Pixel-level steps: upsampling (bilinear and guided), grow/shrink, feather, invert."""

import math

import pytest
import torch
import torch.nn.functional as F

from concept_attention.concept_patch.maps.morphology import feather, grow_shrink, invert
from concept_attention.concept_patch.maps.resample import box_mean, guide_radius, guided_filter, upsample


def _picture_of(truth: torch.Tensor, noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    """A grey picture [1, H, W, 3] whose only edge is the border of truth [H, W]."""
    g = torch.Generator().manual_seed(seed)
    picture = (0.25 + 0.5 * truth)[None, ..., None].expand(1, *truth.shape, 3)
    return (picture + noise * torch.randn(1, *truth.shape, 3, generator=g)).clamp(0, 1)


def _token_scores(truth: torch.Tensor, cell: int) -> torch.Tensor:
    """What an ideal saliency map sees: the fraction of each patch covered by the object."""
    return F.avg_pool2d(truth[None, None], cell)[:, 0]


def test_box_mean_matches_direct_window_mean():
    x = torch.rand(2, 9, 13, dtype=torch.float64)
    r = 2
    got = box_mean(x, r)
    for i, j in [(0, 0), (4, 6), (8, 12), (3, 0)]:
        window = x[:, max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1]
        torch.testing.assert_close(got[:, i, j], window.mean(dim=(1, 2)))


def test_guided_filter_keeps_constant_input():
    guide = torch.rand(1, 20, 30)
    torch.testing.assert_close(guided_filter(guide, torch.full((1, 20, 30), 0.7), 3), torch.full((1, 20, 30), 0.7))


def test_upsample_bilinear_size_and_identity():
    scores = torch.rand(2, 6, 4)
    assert upsample(scores, (96, 64)).shape == (2, 96, 64)
    assert torch.equal(upsample(scores, (6, 4)), scores)


def test_upsample_non_square():
    out = upsample(torch.rand(1, 3, 5), (48, 80), guide_image=torch.rand(1, 48, 80, 3))
    assert out.shape == (1, 48, 80)


def test_guide_radius_is_one_token_cell():
    assert guide_radius((64, 64), (1024, 1024)) == 16
    assert guide_radius((48, 80), (768, 1280)) == 16
    assert guide_radius((8, 8), (8, 8)) == 1


@pytest.mark.parametrize(
    "name, make_truth",
    [
        ("vertical step at x=133", lambda yy, xx: xx < 133),  # not on a 16-pixel patch border
        ("diagonal edge", lambda yy, xx: xx + 0.6 * yy < 180),
        ("disc", lambda yy, xx: (xx - 120) ** 2 + (yy - 137) ** 2 < 70**2),
    ],
)
def test_guided_upsampling_follows_image_edges_better_than_bilinear(name, make_truth):
    size, cell = 256, 16
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    truth = make_truth(yy, xx).float()
    scores = _token_scores(truth, cell)
    cut = 0.5
    bilinear = upsample(scores, (size, size)) > cut
    guided = upsample(scores, (size, size), guide_image=_picture_of(truth)) > cut
    err_bilinear = (bilinear != truth.bool()).float().mean().item()
    err_guided = (guided != truth.bool()).float().mean().item()
    assert err_guided < 0.5 * err_bilinear, (name, err_guided, err_bilinear)
    assert err_guided < 0.005, (name, err_guided)


def test_upsample_guide_checks():
    with pytest.raises(ValueError, match=r"guide image is 30x20 .* made for 40x20 images"):
        upsample(torch.rand(1, 2, 4), (20, 40), guide_image=torch.rand(1, 20, 30, 3))
    with pytest.raises(ValueError, match=r"guide image batch has 2 pictures but the saliency maps have 3"):
        upsample(torch.rand(3, 2, 4), (20, 40), guide_image=torch.rand(2, 20, 40, 3))


def _square_mask(size=40, lo=15, hi=25):
    mask = torch.zeros(1, size, size)
    mask[0, lo:hi, lo:hi] = 1
    return mask


@pytest.mark.parametrize("shape", ["disc", "square"])
def test_grow_and_shrink_change_area_in_the_right_direction(shape):
    mask = _square_mask()
    grown = grow_shrink(mask, 3, shape)
    shrunk = grow_shrink(mask, -3, shape)
    assert grown.sum() > mask.sum() > shrunk.sum() > 0
    assert (grown >= mask).all() and (shrunk <= mask).all()
    assert set(grown.unique().tolist()) <= {0.0, 1.0}


def test_square_grow_is_exact():
    assert grow_shrink(_square_mask(), 3, "square").sum() == 16 * 16
    assert grow_shrink(_square_mask(), -3, "square").sum() == 4 * 4


def test_disc_grow_of_a_point_is_a_disc():
    point = torch.zeros(1, 21, 21)
    point[0, 10, 10] = 1
    grown = grow_shrink(point, 5, "disc")
    yy, xx = torch.meshgrid(torch.arange(21), torch.arange(21), indexing="ij")
    disc = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 25).float()
    assert torch.equal(grown[0], disc)


def test_grow_does_not_come_in_from_the_border_and_shrink_does_not_eat_it():
    assert grow_shrink(torch.zeros(1, 10, 10), 3).sum() == 0
    assert grow_shrink(torch.ones(1, 10, 10), -3).sum() == 100


def test_grow_zero_and_huge():
    mask = _square_mask()
    assert torch.equal(grow_shrink(mask, 0), mask)
    assert grow_shrink(mask, 10_000).sum() == mask[0].numel()
    assert grow_shrink(mask, -10_000).sum() == 0


def test_grow_errors():
    with pytest.raises(ValueError, match="whole number of pixels"):
        grow_shrink(_square_mask(), 2.5)
    with pytest.raises(ValueError, match=r"unknown grow shape 'star'; accepted: disc, square"):
        grow_shrink(_square_mask(), 2, "star")


def test_feather_softens_edges_and_keeps_range():
    mask = _square_mask()
    soft = feather(mask, 4.0)
    assert soft.min() >= 0 and soft.max() <= 1
    assert ((soft > 0) & (soft < 1)).sum() > 0
    assert math.isclose(soft.sum().item(), mask.sum().item(), rel_tol=1e-4)  # blur moves mass, keeps it
    assert soft[0, 20, 20] == pytest.approx(1.0) and soft[0, 0, 0] == 0


def test_feather_zero_is_noop_and_big_radius_ok():
    mask = _square_mask()
    assert torch.equal(feather(mask, 0), mask)
    big = feather(mask, 200.0)  # kernel far larger than the picture
    assert big.shape == mask.shape and big.min() >= 0 and big.max() <= 1


@pytest.mark.parametrize("radius", [-1, float("nan"), float("inf"), "3"])
def test_feather_errors(radius):
    with pytest.raises(ValueError, match="feather must be a radius in pixels >= 0"):
        feather(_square_mask(), radius)


def test_invert():
    mask = torch.tensor([[[0.0, 0.25, 1.0]]])
    assert torch.equal(invert(mask), torch.tensor([[[1.0, 0.75, 0.0]]]))
