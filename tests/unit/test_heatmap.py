"""Preview rendering: colour map, overlays with labels, argmax segmentation preview."""

import io

import pytest
import torch
from PIL import Image

from concept_attention.concept_patch.heatmap import (
    colorize,
    concept_colors,
    draw_label,
    heatmap_png_bytes,
    image_to_png_bytes,
    normalize_maps,
    overlay_maps,
    segmentation_preview,
)
from concept_attention.concept_patch.saliency_maps import SaliencyMaps


def _saliency(batch=2, names=("dog", "sky"), grid=(4, 6), image_size=(64, 96)):
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(batch, len(names), *grid, generator=g).softmax(dim=1)
    return SaliencyMaps(maps=maps, names=list(names), image_size=image_size)


def _luma(rgb):
    return (rgb * torch.tensor([0.299, 0.587, 0.114])).sum(-1)


def test_colorize_is_perceptually_ordered():
    ramp = colorize(torch.linspace(0, 1, 101))
    assert ramp.shape == (101, 3) and ramp.dtype == torch.float32
    luma = _luma(ramp)
    assert (luma[1:] >= luma[:-1]).all()  # brighter with the score: readable in grey too
    assert luma[0] < 0.02 and luma[-1] > 0.9
    assert ramp.min() >= 0 and ramp.max() <= 1


def test_colorize_shapes_and_out_of_range():
    assert colorize(torch.rand(5, 7)).shape == (5, 7, 3)
    torch.testing.assert_close(colorize(torch.tensor([-3.0, float("nan"), 9.0])), colorize(torch.tensor([0.0, 0.0, 1.0])))


def test_concept_colors_distinct():
    for r in (1, 3, 10, 25):
        colors = concept_colors(r)
        assert colors.shape == (r, 3) and colors.min() >= 0 and colors.max() <= 1
        distances = torch.cdist(colors, colors) + torch.eye(r) * 10
        assert distances.min() > 0.05
    assert torch.equal(concept_colors(3), concept_colors(8)[:3])  # concept i keeps its colour


def test_normalize_maps_per_map():
    maps = torch.stack([torch.rand(3, 3), torch.rand(3, 3) * 0.01 + 5, torch.full((3, 3), 2.0)])
    out = normalize_maps(maps)
    assert torch.equal(out[0].min(), torch.tensor(0.0)) and out[1].max() == 1
    assert out[2].sum() == 0


def test_overlay_panels_one_per_image_and_concept():
    s = _saliency()
    panels = overlay_maps(s)
    assert panels.shape == (4, 64, 96, 3) and panels.dtype == torch.float32 and panels.device.type == "cpu"
    assert panels.min() >= 0 and panels.max() <= 1
    # panel order is image-major: panel 3 shows image 1's "sky" map (away from the label box)
    expected = overlay_maps(SaliencyMaps(s.maps[1:, 1:], ["sky"], s.image_size), labels=False)[0]
    torch.testing.assert_close(panels[3, 40:], expected[40:])


def test_overlay_brightest_where_map_is_highest():
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 3, 3] = 1.0
    panel = overlay_maps(SaliencyMaps(maps, ["x"], (64, 64)), labels=False)[0]
    luma = _luma(panel)
    assert luma[60, 60] > 0.9 and luma[5, 5] < 0.05


def test_overlay_blends_over_the_picture():
    s = _saliency(batch=1)
    white = torch.ones(1, 64, 96, 3)
    alone = overlay_maps(s, labels=False)
    over = overlay_maps(s, white, alpha=0.6, labels=False)
    torch.testing.assert_close(over, 0.4 + 0.6 * alone)


def test_label_is_drawn_legibly():
    panel = torch.full((64, 96, 3), 0.9)
    labelled = draw_label(panel.clone(), "dog")
    box = labelled[:8, :20]
    assert (box.mean() < 0.9)  # dark box behind the text
    assert labelled[:16, :40].max() > 0.95  # white text on it
    torch.testing.assert_close(labelled[40:], panel[40:])  # the rest untouched


def test_label_long_and_non_latin_names_do_not_fail():
    for text in ("a" * 300, "chien 🐶 日本", ""):
        out = draw_label(torch.zeros(20, 30, 3), text)
        assert out.shape == (20, 30, 3) and out.max() <= 1


def test_overlay_image_size_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"image is 32x32 .* made for 96x64 images; pass the image the maps were made from"):
        overlay_maps(_saliency(), torch.rand(1, 32, 32, 3))


def test_segmentation_preview_colours_the_winner():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, :, 0] = 1  # left column: concept 0
    maps[0, 1, :, 1] = 1  # right column: concept 1
    s = SaliencyMaps(maps, ["left", "right"], (32, 32))
    out = segmentation_preview(s, legend=False)
    colors = concept_colors(2)
    assert out.shape == (1, 32, 32, 3)
    torch.testing.assert_close(out[0, 20, 2], colors[0])
    torch.testing.assert_close(out[0, 20, 29], colors[1])
    with_legend = segmentation_preview(s, torch.zeros(1, 32, 32, 3))
    assert with_legend.shape == (1, 32, 32, 3) and with_legend.max() <= 1


def test_png_helpers_round_trip():
    image = torch.rand(10, 14, 3)
    decoded = Image.open(io.BytesIO(image_to_png_bytes(image)))
    assert decoded.size == (14, 10) and decoded.mode == "RGB"
    heat = Image.open(io.BytesIO(heatmap_png_bytes(torch.rand(4, 6), size=(40, 60))))
    assert heat.size == (60, 40)
    with pytest.raises(ValueError, match=r"one map \[h, w\]"):
        heatmap_png_bytes(torch.rand(1, 4, 6))
