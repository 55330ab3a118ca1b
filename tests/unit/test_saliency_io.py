"""Saving/loading saliency files, file-name sanitising and the output-folder guard."""

import json
import os

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from concept_attention.concept_patch.saliency_io import (
    load_saliency,
    resolve_inside,
    sanitize_filename_part,
    save_saliency,
)
from concept_attention.concept_patch.saliency_maps import SaliencyMaps


def _saliency():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 3, 4, 6, generator=g).softmax(dim=1)
    meta = {"space": "output", "layers": [9, 10, 11], "noise_level": 0.5, "model": "flux"}
    return SaliencyMaps(maps=maps, names=["dog", "the sky / clouds", "café"], image_size=(64, 96), softmax=True, metadata=meta)


def test_round_trip_is_exact(tmp_path):
    s = _saliency()
    paths = save_saliency(s, str(tmp_path), "run")
    assert os.path.basename(paths[0]) == "run_00001.safetensors"
    loaded = load_saliency(paths[0])
    assert torch.equal(loaded.maps, s.maps) and loaded.maps.dtype == torch.float32
    assert loaded.names == s.names
    assert tuple(loaded.image_size) == (64, 96)
    assert loaded.softmax is True
    assert loaded.metadata == s.metadata


def test_softmax_off_survives(tmp_path):
    s = _saliency()
    s.softmax = False
    assert load_saliency(save_saliency(s, str(tmp_path), "x", heatmaps=False)[0]).softmax is False


def test_heatmaps_one_per_image_and_concept_with_safe_names(tmp_path):
    paths = save_saliency(_saliency(), str(tmp_path), "run")
    pngs = [os.path.basename(p) for p in paths[1:]]
    assert len(pngs) == 2 * 3
    assert "run_00001_b0_c0_dog.png" in pngs
    assert "run_00001_b1_c1_the_sky_clouds.png" in pngs
    assert "run_00001_b1_c2_cafe.png" in pngs
    with Image.open(paths[1]) as image:
        assert image.size == (96, 64)


def test_counter_increments_and_subfolders(tmp_path):
    first = save_saliency(_saliency(), str(tmp_path), "maps/run", heatmaps=False)
    second = save_saliency(_saliency(), str(tmp_path), "maps/run")
    assert first[0].endswith(os.path.join("maps", "run_00001.safetensors"))
    assert second[0].endswith(os.path.join("maps", "run_00002.safetensors"))
    assert all(os.path.isfile(p) for p in first + second)


def test_prefix_escaping_the_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="outside the output folder"):
        save_saliency(_saliency(), str(tmp_path / "out"), "../evil/run")
    with pytest.raises(ValueError, match="is absolute"):
        save_saliency(_saliency(), str(tmp_path), "/tmp/run")


def test_load_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no saliency file at"):
        load_saliency(str(tmp_path / "nope.safetensors"))


def test_load_not_safetensors(tmp_path):
    path = tmp_path / "text.safetensors"
    path.write_text("hello, not a tensor file")
    with pytest.raises(ValueError, match="is not a saliency file"):
        load_saliency(str(path))
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is not a saliency file"):
        load_saliency(str(empty))


def test_load_other_safetensors_file(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ValueError, match="is not a saliency file.*saliency marker"):
        load_saliency(str(path))


def _write(path, maps, **overrides):
    meta = {
        "format": "concept_attention.saliency",
        "format_version": "1",
        "names": json.dumps(["a", "b"]),
        "image_size": json.dumps([16, 16]),
        "softmax": "true",
        "metadata": "{}",
    }
    meta.update(overrides)
    save_file({"maps": maps}, str(path), metadata={k: v for k, v in meta.items() if v is not None})


@pytest.mark.parametrize(
    "overrides, maps_shape, message",
    [
        ({"names": json.dumps(["a"])}, (1, 2, 2, 2), "do not fit 1 concept names"),
        ({}, (2, 2, 2), r"maps of shape \(2, 2, 2\)"),
        ({"image_size": json.dumps([16])}, (1, 2, 2, 2), "image size must be two positive whole numbers"),
        ({"names": "not json"}, (1, 2, 2, 2), "metadata is incomplete or malformed"),
        ({"softmax": "maybe"}, (1, 2, 2, 2), "metadata is incomplete or malformed"),
        ({"names": None}, (1, 2, 2, 2), "metadata is incomplete or malformed"),
        ({"names": json.dumps([1, 2])}, (1, 2, 2, 2), "concept names must be a list of text"),
        ({"format_version": "99"}, (1, 2, 2, 2), "format version '99'"),
    ],
)
def test_load_validates_contents(tmp_path, overrides, maps_shape, message):
    path = tmp_path / "bad.safetensors"
    _write(path, torch.zeros(maps_shape), **overrides)
    with pytest.raises(ValueError, match=message):
        load_saliency(str(path))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dog", "dog"),
        ("a red car", "a_red_car"),
        ("the sky / clouds", "the_sky_clouds"),
        ("café", "cafe"),
        ("..", "unnamed"),
        (".", "unnamed"),
        ("", "unnamed"),
        ("///", "unnamed"),
        ("日本", "unnamed"),
        ("../../etc/passwd", "_.._etc_passwd"),
        (".hidden", "hidden"),
        ("CON", "_CON"),
        ("v1.2-final_ok", "v1.2-final_ok"),
    ],
)
def test_sanitize_filename_part(text, expected):
    assert sanitize_filename_part(text) == expected


def test_sanitize_limits_length_and_keeps_only_safe_characters():
    out = sanitize_filename_part("x" * 500 + "!?*<>|:\"\\", max_length=64)
    assert len(out) <= 64
    long_mixed = sanitize_filename_part("a b!c" * 100)
    assert set(long_mixed) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert long_mixed not in ("", ".", "..")


def test_resolve_inside_accepts_paths_inside(tmp_path):
    assert resolve_inside(str(tmp_path), "a/b.safetensors") == os.path.join(os.path.realpath(tmp_path), "a", "b.safetensors")
    assert resolve_inside(str(tmp_path), "a/../b") == os.path.join(os.path.realpath(tmp_path), "b")
    assert resolve_inside(str(tmp_path), ".") == os.path.realpath(tmp_path)


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "..", "/etc/passwd", "\\evil", "C:evil", "a\0b"])
def test_resolve_inside_rejects_escapes(tmp_path, relative):
    with pytest.raises(ValueError, match="outside the output folder|is absolute|invalid path"):
        resolve_inside(str(tmp_path), relative)


def test_resolve_inside_rejects_symlink_escape(tmp_path):
    outside = tmp_path / "outside"
    base = tmp_path / "base"
    outside.mkdir()
    base.mkdir()
    (base / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the output folder"):
        resolve_inside(str(base), "link/file.safetensors")


def test_resolve_inside_error_names_path_and_folder(tmp_path):
    with pytest.raises(ValueError) as info:
        resolve_inside(str(tmp_path), "../x")
    assert "'../x'" in str(info.value) and os.path.realpath(tmp_path) in str(info.value)
