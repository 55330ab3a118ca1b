"""Preview pictures of saliency maps: coloured heatmaps over the image, and argmax segmentations.

Everything returns float32 CPU tensors in ComfyUI's IMAGE layout [N, H, W, 3], 0-1. Labels are
drawn with PIL's built-in font so no font file or matplotlib is needed.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..checks.errors import ConceptAttentionError
from .image_batch import check_image_batch, check_video_frames, picture_of
from .masks import frames_between, upsample
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

# Previews: every panel together holds at most PREVIEW_PIXEL_BUDGET pixels and no panel side is
# longer than PREVIEW_MAX_SIDE, whatever the picture's size or the concept count (64 concepts of a
# 4096² picture cost what a preview needs, not 64 full-size pictures).
PREVIEW_MAX_SIDE = 512
PREVIEW_MIN_SIDE = 96
PREVIEW_PIXEL_BUDGET = 8_000_000
# Save Saliency's heatmap PNGs: larger panels, the same kind of budget.
FILE_MAX_SIDE = 1024
FILE_PIXEL_BUDGET = 16_000_000

# The picture under a heatmap: its gray levels squeezed into PICTURE_BAND and mixed in at
# PICTURE_WEIGHT, so it can move a pixel's colour by at most
# PICTURE_WEIGHT * (PICTURE_BAND[1] - PICTURE_BAND[0]) = 0.1 on every channel: the shapes of the
# picture stay visible, but a bright sun never looks "hot" (the colour scale spans 0 to 1).
PICTURE_WEIGHT = 0.2
PICTURE_BAND = (0.25, 0.75)
STRIP_BACKGROUND = (24, 24, 24)


def colorize(scores: torch.Tensor) -> torch.Tensor:
    """Map scores in [0, 1] (any shape [...]) to inferno colours [..., 3]; out-of-range values clamp, NaN -> 0."""
    x = torch.nan_to_num(scores.detach().float().cpu(), nan=0.0).clamp(0.0, 1.0)
    steps = _INFERNO_ANCHORS.shape[0] - 1
    pos = x * steps
    i0 = pos.floor().long().clamp(max=steps - 1)
    frac = (pos - i0).unsqueeze(-1)
    return torch.lerp(_INFERNO_ANCHORS[i0], _INFERNO_ANCHORS[i0 + 1], frac)


def concept_colors_u8(r: int) -> list[tuple[int, int, int]]:
    """r distinct colours as 8-bit RGB (fixed order, so concept i always gets the same colour).

    The legend's swatches and the segmentation view use exactly these values."""
    colors = list(_PALETTE[:r])
    for i in range(len(colors), r):
        hue = (0.13 + i * 0.618033988749895) % 1.0
        colors.append(colorsys.hsv_to_rgb(hue, 0.75 if i % 2 else 0.95, 0.95 if i % 3 else 0.8))
    return [tuple(int(round(min(max(c, 0.0), 1.0) * 255)) for c in color) for color in colors]


def concept_colors(r: int) -> torch.Tensor:
    """r distinct colours [r, 3] float32 in 0-1, each an exact 8-bit value: a picture made of them
    saves (255·x, rounded or truncated, as ComfyUI's image savers do) to concept_colors_u8."""
    u8 = torch.tensor(concept_colors_u8(r), dtype=torch.float32).view(r, 3)
    return torch.where(u8 >= 255, torch.ones_like(u8), (u8 + 0.25) / 255.0)


def color_hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map [..., h, w] to [0, 1]; a constant map becomes 0. (Previews use a
    scale shared by all maps instead, see ColourScale.)"""
    flat = maps.float().flatten(-2)
    lo = flat.amin(dim=-1, keepdim=True)
    span = flat.amax(dim=-1, keepdim=True) - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), torch.zeros_like(flat))
    return out.view_as(maps)


@dataclass(frozen=True)
class ColourScale:
    """The score range shown from dark (lo) to bright (hi), one for every map of a SALIENCY.

    Softmax maps are probabilities: the scale is 0 to 1, so equal colours mean equal probability in
    every concept's map and a concept that wins nowhere never looks like one that wins. Maps made
    with softmax off have no fixed range: the scale is their smallest to largest value, over every
    concept and picture together.
    """

    lo: float
    hi: float
    probabilities: bool

    @classmethod
    def of(cls, saliency: SaliencyMaps) -> "ColourScale":
        if saliency.softmax:
            return cls(0.0, 1.0, True)
        maps = saliency.maps
        lo, hi = float(maps.min()), float(maps.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            hi = lo + 1.0 if math.isfinite(lo) else 1.0
            lo = lo if math.isfinite(lo) else 0.0
        return cls(lo, hi, False)

    def unit(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores placed on the scale: 0 at lo, 1 at hi (clamped)."""
        return ((scores.float() - self.lo) / (self.hi - self.lo)).clamp(0.0, 1.0)

    def tick(self, value: float) -> str:
        if self.probabilities:
            return f"{value:g}"
        return f"{value:.3g}"


