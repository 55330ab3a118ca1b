"""The per-pixel readout's payload (concept_patch/maps/readout.py): the token-grid maps of every picture or clip,
quantized to 16 bits, read back to within one level; the token frame each pixel frame shows; a clear refusal past
the byte budget instead of a huge UI message."""

from __future__ import annotations

import base64
import json

import torch

from concept_attention.concept_patch.maps.readout import READOUT_BUDGET, concept_readout, decode_readout
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps

NAMES = ["dog", "grass", "sky"]


def _pictures(batch=2, grid=(4, 6), softmax=True, seed=0):
    logits = torch.randn(batch, len(NAMES), *grid, generator=torch.Generator().manual_seed(seed)) * 3
    maps = logits.softmax(dim=1) if softmax else logits * 40
    return SaliencyMaps(maps=maps, names=list(NAMES), image_size=(grid[0] * 16, grid[1] * 16), softmax=softmax)


def test_picture_maps_read_back_within_one_level():
    sal = _pictures()
    payload = concept_readout(sal, (64, 96), 80)
    assert payload["grid"] == [1, 4, 6] and payload["concepts"] == 3 and len(payload["clips"]) == 2
    assert payload["range"] == [0.0, 1.0] and payload["panel"] == [64, 96] and payload["cell"] == 80
    json.dumps(payload)  # a UI message: plain JSON
    for clip, values in enumerate(decode_readout(payload)):
        assert values.shape == (3, 1, 4, 6)
        assert (values[:, 0] - sal.maps[clip].double()).abs().max() <= 0.5 / 65535 + 1e-12


def test_raw_maps_use_their_own_range():
    sal = _pictures(softmax=False)
    payload = concept_readout(sal, (64, 96), 80)
    lo, hi = payload["range"]
    assert lo == float(sal.maps.min()) and abs(hi - float(sal.maps.max())) < 1e-9
    step = (hi - lo) / 65535
    for clip, values in enumerate(decode_readout(payload)):
        assert (values[:, 0] - sal.maps[clip].double()).abs().max() <= step


def test_video_clips_carry_every_token_frame_and_the_frame_each_pixel_frame_shows():
    maps = torch.rand(1, 3, 3, 2, 2).softmax(dim=1)
    sal = SaliencyMaps(maps=maps, names=list(NAMES), image_size=(32, 32), frames=9)
    payload = concept_readout(sal, (32, 32), 40)
    assert payload["grid"] == [3, 2, 2]
    # 9 pixel frames over 3 token frames at 0, 4 and 8: each pixel frame shows the nearest one (a tie: the earlier)
    assert payload["frame_tokens"] == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    values = decode_readout(payload)[0]
    assert (values - maps[0].double()).abs().max() <= 0.5 / 65535 + 1e-12


def test_maps_past_the_budget_are_left_out_with_a_reason():
    sal = _pictures(batch=1, grid=(64, 64))
    payload = concept_readout(sal, (512, 512), 540, budget=1000)
    assert "clips" not in payload and "too large" in payload["omitted"]
    full = concept_readout(sal, (512, 512), 540)
    assert sum(len(base64.b64decode(c)) for c in full["clips"]) == 2 * 3 * 64 * 64 <= READOUT_BUDGET
