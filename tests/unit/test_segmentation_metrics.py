"""The paper's segmentation metrics (quality/segmentation_metrics.py) on hand-made cases whose answers are worked
out by hand: perfect, inverted and half-right maps, dataset-wide accumulation, ignored pixels, upsampling."""

from __future__ import annotations

import numpy as np
import pytest

from concept_attention.quality.segmentation_metrics import (
    MultiObjectMetrics,
    SingleObjectMetrics,
    average_precision,
    two_class_average_precision,
    upsample,
)

# a 2x2 token grid over a 4x4 picture: each token covers a 2x2 block of pixels
LEFT = np.array([[1, 1, 0, 0]] * 4, dtype=bool)  # the object: the left column of tokens
TOP = np.array([[1, 1, 1, 1]] * 2 + [[0, 0, 0, 0]] * 2, dtype=bool)


def test_nearest_upsampling_repeats_each_token_over_its_pixels():
    grid = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert upsample(grid, (4, 4)).tolist() == [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]


def test_bilinear_upsampling_is_torchs_with_corners_not_aligned():
    # torch.nn.functional.interpolate([0, 1] -> 4, "linear", align_corners=False) = [0, 0.25, 0.75, 1]
    row = upsample(np.array([[0.0, 1.0]]), (1, 4), "bilinear")
    assert np.allclose(row, [[0.0, 0.25, 0.75, 1.0]])


