"""The benchmark (quality/evaluate.py) on synthetic pictures with a tiny random Chroma Radiance and its T5: the pack's
maps come back on the model's token grid for every setting and mode, the metrics stay in range, and maps that
are the masks themselves score 1.0 through the same pipeline."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from concept_attention.quality import evaluate as bench
from concept_attention.quality.synthetic_world import make_dataset, read_dataset, write_dataset
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.tiny import tiny_models

SIZE = 64
GRID = SIZE // 16  # Chroma Radiance's 16-pixel patches


@functools.cache
def _setup():
    return tiny_models.chroma_radiance_model(), tiny_models.flux_clip()


_module_scope = cleared_after_module(_setup, one_thread=True)


def _dataset(tmp_path, count=4):
    """Pictures through the folder format, as a user's dataset would come: one to three objects each."""
    return read_dataset(write_dataset(tmp_path / "world", make_dataset(seed=5, count=count, size=SIZE)))


def _in_unit_range(value):
    return value is not None and 0.0 <= value <= 1.0 and math.isfinite(value)


def _check_report(report, dataset, settings):
    assert [r["label"] for r in report["results"]] == [s.label() for s in settings]
    singles = sum(len(s.concepts) == 1 for s in dataset)
    for result in report["results"]:
        assert len(result["images"]) == len(dataset)
        assert result["multi_object"]["images"] == len(dataset)
        assert result["single_object"]["images"] == singles
        for record, sample in zip(result["images"], dataset):
            assert record["concepts"] == [*sample.concepts, "background"]
            assert record["grid"] == [GRID, GRID]
            assert _in_unit_range(record["multi_object"]["pixel_accuracy"])
            assert (record["single_object"] is None) == (len(sample.concepts) != 1)
        metrics = result["multi_object"]
        assert _in_unit_range(metrics["pixel_accuracy"]) and _in_unit_range(metrics["miou"])
        assert set(metrics["class_iou"]) <= {"background", *(c for s in dataset for c in s.concepts)}
        if singles:
            so = result["single_object"]
            assert all(_in_unit_range(so[k]) for k in ("pixel_accuracy", "miou", "map"))


def test_pack_maps_of_a_tiny_chroma_radiance_in_every_space(tmp_path):
    model, clip = _setup()
    dataset = _dataset(tmp_path)
    assert any(len(s.concepts) == 1 for s in dataset) and any(len(s.concepts) > 1 for s in dataset)
    settings = bench.settings_grid(spaces=("output", "cross_attention", "value"), softmaxes=(True, False),
                                   layers=("all", "last 1"), noise_levels=(0.5,))
    settings = settings[:3] + [bench.Setting(softmax=False, layers="last 1", noise_level=0.3)]
    report = bench.evaluate(model, clip, None, dataset, settings)
    _check_report(report, dataset, settings)
    # with softmax on, each token's values sum to 1 over the concepts
    maps = bench.PackMaps(model, clip, None)(dataset[0], [*dataset[0].concepts, "background"], settings[0])
    assert maps.shape == (len(dataset[0].concepts) + 1, GRID, GRID)
    assert np.allclose(maps.sum(axis=0), 1.0, atol=1e-5)
    # re-queries of the recorded image stream give the same report
    again = bench.evaluate(model, clip, None, dataset, settings, cache_budget=1 << 28)
    for ours, theirs in zip(report["results"], again["results"]):
        for mine, other in zip(ours["images"], theirs["images"]):
            assert mine["multi_object"] == pytest.approx(other["multi_object"])
            assert (mine["single_object"] is None) or mine["single_object"] == pytest.approx(other["single_object"])