def panel_size(image_size: tuple[int, int], panels: int, max_side: int = PREVIEW_MAX_SIDE,
               budget: int = PREVIEW_PIXEL_BUDGET, min_side: int = PREVIEW_MIN_SIDE,
               upscale: bool = True) -> tuple[int, int]:
    """(height, width) of one preview panel's map: the picture's aspect ratio, its longer side
    max_side, smaller when `panels` panels would exceed `budget` pixels together; never below
    min_side on the longer side. upscale=False: never larger than the picture either."""
    h, w = max(1, int(image_size[0])), max(1, int(image_size[1]))
    long_side = float(max_side if upscale else min(max_side, max(h, w)))
    min_side = min_side if upscale else min(min_side, max(h, w))
    area = long_side * long_side * min(h, w) / max(h, w)
    if area * max(1, panels) > budget:
        long_side *= math.sqrt(budget / (area * max(1, panels)))
    long_side = max(float(min_side), long_side)
    if h >= w:
        return int(round(long_side)), max(1, int(round(long_side * w / h)))
    return max(1, int(round(long_side * h / w))), int(round(long_side))


def _resize_picture(picture: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """RGB [H, W, 3] -> [h, w, 3] float32 in 0-1 (area-averaged when shrinking)."""
    x = picture.float().permute(2, 0, 1).unsqueeze(0)
    if tuple(x.shape[-2:]) != tuple(size):
        shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return x[0].permute(1, 2, 0).clamp(0.0, 1.0)


def picture_base(picture: torch.Tensor) -> torch.Tensor:
    """What a heatmap mixes in from the picture [h, w, 3]: its gray levels squeezed into PICTURE_BAND."""
    gray = (picture * torch.tensor([0.299, 0.587, 0.114])).sum(-1, keepdim=True)
    return PICTURE_BAND[0] + (PICTURE_BAND[1] - PICTURE_BAND[0]) * gray


def heat_colors(scores: torch.Tensor, scale: ColourScale, base: torch.Tensor | None = None) -> torch.Tensor:
    """Colours [..., h, w, 3] of maps [..., h, w] (already at panel size) on the shared scale, over the
    picture's base (picture_base) when given."""
    heat = colorize(scale.unit(scores))
    if base is None:
        return heat
    return heat * (1.0 - PICTURE_WEIGHT) + base * PICTURE_WEIGHT


def winners_at(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Winning concept of every pixel [B, H, W] (long), each pixel taking its token's winner
    (nearest token: the segmentation view shows tokens, as the legend's shares count them)."""
    winners = maps.argmax(dim=1)
    h, w = winners.shape[-2:]
    rows = torch.div(torch.arange(size[0]) * h, size[0], rounding_mode="floor")
    cols = torch.div(torch.arange(size[1]) * w, size[1], rounding_mode="floor")
    return winners[:, rows][:, :, cols]


def render_preview(saliency: SaliencyMaps, images: torch.Tensor | None = None, labels: bool = True,
                   max_side: int = PREVIEW_MAX_SIDE, budget: int = PREVIEW_PIXEL_BUDGET) -> torch.Tensor:
    """The preview panels of a SALIENCY: for every picture, its segmentation view, then one heatmap per
    concept: [B·(r+1), H', W', 3] float32, image-major (panel i·(r+1) is picture i's segmentation,
    panel i·(r+1) + 1 + j its map of concept j).

    Segmentation view: each token in the colour of its winning concept (argmax over concepts, the
    paper's multi-class view), in exactly the legend's colours. Heatmaps: inferno on one scale shared
    by every map (ColourScale), over a faint gray copy of the picture when one is given. labels: a
    strip under each panel with the concept's name and the colour bar (heatmaps) or the colours of
    the concepts (segmentation). The panels are preview-sized (panel_size): the work and memory do not
    grow with the picture's resolution, and only r+1 panels per picture are ever held.

    A video gets one sheet per pixel frame instead (render_video_preview): [B·F, H', W', 3].
    """
    if saliency.is_video:
        return render_video_preview(saliency, images, labels, max_side, budget)
    b, r = saliency.maps.shape[:2]
    image_size = tuple(int(s) for s in saliency.image_size)
    pictures = None
    if images is not None:
        pictures = check_image_batch(images, b, image_size, role="image")
    count = b * (r + 1)
    size = panel_size(image_size, count, max_side, budget)
    strip = strip_height(size[1]) if labels else 0
    # a budget for whole panels, strips included
    while (size[0] + strip) * size[1] * count > budget and max(size) > PREVIEW_MIN_SIDE:
        size = panel_size(image_size, count, max_side=max(size) - 8, budget=budget)
        strip = strip_height(size[1]) if labels else 0
    scale = ColourScale.of(saliency)
    maps = saliency.maps.detach().float().cpu()
    out = torch.empty(count, size[0] + strip, size[1], 3, dtype=torch.float32)
    colors = concept_colors(r)
    winners = winners_at(maps, size)
    strips = {}
    for i in range(b):
        base = picture_base(_resize_picture(picture_of(pictures, i), size)) if pictures is not None else None
        first = i * (r + 1)
        out[first, : size[0]] = colors[winners[i]]
        panel_maps = upsample(maps[i : i + 1], size)[0]  # [r, H', W'], bilinear
        for j in range(r):
            out[first + 1 + j, : size[0]] = heat_colors(panel_maps[j], scale, base)
        if labels:
            suffix = f" ({i + 1}/{b})" if b > 1 else ""
            key = ("segmentation", suffix)
            if key not in strips:
                strips[key] = segmentation_strip(size[1], strip, saliency.names, suffix)
            out[first, size[0]:] = strips[key]
            for j, name in enumerate(saliency.names):
                out[first + 1 + j, size[0]:] = heatmap_strip(size[1], strip, name + suffix, scale)
    return out


def overlay_maps(saliency: SaliencyMaps, images: torch.Tensor | None = None, labels: bool = True) -> torch.Tensor:
    """The heatmap panels of render_preview alone: [B·r, H', W', 3], image-major (pictures only)."""
    if saliency.is_video:
        raise ConceptAttentionError("overlay_maps takes picture maps; for a video use render_preview (one sheet per frame)")
    panels = render_preview(saliency, images, labels=labels)
    r = len(saliency.names)
    keep = [k for k in range(panels.shape[0]) if k % (r + 1) != 0]
    return panels[keep]


def segmentation_preview(saliency: SaliencyMaps, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Each token in the colour of its winning concept (the legend's colours): [B, H, W, 3], at size
    (default: the picture size). A video: [B·F, H, W, 3], each pixel frame showing its nearest token frame."""
    size = tuple(int(s) for s in (size or saliency.image_size))
    maps = saliency.maps.detach().float().cpu()
    if saliency.is_video:
        b, r = maps.shape[:2]
        maps = maps[:, :, nearest_token_frames(saliency)].transpose(1, 2).reshape(-1, r, *saliency.grid)
    return concept_colors(len(saliency.names))[winners_at(maps, size)]


# ---------------------------------------------------------------- video previews

# A video's preview is one sheet per pixel frame (an IMAGE batch of B·F frames that ComfyUI's
# animated-image and video savers play): the segmentation view and every concept's heatmap tiled in
# a grid. The same pixel budget as pictures holds for all the sheets together, so a long clip gets
# smaller panels; panels may shrink to VIDEO_PREVIEW_MIN_SIDE, and their label strips are left out
# below LABEL_MIN_WIDTH (the text would not fit). A clip that needs more than the budget even then is
# refused with a message (over 30 000 panel-frames: e.g. 257 frames of more than 120 concepts).
VIDEO_PREVIEW_MIN_SIDE = 16
LABEL_MIN_WIDTH = 96
DEFAULT_VIDEO_FPS = 8.0


def nearest_token_frames(saliency: SaliencyMaps) -> torch.Tensor:
    """The token frame nearest each pixel frame (the segmentation view shows tokens, in time as in space)."""
    before, after, weight = saliency.pixel_frame_sources()
    return torch.where(weight > 0.5, after, before)


def video_fps(saliency: SaliencyMaps) -> float:
    """Frame rate for animated previews: the maps' metadata 'fps' when it is a sensible number, else 8."""
    fps = saliency.metadata.get("fps") if isinstance(saliency.metadata, dict) else None
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and 0 < fps <= 240:
        return float(fps)
    return DEFAULT_VIDEO_FPS


@dataclass(frozen=True)
class SheetLayout:
    """Where the panels sit on a video preview sheet: panel k (0 = segmentation view, 1 + j = concept
    j) in row k // cols, column k % cols; each cell is the map area with its label strip below."""

    panel: tuple[int, int]
    strip: int
    rows: int
    cols: int
    panels: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows * (self.panel[0] + self.strip), self.cols * self.panel[1]

    def box(self, k: int) -> tuple[int, int]:
        """Top-left corner (y, x) of panel k's cell."""
        return (k // self.cols) * (self.panel[0] + self.strip), (k % self.cols) * self.panel[1]


def sheet_layout(saliency: SaliencyMaps, labels: bool = True, max_side: int = PREVIEW_MAX_SIDE,
                 budget: int = PREVIEW_PIXEL_BUDGET) -> SheetLayout:
    """The sheet layout of a video's preview: B·F sheets of r+1 panels within `budget` pixels together."""
    panels = len(saliency.names) + 1
    cols = math.ceil(math.sqrt(panels))
    rows = math.ceil(panels / cols)
    sheets = saliency.batch_size * saliency.clip_frames
    cells = sheets * rows * cols
    image_size = tuple(int(s) for s in saliency.image_size)

    def strip_for(size):
        return strip_height(size[1]) if labels and size[1] >= LABEL_MIN_WIDTH else 0

    size = panel_size(image_size, cells, max_side, budget, min_side=VIDEO_PREVIEW_MIN_SIDE)
    strip = strip_for(size)
    while (size[0] + strip) * size[1] * cells > budget and max(size) > VIDEO_PREVIEW_MIN_SIDE:
        smaller = max(VIDEO_PREVIEW_MIN_SIDE, max(size) - max(1, max(size) // 16))
        size = panel_size(image_size, cells, smaller, budget, min_side=VIDEO_PREVIEW_MIN_SIDE)
        strip = strip_for(size)
    if (size[0] + strip) * size[1] * cells > budget:
        raise ConceptAttentionError(
            f"a preview of {sheets} frames with {panels} panels each needs more than {budget} pixels even with "
            f"{VIDEO_PREVIEW_MIN_SIDE}-pixel panels; preview fewer concepts or a shorter clip"
        )
    return SheetLayout(size, strip, rows, cols, panels)


def render_video_preview(saliency: SaliencyMaps, images: torch.Tensor | None = None, labels: bool = True,
                         max_side: int = PREVIEW_MAX_SIDE, budget: int = PREVIEW_PIXEL_BUDGET) -> torch.Tensor:
    """One preview sheet per pixel frame of a video's maps: [B·F, H', W', 3], clips one after another
    (sheet_layout places the panels). Heatmaps are interpolated in time as the masks are
    (SaliencyMaps.pixel_frame_sources) on one colour scale for the whole clip (ColourScale: 0-1 for
    softmax maps, else the range of every map of every frame), over the frame's picture when the
    decoded frames are given (B·F of them); the segmentation view shows the nearest token frame.
    Sheets are built one frame at a time, so memory is the sheets plus one frame's panels.
    """
    layout = sheet_layout(saliency, labels, max_side, budget)
    b, r = saliency.maps.shape[:2]
    frames = saliency.frames
    size, strip = layout.panel, layout.strip
    pictures = None
    if images is not None:
        pictures = check_video_frames(images, b, frames, saliency.image_size, role="image")
    scale = ColourScale.of(saliency)
    maps = saliency.maps.detach().float().cpu()
    before, after, weight = saliency.pixel_frame_sources()
    nearest = nearest_token_frames(saliency)
    background = torch.tensor(STRIP_BACKGROUND, dtype=torch.float32) / 255.0
    out = background.expand(b * frames, *layout.shape, 3).clone()
    colors = concept_colors(r)
    heat_strips = [heatmap_strip(size[1], strip, name, scale) for name in saliency.names] if strip else []
    for i in range(b):
        clip = maps[i].transpose(0, 1)  # [T, r, h, w]
        for f in range(frames):
            k = i * frames + f
            sheet = out[k]
            panel_maps = upsample(frames_between(clip, before[f : f + 1], after[f : f + 1], weight[f : f + 1]), size)[0]
            base = picture_base(_resize_picture(picture_of(pictures, k), size)) if pictures is not None else None
            y, x = layout.box(0)
            sheet[y : y + size[0], x : x + size[1]] = colors[winners_at(clip[nearest[f]].unsqueeze(0), size)[0]]
            if strip:
                clip_text = f"clip {i + 1}/{b} " if b > 1 else ""
                sheet[y + size[0] : y + size[0] + strip, x : x + size[1]] = segmentation_strip(
                    size[1], strip, saliency.names, f" {clip_text}{f + 1}/{frames}")
            heat = heat_colors(panel_maps, scale, base)  # every concept of the frame at once
            for j in range(r):
                y, x = layout.box(1 + j)
                sheet[y : y + size[0], x : x + size[1]] = heat[j]
                if strip:
                    sheet[y + size[0] : y + size[0] + strip, x : x + size[1]] = heat_strips[j]
    return out


# ---------------------------------------------------------------- text drawing


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


def heatmap_strip(width: int, height: int, name: str, scale: ColourScale) -> torch.Tensor:
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


# ---------------------------------------------------------------- files


def image_to_png_bytes(image: torch.Tensor) -> bytes:
    """PNG bytes of one picture [H, W, 3] float 0-1."""
    array = (image.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _to_u8_pictures(frames: torch.Tensor) -> list[Image.Image]:
    array = (frames.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in array]


def _webp_of(pictures: list[Image.Image], fps: float) -> bytes:
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="WEBP", save_all=True, append_images=pictures[1:], duration=int(round(1000.0 / fps)),
                     loop=0, lossless=True, method=0)
    return buffer.getvalue()


def animated_webp_bytes(frames: torch.Tensor, fps: float = DEFAULT_VIDEO_FPS) -> bytes:
    """Animated WebP bytes of frames [N, H, W, 3] float 0-1 (lossless, so colours stay the scale's), looping."""
    return _webp_of(_to_u8_pictures(frames), fps)


# Heatmap pixels coloured at once for an animated file (colouring holds about 50 bytes a pixel).
WEBP_CHUNK_PIXELS = 1 << 20


def heatmap_webp_bytes(saliency: SaliencyMaps, clip: int, concept: int, size: tuple[int, int],
                       scale: ColourScale | None = None) -> bytes:
    """Animated WebP bytes of one concept's map over one clip of a video: a frame per pixel frame,
    interpolated in time as the masks are, on `scale` (default: ColourScale.of(saliency)), at size (H, W).
    Frames are coloured a few at a time; only the 8-bit frames are held."""
    scale = scale or ColourScale.of(saliency)
    maps = saliency.maps[clip, concept].detach().float().cpu()  # [T, h, w]
    before, after, weight = saliency.pixel_frame_sources()
    step = max(1, WEBP_CHUNK_PIXELS // max(1, size[0] * size[1]))
    pictures = []
    for start in range(0, len(before), step):
        stop = start + step
        scores = frames_between(maps, before[start:stop], after[start:stop], weight[start:stop])
        pictures += _to_u8_pictures(colorize(upsample(scale.unit(scores), size)))
    return _webp_of(pictures, video_fps(saliency))


def heatmap_png_bytes(scores: torch.Tensor, size: tuple[int, int] | None = None,
                      scale: ColourScale | None = None) -> bytes:
    """PNG bytes of one map [h, w] coloured on `scale` (default: the map's own range), resized to size (H, W)."""
    if scores.ndim != 2:
        raise ConceptAttentionError(f"a heatmap needs one map [h, w], got shape {tuple(scores.shape)}")
    m = scores.detach().float().cpu().unsqueeze(0)
    m = scale.unit(m) if scale is not None else normalize_maps(m)
    if size is not None:
        m = upsample(m, size)
    return image_to_png_bytes(colorize(m[0]))