def test_average_precision_by_hand():
    # thresholds 0.9, 0.8, 0.7, 0.6: recall 0.5 at precision 1, then recall 1 at precision 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # tied scores are one threshold: all four at precision 1/2
    assert average_precision([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)
    assert average_precision([0.2, 0.1], [0, 0]) == 0.0


def test_a_perfect_map_scores_one():
    metrics = SingleObjectMetrics()
    record = metrics.add(np.array([[5.0, -3.0], [5.0, -3.0]]), 0, LEFT)  # any scale: the map is min-max normalised
    assert record == {"pixel_accuracy": 1.0, "iou_background": 1.0, "iou_foreground": 1.0, "miou": 1.0, "ap": 1.0}
    result = metrics.result()
    assert (result["pixel_accuracy"], result["miou"], result["map"], result["images"]) == (1.0, 1.0, 1.0, 1)


def test_an_inverted_map_scores_zero_accuracy_and_iou_and_a_low_ap():
    metrics = SingleObjectMetrics()
    record = metrics.add(np.array([[0.0, 1.0], [0.0, 1.0]]), 0, LEFT)
    assert record["pixel_accuracy"] == 0.0 and record["miou"] == 0.0
    # every positive of both channels scores 0 and every negative 1: recall 1 only at precision 1/2
    assert record["ap"] == pytest.approx(0.5)


def test_a_half_right_map_by_hand():
    # predicted: the top row of tokens (above the mean 0.5); truth: the left column.
    # Pixels: top-left 4 right (fg), top-right 4 wrong, bottom-left 4 wrong, bottom-right 4 right (bg).
    record = SingleObjectMetrics().add(np.array([[1.0, 1.0], [0.0, 0.0]]), 0, LEFT)
    assert record["pixel_accuracy"] == 0.5
    assert record["iou_foreground"] == pytest.approx(4 / 12) and record["iou_background"] == pytest.approx(4 / 12)
    assert record["miou"] == pytest.approx(1 / 3)
    # two channels, 32 scores: 16 at score 1 (8 positives), 16 at score 0 (8 positives) -> 0.5 * 0.5 + 0.5 * 0.5
    assert record["ap"] == pytest.approx(0.5)


def test_accuracy_and_iou_accumulate_over_pixels_and_ap_averages_over_pictures():
    metrics = SingleObjectMetrics()
    metrics.add(np.array([[1.0, 0.0], [1.0, 0.0]]), 0, LEFT)  # 16 pixels, all right
    big = np.zeros((8, 8), dtype=bool)
    big[:, :4] = True
    metrics.add(np.array([[0.0, 1.0], [0.0, 1.0]]), 0, big)  # 64 pixels, all wrong
    result = metrics.result()
    assert result["pixel_accuracy"] == pytest.approx(16 / 80)  # not the mean of 1 and 0
    # background: intersection 8, union 8 + 64; foreground likewise
    assert result["iou_background"] == pytest.approx(8 / 72) and result["miou"] == pytest.approx(8 / 72)
    assert result["map"] == pytest.approx((1.0 + 0.5) / 2)


def test_argmax_threshold_takes_the_object_where_its_map_beats_every_other():
    maps = np.array([[[0.6, 0.4], [0.6, 0.2]],   # the object
                     [[0.4, 0.6], [0.1, 0.8]],   # background
                     [[0.0, 0.0], [0.3, 0.0]]])  # sky
    record = SingleObjectMetrics(threshold="argmax").add(maps, 0, LEFT)
    assert record["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError, match="every concept"):
        SingleObjectMetrics(threshold="argmax").add(maps[0], 0, LEFT)


def test_ignored_pixels_count_nowhere():
    ignore = np.zeros((4, 4), dtype=bool)
    ignore[:, 2:] = True  # the right half, where the half-right map errs on top
    record = SingleObjectMetrics().add(np.array([[1.0, 1.0], [0.0, 0.0]]), 0, LEFT, ignore)
    # left half only: top-left right (fg), bottom-left wrong (bg predicted, fg true)
    assert record["pixel_accuracy"] == 0.5
    assert record["iou_foreground"] == pytest.approx(4 / 8) and record["iou_background"] == 0.0


def _multi_masks():
    a = np.zeros((4, 4), dtype=bool)
    a[:2, :2] = True
    b = np.zeros((4, 4), dtype=bool)
    b[:2, 2:] = True
    return {"a": a, "b": b}


def test_multi_object_perfect_and_half_right_by_hand():
    names = ["a", "b", "background"]
    perfect = np.array([[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[0, 0], [1, 1]]], dtype=float)
    metrics = MultiObjectMetrics()
    assert metrics.add(perfect, names, _multi_masks()) == {"pixel_accuracy": 1.0, "miou": 1.0}
    # `a` wins over the whole top row: b's 4 pixels wrong
    half = np.array([[[1, 1], [0, 0]], [[0, 0.5], [0, 0]], [[0, 0], [1, 1]]], dtype=float)
    record = MultiObjectMetrics().add(half, names, _multi_masks())
    assert record["pixel_accuracy"] == 0.75
    assert record["miou"] == pytest.approx((1.0 + 4 / 8 + 0.0) / 3)  # background, a, b
    # dataset-wide: per class, intersections and unions summed over both pictures
    metrics.add(half, names, _multi_masks())
    result = metrics.result()
    assert result["pixel_accuracy"] == pytest.approx(28 / 32)
    assert result["class_iou"] == pytest.approx({"a": 8 / 12, "b": 4 / 8, "background": 1.0})
    assert result["miou"] == pytest.approx((8 / 12 + 4 / 8 + 1.0) / 3)


def test_every_word_that_is_not_an_object_predicts_background():
    names = ["a", "b", "grass", "sky"]
    maps = np.array([[[1, 0], [0, 0]], [[0, 1], [0, 0]], [[0, 0], [1, 0]], [[0, 0], [0, 1]]], dtype=float)
    result = MultiObjectMetrics()
    assert result.add(maps, names, _multi_masks()) == {"pixel_accuracy": 1.0, "miou": 1.0}
    assert set(result.result()["class_iou"]) == {"a", "b", "background"}


def test_a_mask_without_a_map_is_refused():
    with pytest.raises(ValueError, match="no map"):
        MultiObjectMetrics().add(np.zeros((2, 2, 2)), ["a", "background"], _multi_masks())


def test_two_class_ap_of_a_perfect_soft_map_is_one():
    scores = np.where(TOP, 0.9, 0.1)
    assert two_class_average_precision(scores, TOP) == 1.0
