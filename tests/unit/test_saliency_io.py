"""Saving/loading saliency files, file-name sanitising and the output-folder guard."""

import json
import os

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.files.load import load_saliency
from concept_attention.concept_patch.files.paths import resolve_inside, sanitize_filename_part
from concept_attention.concept_patch.files.save import save_saliency
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention_tests.unit.allocations import python_peak_bytes, torch_cpu_peak_bytes
from concept_attention_tests.unit.saliency_files import write_saliency_file as _write


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
    with pytest.raises(ValueError, match="no saliency file 'nope.safetensors'"):
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


def _probabilities(*shape):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(0)).softmax(dim=1)


# One crafted file per field: each is refused with a message naming the field (and never an
# IndexError, RecursionError or a server path).
CRAFTED = [
    pytest.param({"names": json.dumps(["a"])}, (1, 2, 2, 2), r"'maps' tensor holds 2 maps per picture but the file names 1",
                 id="names-fewer-than-maps"),
    pytest.param({}, (2, 2, 2), r"'maps' tensor has shape \(2, 2, 2\)", id="maps-3d"),
    pytest.param({}, (0, 2, 2, 2), r"'maps' tensor has shape \(0, 2, 2, 2\): every size must be at least 1",
                 id="maps-empty-batch"),
    pytest.param({"names": "[]"}, (1, 0, 2, 2), r"concept names \('names'\) number 0; 1 to 64", id="no-concepts"),
    pytest.param({}, (1, 2, 0, 2), r"every size must be at least 1", id="maps-empty-grid"),
    pytest.param({"names": json.dumps([f"c{i}" for i in range(65)])}, (1, 65, 1, 1), r"number 65; 1 to 64",
                 id="too-many-names"),
    pytest.param({"names": json.dumps(["a", "A"])}, (1, 2, 2, 2), r"list 'A' twice", id="duplicate-names"),
    pytest.param({"names": json.dumps(["a", " "])}, (1, 2, 2, 2), r"include an empty name", id="empty-name"),
    pytest.param({"names": json.dumps(["a", "b" * 300])}, (1, 2, 2, 2), r"name of 300 characters", id="long-name"),
    pytest.param({"names": json.dumps([1, 2])}, (1, 2, 2, 2), r"concept names \('names'\) must be a list of text",
                 id="names-not-text"),
    pytest.param({"names": json.dumps({"a": 1})}, (1, 2, 2, 2), r"must be a list of text", id="names-not-a-list"),
    pytest.param({"names": "not json"}, (1, 2, 2, 2), r"'names' field is not valid JSON", id="names-not-json"),
    pytest.param({"names": None}, (1, 2, 2, 2), r"'names' field is missing", id="names-missing"),
    pytest.param({"names": "[" * 100000 + "]" * 100000}, (1, 2, 2, 2), r"'names' field is 200000 characters long",
                 id="names-huge"),
    pytest.param({"names": "[" * 5000 + "]" * 5000}, (1, 2, 2, 2), r"'names' field nests deeper than 16",
                 id="names-deep"),
    pytest.param({"image_size": json.dumps([16])}, (1, 2, 2, 2), r"picture size \('image_size'\) must be two whole",
                 id="size-one-number"),
    pytest.param({"image_size": json.dumps([16.5, 16])}, (1, 2, 2, 2), r"must be two whole numbers", id="size-float"),
    pytest.param({"image_size": json.dumps([True, 16])}, (1, 2, 2, 2), r"must be two whole numbers", id="size-bool"),
    pytest.param({"image_size": json.dumps([0, 16])}, (1, 2, 2, 2), r"each side must be 1 to 16384", id="size-zero"),
    pytest.param({"image_size": json.dumps([-16, 16])}, (1, 2, 2, 2), r"each side must be 1 to 16384",
                 id="size-negative"),
    pytest.param({"image_size": json.dumps([16385, 16385])}, (1, 2, 2, 2), r"is 16385x16385; each side must be 1 to 16384",
                 id="size-beyond-comfyui"),
    pytest.param({"image_size": json.dumps([16384, 16384])}, (1, 2, 1, 1),
                 r"picture size \('image_size'\) 16384x16384 does not fit its 1x1 map grid", id="size-claims-more-than-grid"),
    pytest.param({"image_size": json.dumps([2, 2])}, (1, 2, 4, 4), r"4x4 grid, finer than its 2x2 picture",
                 id="grid-finer-than-picture"),
    pytest.param({"image_size": None}, (1, 2, 2, 2), r"'image_size' field is missing", id="size-missing"),
    pytest.param({"softmax": "maybe"}, (1, 2, 2, 2), r"'softmax' field must be 'true' or 'false'", id="softmax-word"),
    pytest.param({"softmax": None}, (1, 2, 2, 2), r"'softmax' field must be 'true' or 'false'", id="softmax-missing"),
    pytest.param({"metadata": "[1, 2]"}, (1, 2, 2, 2), r"'metadata' field must be a JSON object", id="metadata-list"),
    pytest.param({"metadata": '{"a":' * 3000 + "1" + "}" * 3000}, (1, 2, 2, 2), r"'metadata' field nests deeper",
                 id="metadata-deep"),
    pytest.param({"metadata": json.dumps({"x": "y" * 70000})}, (1, 2, 2, 2), r"'metadata' field is \d+ characters long",
                 id="metadata-huge"),
    pytest.param({"format_version": "99"}, (1, 2, 2, 2), "format version '99'", id="version"),
    pytest.param({"format": "other"}, (1, 2, 2, 2), "lacks the saliency marker", id="marker"),
]


