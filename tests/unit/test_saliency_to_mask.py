"""saliency_to_mask: the whole SALIENCY -> MASK path, its options and its error messages."""

import pytest
import torch
import torch.nn.functional as F

from concept_attention.concept_patch.maps.masks import DEFAULT_MASK_METHOD, MASK_METHODS, saliency_to_mask
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps

NAMES = ["dog", "grass", "sky"]


def _saliency(batch=2, grid=(6, 10), image_size=(96, 160), softmax=True, seed=0) -> SaliencyMaps:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, len(NAMES), *grid, generator=g) * 3
    maps = logits.softmax(dim=1) if softmax else logits
    return SaliencyMaps(maps=maps, names=list(NAMES), image_size=image_size, softmax=softmax)


def test_methods_exported():
    assert MASK_METHODS == ("mean", "relative_mean", "otsu", "value", "top_percent", "argmax", "soft")
    assert DEFAULT_MASK_METHOD == "mean"


@pytest.mark.parametrize("method", MASK_METHODS)
def test_every_method_gives_batch_of_masks_at_image_size(method):
    s = _saliency()
    mask = saliency_to_mask(s, ["dog"], method, threshold=30 if method == "top_percent" else 0.4)
    assert mask.shape == (2, 96, 160) and mask.dtype == torch.float32 and mask.device.type == "cpu"
    assert mask.min() >= 0 and mask.max() <= 1
    if method != "soft":
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(mask[0], mask[1])  # two different maps, two different masks


def test_mean_on_the_grid_is_the_papers_rule_exactly():
    s = _saliency()
    mask = saliency_to_mask(s, ["grass"], "mean", output_size=s.grid)
    for b in range(2):
        m = s.maps[b, 1]
        assert torch.equal(mask[b], (m > m.mean()).float())


def test_mean_at_pixels_uses_the_token_level_mean():
    s = _saliency()
    mask = saliency_to_mask(s, ["dog"], "mean")
    up = F.interpolate(s.maps[:, :1], size=s.image_size, mode="bilinear", align_corners=False)[:, 0]
    expected = (up > s.maps[:, 0].flatten(1).mean(1).view(-1, 1, 1)).float()
    assert torch.equal(mask, expected)


def test_top_percent_on_the_grid_selects_the_right_count():
    s = _saliency(grid=(8, 8))
    mask = saliency_to_mask(s, ["sky"], "top_percent", threshold=25, output_size=(8, 8))
    assert mask.flatten(1).sum(1).tolist() == [16.0, 16.0]
    # at pixels the percent is an area of the picture, with or without a guide
    for guide in (None, torch.rand(1, 96, 160, 3)):
        area = saliency_to_mask(s, ["sky"], "top_percent", threshold=25, guide_image=guide).flatten(1).mean(1)
        torch.testing.assert_close(area, torch.full((2,), 0.25), atol=1e-3, rtol=0)


def test_argmax_masks_partition_the_picture():
    s = _saliency()
    total = sum(saliency_to_mask(s, [n], "argmax") for n in NAMES)
    assert torch.equal(total, torch.ones(2, 96, 160))
    guide = torch.rand(2, 96, 160, 3)
    total = sum(saliency_to_mask(s, [n], "argmax", guide_image=guide) for n in NAMES)
    assert torch.equal(total, torch.ones(2, 96, 160))


def test_argmax_on_the_grid_is_the_argmax():
    s = _saliency()
    mask = saliency_to_mask(s, ["grass", "sky"], "argmax", output_size=s.grid)
    assert torch.equal(mask.bool(), s.maps.argmax(dim=1) >= 1)


def test_several_concepts_combine_by_sum():
    s = _saliency()
    both = saliency_to_mask(s, ["dog", "sky"], "value", threshold=0.5, output_size=s.grid)
    assert torch.equal(both, ((s.maps[:, 0] + s.maps[:, 2]) > 0.5).float())
    # with softmax maps, all concepts together cover everything
    assert saliency_to_mask(s, NAMES, "value", threshold=0.99, output_size=s.grid).all()


def test_names_match_case_insensitively_and_duplicates_are_harmless():
    s = _saliency()
    assert torch.equal(saliency_to_mask(s, ["DOG", " dog "], "mean"), saliency_to_mask(s, ["dog"], "mean"))
    assert torch.equal(saliency_to_mask(s, "dog"), saliency_to_mask(s, ["dog"]))


def test_soft_is_continuous_in_unit_range():
    s = _saliency()
    soft = saliency_to_mask(s, ["dog"], "soft")
    assert soft.min() == 0 and soft.max() == pytest.approx(1.0, abs=1e-6)
    assert ((soft > 0.05) & (soft < 0.95)).float().mean() > 0.1


