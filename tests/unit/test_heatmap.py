"""Preview rendering: colour map, the shared scale, the honest blend, labels and colour bar, the
segmentation view in the legend's colours, per-picture shares, and the preview's bounded size."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from concept_attention.concept_patch.files.pictures import image_to_png_bytes
from concept_attention.concept_patch.maps.captions import line_height, readable_width, strip_padding
from concept_attention.concept_patch.maps.colors import (
    PICTURE_BAND,
    PICTURE_WEIGHT,
    ColorScale,
    colorize,
    concept_colors,
    concept_colors_u8,
)
from concept_attention.concept_patch.maps.legend import concept_legend
from concept_attention.concept_patch.maps.panels import PREVIEW_MAX_SIDE, PREVIEW_PIXEL_BUDGET, panel_size, sheet_layout
from concept_attention.concept_patch.maps.preview import render_preview
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention_tests.unit.allocations import torch_cpu_peak_bytes
from concept_attention_tests.unit.preview_helpers import heatmap_png_bytes, normalize_maps, overlay_maps, segmentation_preview


def _saliency(batch=2, names=("dog", "sky"), grid=(4, 6), image_size=(64, 96), seed=0, softmax=True):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(batch, len(names), *grid, generator=g) * 2
    return SaliencyMaps(maps=maps.softmax(dim=1) if softmax else maps, names=list(names), image_size=image_size,
                        softmax=softmax)


def _luma(rgb):
    return (rgb * torch.tensor([0.299, 0.587, 0.114])).sum(-1)


def _as_saved(panel: torch.Tensor) -> np.ndarray:
    """What ComfyUI's image savers write for an IMAGE: 255·x clipped and truncated to uint8."""
    return np.clip(255.0 * panel.numpy(), 0, 255).astype(np.uint8)


def _map_area(saliency, panels):
    """Height of the map part of each panel (the label strip is below it)."""
    return panels.shape[1] - sheet_layout(saliency).strip


# ---------------------------------------------------------------- colours


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


def test_concept_colors_save_to_their_8_bit_values():
    """Saved by truncation (ComfyUI's savers) or rounding (PIL paths), a concept colour is exactly its
    8-bit value: the colour the legend's swatch shows."""
    u8 = torch.tensor(concept_colors_u8(64), dtype=torch.int64)
    scaled = concept_colors(64) * 255.0
    assert torch.equal(scaled.floor().long(), u8) and torch.equal(scaled.round().long(), u8)


def test_normalize_maps_per_map():
    maps = torch.stack([torch.rand(3, 3), torch.rand(3, 3) * 0.01 + 5, torch.full((3, 3), 2.0)])
    out = normalize_maps(maps)
    assert torch.equal(out[0].min(), torch.tensor(0.0)) and out[1].max() == 1
    assert out[2].sum() == 0


# ---------------------------------------------------------------- panel sizes and layout


@pytest.mark.parametrize("image_size, panels", [((64, 96), 4), ((1024, 1024), 4), ((4096, 4096), 65),
                                                 ((1024, 4096), 200), ((16384, 16384), 4096)])
def test_panel_size_is_bounded_whatever_the_picture(image_size, panels):
    h, w = panel_size(image_size, panels)
    assert max(h, w) <= PREVIEW_MAX_SIDE
    assert h * w * panels <= PREVIEW_PIXEL_BUDGET * 1.05 or max(h, w) <= 96
    assert abs(h / w - image_size[0] / image_size[1]) < 0.05 * image_size[0] / image_size[1] + 0.02


def test_preview_layout_segmentation_then_maps_per_picture():
    s = _saliency(batch=2, names=("dog", "sky", "tree"))
    panels = render_preview(s)
    r = 3
    assert panels.shape[0] == 2 * (r + 1) and panels.shape[-1] == 3 and panels.dtype == torch.float32
    assert panels.min() >= 0 and panels.max() <= 1
    assert max(panels.shape[1:3]) <= PREVIEW_MAX_SIDE + sheet_layout(s).strip
    height = _map_area(s, panels)
    colors = concept_colors(r)
    for i in range(2):
        seg = panels[i * (r + 1), :height].reshape(-1, 3)
        assert (torch.cdist(seg, colors).min(dim=1).values < 1e-6).all(), "the segmentation view has only legend colours"
    # panel i·(r+1) + 1 + j shows picture i's map of concept j
    # (on the shared 0-1 scale, a map alone gives the same colours as among others)
    alone = render_preview(SaliencyMaps(s.maps[1:, 2:3], ["tree"], s.image_size), labels=False)
    torch.testing.assert_close(panels[1 * (r + 1) + 1 + 2, :height], alone[1])
    assert torch.equal(overlay_maps(s, labels=False)[5], render_preview(s, labels=False)[1 * (r + 1) + 1 + 2])


# ---------------------------------------------------------------- honest heatmaps