@pytest.mark.parametrize("overrides, maps_shape, message", CRAFTED)
def test_crafted_file_is_refused_naming_the_field(tmp_path, overrides, maps_shape, message):
    path = tmp_path / "bad.safetensors"
    maps = _probabilities(*maps_shape) if len(maps_shape) == 4 and min(maps_shape) > 0 else torch.zeros(maps_shape)
    _write(path, maps, **overrides)
    with pytest.raises(ConceptAttentionError, match=message) as info:
        load_saliency(str(path), label="maps/bad.safetensors")
    text = str(info.value)
    assert "'maps/bad.safetensors'" in text and str(tmp_path) not in text


@pytest.mark.parametrize("maps, softmax, message", [
    (torch.full((1, 2, 2, 2), float("nan")), "true", "holds NaN or infinite values"),
    (torch.full((1, 2, 2, 2), float("inf")), "false", "holds NaN or infinite values"),
    (torch.full((1, 2, 2, 2), 3.0), "true", "values outside 0-1"),
    (torch.full((1, 2, 2, 2), 0.2), "true", "does not sum to 1"),
    (torch.zeros(1, 2, 2, 2, dtype=torch.int32), "true", "has type I32; floating-point maps"),
])
def test_crafted_map_values_are_refused(tmp_path, maps, softmax, message):
    path = tmp_path / "bad.safetensors"
    _write(path, maps, softmax=softmax)
    with pytest.raises(ConceptAttentionError, match=message):
        load_saliency(str(path))


def test_softmax_off_maps_may_have_any_finite_values(tmp_path):
    path = tmp_path / "raw.safetensors"
    _write(path, torch.full((1, 2, 2, 2), -7.5), softmax="false")
    assert load_saliency(str(path)).maps.min() == -7.5


def test_a_tiny_file_claiming_a_huge_picture_costs_nothing_to_refuse(tmp_path):
    """A 376-byte file claiming 16384x16384 once drove a server past 6 GiB (its mask, then its picture):
    the claim is checked against the maps the file holds before anything is allocated for it."""
    path = tmp_path / "claim.safetensors"
    _write(path, torch.full((1, 1, 1, 1), 1.0), names=json.dumps(["a"]), image_size=json.dumps([16384, 16384]))
    assert path.stat().st_size < 600

    def refused():
        with pytest.raises(ConceptAttentionError, match=r"16384x16384 does not fit its 1x1 map grid"):
            load_saliency(str(path))

    torch_peak, _ = torch_cpu_peak_bytes(refused)
    python_peak, _ = python_peak_bytes(refused)
    assert torch_peak < 2**16 and python_peak < 2**20, (torch_peak, python_peak)


def test_loading_costs_what_the_file_holds(tmp_path):
    s = SaliencyMaps(_probabilities(2, 8, 64, 64), [f"c{i}" for i in range(8)], (1024, 1024))
    path = save_saliency(s, str(tmp_path), "big", heatmaps=False)[0]
    held = s.maps.numel() * 4
    torch_peak, loaded = torch_cpu_peak_bytes(load_saliency, path)
    assert torch.equal(loaded.maps, s.maps)
    # The maps once, the checks' temporaries (a boolean map, per-token sums) and the profiler's view of
    # allocations around the call: a few times the file's maps, never what a file could claim.
    assert torch_peak <= 4 * held, (torch_peak, held)


