"""The text of the label strips under preview panels: its size, how a concept's name wraps, and how many
lines a strip needs.

A caption is sized to its panel: a panel W px wide writes it at W / FONT_WIDTH_RATIO px (at least MIN_FONT_PX),
so it keeps its size relative to the map wherever the panel is shown; readable_width() is the width a panel must be
shown at for its captions to be CAPTION_MIN_SCREEN_PX tall on screen (the web extension sizes the node for it).
Names are wrapped, never cut short, up to MAX_NAME_LINES lines; a longer name is cut at its end, and a cut caption
that would read like another concept's gets the concept's number ("#3"), so a panel is always told apart.
PIL's built-in font, so no font file or matplotlib is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

MIN_FONT_PX = 12
FONT_WIDTH_RATIO = 10
LINE_SPACING = 1.3
MAX_NAME_LINES = 3
# The font size on screen the web extension sizes a node for: 13 px, so that the ink of a caption (ascenders to
# descenders, about 0.95 of it in PIL's font) is at least 12 px tall.
CAPTION_MIN_SCREEN_PX = 13
CUT = "..."


def font_size_for(width: int) -> int:
    """The caption size (px) of a panel `width` pixels wide."""
    return int(max(MIN_FONT_PX, round(width / FONT_WIDTH_RATIO)))


def line_height(width: int) -> int:
    return int(round(font_size_for(width) * LINE_SPACING))


def strip_padding(width: int) -> int:
    """Margin around the strip's text (left and right, and shared above and below its lines)."""
    return max(2, font_size_for(width) // 3)


def strip_height(width: int, lines: int = 1) -> int:
    """Height of a label strip of `lines` lines under a panel `width` pixels wide."""
    return int(lines * line_height(width) + strip_padding(width))


def readable_width(width: int) -> int:
    """The on-screen width at which a panel `width` px wide shows its captions CAPTION_MIN_SCREEN_PX tall."""
    return int(math.ceil(CAPTION_MIN_SCREEN_PX * width / font_size_for(width)))


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable font, Pillow >= 10.1 with FreeType
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


class Measure:
    """Text at the caption size of a panel `width` px wide: its font, widths, wrapping and cutting."""

    def __init__(self, width: int):
        self.width = int(width)
        self.size = font_size_for(width)
        self.font = _font(self.size)
        self.pad = strip_padding(width)
        self.line = line_height(width)
        self._draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def drawable(self, text: str) -> str:
        """text, or its ASCII spelling where the font cannot encode it."""
        try:
            self._draw.textbbox((0, 0), text, font=self.font)
            return text
        except UnicodeEncodeError:
            return text.encode("ascii", "backslashreplace").decode("ascii")

    def box(self, text: str) -> tuple[int, int, int, int]:
        return self._draw.textbbox((0, 0), self.drawable(text), font=self.font)

    def text_width(self, text: str) -> int:
        box = self.box(text)
        return box[2] - box[0]

    def _longest_prefix(self, text: str, room: int) -> int:
        """Characters of text's start that fit in room (at least 1)."""
        lo, hi = 1, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.text_width(text[:mid]) <= room:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def cut(self, text: str, room: int, ending: str = CUT) -> str:
        """text whole if it fits in room, else its start followed by `ending`."""
        if self.text_width(text) <= room:
            return text
        keep = self._longest_prefix(text, max(1, room - self.text_width(ending)))
        return text[:keep].rstrip() + ending

    def wrap(self, text: str, room: int, max_lines: int = MAX_NAME_LINES) -> tuple[list[str], bool]:
        """(lines, cut): text broken at spaces (inside a word only where the word alone is wider than room)
        into lines at most room px wide; cut when it needed more than max_lines (the last line then ends in CUT)."""
        text = self.drawable(" ".join(text.split()))
        lines, current = [], ""
        for word in text.split(" "):
            joined = f"{current} {word}" if current else word
            if self.text_width(joined) <= room:
                current = joined
                continue
            if current:
                lines.append(current)
            while len(word) > 1 and self.text_width(word) > room:
                keep = self._longest_prefix(word, room)
                lines.append(word[:keep])
                word = word[keep:]
            current = word
        if current or not lines:
            lines.append(current)
        if len(lines) <= max_lines:
            return lines, False
        last = " ".join(lines[max_lines - 1 :])
        return lines[: max_lines - 1] + [self.cut(last + CUT, room)], True


def heatmap_name_lines(names: list[str], width: int, suffix: str = "") -> list[list[str]]:
    """The name lines of each concept's heatmap caption (its name, then `suffix`, e.g. the picture's number),
    for panels `width` px wide; cut captions that read alike end in the concept's number."""
    return [list(lines) for lines in _heatmap_name_lines(tuple(names), int(width), suffix)]


@lru_cache(maxsize=64)
def _heatmap_name_lines(names: tuple[str, ...], width: int, suffix: str) -> tuple[tuple[str, ...], ...]:
    measure = Measure(width)
    room = max(1, width - 2 * measure.pad)
    wrapped = [measure.wrap(name + suffix, room) for name in names]
    return tuple(tuple(lines) for lines in _told_apart(measure, wrapped, room))


def _told_apart(measure: Measure, wrapped: list[tuple[list[str], bool]], room: int,
                numbers: list[int] | None = None) -> list[list[str]]:
    """Cut captions equal to another caption end in their concept's number (#1 for the first; `numbers`: the
    concepts' indices where the captions are of some concepts only)."""
    seen: dict[tuple[str, ...], int] = {}
    for lines, _ in wrapped:
        seen[tuple(lines)] = seen.get(tuple(lines), 0) + 1
    out = []
    for j, (lines, cut) in enumerate(wrapped):
        if cut and seen[tuple(lines)] > 1:
            tag = f"{CUT} #{(numbers[j] if numbers else j) + 1}"
            lines = lines[:-1] + [measure.cut(lines[-1].removesuffix(CUT) + tag, room, ending=tag)]
        out.append(lines)
    return out


@dataclass(frozen=True)
class KeyItem:
    """A piece of a segmentation view's key: a concept's index (its colour), the text shown, where it starts, and
    whether a swatch precedes it (a wrapped name's further lines have none)."""

    index: int
    text: str
    x: int
    swatch: bool = True


def swatch_size(width: int) -> int:
    return max(6, int(round(font_size_for(width) * 0.8)))


def key_lines(entries: list[tuple[int, str]], width: int, suffix_room: str = "", more: int = 0) -> list[list[KeyItem]]:
    """The lines of a segmentation view's key for panels `width` px wide: a swatch and the name of every concept
    in `entries` ((index, name), in order), flowed over as many lines as they need. Short names share lines; a name
    wider than a line wraps onto lines of its own (up to MAX_NAME_LINES, then cut and told apart as heatmap
    captions are). `more`: concepts left out, said at the end ("+3 more", index -1). The last line keeps the width
    of `suffix_room` free at its right end (the picture's or frame's number)."""
    return [list(line) for line in _key_lines(tuple(entries), int(width), suffix_room, int(more))]


@lru_cache(maxsize=256)
def _key_lines(entries: tuple[tuple[int, str], ...], width: int, suffix_room: str,
               more: int) -> tuple[tuple[KeyItem, ...], ...]:
    measure = Measure(width)
    swatch = swatch_size(width)
    indent = measure.pad + swatch + measure.pad
    room = max(1, width - indent - measure.pad)
    texts = _told_apart(measure, [measure.wrap(name, room) for _, name in entries], room,
                        [index for index, _ in entries])
    lines: list[list[KeyItem]] = [[]]
    x = measure.pad
    for (index, _), text in zip(entries, texts):
        need = swatch + measure.pad + measure.text_width(text[0])
        if lines[-1] and (len(text) > 1 or x + need > width - measure.pad):
            lines.append([])
            x = measure.pad
        lines[-1].append(KeyItem(index, text[0], x))
        x += need + 2 * measure.pad
        for more_text in text[1:]:
            lines.append([KeyItem(index, more_text, indent, swatch=False)])
            x = width  # the next concept starts on a line of its own
    if more:
        text = f"+{more} more"
        if lines[-1] and x + measure.text_width(text) > width - measure.pad:
            lines.append([])
            x = measure.pad
        lines[-1].append(KeyItem(-1, text, x, swatch=False))
        x += measure.text_width(text) + 2 * measure.pad
    if suffix_room.strip():
        if x + measure.text_width(suffix_room.strip()) > width - measure.pad and lines[-1]:
            lines.append([])
    return tuple(tuple(line) for line in lines)