def test_non_square_output_size_and_custom_output_size():
    s = _saliency(grid=(4, 12), image_size=(64, 192))
    assert saliency_to_mask(s, ["dog"]).shape == (2, 64, 192)
    assert saliency_to_mask(s, ["dog"], output_size=(32, 96)).shape == (2, 32, 96)
    assert saliency_to_mask(s, ["dog"], guide_image=torch.rand(1, 64, 192, 3), output_size=(128, 384)).shape == (2, 128, 384)


def test_guide_batch_of_one_is_shared():
    s = _saliency()
    guide = torch.rand(1, 96, 160, 3)
    shared = saliency_to_mask(s, ["dog"], guide_image=guide)
    repeated = saliency_to_mask(s, ["dog"], guide_image=guide.expand(2, -1, -1, -1))
    assert torch.equal(shared, repeated)


def test_guided_mask_follows_the_picture_edge():
    # one concept covers x < 75 (not on the 16-pixel patch grid); the maps only know patch coverage
    size, cell = (96, 160), 16
    truth = (torch.arange(160) < 75).float().expand(*size)
    cover = F.avg_pool2d(truth[None, None], cell)[0, 0]
    maps = torch.stack([cover, 1 - cover])[None]
    s = SaliencyMaps(maps=maps, names=["left", "right"], image_size=size)
    picture = (0.2 + 0.6 * truth)[None, ..., None].expand(1, *size, 3)
    plain = saliency_to_mask(s, ["left"], "value", threshold=0.5)
    guided = saliency_to_mask(s, ["left"], "value", threshold=0.5, guide_image=picture)
    assert (guided[0] != truth).sum() < (plain[0] != truth).sum()
    assert torch.equal(guided[0], truth)


def test_grow_feather_invert_order():
    s = _saliency()
    base = saliency_to_mask(s, ["dog"])
    grown = saliency_to_mask(s, ["dog"], grow=4)
    shrunk = saliency_to_mask(s, ["dog"], grow=-4)
    assert grown.sum() > base.sum() > shrunk.sum()
    inverted = saliency_to_mask(s, ["dog"], grow=4, invert=True)
    assert torch.equal(inverted, 1 - grown)  # invert last: "grow" always grows the concept
    soft = saliency_to_mask(s, ["dog"], feather=5.0)
    assert soft.min() >= 0 and soft.max() <= 1 and ((soft > 0) & (soft < 1)).any()


def test_non_softmax_maps_accept_any_value_threshold():
    s = _saliency(softmax=False)
    assert torch.equal(saliency_to_mask(s, ["dog"], "value", threshold=-2.0, output_size=s.grid), (s.maps[:, 0] > -2.0).float())


# ---------------------------------------------------------------- errors


def test_error_empty_concepts():
    with pytest.raises(ValueError, match=r"choose one or more concept names.*available: dog, grass, sky"):
        saliency_to_mask(_saliency(), [])
    with pytest.raises(ValueError, match=r"choose one or more concept names"):
        saliency_to_mask(_saliency(), ["dog", "  "])


def test_error_unknown_concept_lists_available():
    with pytest.raises(ValueError, match=r"concept 'cat' is not in these saliency maps; available: dog, grass, sky"):
        saliency_to_mask(_saliency(), ["dog", "cat"])


def test_error_unknown_method_lists_accepted():
    accepted = "mean, relative_mean, otsu, value, top_percent, argmax, soft"
    with pytest.raises(ValueError, match=rf"unknown mask method 'kmeans'; accepted: {accepted}"):
        saliency_to_mask(_saliency(), ["dog"], "kmeans")


@pytest.mark.parametrize("threshold", [0, -5, 100.5])
def test_error_top_percent_range(threshold):
    with pytest.raises(ValueError, match=r"top_percent.*0 < threshold <= 100"):
        saliency_to_mask(_saliency(), ["dog"], "top_percent", threshold=threshold)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_error_value_outside_softmax_range(threshold):
    with pytest.raises(ValueError, match=r"softmax probabilities in 0\.\.1"):
        saliency_to_mask(_saliency(), ["dog"], "value", threshold=threshold)


def test_error_threshold_not_finite():
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        saliency_to_mask(_saliency(), ["dog"], "mean", threshold=float("nan"))


def test_error_guide_size_names_both_sizes_and_the_fix():
    with pytest.raises(ValueError) as info:
        saliency_to_mask(_saliency(), ["dog"], guide_image=torch.rand(1, 512, 512, 3))
    message = str(info.value)
    assert "512x512" in message and "160x96" in message
    assert "pass the image the maps were made from" in message


def test_error_guide_batch():
    with pytest.raises(ValueError, match=r"guide image batch has 3 pictures but the saliency maps have 2; "
                                         r"pass 1 picture \(used for all\) or 2"):
        saliency_to_mask(_saliency(), ["dog"], guide_image=torch.rand(3, 96, 160, 3))