def test_maps_share_one_scale_so_a_weak_concept_stays_dark():
    """Softmax maps are probabilities: colours are on 0-1 for every concept. A concept that wins
    nowhere (at most 0.3 anywhere) never shows the bright end of the scale."""
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 1] = torch.linspace(0.0, 0.3, 16).view(4, 4)
    maps[0, 0] = 1.0 - maps[0, 1]
    s = SaliencyMaps(maps, ["sun", "moon"], (64, 64))
    assert [e["share"] for e in concept_legend(s)] == [1.0, 0.0]
    panels = render_preview(s, labels=False)
    weak = panels[2]  # picture 0: [segmentation, sun, moon]
    assert _luma(weak).max() <= _luma(colorize(torch.tensor(0.32))) + 1e-4
    strong = panels[1]
    assert _luma(strong).min() >= _luma(colorize(torch.tensor(0.69))) - 1e-4


def test_softmax_off_maps_share_their_overall_range():
    maps = torch.stack([torch.full((4, 4), -2.0), torch.full((4, 4), 6.0)]).unsqueeze(0)
    maps[0, 0, 0, 0] = 2.0
    s = SaliencyMaps(maps, ["a", "b"], (32, 32), softmax=False)
    scale = ColorScale.of(s)
    assert (scale.lo, scale.hi, scale.probabilities) == (-2.0, 6.0, False)
    panels = render_preview(s, labels=False)
    # map a is mostly at the bottom of the shared range: dark, although a per-map stretch would make it bright
    assert _luma(panels[1, 300:, 300:]).max() < 0.05
    assert _luma(panels[2]).min() > 0.9


