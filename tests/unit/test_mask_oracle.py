"""The mask oracle (quality/evaluate.mask_oracle): the best maps a token grid allows score 1.0 at the picture's
own resolution and less on a coarse grid, through the same evaluation as the pack's maps."""

from __future__ import annotations

import pytest

from concept_attention.quality.evaluate import Setting, evaluate, mask_oracle
from concept_attention.quality.synthetic_world import make_dataset


def _scores(grid, count=12, size=64):
    report = evaluate(None, None, None, make_dataset(seed=2, count=count, size=size), [Setting()],
                      map_source=mask_oracle(grid))
    result = report["results"][0]
    return result["single_object"], result["multi_object"]


def test_the_oracle_at_full_resolution_scores_one():
    single, multi = _scores((64, 64))
    assert single["images"] >= 1
    assert (single["pixel_accuracy"], single["miou"], single["map"]) == (1.0, 1.0, 1.0)
    assert (multi["pixel_accuracy"], multi["miou"]) == (1.0, 1.0)


def test_a_coarse_grid_caps_what_maps_can_score():
    fine, coarse = _scores((16, 16)), _scores((4, 4))
    # 64 px on 4x4 tokens of 16 px (Chroma Radiance's patches): a small object wins few tokens, if any
    assert 0.0 < coarse[1]["miou"] < fine[1]["miou"] < 1.0
    assert 0.0 < coarse[0]["miou"] < fine[0]["miou"] < 1.0
    assert coarse[0]["map"] < fine[0]["map"] < 1.0


def test_the_grid_must_divide_the_picture():
    with pytest.raises(ValueError, match="does not divide"):
        _scores((5, 5), count=1)
