"""Preview pictures of saliency maps: coloured heatmaps over the image, and argmax segmentations.

Everything returns float32 CPU tensors in ComfyUI's IMAGE layout [N, H, W, 3], 0-1. Labels are
drawn with PIL's built-in font so no font file or matplotlib is needed.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .image_batch import match_image_batch
from .masks import upsample
from .saliency_maps import SaliencyMaps

# Inferno (perceptually uniform, dark = low) sampled at 9 evenly spaced points; linear in between.
_INFERNO_ANCHORS = torch.tensor(
    [
        [0.001462, 0.000466, 0.013866],
        [0.087411, 0.044556, 0.224813],
        [0.258234, 0.038571, 0.406485],
        [0.416331, 0.090203, 0.432943],
        [0.578304, 0.148039, 0.404411],
        [0.735683, 0.215906, 0.330245],
        [0.865006, 0.316822, 0.226055],
        [0.954506, 0.468744, 0.099874],
        [0.988362, 0.998364, 0.644924],
    ],
    dtype=torch.float32,
)

# Distinct, saturated colours for the first concepts (Tableau 10); more are spread by golden-ratio hue.
_PALETTE = [
    (0.122, 0.467, 0.706),
    (1.000, 0.498, 0.055),
    (0.173, 0.627, 0.173),
    (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741),
    (0.549, 0.337, 0.294),
    (0.890, 0.467, 0.761),
    (0.498, 0.498, 0.498),
    (0.737, 0.741, 0.133),
    (0.090, 0.745, 0.812),
]

LABEL_BOX_OPACITY = 0.65


def colorize(scores: torch.Tensor) -> torch.Tensor:
    """Map scores in [0, 1] (any shape [...]) to inferno colours [..., 3]; out-of-range values clamp, NaN -> 0."""
    x = torch.nan_to_num(scores.detach().float().cpu(), nan=0.0).clamp(0.0, 1.0)
    steps = _INFERNO_ANCHORS.shape[0] - 1
    pos = x * steps
    i0 = pos.floor().long().clamp(max=steps - 1)
    frac = (pos - i0).unsqueeze(-1)
    return torch.lerp(_INFERNO_ANCHORS[i0], _INFERNO_ANCHORS[i0 + 1], frac)


def concept_colors(r: int) -> torch.Tensor:
    """r distinct colours [r, 3] float32 (fixed order, so concept i always gets the same colour)."""
    colors = list(_PALETTE[:r])
    for i in range(len(colors), r):
        hue = (0.13 + i * 0.618033988749895) % 1.0
        colors.append(colorsys.hsv_to_rgb(hue, 0.75 if i % 2 else 0.95, 0.95 if i % 3 else 0.8))
    return torch.tensor(colors, dtype=torch.float32).view(r, 3)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map [..., h, w] to [0, 1] for display; a constant map becomes 0."""
    flat = maps.float().flatten(-2)
    lo = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), torch.zeros_like(flat))
    return out.view_as(maps)


def overlay_maps(
    saliency: SaliencyMaps, images: torch.Tensor | None = None, alpha: float = 0.6, labels: bool = True
) -> torch.Tensor:
    """One panel per (image, concept), image-major: [B·r, H, W, 3] float32.

    Each map is normalised on its own (so weak concepts are still visible), coloured, upsampled to
    the picture size and blended over the picture (alpha = heatmap weight), or shown alone when no
    picture is given. labels: draw the concept name (and image number in batches) in a dark box.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be between 0 and 1, got {alpha}")
    b, r = saliency.maps.shape[:2]
    size = tuple(int(s) for s in saliency.image_size)
    heat = colorize(upsample(normalize_maps(saliency.maps.cpu()), size))
    heat = heat.view(b, r, *size, 3)
    if images is not None:
        pictures = match_image_batch(images, b, size, role="image").cpu().unsqueeze(1)
        heat = pictures * (1.0 - alpha) + heat * alpha
    panels = heat.reshape(b * r, *size, 3).contiguous()
    if labels:
        for i in range(b):
            for j, name in enumerate(saliency.names):
                text = name if b == 1 else f"{name} ({i + 1}/{b})"
                panels[i * r + j] = draw_label(panels[i * r + j], text)
    return panels


def segmentation_preview(
    saliency: SaliencyMaps, images: torch.Tensor | None = None, alpha: float = 0.5, legend: bool = True
) -> torch.Tensor:
    """Each pixel coloured by its winning concept (argmax over concepts, the paper's segmentation): [B, H, W, 3].

    The maps are upsampled bilinearly before the argmax so region borders are smooth. Blended over
    the picture when given (alpha = colour weight). legend: colour swatches with the concept names.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"segmentation alpha must be between 0 and 1, got {alpha}")
    b, r = saliency.maps.shape[:2]
    size = tuple(int(s) for s in saliency.image_size)
    winners = upsample(saliency.maps.cpu(), size).argmax(dim=1)
    colors = concept_colors(r)
    out = colors[winners]
    if images is not None:
        pictures = match_image_batch(images, b, size, role="image").cpu()
        out = pictures * (1.0 - alpha) + out * alpha
    out = out.contiguous()
    if legend:
        for i in range(b):
            out[i] = draw_legend(out[i], saliency.names, colors)
    return out


