"""Masks on the token grid: the threshold rules and argmax segmentation mean what they say."""

import pytest
import torch

from concept_attention.concept_patch.maps.thresholds import (
    argmax_masks,
    combine_scores,
    cut_values,
    otsu_cuts,
    threshold_masks,
    top_count,
)


def _scores(seed=0, shape=(3, 12, 20)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


def test_mean_is_score_above_each_images_own_mean():
    scores = _scores()
    scores[1] += 5.0  # a shifted image must use its own mean, not the batch's
    mask = threshold_masks(scores, "mean")
    for b in range(scores.shape[0]):
        assert torch.equal(mask[b], (scores[b] > scores[b].mean()).float())


def test_value_compares_with_threshold():
    scores = _scores()
    assert torch.equal(threshold_masks(scores, "value", 0.3), (scores > 0.3).float())


def test_otsu_separates_bimodal_map():
    g = torch.Generator().manual_seed(1)
    truth = torch.zeros(2, 16, 16, dtype=torch.bool)
    truth[0, 3:9, 2:12] = True
    truth[1, 10:, :5] = True
    low = 0.1 + 0.05 * torch.rand(2, 16, 16, generator=g)
    high = 0.7 + 0.1 * torch.rand(2, 16, 16, generator=g)
    scores = torch.where(truth, high, low)
    mask = threshold_masks(scores, "otsu")
    assert torch.equal(mask.bool(), truth)
    # mean thresholding of an unbalanced bimodal map still agrees here, but Otsu's cut lies in the gap
    cuts = otsu_cuts(scores.flatten(1))
    assert ((cuts > 0.15) & (cuts < 0.7)).all()


def test_otsu_unequal_modes_beats_mean():
    # a small bright object (10%) over a spread-out background: the mean (0.225) cuts into the
    # background; Otsu finds the gap between the two modes and keeps exactly the object
    scores = torch.cat([torch.linspace(0.0, 0.3, 90), torch.linspace(0.8, 1.0, 10)]).view(1, 10, 10)
    mask = threshold_masks(scores, "otsu")
    assert mask.sum() == 10 and mask.view(-1)[90:].all()
    assert threshold_masks(scores, "mean").sum() > 20


def test_otsu_constant_map_gives_empty_mask():
    assert threshold_masks(torch.full((1, 4, 4), 0.25), "otsu").sum() == 0


@pytest.mark.parametrize("percent, n, expected", [(10, 64, 6), (25, 64, 16), (100, 64, 64), (0.1, 64, 1), (30, 10, 3),
                                                  (12.5, 4, 1), (50, 7, 4)])
def test_top_count(percent, n, expected):
    assert top_count(percent, n) == expected


@pytest.mark.parametrize("percent", [1, 10, 25, 33.3, 50, 99, 100])
def test_top_percent_selects_the_right_tokens(percent):
    scores = _scores(seed=2, shape=(2, 8, 12))
    mask = threshold_masks(scores, "top_percent", percent)
    k = top_count(percent, 96)
    for b in range(2):
        assert mask[b].sum() == k
        chosen = scores[b][mask[b].bool()]
        rest = scores[b][~mask[b].bool()]
        if rest.numel():
            assert chosen.min() > rest.max()


def test_top_percent_ties_broken_in_raster_order():
    scores = torch.zeros(1, 4, 4)
    scores[0, 3, 3] = 1.0
    mask = threshold_masks(scores, "top_percent", 25)  # 4 tokens: the peak, then the first 3 tied zeros
    expected = torch.zeros(1, 4, 4)
    expected[0, 3, 3] = 1
    expected[0, 0, :3] = 1
    assert torch.equal(mask, expected)
    assert torch.equal(mask, threshold_masks(scores, "top_percent", 25))


def test_top_percent_cut_matches_token_mask_without_ties():
    scores = _scores(seed=3, shape=(2, 8, 8))
    cut = cut_values(scores, "top_percent", 20)
    assert torch.equal((scores > cut.view(-1, 1, 1)).float(), threshold_masks(scores, "top_percent", 20))


def test_soft_is_per_image_min_max():
    scores = _scores(seed=4)
    scores[2] = scores[2] * 10 - 3
    soft = threshold_masks(scores, "soft")
    for b in range(3):
        assert soft[b].min() == 0 and soft[b].max() == 1
        expected = (scores[b] - scores[b].min()) / (scores[b].max() - scores[b].min())
        torch.testing.assert_close(soft[b], expected)
    assert threshold_masks(torch.full((1, 3, 3), 0.4), "soft").sum() == 0


def test_unknown_method():
    accepted = "mean, relative_mean, otsu, value, top_percent, soft"
    with pytest.raises(ValueError, match=rf"unknown mask method 'median'; accepted: {accepted}"):
        threshold_masks(_scores(), "median")


def test_threshold_masks_needs_3d_scores():
    with pytest.raises(ValueError, match=r"\[batch, h, w\]"):
        threshold_masks(torch.rand(4, 4), "mean")


def test_combine_scores_sums_selected_concepts():
    maps = torch.rand(2, 4, 5, 6).softmax(dim=1)
    torch.testing.assert_close(combine_scores(maps, [0, 2]), maps[:, 0] + maps[:, 2])
    # softmax maps: the union of all concepts has probability 1 everywhere
    torch.testing.assert_close(combine_scores(maps, [0, 1, 2, 3]), torch.ones(2, 5, 6))


def test_argmax_masks_of_all_concepts_partition_the_image():
    maps = torch.rand(2, 5, 9, 7)
    masks = torch.stack([argmax_masks(maps, [i]) for i in range(5)])
    assert torch.equal(masks.sum(dim=0), torch.ones(2, 9, 7))
    assert torch.equal(masks[2].bool(), maps.argmax(dim=1) == 2)


def test_argmax_several_concepts_is_union():
    maps = torch.rand(1, 4, 6, 6)
    assert torch.equal(argmax_masks(maps, [1, 3]), argmax_masks(maps, [1]) + argmax_masks(maps, [3]))


def test_argmax_ties_go_to_the_earlier_concept():
    maps = torch.ones(1, 3, 2, 2)
    assert argmax_masks(maps, [0]).all() and not argmax_masks(maps, [1, 2]).any()
