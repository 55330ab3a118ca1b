"""What the label strips of one SALIENCY's preview say: each heatmap's name lines, the key of each clip's
segmentation view (every concept it colours), the picture's or frame's number, and how many lines the strips
need at a panel width (the layout gives every strip of a preview the same height)."""

from __future__ import annotations

import torch

from .captions import heatmap_name_lines, key_lines
from .saliency_maps import SaliencyMaps


def nearest_token_frames(saliency: SaliencyMaps) -> torch.Tensor:
    """The token frame nearest each pixel frame (the segmentation view shows tokens, in time as in space)."""
    before, after, weight = saliency.pixel_frame_sources()
    return torch.where(weight > 0.5, after, before)


# A segmentation key takes at most this many lines (or the heatmap captions' lines, if more): past that, the
# concepts covering the least of the view are left out of it and counted ("+3 more"; the legend lists them all).
MAX_KEY_LINES = 6


def coloured_concepts(saliency: SaliencyMaps) -> list[tuple[int, ...]]:
    """Per clip (a picture is a clip of one frame), the concepts its segmentation view colours: those that win a
    token of a token frame the view shows, in concept order."""
    return [tuple(counts) for counts in concept_coverage(saliency)]


def concept_coverage(saliency: SaliencyMaps) -> list[dict[int, int]]:
    """Per clip, {concept: tokens it wins} over the token frames its segmentation view shows (winners only)."""
    frames = nearest_token_frames(saliency).unique()
    clips = saliency.clips.detach()
    out = []
    for b in range(saliency.batch_size):
        winners, counts = clips[b][:, frames].float().argmax(dim=0).unique(return_counts=True)
        out.append({int(i): int(n) for i, n in zip(winners.tolist(), counts.tolist())})
    return out


class PreviewCaptions:
    """The captions of one SALIENCY's preview."""

    def __init__(self, saliency: SaliencyMaps):
        self.names = list(saliency.names)
        self.batch = saliency.batch_size
        self.video = saliency.is_video
        self.frames = saliency.frames
        self.coverage = concept_coverage(saliency)

    def heat_lines(self, width: int) -> list[list[str]]:
        """The name lines of each concept's heatmap, the same for every picture and frame."""
        return heatmap_name_lines(self.names, width)

    def number(self, clip: int, frame: int = 0) -> str:
        """The picture's number in a batch ('(1/2)'), or a video's clip and frame ('clip 1/2 3/9'); '' for one
        picture."""
        if self.video:
            clip_text = f"clip {clip + 1}/{self.batch} " if self.batch > 1 else ""
            return f"{clip_text}{frame + 1}/{self.frames}"
        return f"({clip + 1}/{self.batch})" if self.batch > 1 else ""

    def widest_number(self) -> str:
        return self.number(self.batch - 1, max(0, self.frames - 1))

    def key(self, width: int, clip: int):
        """The key lines of clip `clip`'s segmentation view (captions.key_lines): every concept it colours, in concept
        order; where they need more than MAX_KEY_LINES lines (or the heatmaps' caption lines, if more), those
        covering the least of the view are left out and counted."""
        coverage = self.coverage[clip]
        limit = max(MAX_KEY_LINES, self._heat_line_count(width))
        listed = sorted(coverage)
        lines = key_lines([(i, self.names[i]) for i in listed], width, self.widest_number())
        if len(lines) <= limit:
            return lines
        by_coverage = sorted(coverage, key=lambda i: (-coverage[i], i))
        lo, hi = 0, len(by_coverage) - 1  # the most concepts that fit, with "+N more"
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self._key_of(width, by_coverage[:mid], len(by_coverage) - mid)) <= limit:
                lo = mid
            else:
                hi = mid - 1
        return self._key_of(width, by_coverage[:lo], len(by_coverage) - lo)

    def _key_of(self, width: int, shown: list[int], more: int):
        return key_lines([(i, self.names[i]) for i in sorted(shown)], width, self.widest_number(), more)

    def _heat_line_count(self, width: int) -> int:
        return max((len(lines) for lines in self.heat_lines(width)), default=0) + 1

    def lines(self, width: int) -> int:
        """Lines every strip of the preview has at this panel width: the longest heatmap caption and its colour
        bar, or the longest key."""
        return max([self._heat_line_count(width)] + [len(self.key(width, clip)) for clip in range(self.batch)])
