"""Saving and loading saliency maps, and the path checks that keep files inside the output folder.

A saliency file is a safetensors file with one tensor, `maps` (float32 [B, r, h, w]), and string
metadata: format marker, concept names (JSON), image size (JSON), softmax flag, and how the maps
were made (JSON). Next to it go coloured heatmap PNGs, one per (image, concept), for a quick look.
A video's maps keep their time axis, [B, r, T, h, w], and the file adds `frames`: the pixel frames
each clip decodes to (written only for video, so picture files are as they always were); its
heatmaps are animated WebPs, one per (clip, concept), a frame per pixel frame.
Where the output folder is (ComfyUI's folder_paths) is the node layer's business, not this module's.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..text.concepts import MAX_CONCEPTS
from ..checks.errors import ConceptAttentionError
from ..maps.heatmap import FILE_MAX_SIDE, FILE_PIXEL_BUDGET, ColourScale, heatmap_png_bytes, heatmap_webp_bytes, panel_size
from ..maps.saliency_maps import SaliencyMaps

FORMAT_NAME = "concept_attention.saliency"
FORMAT_VERSION = "1"
MAX_NAME_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def sanitize_filename_part(text: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """A safe piece of a file name: only [A-Za-z0-9._-], other runs become '_', at most max_length
    characters, no leading dot (hidden files), never empty, '.' or '..' (then 'unnamed')."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    safe = _UNSAFE.sub("_", ascii_text).lstrip(".")[: max(1, max_length)].rstrip(".")  # Windows drops trailing dots
    if not safe.strip("._-"):
        return "unnamed"
    if safe.split(".")[0].upper() in _WINDOWS_RESERVED:
        safe = "_" + safe[: max(1, max_length) - 1]
    return safe


def resolve_inside(base_dir: str, relative: str, folder: str = "output folder") -> str:
    """The real path of base_dir/relative, refusing absolute paths and anything that leaves base_dir
    (through '..' or symlinks). Raises ConceptAttentionError naming the path and `folder` (the
    folder's name for the user, e.g. "input folder"; never the server's absolute path)."""
    if not isinstance(relative, str) or "\0" in relative:
        raise ConceptAttentionError(f"invalid path {relative!r}: give a relative path of text inside the {folder}")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
        raise ConceptAttentionError(f"the path {relative!r} is absolute; give a path relative to the {folder}")
    base = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base, relative))
    try:
        inside = os.path.commonpath([base, target]) == base
    except ValueError:  # another drive (Windows)
        inside = False
    if not inside:
        raise ConceptAttentionError(f"the path {relative!r} points outside the {folder}; use a path inside it (no '..')")
    return target


def _next_counter(directory: str, prefix: str) -> int:
    """One more than the highest <prefix>_NNNNN already in directory (ComfyUI's numbering)."""
    pattern = re.compile(re.escape(prefix) + r"_(\d{5,})(?:[._]|$)")
    highest = 0
    for entry in os.listdir(directory):
        m = pattern.match(entry)
        if m:
            highest = max(highest, int(m.group(1)))
    return highest + 1


MAX_FOLDER_NAME_BYTES = 255  # the longest file or folder name common file systems take


def _check_prefix_parts(prefix: str) -> None:
    for part in prefix.split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_FOLDER_NAME_BYTES:
            shown = part[:24] + "..."
            raise ConceptAttentionError(
                f"the folder name {shown!r} in filename_prefix is {size} bytes long; a folder name can have at most "
                f"{MAX_FOLDER_NAME_BYTES} (split it with '/' or shorten it)"
            )