def test_pixel_space_latent_is_what_comfyuis_pixel_space_vae_encodes(tmp_path):
    import comfy.sd
    import torch

    model, clip = _setup()
    sample = _dataset(tmp_path, count=1)[0]
    vae = comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})
    ours = bench.picture_latent(model, None, sample.image)
    theirs = bench.picture_latent(model, vae, sample.image)
    assert ours.shape == (1, 3, SIZE, SIZE)
    assert torch.allclose(ours, theirs.to(ours.dtype), atol=1e-6)
    # and the evaluation through that VAE gives the same maps as without it
    setting = bench.Setting(layers="last 1")
    names = [*sample.concepts, "background"]
    assert np.allclose(bench.PackMaps(model, clip, vae)(sample, names, setting),
                       bench.PackMaps(model, clip, None)(sample, names, setting), atol=1e-5)


def test_generation_mode_records_maps_and_the_drift_from_the_picture(tmp_path):
    model, clip = _setup()
    dataset = _dataset(tmp_path, count=2)
    settings = [bench.Setting(mode="generation", steps=2, noise_level=0.4, layers="last 1")]
    report = bench.evaluate(model, clip, None, dataset, settings)
    _check_report(report, dataset, settings)
    for record in report["results"][0]["images"]:
        assert 0.0 <= record["drift"] <= 1.0


def _maps_from_masks(sample, names, setting):
    """A perfect map source: each concept's map is its mask, at the picture's own size (nothing is lost to
    upsampling); background words get the background."""
    maps = [sample.masks[n] if n in sample.masks else sample.background for n in names]
    return np.stack(maps).astype(np.float64)


@pytest.mark.parametrize("threshold", ["mean", "argmax"])
def test_maps_equal_to_the_masks_score_one(tmp_path, threshold):
    dataset = _dataset(tmp_path, count=6)
    report = bench.evaluate(None, None, None, dataset, [bench.Setting()], threshold=threshold,
                            map_source=_maps_from_masks)
    result = report["results"][0]
    assert result["single_object"]["images"] >= 1
    assert result["single_object"]["pixel_accuracy"] == 1.0
    assert result["single_object"]["miou"] == 1.0
    assert result["single_object"]["map"] == 1.0
    assert result["multi_object"]["pixel_accuracy"] == 1.0
    assert result["multi_object"]["miou"] == 1.0
    # and each region given the next concept's map is caught
    swapped = lambda s, n, st: np.roll(_maps_from_masks(s, n, st), 1, axis=0)  # noqa: E731
    worse = bench.evaluate(None, None, None, dataset, [bench.Setting()], threshold=threshold, map_source=swapped)
    assert worse["results"][0]["multi_object"]["miou"] < 0.5
    assert worse["results"][0]["single_object"]["miou"] < 0.5


def test_summary_table_has_a_row_per_setting(tmp_path):
    dataset = _dataset(tmp_path, count=3)
    settings = [bench.Setting(), bench.Setting(space="value", softmax=False)]
    report = bench.evaluate(None, None, None, dataset, settings, map_source=_maps_from_masks)
    table = bench.summary_table(report).splitlines()
    assert len(table) == 2 + len(settings)
    assert "encode value softmax off" in table[-1] and "100.00" in table[-1]


def test_the_command_line_runs_every_combination_and_writes_the_report(tmp_path, monkeypatch, capsys):
    import json

    model, clip = _setup()
    folder = write_dataset(tmp_path / "world", make_dataset(seed=8, count=2, size=SIZE))
    loaded = []
    monkeypatch.setattr(bench, "_load", lambda args: loaded.append(args) or (model, clip, None))
    out = tmp_path / "results.json"
    bench.main(["--dataset", str(folder), "--unet", "m.safetensors", "--clip", "t5.safetensors", "--clip-type",
                "chroma", "--space", "output", "value", "--softmax", "on", "off", "--layers", "last 1",
                "--background", "background", "ground", "--out", str(out)])
    assert loaded[0].clip_type == "chroma" and loaded[0].vae is None
    report = json.loads(out.read_text())
    assert [r["label"] for r in report["results"]] == [
        f"encode {space} softmax {on} layers last 1 noise 0.5" for space in ("output", "value") for on in ("on", "off")]
    assert report["background_words"] == ["background", "ground"]
    assert report["results"][0]["images"][0]["concepts"][-2:] == ["background", "ground"]
    assert report["model"]["clip_type"] == "chroma"
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 4
