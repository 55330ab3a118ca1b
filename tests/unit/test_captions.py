"""The captions baked into preview panels: tall enough to read where the node shows them, names whole (wrapped, not
cut), a cut name still told apart, and a segmentation key that names every concept its view colours."""

import numpy as np
import pytest
import torch

from concept_attention.concept_patch.maps.captions import (
    CAPTION_MIN_SCREEN_PX,
    MAX_NAME_LINES,
    font_size_for,
    heatmap_name_lines,
    key_lines,
    readable_width,
)
from concept_attention.concept_patch.maps.colors import concept_colors_u8
from concept_attention.concept_patch.maps.panel_captions import coloured_concepts
from concept_attention.concept_patch.maps.panels import LABEL_MIN_WIDTH, PREVIEW_MIN_SIDE, sheet_layout
from concept_attention.concept_patch.maps.preview import render_preview
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps

PANEL_WIDTHS = (LABEL_MIN_WIDTH, PREVIEW_MIN_SIDE, 128, 170, 256, 333, 512)


def _columns(r: int, winners_by_picture: list[list[int]], grid=(4, 8)) -> torch.Tensor:
    """Maps [B, r, h, w] in which picture b's token columns are won, in turn, by the concepts winners_by_picture[b]."""
    maps = torch.full((len(winners_by_picture), r, *grid), 0.1)
    for b, winners in enumerate(winners_by_picture):
        for col in range(grid[1]):
            maps[b, winners[col % len(winners)], :, col] = 5.0
    return maps.softmax(dim=1)


def _strip_colours(strip: torch.Tensor) -> set:
    pixels = np.clip(255.0 * strip.numpy(), 0, 255).astype(np.uint8).reshape(-1, 3)
    return {tuple(int(v) for v in c) for c in np.unique(pixels, axis=0)}


