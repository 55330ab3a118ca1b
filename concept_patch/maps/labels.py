"""The label strips under preview panels: a concept's name with the colour bar, or the concepts'
swatches under a segmentation view. PIL's built-in font, so no font file or matplotlib is needed.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .colors import ColorScale, colorize, concept_colors_u8

STRIP_BACKGROUND = (24, 24, 24)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _text_box(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[str, tuple[int, int, int, int]]:
    """Bounding box of text; names the font cannot encode fall back to an ASCII spelling."""
    try:
        return text, draw.textbbox((0, 0), text, font=font)
    except UnicodeEncodeError:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        return text, draw.textbbox((0, 0), text, font=font)


def font_size_for(width: int) -> int:
    """The label size of a panel `width` pixels wide: a node shows a grid of panels about 170 px wide,
    and there the text stays about 10 px tall."""
    return int(max(11, round(width / 12)))


def strip_height(width: int) -> int:
    """Height of the label strip under a panel `width` pixels wide."""
    return int(round(font_size_for(width) * 1.6))


def _fit(draw: ImageDraw.ImageDraw, text: str, font, room: int) -> tuple[str, tuple[int, int, int, int]]:
    """text (shortened with '...' when wider than room) and its box."""
    text, box = _text_box(draw, text, font)
    while box[2] - box[0] > room and len(text) > 1:
        keep = min(len(text) - 1, max(1, int(len(text) * room / max(1, box[2] - box[0])) - 3))
        text = text[:keep] + "..." if keep > 3 else text[:keep]
        text, box = _text_box(draw, text, font)
    return text, box


def _strip_image(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw, object, int]:
    image = Image.new("RGB", (width, height), STRIP_BACKGROUND)
    size = font_size_for(width)
    return image, ImageDraw.Draw(image), _font(size), max(2, size // 3)


def _as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image, dtype=np.uint8)).float() / 255.0


def _text_at(draw, x: int, height: int, text: str, box, font, fill=(255, 255, 255)) -> None:
    """Draw text with its box's left edge at x, centred vertically in a strip of this height."""
    top = (height - (box[3] - box[1])) // 2
    draw.text((x - box[0], top - box[1]), text, fill=fill, font=font)


def heatmap_strip(width: int, height: int, name: str, scale: ColorScale) -> torch.Tensor:
    """The strip under a heatmap [height, width, 3]: the concept's name, then the colour bar of the
    shared scale with its end values."""
    image, draw, font, pad = _strip_image(width, height)
    lo_text, lo_box = _text_box(draw, scale.tick(scale.lo), font)
    hi_text, hi_box = _text_box(draw, scale.tick(scale.hi), font)
    bar_room = max(width // 3, 40)
    name_room = max(1, width - bar_room - (lo_box[2] - lo_box[0]) - (hi_box[2] - hi_box[0]) - 6 * pad)
    name, name_box = _fit(draw, name, font, name_room)
    _text_at(draw, pad, height, name, name_box, font)
    x = max(pad + (name_box[2] - name_box[0]) + 2 * pad, width - bar_room - (lo_box[2] - lo_box[0])
            - (hi_box[2] - hi_box[0]) - 3 * pad)
    _text_at(draw, x, height, lo_text, lo_box, font, fill=(200, 200, 200))
    x0 = x + (lo_box[2] - lo_box[0]) + pad
    x1 = width - pad - (hi_box[2] - hi_box[0]) - pad
    if x1 > x0 + 4:
        bar_h = max(4, int(round(height * 0.45)))
        y0 = (height - bar_h) // 2
        ramp = colorize(torch.linspace(0.0, 1.0, x1 - x0))
        ramp = (ramp * 255.0).round().to(torch.uint8).numpy()
        bar = Image.fromarray(np.repeat(ramp[None], bar_h, axis=0), "RGB")
        image.paste(bar, (x0, y0))
        draw.rectangle([x0 - 1, y0 - 1, x1, y0 + bar_h], outline=(140, 140, 140))
    _text_at(draw, x1 + pad, height, hi_text, hi_box, font, fill=(200, 200, 200))
    return _as_tensor(image)


def segmentation_strip(width: int, height: int, names: list[str], suffix: str = "") -> torch.Tensor:
    """The strip under a segmentation view [height, width, 3]: a swatch and the name of as many
    concepts as fit, then how many more there are."""
    image, draw, font, pad = _strip_image(width, height)
    colors = concept_colors_u8(len(names))
    swatch = max(6, int(round(height * 0.5)))
    tail_text = suffix.strip()
    x = pad
    for i, name in enumerate(names):
        rest = len(names) - i - 1
        more = f"+{rest}" if rest else ""
        reserve = 0
        for extra in (more, tail_text):
            if extra:
                reserve += _text_box(draw, extra, font)[1][2] + 2 * pad
        text, box = _text_box(draw, name, font)
        need = swatch + pad + (box[2] - box[0]) + 2 * pad
        if x + need > width - reserve:
            room = width - reserve - x - swatch - 3 * pad
            if room < 3 * font_size_for(width):
                more = f"+{len(names) - i}"
                t, b = _text_box(draw, more, font)
                _text_at(draw, x, height, t, b, font, fill=(200, 200, 200))
                x += b[2] - b[0] + 2 * pad
                break
            text, box = _fit(draw, name, font, room)
            need = swatch + pad + (box[2] - box[0]) + 2 * pad
        y0 = (height - swatch) // 2
        draw.rectangle([x, y0, x + swatch - 1, y0 + swatch - 1], fill=colors[i])
        _text_at(draw, x + swatch + pad, height, text, box, font)
        x += need
    if tail_text:
        t, b = _text_box(draw, tail_text, font)
        _text_at(draw, width - pad - (b[2] - b[0]), height, t, b, font, fill=(200, 200, 200))
    return _as_tensor(image)