# ---------------------------------------------------------------- text drawing


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _font_size(panel: torch.Tensor) -> int:
    return int(min(48, max(10, round(min(panel.shape[0], panel.shape[1]) / 24))))


def _text_box(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[str, tuple[int, int, int, int]]:
    """Bounding box of text; names the font cannot encode fall back to an ASCII spelling."""
    try:
        return text, draw.textbbox((0, 0), text, font=font)
    except UnicodeEncodeError:
        text = text.encode("ascii", "backslashreplace").decode("ascii")
        return text, draw.textbbox((0, 0), text, font=font)


def _composite(panel: torch.Tensor, rgba: Image.Image, x: int = 0, y: int = 0) -> torch.Tensor:
    """Alpha-blend a PIL RGBA image onto panel [H, W, 3] at (x, y), cropped to the panel."""
    h = min(rgba.height, panel.shape[0] - y)
    w = min(rgba.width, panel.shape[1] - x)
    if h <= 0 or w <= 0:
        return panel
    src = torch.from_numpy(np.array(rgba, dtype=np.uint8)).float()[:h, :w] / 255.0
    a = src[..., 3:4]
    panel[y : y + h, x : x + w] = panel[y : y + h, x : x + w] * (1.0 - a) + src[..., :3] * a
    return panel


def draw_label(panel: torch.Tensor, text: str) -> torch.Tensor:
    """Draw text at the top-left of panel [H, W, 3] on a dark translucent box (long text is shortened)."""
    size = _font_size(panel)
    font = _font(size)
    pad = max(2, size // 4)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    text, box = _text_box(probe, text, font)
    room = panel.shape[1] - 2 * pad
    while box[2] - box[0] > room and len(text) > 1:
        keep = min(len(text) - 1, max(1, int(len(text) * room / (box[2] - box[0])) - 3))  # proportional guess
        text = text[:keep] + "..." if keep > 3 else text[:keep]
        text, box = _text_box(probe, text, font)
    width, height = box[2] - box[0] + 2 * pad, box[3] - box[1] + 2 * pad
    label = Image.new("RGBA", (width, height), (0, 0, 0, round(255 * LABEL_BOX_OPACITY)))
    ImageDraw.Draw(label).text((pad - box[0], pad - box[1]), text, fill=(255, 255, 255, 255), font=font)
    return _composite(panel, label)


def draw_legend(panel: torch.Tensor, names: list[str], colors: torch.Tensor) -> torch.Tensor:
    """Colour swatch + name per concept, stacked at the top-left of panel [H, W, 3] on a dark box."""
    size = _font_size(panel)
    font = _font(size)
    pad = max(2, size // 4)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    rows = [_text_box(probe, n, font) for n in names]
    line = max(b[3] - b[1] for _, b in rows) + pad
    swatch = max(6, line - pad)
    width = 3 * pad + swatch + max(b[2] - b[0] for _, b in rows)
    height = pad + line * len(rows)
    legend = Image.new("RGBA", (width, height), (0, 0, 0, round(255 * LABEL_BOX_OPACITY)))
    draw = ImageDraw.Draw(legend)
    for i, ((text, box), color) in enumerate(zip(rows, colors.tolist())):
        top = pad + i * line
        fill = tuple(round(c * 255) for c in color) + (255,)
        draw.rectangle([pad, top, pad + swatch - 1, top + swatch - 1], fill=fill)
        draw.text((2 * pad + swatch - box[0], top - box[1]), text, fill=(255, 255, 255, 255), font=font)
    return _composite(panel, legend)


# ---------------------------------------------------------------- files


def image_to_png_bytes(image: torch.Tensor) -> bytes:
    """PNG bytes of one picture [H, W, 3] float 0-1."""
    array = (image.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def heatmap_png_bytes(scores: torch.Tensor, size: tuple[int, int] | None = None) -> bytes:
    """PNG bytes of one map [h, w], normalised for display, coloured, resized to size (H, W) if given."""
    if scores.ndim != 2:
        raise ValueError(f"a heatmap needs one map [h, w], got shape {tuple(scores.shape)}")
    m = normalize_maps(scores.cpu().unsqueeze(0))
    if size is not None:
        m = upsample(m, size)
    return image_to_png_bytes(colorize(m[0]))