def test_errors_never_show_the_server_folder(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(ConceptAttentionError) as info:
        load_saliency(str(missing))
    assert str(tmp_path) not in str(info.value) and "'nope.safetensors'" in str(info.value)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ConceptAttentionError) as info:
        load_saliency(str(garbage), label="garbage.safetensors")
    assert str(tmp_path) not in str(info.value) and "is not a saliency file" in str(info.value)


def test_folder_name_longer_than_the_file_system_allows(tmp_path):
    with pytest.raises(ConceptAttentionError, match=r"folder name 'xxxxxxxx.*' in filename_prefix is 300 bytes long; "
                                                      r"a folder name can have at most 255") as info:
        save_saliency(_saliency(), str(tmp_path), "x" * 300 + "/maps")
    assert str(tmp_path) not in str(info.value)
    # a file name part that long is shortened, not refused
    path = save_saliency(_saliency(), str(tmp_path), "y" * 200, heatmaps=False)[0]
    assert len(os.path.basename(path)) < 100


def test_unwritable_folder_is_explained_without_its_path(tmp_path):
    (tmp_path / "taken").write_text("a file where a folder should go")
    with pytest.raises(ConceptAttentionError, match=r"cannot create the folder 'taken/maps' in the output folder") as info:
        save_saliency(_saliency(), str(tmp_path), "taken/maps/run")
    assert str(tmp_path) not in str(info.value)


def test_heatmap_files_are_preview_sized(tmp_path):
    """64 full-size PNGs of a 4097² picture once blocked a server for 6 minutes."""
    names = [f"c{i}" for i in range(16)]
    s = SaliencyMaps(_probabilities(1, 16, 128, 128), names, (2048, 2048))
    paths = save_saliency(s, str(tmp_path), "large")
    sizes = []
    for path in paths[1:]:
        with Image.open(path) as image:
            sizes.append(image.size)
    assert len(sizes) == 16
    assert all(max(size) <= 1024 for size in sizes)
    assert sum(w * h for w, h in sizes) <= 16_000_000


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


def test_resolve_inside_error_names_path_and_folder_but_not_where_it_is(tmp_path):
    with pytest.raises(ValueError) as info:
        resolve_inside(str(tmp_path), "../x")
    assert "'../x'" in str(info.value) and "output folder" in str(info.value)
    assert str(tmp_path) not in str(info.value) and os.path.realpath(tmp_path) not in str(info.value)
    for relative in ("../x", "/etc/passwd", "a\0b"):
        with pytest.raises(ConceptAttentionError, match="input folder") as info:
            resolve_inside(str(tmp_path), relative, "input folder")
        assert "output" not in str(info.value) and str(tmp_path) not in str(info.value)


# ---------------------------------------------------------------------------------------------
# what Concept List accepts, Save Saliency writes and Load Saliency reads: one set of limits
# ---------------------------------------------------------------------------------------------


def _longest_names():
    """MAX_CONCEPTS names of MAX_NAME_CHARS characters, full of what JSON escapes or stores wide."""
    from concept_attention.concept_patch.text.concepts import MAX_CONCEPTS, MAX_NAME_CHARS

    names = []
    for k in range(MAX_CONCEPTS):
        head = f'{k:02d} "dog" \\ café 🐶 '
        names.append((head + 'é"\\' * MAX_NAME_CHARS)[:MAX_NAME_CHARS])
    return names


def test_the_longest_names_and_most_concepts_concept_list_takes_round_trip(tmp_path):
    from concept_attention.concept_patch.text.concepts import MAX_CONCEPTS, MAX_NAME_CHARS, parse_concept_names

    names = parse_concept_names("\n".join(_longest_names()))
    assert len(names) == MAX_CONCEPTS and {len(n) for n in names} == {MAX_NAME_CHARS}
    maps = torch.rand(1, len(names), 2, 3).softmax(dim=1)
    s = SaliencyMaps(maps=maps, names=names, image_size=(32, 48), softmax=True)
    loaded = load_saliency(save_saliency(s, str(tmp_path), "longest", heatmaps=True)[0])
    assert loaded.names == names and torch.equal(loaded.maps, s.maps)