def test_error_guide_layout():
    with pytest.raises(ValueError, match=r"IMAGE \[batch, height, width, 1/3/4 channels\]"):
        saliency_to_mask(_saliency(), ["dog"], guide_image=torch.rand(1, 3, 96, 160))


def test_error_grow_and_feather_types():
    with pytest.raises(ValueError, match="grow must be a whole number of pixels"):
        saliency_to_mask(_saliency(), ["dog"], grow=1.5)
    with pytest.raises(ValueError, match="feather must be a radius in pixels >= 0"):
        saliency_to_mask(_saliency(), ["dog"], feather=-1)


def test_error_output_size():
    with pytest.raises(ValueError, match="output size must be two positive numbers"):
        saliency_to_mask(_saliency(), ["dog"], output_size=(0, 10))
    with pytest.raises(ValueError, match="output size must be two positive numbers"):
        saliency_to_mask(_saliency(), ["dog"], output_size=64)


def test_error_not_saliency():
    with pytest.raises(ValueError, match="expected SALIENCY"):
        saliency_to_mask(torch.rand(1, 2, 3, 3), ["dog"])


def test_error_non_finite_maps():
    s = _saliency()
    s.maps[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite") as refused:
        saliency_to_mask(s, ["dog"])
    # the pack's nodes refuse such maps where they are made: recomputing is the fix, not a dtype
    assert "recompute them with Concept Saliency" in str(refused.value) and "fp32" not in str(refused.value)


def test_maps_that_came_out_non_finite_name_the_fix():
    from concept_attention.concept_patch.checks.finite import check_finite_maps

    maps = torch.full((1, 2, 3, 3), float("nan"))
    with pytest.raises(ValueError, match=r"overflowed in torch.float16; load the model in a wider dtype"):
        check_finite_maps(maps, torch.randn(1, 16, 6, 6), "latent", torch.float16)
    with pytest.raises(ValueError, match=r"largest value is 5e\+04, far beyond what a VAE makes") as refused:
        check_finite_maps(maps, torch.full((1, 16, 6, 6), 5e4), "latent", torch.float16)
    assert "dtype" not in str(refused.value)
    check_finite_maps(torch.rand(1, 2, 3, 3), torch.full((1, 16, 6, 6), 5e4), "latent", torch.float16)  # finite: fine


def test_error_guide_not_a_tensor():
    with pytest.raises(ValueError, match=r"guide image must be an IMAGE tensor"):
        saliency_to_mask(_saliency(), ["dog"], guide_image=[[0.5]])


def _absent_dog(batch=2, grid=(6, 10), softmax=True) -> SaliencyMaps:
    """Maps where 'dog' wins no token in picture 0 (grass or sky everywhere) and wins some in picture 1."""
    s = _saliency(batch=batch, grid=grid, softmax=softmax)
    maps = s.maps.clone()
    maps[0, 0] = maps[0, 1:].amin(dim=0) * 0.5  # under every other concept, yet not constant
    return SaliencyMaps(maps=maps, names=list(NAMES), image_size=s.image_size, softmax=softmax)


def test_mean_gives_an_empty_mask_where_the_concept_wins_no_token_and_says_so():
    from concept_attention.concept_patch.maps.masks import saliency_to_mask_and_note

    s = _absent_dog()
    mask, note = saliency_to_mask_and_note(s, ["dog"])  # the default method
    assert mask[0].sum() == 0 and mask[1].sum() > 0
    assert "'dog'" in note and "picture 1 of 2" in note and "relative_mean" in note
    # relative_mean keeps the paper's relative cut: about half of the absent concept's map
    relative = saliency_to_mask(s, ["dog"], "relative_mean")
    assert relative[0].mean() > 0.2 and torch.equal(relative[1], mask[1])
    # a concept present everywhere gives no note; with another that is present, the union is present
    assert saliency_to_mask_and_note(s, ["dog", "grass"])[1] == ""
    assert saliency_to_mask_and_note(s, ["dog"], invert=True)[0][0].min() == 1  # invert last: all but nothing


def test_one_concept_has_no_evidence_above_chance_under_softmax():
    from concept_attention.concept_patch.maps.masks import saliency_to_mask_and_note

    one = SaliencyMaps(maps=torch.ones(1, 1, 4, 4), names=["dog"], image_size=(32, 32), softmax=True)
    mask, note = saliency_to_mask_and_note(one, ["dog"])
    assert mask.sum() == 0 and "nothing to win against" in note and "this picture" in note
    raw = torch.linspace(-1, 1, 16).view(1, 1, 4, 4)
    assert saliency_to_mask(SaliencyMaps(maps=raw, names=["dog"], image_size=(4, 4), softmax=False), ["dog"]).sum() > 0
    below = SaliencyMaps(maps=raw - 2, names=["dog"], image_size=(4, 4), softmax=False)
    assert saliency_to_mask(below, ["dog"]).sum() == 0
