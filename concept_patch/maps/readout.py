"""What the front end's per-pixel readout reads: every concept's value at every token, per picture (or clip).

Hovering a preview panel shows, at the token under the pointer, every concept's share ranked, in the legend's
colours. The node sends the token-grid maps it shows (small: [r, T, h, w] per clip, T = 1 for a picture), quantized
to 16 bits over the maps' range (softmax maps: 0-1, so a value is off by at most 1/131070), base64 encoded. A
payload past READOUT_BUDGET bytes is left out, and the payload says why, so the front end can say it.
"""

from __future__ import annotations

import base64

import torch

from .panel_captions import nearest_token_frames
from .saliency_maps import SaliencyMaps

# Bytes of quantized values one node output may send (before base64): 512 Ki values, e.g. 8 concepts over a
# 64 x 64 token grid (Flux.1 at 1024 px) for 16 pictures, or a CogVideoX clip (13 x 30 x 45 tokens) of 9 concepts.
READOUT_BUDGET = 1 << 20
LEVELS = 65535


def concept_readout(saliency: SaliencyMaps, panel: tuple[int, int], cell_height: int,
                    budget: int = READOUT_BUDGET) -> dict:
    """The readout of a SALIENCY whose preview panels show the maps at `panel` (height, width) pixels, above their
    label strip (each panel image cell_height pixels tall).

    grid [T, h, w]: token frames and grid; concepts: r; range [lo, hi]: value = lo + q / 65535 · (hi - lo);
    clips: per clip the base64 of uint16 little-endian q in [r, T, h, w] order; frame_tokens: the token frame each
    pixel frame shows (nearest, as the segmentation view); fps of an animated preview. Where the values would pass
    `budget` bytes: no clips, and `omitted` says why."""
    maps = saliency.clips.detach().float().cpu()  # [B, r, T, h, w]
    batch, r, frames, h, w = maps.shape
    payload = {
        "grid": [frames, h, w], "concepts": r, "panel": [int(panel[0]), int(panel[1])], "cell": int(cell_height),
        "frame_tokens": [int(t) for t in nearest_token_frames(saliency)],
        "softmax": bool(saliency.softmax),
    }
    size = 2 * maps.numel()
    if size > budget:
        payload["omitted"] = (f"the maps are too large to read out here ({maps.numel()} values; at most "
                              f"{budget // 2}): use Saliency to Mask or Save Saliency to read them")
        return payload
    lo, hi = float(maps.min()), float(maps.max())
    if saliency.softmax:
        lo, hi = min(lo, 0.0), max(hi, 1.0)
    span = hi - lo if hi > lo else 1.0
    q = ((maps - lo) / span * LEVELS).round_().clamp_(0, LEVELS).to(torch.int32)
    little = q.numpy().astype("<u2")
    payload["range"] = [lo, lo + span]
    payload["clips"] = [base64.b64encode(little[i].tobytes()).decode("ascii") for i in range(batch)]
    return payload


def decode_readout(payload: dict) -> list[torch.Tensor]:
    """The values a readout payload carries, per clip [r, T, h, w] float64 (the inverse of concept_readout; tests and
    tools read it back as the front end does)."""
    import numpy as np

    lo, hi = payload["range"]
    shape = (payload["concepts"], *payload["grid"])
    return [torch.from_numpy(np.frombuffer(base64.b64decode(clip), dtype="<u2").astype("float64").reshape(shape))
            * ((hi - lo) / LEVELS) + lo for clip in payload["clips"]]