@pytest.mark.parametrize("length", [257, 319, 10_000])
def test_concept_list_refuses_a_name_longer_than_a_file_holds(length):
    from concept_attention.concept_patch.text.concepts import parse_concept_names

    with pytest.raises(ConceptAttentionError, match=f"is {length} characters long; at most 256 are accepted"):
        parse_concept_names("dog, " + "g" * length)


def test_concept_list_refuses_names_whose_file_field_would_be_too_long():
    """64 names of 256 control characters fit each limit on its own but JSON writes each as 6 characters."""
    from concept_attention.concept_patch.text.concepts import parse_concept_names

    text = "\n".join(f"{k:02d}" + "\x01" * 254 for k in range(64))
    with pytest.raises(ConceptAttentionError, match="take 97920 characters in a saliency file; at most 65536"):
        parse_concept_names(text)


@pytest.mark.parametrize("names", [["dog", "g" * 319], [f"{k} " + "g" * 1100 for k in range(64)]],
                         ids=["one-long-name", "64-long-names"])
def test_save_saliency_refuses_names_load_saliency_would_refuse(tmp_path, names):
    s = SaliencyMaps(maps=torch.rand(1, len(names), 2, 3).softmax(dim=1), names=names, image_size=(32, 48))
    with pytest.raises(ConceptAttentionError, match="characters long; at most 256 are accepted"):
        save_saliency(s, str(tmp_path), "too_long")
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_save_saliency_refuses_non_finite_maps_and_writes_nothing(tmp_path, value):
    s = _saliency()
    s.maps[1, 2, 3, 4] = value
    with pytest.raises(ConceptAttentionError, match="NaN or infinite values, so Load Saliency could not read"):
        save_saliency(s, str(tmp_path), "nan")
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# what nodes make from maps is bounded by one budget, whatever the file claims or the pack computed
# ---------------------------------------------------------------------------------------------


def test_a_32_kb_file_claiming_256_frames_of_1024_squared_is_refused_before_reading(tmp_path):
    """Every per-field limit passes (16 token frames x 16 pixel frames, 32 pixels per cell), but its MASK would be
    256x1024x1024 fp32, 1 GiB: refused with the numbers, before the maps are read."""
    path = tmp_path / "claim.safetensors"
    maps = torch.full((1, 1, 16, 32, 32), 1.0, dtype=torch.float16)
    _write(path, maps, names=json.dumps(["a"]), image_size=json.dumps([1024, 1024]), frames="256")
    assert path.stat().st_size < 40_000

    def refused():
        with pytest.raises(ConceptAttentionError, match=r"describe 1 clip\(s\) x 256 frames of 1024x1024 pixels, "
                                                         r"268,435,456 pixels in all.*at most 134,217,728"):
            load_saliency(str(path))

    torch_peak, _ = torch_cpu_peak_bytes(refused)
    assert torch_peak < 2**16, torch_peak


@pytest.mark.parametrize("shape, image_size, frames", [
    ((1, 3, 31, 45, 80), (720, 1280), 121),  # a 121-frame 1280x720 clip (CogVideoX 1.5 / HunyuanVideo)
    ((8, 3, 256, 256), (4096, 4096), 0),  # eight 4096² pictures
    ((1, 2, 512, 1024), (8192, 16384), 0),  # half of ComfyUI's largest picture
])
def test_real_work_fits_the_budget_and_round_trips(tmp_path, shape, image_size, frames):
    s = SaliencyMaps(_probabilities(*shape), ["dog", "sky", "grass"][:shape[1]], image_size, frames=frames)
    loaded = load_saliency(save_saliency(s, str(tmp_path), "real", heatmaps=False)[0])
    assert loaded.image_size == image_size and loaded.clip_frames == s.clip_frames


@pytest.mark.parametrize("shape, image_size, frames, message", [
    ((9, 1, 256, 256), (4096, 4096), 0, r"describe 9 picture\(s\) of 4096x4096 pixels, 150,994,944 pixels"),
    ((1, 1, 16384 // 16, 16384 // 16), (16384, 16384), 0, r"describe 1 picture\(s\) of 16384x16384 pixels"),
    ((2, 1, 31, 45, 80), (720, 1280), 121, r"describe 2 clip\(s\) x 121 frames of 1280x720 pixels, 223,027,200"),
])
def test_maps_beyond_the_budget_are_refused_whoever_made_them(shape, image_size, frames, message):
    with pytest.raises(ConceptAttentionError, match=message):
        SaliencyMaps(torch.zeros(shape), ["dog"], image_size, frames=frames)
