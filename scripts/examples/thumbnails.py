"""The template cards (example_workflows/<name>.jpg): what a run of the example gives, on one 640 x 480 card,
and the checks that a card shows something.

A card has four tiles in a 2 x 2 grid: the picture (the loaded or generated picture, a clip's first frame), the
regions (Concept Saliency's segmentation view in the legend's colours), the map of the concept the workflow
works on, and its mask (a mask video's first frame; or a second concept's map where the workflow makes no
mask), over a caption saying the maps come from a random-weight model. scripts/make_examples.py makes them
and refuses a degenerate one (card_problems); the browser tier checks the committed cards the same way.
"""

from __future__ import annotations

THUMBNAIL_SIZE = (640, 480)
CAPTION_HEIGHT = 34
LABEL_HEIGHT = 20
BACKGROUND = (30, 30, 30)
CAPTION = "Maps from a tiny random-weight test model: noise, not what real weights give"
TILE_KINDS = ("picture", "regions", "map", "mask")


def thumbnail_parts(spec: dict) -> dict:
    """Which nodes' results make the card: the spec's choice, else found from the node types."""
    if "thumbnail" in spec:
        return spec["thumbnail"]
    by_type = {}
    for n in spec["nodes"]:
        by_type.setdefault(n["type"], []).append(n)
    saliency = (by_type.get("ConceptAttentionSaliency") or by_type["ConceptAttentionSamplingSaliency"])[0]
    parts = {"saliency": saliency["key"]}
    if by_type.get("LoadImage"):
        parts["picture"] = by_type["LoadImage"][0]["key"]
    if by_type.get("ConceptAttentionSaliencyToMask"):
        mask = by_type["ConceptAttentionSaliencyToMask"][0]
        parts["concept"] = mask["values"]["concepts"].split(",")[0].strip()
    if by_type.get("MaskPreview"):
        parts["mask"] = by_type["MaskPreview"][0]["key"]
    return parts


def tile_kinds(parts: dict, flat_tiny_maps: str | None = None) -> list[str]:
    """The card's tiles, in order: picture, regions, the concept's map, then its mask or another map. Where the
    tiny models' maps are known to be flat (the spec's `flat_tiny_maps`: one concept wins every token whatever
    the seeds), the regions are checked as a map (shown, not their colours); the mask still must not be empty."""
    return ["picture", "map" if flat_tiny_maps else "regions", "map", "mask" if parts.get("mask") else "map"]


def _cell(k: int) -> tuple[int, int, int, int]:
    width, height = THUMBNAIL_SIZE
    cell_w, cell_h = width // 2, (height - CAPTION_HEIGHT) // 2
    x0, y0 = (k % 2) * cell_w, (k // 2) * cell_h
    return x0, y0, cell_w, cell_h


def compose(tiles: list[tuple[str, object]]):
    """The card: up to four (label, PIL image) tiles and the caption."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = THUMBNAIL_SIZE
    card = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(card)
    font = ImageFont.load_default(size=15)
    for k, (label, image) in enumerate(tiles[:4]):
        x0, y0, cell_w, cell_h = _cell(k)
        room_h = cell_h - 8 - LABEL_HEIGHT
        scale = min((cell_w - 8) / image.width, room_h / image.height)
        shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
        left = x0 + (cell_w - shown.width) // 2
        card.paste(shown, (left, y0 + 4 + LABEL_HEIGHT))
        if label:
            draw.text((left, y0 + 2), label, fill=(220, 220, 220), font=font)
    draw.rectangle([0, height - CAPTION_HEIGHT, width, height], fill=(60, 40, 30))
    draw.text((10, height - CAPTION_HEIGHT + 8), CAPTION, fill=(255, 230, 200), font=font)
    return card


def _tile_pixels(card, k: int):
    """The pixels of tile k that are not the card's background: an [n, 3] int array (label band left out)."""
    import numpy as np

    x0, y0, cell_w, cell_h = _cell(k)
    region = np.asarray(card.convert("RGB"), dtype=np.int32)[y0 + 4 + LABEL_HEIGHT:y0 + cell_h,
                                                             x0:x0 + cell_w].reshape(-1, 3)
    return region[np.abs(region - np.array(BACKGROUND)).max(axis=1) > 6]


def tile_problem(card, k: int, kind: str) -> str | None:
    """Why tile k of the card shows nothing worth showing, or None."""
    import numpy as np

    pixels = _tile_pixels(card, k)
    if len(pixels) < 2000:
        return f"tile {k + 1} ({kind}) is empty"
    if kind == "picture":
        if pixels.mean(axis=1).std() < 4:
            return f"tile {k + 1} (picture) is one flat colour"
    elif kind == "regions":
        # The segmentation view: at least two concepts' colours, each on a real part of it (the caption strip
        # under it is dark, its swatches are small).
        bright = pixels[pixels.max(axis=1) >= 60]
        codes, counts = np.unique((bright // 64) @ np.array([16, 4, 1]), return_counts=True)
        colours = int((counts >= 0.03 * len(bright)).sum())
        if colours < 2:
            return f"tile {k + 1} (regions) shows one concept's colour only: one concept won every token"
    elif kind == "mask":
        gray = pixels.mean(axis=1)
        white = float((gray > 128).mean())
        if white < 0.01:
            return f"tile {k + 1} (mask) is all black: the mask is empty"
        if white > 0.99:
            return f"tile {k + 1} (mask) is all white: the mask is the whole picture"
    return None


def card_problems(card, kinds: list[str]) -> list[str]:
    """Everything degenerate on a card whose tiles are of these kinds (tile_kinds)."""
    return [p for k, kind in enumerate(kinds) if (p := tile_problem(card, k, kind))]
