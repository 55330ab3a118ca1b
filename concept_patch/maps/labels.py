"""The label strips under preview panels: a concept's name with the colour bar, or the key of a segmentation view
(a swatch and the name of every concept it colours). What the text says and where it breaks is captions.py's.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from .captions import KeyItem, Measure, swatch_size
from .colors import ColorScale, colorize, concept_colors_u8

STRIP_BACKGROUND = (24, 24, 24)
TEXT = (255, 255, 255)
QUIET_TEXT = (200, 200, 200)


def _strip_image(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw, Measure]:
    image = Image.new("RGB", (width, height), STRIP_BACKGROUND)
    return image, ImageDraw.Draw(image), Measure(width)


def _as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).float() / 255.0


def _line_top(measure: Measure, line: int) -> int:
    return measure.pad // 2 + line * measure.line


def _text_at(draw, measure: Measure, x: int, line: int, text: str, fill=TEXT) -> None:
    """Draw text with its left edge at x, centred vertically on line `line` of the strip."""
    text = measure.drawable(text)
    box = draw.textbbox((0, 0), text, font=measure.font)
    top = _line_top(measure, line) + (measure.line - (box[3] - box[1])) // 2
    draw.text((x - box[0], top - box[1]), text, fill=fill, font=measure.font)


def heatmap_strip(width: int, height: int, name_lines: tuple[str, ...], scale: ColorScale,
                  number: str = "") -> torch.Tensor:
    """The strip under a heatmap [height, width, 3]: the concept's name on its lines (captions.heatmap_name_lines),
    then, on the strip's last line, `number` (the picture's, in a batch) and the colour bar of the shared scale
    with its end values."""
    image, draw, measure = _strip_image(width, height)
    for k, line in enumerate(name_lines):
        _text_at(draw, measure, measure.pad, k, line)
    last = max(len(name_lines), (height - measure.pad) // measure.line - 1)
    lo_text, hi_text = scale.tick(scale.lo), scale.tick(scale.hi)
    x = measure.pad
    if number:
        _text_at(draw, measure, x, last, number, QUIET_TEXT)
        x += measure.text_width(number) + 2 * measure.pad
    _text_at(draw, measure, x, last, lo_text, QUIET_TEXT)
    x0 = x + measure.pad + measure.text_width(lo_text)
    x1 = width - 2 * measure.pad - measure.text_width(hi_text)
    if x1 > x0 + 4:
        bar_h = max(4, int(round(measure.line * 0.45)))
        y0 = _line_top(measure, last) + (measure.line - bar_h) // 2
        ramp = colorize(torch.linspace(0.0, 1.0, x1 - x0))
        ramp = (ramp * 255.0).round().to(torch.uint8).numpy()
        image.paste(Image.fromarray(np.repeat(ramp[None], bar_h, axis=0), "RGB"), (x0, y0))
        draw.rectangle([x0 - 1, y0 - 1, x1, y0 + bar_h], outline=(140, 140, 140))
    _text_at(draw, measure, x1 + measure.pad, last, hi_text, QUIET_TEXT)
    return _as_tensor(image)


def segmentation_strip(width: int, height: int, lines: tuple[tuple[KeyItem, ...], ...], concepts: int,
                       suffix: str = "") -> torch.Tensor:
    """The key under a segmentation view [height, width, 3]: the lines of captions.key_lines (a swatch in the
    concept's colour, then its name), and `suffix` (the picture's or frame's number) at the right of the last line."""
    image, draw, measure = _strip_image(width, height)
    colors = concept_colors_u8(concepts)
    swatch = swatch_size(width)
    for k, line in enumerate(lines):
        y0 = _line_top(measure, k) + (measure.line - swatch) // 2
        for item in line:
            if item.swatch:
                draw.rectangle([item.x, y0, item.x + swatch - 1, y0 + swatch - 1], fill=colors[item.index])
                _text_at(draw, measure, item.x + swatch + measure.pad, k, item.text)
            else:
                _text_at(draw, measure, item.x, k, item.text, TEXT if item.index >= 0 else QUIET_TEXT)
    tail = suffix.strip()
    if tail:
        x = width - measure.pad - measure.text_width(tail)
        _text_at(draw, measure, x, max(0, len(lines) - 1), tail, QUIET_TEXT)
    return _as_tensor(image)