def save_saliency(
    saliency: SaliencyMaps, directory: str, filename_prefix: str = "concept_saliency", heatmaps: bool = True,
    folder: str = "output folder",
) -> list[str]:
    """Write <prefix>_<counter:05>.safetensors (+ one heatmap PNG per image and concept) under directory.
    A video's maps keep their time axis and frame count; its heatmaps are animated WebPs per (clip, concept).

    filename_prefix may contain sub-folders ("maps/dog"); they must stay inside directory. Returns the
    written paths, the safetensors file first. Heatmaps are named
    <prefix>_<counter>_b<image>_c<concept index>_<sanitised concept name>.png; they are preview-sized
    (heatmap.panel_size with FILE_MAX_SIDE and FILE_PIXEL_BUDGET for all of them together) and use
    the colour scale the node previews use. folder: the directory's name in error messages.
    """
    if not isinstance(saliency, SaliencyMaps):
        raise ConceptAttentionError(f"expected SALIENCY (SaliencyMaps), got {type(saliency).__name__}")
    prefix = (filename_prefix or "").replace("\\", "/").strip()
    _check_prefix_parts(prefix)
    folder_part, _, name_part = prefix.rpartition("/")
    target_dir = resolve_inside(directory, folder_part or ".", folder)
    name = sanitize_filename_part(name_part or "concept_saliency")
    try:
        os.makedirs(target_dir, exist_ok=True)
    except OSError as e:
        raise ConceptAttentionError(
            f"cannot create the folder {folder_part!r} in the {folder} ({e.strerror or type(e).__name__}); "
            "choose another filename_prefix"
        ) from None

    counter = _next_counter(target_dir, name)
    base = os.path.join(target_dir, f"{name}_{counter:05}")
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "names": json.dumps(list(saliency.names), ensure_ascii=False),
        "image_size": json.dumps([int(s) for s in saliency.image_size]),
        "softmax": "true" if saliency.softmax else "false",
        "metadata": json.dumps(saliency.metadata, ensure_ascii=False, default=str),
    }
    if saliency.is_video:
        metadata["frames"] = str(int(saliency.frames))
    maps = saliency.maps.detach().to("cpu", torch.float32).contiguous()
    paths = [base + ".safetensors"]
    try:
        save_file({"maps": maps}, paths[0], metadata=metadata)
        if heatmaps and saliency.is_video:
            paths += _write_video_heatmaps(saliency, base)
        elif heatmaps:
            image_size = tuple(int(s) for s in saliency.image_size)
            size = panel_size(image_size, maps.shape[0] * maps.shape[1], FILE_MAX_SIDE, FILE_PIXEL_BUDGET,
                              upscale=False)
            scale = ColourScale.of(saliency)
            for b in range(maps.shape[0]):
                for i, concept in enumerate(saliency.names):
                    path = f"{base}_b{b}_c{i}_{sanitize_filename_part(concept, 40)}.png"
                    with open(path, "wb") as f:
                        f.write(heatmap_png_bytes(maps[b, i], size, scale))
                    paths.append(path)
    except OSError as e:
        raise ConceptAttentionError(
            f"cannot write the saliency files in {folder_part or '.'!r} of the {folder} "
            f"({e.strerror or type(e).__name__})"
        ) from None
    return paths


# Animated heatmaps of a video: all their frames together stay within FILE_PIXEL_BUDGET, frames no
# smaller than this on the longer side.
VIDEO_FILE_MIN_SIDE = 32


def _write_video_heatmaps(saliency: SaliencyMaps, base: str) -> list[str]:
    """One animated WebP per (clip, concept): <base>_b<clip>_c<concept>_<name>.webp, a frame per pixel frame."""
    image_size = tuple(int(s) for s in saliency.image_size)
    b, r = saliency.maps.shape[:2]
    size = panel_size(image_size, b * r * saliency.frames, FILE_MAX_SIDE, FILE_PIXEL_BUDGET,
                      min_side=VIDEO_FILE_MIN_SIDE, upscale=False)
    scale = ColourScale.of(saliency)
    paths = []
    for clip in range(b):
        for i, concept in enumerate(saliency.names):
            path = f"{base}_b{clip}_c{i}_{sanitize_filename_part(concept, 40)}.webp"
            with open(path, "wb") as f:
                f.write(heatmap_webp_bytes(saliency, clip, i, size, scale))
            paths.append(path)
    return paths


# ---------------------------------------------------------------- reading files back

MAX_IMAGE_SIDE = 16384  # ComfyUI's MAX_RESOLUTION: the largest picture its own nodes make
MAX_BATCH = 4096  # ComfyUI's largest latent batch
# Pixels per map cell: 16 on every supported family (8-px latent cells in 2x2 patches, 16-px latent
# cells, 16-px pixel patches), a little more where a picture's size is not a multiple of 16.
MAX_CELL_PIXELS = 32
# Pixel frames per token frame of a video: 4 on causal video VAEs, 8 with a temporal patch of 2; twice
# that is accepted. Like MAX_CELL_PIXELS it bounds what a small file can claim (a MASK per frame).
MAX_FRAMES_PER_TOKEN_FRAME = 16
MAX_METADATA_CHARS = 65536  # per metadata field
MAX_JSON_DEPTH = 16
MAX_NAME_CHARS = 256
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}