@pytest.mark.parametrize("width", PANEL_WIDTHS)
def test_caption_is_at_least_12_px_where_the_node_shows_a_panel_at_its_readable_width(width):
    """The web extension shows each panel at least readable_width wide at 100 % zoom; there the caption's ink
    (ascender to descender of 'background') is at least 12 px tall."""
    s = SaliencyMaps(torch.rand(1, 2, 4, 4).softmax(1), ["background", "sky"], (width, width))
    layout = sheet_layout(s)
    panel_width = layout.panel[1]
    panels = render_preview(s)
    strip = panels[2, layout.panel[0] :]  # the map of "background", its strip below
    white = (strip.min(dim=-1).values > 0.8).any(dim=1).nonzero()
    first_line = white[white < layout.strip // 2 + 1]
    ink = int(first_line.max() - first_line.min() + 1)
    shown = readable_width(panel_width) / panel_width
    assert ink * shown >= 12, (panel_width, ink, shown)
    assert font_size_for(panel_width) * shown >= CAPTION_MIN_SCREEN_PX


@pytest.mark.parametrize("width", PANEL_WIDTHS)
def test_names_are_wrapped_whole_never_cut(width):
    names = ["background", "a red bicycle leaning on the wall", "sky"]
    lines = heatmap_name_lines(names, width)
    assert lines[0] == ["background"]  # was "backg..." beside the colour bar
    assert " ".join(lines[1]) == names[1] and len(lines[1]) <= MAX_NAME_LINES
    assert lines[2] == ["sky"]


def test_a_name_too_long_for_its_lines_is_cut_but_told_apart():
    left, right = "a " * 120 + "car on the left", "a " * 120 + "car on the right"
    lines = heatmap_name_lines([left, right, "sky"], 128)
    assert len(lines[0]) == len(lines[1]) == MAX_NAME_LINES
    assert lines[0] != lines[1]
    assert lines[0][-1].endswith("#1") and lines[1][-1].endswith("#2")
    key = key_lines([(0, left), (1, right)], 128)
    texts = [[item.text for line in key for item in line if item.index == j] for j in (0, 1)]
    assert texts[0] != texts[1] and texts[0][-1].endswith("#1") and texts[1][-1].endswith("#2")


def test_segmentation_key_lists_every_concept_the_view_colours_per_picture():
    """Six concepts win tokens of picture 1 and two of picture 2: each picture's key shows exactly the swatches of
    the concepts it colours (no "+2" whose colours are on screen but unnamed)."""
    names = ["house", "sun", "hill", "sky", "background", "tree"]
    maps = _columns(6, [[0, 1, 2, 3, 4, 5], [1, 4]])
    s = SaliencyMaps(maps, names, (128, 256))
    assert coloured_concepts(s) == [(0, 1, 2, 3, 4, 5), (1, 4)]
    layout = sheet_layout(s)
    panels = render_preview(s)
    colours = concept_colors_u8(6)
    for picture, shown in enumerate(coloured_concepts(s)):
        strip = panels[picture * 7, layout.panel[0] :]
        found = _strip_colours(strip)
        assert {colours[i] for i in shown} <= found, picture
        assert not ({colours[i] for i in range(6) if i not in shown} & found), picture
    for width in PANEL_WIDTHS:
        entries = [(i, names[i]) for i in range(6)] + [(6, "a red bicycle leaning on the garden wall")]
        key = key_lines(entries, width)
        assert [item.index for line in key for item in line if item.swatch] == list(range(7)), width
        # a name wider than a line wraps onto lines of its own: whole, or cut after MAX_NAME_LINES lines
        lines = [item.text for line in key for item in line if item.index == 6]
        assert " ".join(lines) == entries[6][1] or (len(lines) == MAX_NAME_LINES and lines[-1].endswith("...")), width
        assert width < 128 or " ".join(lines) == entries[6][1], width


def test_video_key_names_every_concept_of_the_clip():
    maps = torch.full((1, 3, 2, 4, 4), 0.1)
    maps[0, 0, 0] = 5.0  # token frame 0: ball everywhere
    maps[0, 2, 1] = 5.0  # token frame 1: sky everywhere
    s = SaliencyMaps(maps.softmax(1), ["ball", "grass", "sky"], (64, 64), frames=5)
    assert coloured_concepts(s) == [(0, 2)]
    layout = sheet_layout(s)
    sheets = render_preview(s)
    strip = sheets[0, layout.panel[0] : layout.panel[0] + layout.strip, : layout.panel[1]]
    colours = concept_colors_u8(3)
    found = _strip_colours(strip)
    assert colours[0] in found and colours[2] in found and colours[1] not in found


def test_a_key_too_long_for_its_lines_keeps_the_largest_regions_and_counts_the_rest():
    """64 concepts each winning part of a 103 px panel cannot all be named readably: the key keeps to
    MAX_KEY_LINES lines, names the concepts covering most of the view (in concept order) and says how many more
    there are; the legend beside the node lists them all."""
    from concept_attention.concept_patch.maps.panel_captions import MAX_KEY_LINES, PreviewCaptions

    r = 64
    maps = torch.full((1, r, 16, 16), 0.1)
    for token in range(256):
        concept = 0 if token < 64 else 1 + (token - 64) % (r - 1)  # concept 0 wins most tokens
        maps[0, concept, token // 16, token % 16] = 5.0
    s = SaliencyMaps(maps.softmax(1), [f"concept {i}" for i in range(r)], (1024, 1024))
    captions = PreviewCaptions(s)
    width = sheet_layout(s).panel[1]
    key = captions.key(width, 0)
    assert len(key) <= MAX_KEY_LINES
    named = [item.index for line in key for item in line if item.swatch]
    [more] = [item.text for line in key for item in line if item.index == -1]
    assert 0 in named and named == sorted(named)
    assert more == f"+{r - len(named)} more"
    few = SaliencyMaps(_columns(6, [[0, 1, 2, 3, 4, 5]]), [f"c{i}" for i in range(6)], (64, 64))
    assert not [item for line in PreviewCaptions(few).key(sheet_layout(few).panel[1], 0) for item in line
                if item.index == -1]
