"""The synthetic world (quality/synthetic_world.py): pictures are a function of the seed, every mask is exactly
the pixels of its object's colour, later objects cover earlier ones, captions name the objects, and the folder
format reads back what was written."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from concept_attention.quality import synthetic_world as world

COLOURS = {tuple(v) for v in world.COLOURS.values()}


@pytest.fixture(scope="module")
def dataset():
    return world.make_dataset(seed=11, count=60, size=64)


def _same(a, b):
    return (a.caption == b.caption and a.concepts == b.concepts and np.array_equal(a.image, b.image)
            and all(np.array_equal(a.masks[c], b.masks[c]) for c in a.concepts))


def test_the_seed_decides_every_picture():
    first, again = world.make_dataset(3, 6), world.make_dataset(3, 6)
    assert all(_same(a, b) for a, b in zip(first, again))
    assert not all(_same(a, b) for a, b in zip(first, world.make_dataset(4, 6)))
    # sample i depends on (seed, i) only: a shorter dataset is the longer one's start
    assert all(_same(a, b) for a, b in zip(world.make_dataset(3, 3), first))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_pictures_and_masks_have_the_requested_size(size):
    for sample in world.make_dataset(1, 12, size=size):
        assert sample.image.shape == (size, size, 3) and sample.image.dtype == np.uint8
        assert 1 <= len(sample.concepts) <= 3
        for mask in sample.masks.values():
            assert mask.shape == (size, size) and mask.dtype == bool and mask.sum() >= 4


def test_the_vocabulary_is_every_colour_and_shape():
    words = world.vocabulary()
    assert len(words) == len(set(words)) == len(world.COLOURS) * len(world.SHAPES) >= 4 * 5
    assert "red circle" in words and "blue square" in words and "yellow triangle" in words


def test_captions_name_the_objects_in_order(dataset):
    assert {len(s.concepts) for s in dataset} == {1, 2, 3}
    for sample in dataset:
        assert len(set(sample.concepts)) == len(sample.concepts)
        assert all(word in world.vocabulary() for word in sample.concepts)
        positions = [sample.caption.index(word) for word in sample.concepts]
        assert positions == sorted(positions)
        tone = world.tone_name(sample.image[sample.background].reshape(-1, 3).mean(axis=0))
        assert sample.caption == world.caption_for(sample.concepts, tone)
    assert {s.caption.rsplit(" on a ", 1)[1] for s in dataset} == {"light background", "grey background",
                                                                     "dark background"}
    assert world.caption_for(["red circle", "orange star"]) == "a red circle and an orange star"
    assert world.caption_for(["red circle"], "dark") == "a red circle on a dark background"
    assert world.caption_for(["blue star", "green ring", "orange cross"]) == "a blue star, a green ring and an orange cross"


def test_each_colour_shows_exactly_in_the_masks_of_its_objects(dataset):
    for sample in dataset:
        for colour_name, colour in world.COLOURS.items():
            showing = np.all(sample.image == colour, axis=-1)
            expected = np.zeros_like(showing)
            for word in sample.concepts:
                if word.split(" ")[0] == colour_name:
                    expected |= sample.masks[word]
            assert np.array_equal(showing, expected), (sample.name, colour_name)


def test_masks_do_not_overlap_and_the_background_is_the_rest(dataset):
    for sample in dataset:
        count = sum(m.astype(int) for m in sample.masks.values())
        assert count.max() <= 1
        assert np.array_equal(sample.background, count == 0)
        labels = sample.label_map()
        assert set(np.unique(labels)) == set(range(len(sample.concepts) + 1))


def test_background_colours_are_never_an_object_colour(dataset):
    for sample in dataset:
        pixels = sample.image[sample.background].astype(int)
        assert (pixels.max(axis=1) - pixels.min(axis=1)).max() <= 42  # near-grey; object colours spread >= 150
        assert not any(np.all(pixels == c, axis=1).any() for c in COLOURS)
    spreads = [max(c) - min(c) for c in COLOURS]
    assert min(spreads) >= 150


def test_a_later_object_covers_an_earlier_one(dataset):
    overlapping = 0
    for sample in dataset:
        full = [world.shape_mask(o["shape"], 64, *o["center"], o["radius"]) for o in sample.objects]
        for k, word in enumerate(sample.concepts):
            covered = np.zeros_like(full[k])
            for later in full[k + 1:]:
                covered |= later
            assert np.array_equal(sample.masks[word], full[k] & ~covered)
            assert sample.masks[word].sum() >= 0.5 * full[k].sum()
            overlapping += bool((full[k] & covered).any())
    assert overlapping >= 3  # the dataset does hold occlusions


def test_shapes_by_their_pixels():
    ring = world.shape_mask("ring", 33, 16.5, 16.5, 12)
    assert ring[16, 4] and not ring[16, 16]  # its edge in, its hole out
    for shape in world.SHAPES:
        mask = world.shape_mask(shape, 33, 16.5, 16.5, 12)
        ys, xs = np.nonzero(mask)
        assert mask.sum() > 40 and ys.min() >= 4 and ys.max() <= 28 and xs.min() >= 4 and xs.max() <= 28, shape
    pixels = {world.shape_mask(shape, 33, 16.5, 16.5, 12).tobytes() for shape in world.SHAPES}
    assert len(pixels) == len(world.SHAPES)  # six different shapes
    assert world.shape_mask("square", 33, 16.5, 16.5, 12)[6, 6] and not world.shape_mask("circle", 33, 16.5, 16.5, 12)[6, 6]
    with pytest.raises(ValueError, match="unknown shape"):
        world.shape_mask("hexagon", 8, 4, 4, 2)


def test_the_folder_format_reads_back_what_was_written(tmp_path, dataset):
    samples = dataset[:5]
    samples[0].ignore = np.zeros((64, 64), dtype=bool)
    samples[0].ignore[0, :] = True
    world.write_dataset(tmp_path, samples)
    record = json.loads((tmp_path / "sample_00000.json").read_text())
    assert record["caption"] == samples[0].caption and record["concepts"] == samples[0].concepts
    assert record["masks"] == {c: f"sample_00000.mask.{k}.png" for k, c in enumerate(samples[0].concepts)}
    assert record["ignore"] == "sample_00000.ignore.png"
    assert Image.open(tmp_path / "sample_00000.mask.0.png").mode == "1"
    back = world.read_dataset(tmp_path)
    assert [s.name for s in back] == [s.name for s in samples]
    assert all(_same(a, b) for a, b in zip(back, samples))
    assert np.array_equal(back[0].ignore, samples[0].ignore) and back[1].ignore is None
    samples[0].ignore = None


def test_a_real_dataset_may_use_8_bit_masks_and_overlaps_are_refused(tmp_path):
    picture = np.zeros((8, 8, 3), dtype=np.uint8)
    Image.fromarray(picture).save(tmp_path / "cat.png")
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:6, 2:6] = 255
    Image.fromarray(mask).save(tmp_path / "cat.mask.0.png")
    Image.fromarray(mask).save(tmp_path / "cat.mask.1.png")
    record = {"caption": "a cat on a mat", "concepts": ["cat"], "masks": {"cat": "cat.mask.0.png"}}
    (tmp_path / "cat.json").write_text(json.dumps(record))
    [sample] = world.read_dataset(tmp_path)
    assert sample.masks["cat"].sum() == 16 and sample.background.sum() == 48
    record["concepts"].append("mat")
    record["masks"]["mat"] = "cat.mask.1.png"
    (tmp_path / "cat.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="overlap"):
        world.read_dataset(tmp_path)


def test_the_command_line_writes_a_dataset(tmp_path):
    world.main(["--out", str(tmp_path / "out"), "--count", "3", "--seed", "2", "--size", "32"])
    back = world.read_dataset(tmp_path / "out")
    assert len(back) == 3 and back[0].image.shape == (32, 32, 3)
    assert all(_same(a, b) for a, b in zip(back, world.make_dataset(2, 3, size=32)))