def test_the_picture_cannot_fake_heat():
    """Over a half-black, half-white picture a constant map stays within 0.1 of one colour; the
    colour scale itself spans about 0.95 in brightness."""
    maps = torch.full((1, 2, 4, 4), 0.5)
    s = SaliencyMaps(maps, ["a", "b"], (64, 64))
    picture = torch.zeros(1, 64, 64, 3)
    picture[:, :, 32:] = 1.0  # a bright sun on the right
    panel = render_preview(s, picture, labels=False)[1]
    left, right = panel[:, : panel.shape[1] // 2 - 8], panel[:, panel.shape[1] // 2 + 8:]
    limit = PICTURE_WEIGHT * (PICTURE_BAND[1] - PICTURE_BAND[0])
    assert limit <= 0.1 + 1e-6
    assert (right.mean((0, 1)) - left.mean((0, 1))).abs().max() <= limit + 1e-4
    # a score difference of 0.25 moves the colour more than the whole picture can
    ramp = _luma(colorize(torch.tensor([0.25, 0.5, 0.75]))) * (1 - PICTURE_WEIGHT)
    assert (ramp[1:] - ramp[:-1]).min() > limit


def test_the_picture_stays_visible_under_the_heat():
    maps = torch.full((1, 1, 4, 4), 1.0)
    s = SaliencyMaps(maps, ["a"], (64, 64))
    picture = torch.zeros(1, 64, 64, 3)
    picture[:, :, 32:] = 1.0
    panel = render_preview(s, picture, labels=False)[1]
    w = panel.shape[1]
    assert (_luma(panel[:, 3 * w // 4:]) - _luma(panel[:, : w // 4])).mean() > 0.05


def test_strip_has_the_color_bar_and_a_readable_label():
    s = _saliency(batch=1, names=("dog",), image_size=(64, 64))
    panels = render_preview(s)
    width = panels.shape[2]
    strip = panels[1, _map_area(s, panels):]
    assert strip.shape[0] == sheet_layout(s).strip
    # the colour bar, on the strip's last line: the scale's dark and bright ends appear in its middle row
    line = line_height(width)
    row = strip[strip.shape[0] - strip_padding(width) // 2 - line + line // 2]
    for end in (colorize(torch.tensor(0.0)), colorize(torch.tensor(1.0))):
        assert (row - end).abs().max(dim=-1).values.min() < 0.02
    # the name in white, tall enough to read where a node shows a panel about 170 px wide
    white = (strip.min(dim=-1).values > 0.9).any(dim=1).nonzero()
    text_height = int(white.max() - white.min() + 1)
    assert text_height * readable_width(width) / width >= 12, f"label {text_height} px tall on a {width} px panel"
    assert width >= 256  # small pictures are shown larger, not with tiny labels


def test_long_and_non_latin_names_do_not_fail():
    s = SaliencyMaps(torch.rand(1, 3, 2, 2).softmax(1), ["a" * 300, "chien 🐶 日本", "x"], (20, 30))
    panels = render_preview(s)
    assert panels.shape[0] == 4 and panels.max() <= 1


def test_preview_image_size_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"image is 32x32 .* made for 96x64 images; pass the image the maps were made from"):
        render_preview(_saliency(), torch.rand(1, 32, 32, 3))


# ---------------------------------------------------------------- segmentation view and legend


def test_segmentation_view_colors_each_token_by_its_winner():
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, :, 0] = 1  # left column: concept 0
    maps[0, 1, :, 1] = 1  # right column: concept 1
    s = SaliencyMaps(maps, ["left", "right"], (32, 32))
    out = segmentation_preview(s)
    colors = concept_colors(2)
    assert out.shape == (1, 32, 32, 3)
    assert torch.equal(out[0, :, :16], colors[0].expand(32, 16, 3))
    assert torch.equal(out[0, :, 16:], colors[1].expand(32, 16, 3))


def test_segmentation_panel_pixels_are_the_legend_colors_with_its_shares_per_picture():
    s = _saliency(batch=2, names=("house", "sun", "hill", "sky"), grid=(8, 8), image_size=(128, 128), seed=3)
    legend = concept_legend(s)
    panels = render_preview(s)
    height = _map_area(s, panels)
    r = len(s.names)
    hexes = [e["color"] for e in legend]
    for i in range(2):
        pixels = _as_saved(panels[i * (r + 1), :height]).reshape(-1, 3)
        found, counts = np.unique(pixels, axis=0, return_counts=True)
        seen = {"#{:02x}{:02x}{:02x}".format(*c): n / pixels.shape[0] for c, n in zip(found, counts)}
        assert set(seen) <= set(hexes)
        for entry in legend:
            assert abs(seen.get(entry["color"], 0.0) - entry["shares"][i]) < 0.02, (i, entry)


def test_legend_shares_are_per_picture():
    maps = torch.zeros(2, 2, 2, 2)
    maps[0, 0] = 1  # picture 1: all "a"
    maps[1, 1] = 1  # picture 2: all "b"
    legend = concept_legend(SaliencyMaps(maps, ["a", "b"], (32, 32)))
    assert [e["shares"] for e in legend] == [[1.0, 0.0], [0.0, 1.0]]
    assert [e["share"] for e in legend] == [0.5, 0.5]
    assert [e["color"] for e in legend] == ["#{:02x}{:02x}{:02x}".format(*c) for c in concept_colors_u8(2)]


# ---------------------------------------------------------------- memory


def test_preview_memory_is_bounded_by_the_preview_not_the_picture_or_concept_count():
    """64 concepts of a 1024² picture once peaked at 5.7 GiB (full-size panels for every concept);
    the preview now holds preview-sized panels only."""
    mib = 2**20
    for r, side, bound in ((64, 1024, 200 * mib), (3, 4096, 64 * mib), (3, 1024, 64 * mib)):
        maps = torch.rand(1, r, side // 16, side // 16).softmax(1)
        s = SaliencyMaps(maps, [f"c{i}" for i in range(r)], (side, side))
        picture = torch.rand(1, side, side, 3)
        peak, panels = torch_cpu_peak_bytes(render_preview, s, picture)
        full_size = r * side * side * 3 * 4
        assert peak <= bound, f"{r} concepts at {side}²: {peak / mib:.0f} MiB"
        assert panels[0].numel() * 4 * panels.shape[0] <= 110 * mib
        assert peak < full_size / 4 or r == 3


# ---------------------------------------------------------------- files


def test_png_helpers_round_trip():
    image = torch.rand(10, 14, 3)
    decoded = Image.open(io.BytesIO(image_to_png_bytes(image)))
    assert decoded.size == (14, 10) and decoded.mode == "RGB"
    heat = Image.open(io.BytesIO(heatmap_png_bytes(torch.rand(4, 6), size=(40, 60))))
    assert heat.size == (60, 40)
    with pytest.raises(ValueError, match=r"one map \[h, w\]"):
        heatmap_png_bytes(torch.rand(1, 4, 6))
    # on a shared scale, a weak map stays dark in its file too
    weak = np.asarray(Image.open(io.BytesIO(heatmap_png_bytes(torch.full((4, 4), 0.1), scale=ColorScale(0, 1, True)))))
    assert weak.max() < 80


def test_a_picture_heatmap_file_is_its_map_on_the_shared_scale(tmp_path):
    from concept_attention.concept_patch.files.save import save_saliency

    s = _saliency(batch=2, softmax=False)
    paths = save_saliency(s, str(tmp_path), "maps")
    assert [os.path.basename(p)[-14:] for p in paths[1:]] == ["_b0_c0_dog.png", "_b0_c1_sky.png",
                                                               "_b1_c0_dog.png", "_b1_c1_sky.png"]
    with Image.open(paths[1]) as image:
        size = image.size[::-1]
    expected = heatmap_png_bytes(s.maps[1, 1], size, ColorScale.of(s))
    assert np.array_equal(np.asarray(Image.open(paths[4])), np.asarray(Image.open(io.BytesIO(expected))))