def _json_depth(text: str) -> int:
    """Deepest nesting of [ and { in a JSON text (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


class _Refusal:
    """Builds the errors of one file: what is wrong with which field, and what is accepted."""

    def __init__(self, label: str):
        self.label = label

    def __call__(self, field: str, problem: str) -> ConceptAttentionError:
        return ConceptAttentionError(
            f"{self.label!r} is not a usable saliency file: its {field} {problem}. Save Saliency writes files "
            "this node reads; a file changed by hand or made elsewhere may not fit"
        )


def _json_field(meta: dict, key: str, refuse: _Refusal):
    text = meta.get(key)
    if not isinstance(text, str):
        raise refuse(f"'{key}' field", "is missing")
    if len(text) > MAX_METADATA_CHARS:
        raise refuse(f"'{key}' field", f"is {len(text)} characters long; at most {MAX_METADATA_CHARS} are read")
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise refuse(f"'{key}' field", f"nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:
        raise refuse(f"'{key}' field", f"is not valid JSON ({e.__class__.__name__})") from None


def _check_names(names, refuse: _Refusal) -> list[str]:
    field = "concept names ('names')"
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise refuse(field, "must be a list of text")
    if not 1 <= len(names) <= MAX_CONCEPTS:
        raise refuse(field, f"number {len(names)}; 1 to {MAX_CONCEPTS} are accepted")
    seen = set()
    for n in names:
        if not n.strip():
            raise refuse(field, "include an empty name")
        if len(n) > MAX_NAME_CHARS:
            raise refuse(field, f"include a name of {len(n)} characters; at most {MAX_NAME_CHARS} are accepted")
        key = n.strip().casefold()
        if key in seen:
            raise refuse(field, f"list {n.strip()!r} twice; each concept must be unique")
        seen.add(key)
    return names


def _check_image_size(size, refuse: _Refusal) -> tuple[int, int]:
    field = "picture size ('image_size')"
    if not (isinstance(size, list) and len(size) == 2 and all(type(s) is int for s in size)):
        raise refuse(field, f"must be two whole numbers [height, width], got {str(size)[:60]}")
    if not all(1 <= s <= MAX_IMAGE_SIDE for s in size):
        raise refuse(field, f"is {size[1]}x{size[0]}; each side must be 1 to {MAX_IMAGE_SIDE} pixels "
                            "(ComfyUI's largest picture)")
    return size[0], size[1]


def _frames_field(meta: dict, refuse: _Refusal) -> int | None:
    """The 'frames' field (pixel frames per clip of a video), None when absent (a picture file)."""
    text = meta.get("frames")
    if text is None:
        return None
    if not (isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 9):
        raise refuse("frame count ('frames')", f"must be a whole number of pixel frames, got {str(text)[:20]!r}")
    return int(text)


def _check_frames(shape, frames: int | None, refuse: _Refusal) -> None:
    """A time axis and a frame count come together, and the count fits the token frames."""
    field = "frame count ('frames')"
    if len(shape) == 4:
        if frames is not None:
            raise refuse(field, f"is {frames} but the 'maps' tensor {tuple(shape)} has no time axis; picture maps "
                                "have no 'frames' field, video maps are [batch, concepts, frames, height, width]")
        return
    tokens = shape[2]
    if frames is None:
        raise refuse(field, f"is missing; video maps {tuple(shape)} need the number of pixel frames each clip decodes to")
    if not tokens <= frames <= tokens * MAX_FRAMES_PER_TOKEN_FRAME:
        raise refuse(field, f"is {frames} for {tokens} token frames; {tokens} to {tokens * MAX_FRAMES_PER_TOKEN_FRAME} "
                            f"are accepted (at most {MAX_FRAMES_PER_TOKEN_FRAME} pixel frames per token frame)")


def _check_maps_shape(shape, dtype: str, names: list[str], image_size: tuple[int, int], refuse: _Refusal) -> None:
    field = "'maps' tensor"
    if dtype not in _FLOAT_DTYPES:
        raise refuse(field, f"has type {dtype}; floating-point maps (F16, BF16, F32, F64) are accepted")
    if len(shape) not in (4, 5):
        raise refuse(field, f"has shape {tuple(shape)}; [batch, concepts, height, width] is accepted "
                            "(a video: [batch, concepts, frames, height, width])")
    b, r, h, w = shape[0], shape[1], shape[-2], shape[-1]
    if min(shape) < 1:
        raise refuse(field, f"has shape {tuple(shape)}: every size must be at least 1")
    if b > MAX_BATCH:
        raise refuse(field, f"holds {b} pictures; at most {MAX_BATCH} are accepted")
    if r != len(names):
        raise refuse(field, f"holds {r} maps per picture but the file names {len(names)} concepts")
    height, width = image_size
    if h > height or w > width:
        raise refuse(field, f"has a {w}x{h} grid, finer than its {width}x{height} picture")
    if height > h * MAX_CELL_PIXELS or width > w * MAX_CELL_PIXELS:
        raise refuse("picture size ('image_size')",
                     f"{width}x{height} does not fit its {w}x{h} map grid: at most {MAX_CELL_PIXELS} pixels per "
                     f"map cell are accepted (the models make 16), so at most {w * MAX_CELL_PIXELS}x"
                     f"{h * MAX_CELL_PIXELS} for this grid")


def load_saliency(path: str, label: str | None = None) -> SaliencyMaps:
    """Read a file written by save_saliency, checking every field; ConceptAttentionError names the
    field that is wrong and what is accepted.

    label: how errors name the file (default: its base name; never the server's absolute path).
    What loading costs is bounded by the file's own size: sizes are checked against the maps the file
    holds before anything is made from them.
    """
    label = label if label is not None else os.path.basename(str(path))
    if not os.path.isfile(path):
        raise ConceptAttentionError(f"no saliency file {label!r}; expected a .safetensors file written by Save Saliency")
    refuse = _Refusal(label)
    not_saliency = f"{label!r} is not a saliency file (expected a .safetensors file written by Save Saliency)"
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT_NAME or "maps" not in keys:
                raise ConceptAttentionError(f"{not_saliency}: it lacks the saliency marker or the 'maps' tensor")
            if meta.get("format_version") != FORMAT_VERSION:
                version = str(meta.get("format_version"))[:20]
                raise ConceptAttentionError(
                    f"{label!r} is saliency format version {version!r}; this node pack reads version {FORMAT_VERSION}"
                )
            names = _check_names(_json_field(meta, "names", refuse), refuse)
            image_size = _check_image_size(_json_field(meta, "image_size", refuse), refuse)
            softmax = {"true": True, "false": False}.get(meta.get("softmax"))
            if softmax is None:
                raise refuse("'softmax' field", "must be 'true' or 'false'")
            extra = _json_field(meta, "metadata", refuse) if "metadata" in meta else {}
            if not isinstance(extra, dict):
                raise refuse("'metadata' field", "must be a JSON object")
            frames = _frames_field(meta, refuse)
            maps_slice = f.get_slice("maps")
            shape = list(maps_slice.get_shape())
            _check_maps_shape(shape, str(maps_slice.get_dtype()), names, image_size, refuse)
            _check_frames(shape, frames, refuse)
            maps = f.get_tensor("maps")
    except ConceptAttentionError:
        raise
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        reason = getattr(e, "strerror", None) or e.__class__.__name__
        raise ConceptAttentionError(f"{not_saliency}: it cannot be read ({reason})") from None
    maps = maps.float()
    if not torch.isfinite(maps).all():
        raise refuse("'maps' tensor", "holds NaN or infinite values")
    if softmax:
        tolerance = 1e-3
        if float(maps.min()) < -tolerance or float(maps.max()) > 1 + tolerance:
            raise refuse("'maps' tensor", "holds values outside 0-1 although 'softmax' says they are probabilities")
        if not torch.allclose(maps.sum(dim=1), torch.ones(()), atol=tolerance):
            raise refuse("'maps' tensor", "does not sum to 1 over the concepts although 'softmax' says it does")
    return SaliencyMaps(maps=maps, names=names, image_size=image_size, softmax=softmax, metadata=extra,
                        frames=frames or 0)
