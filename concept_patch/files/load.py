"""Loading saliency files: every field is checked, and what loading costs is bounded by the file's
own size (a file comes from anywhere: hand edits, other tools, a malicious workflow)."""

from __future__ import annotations

import json
import os

import torch
from safetensors import SafetensorError, safe_open

from ..checks.errors import ConceptAttentionError
from ..checks.input_limits import output_pixels_problem
from ..maps.saliency_maps import SaliencyMaps
from ..text.concepts import MAX_CONCEPTS, MAX_METADATA_CHARS, MAX_NAME_CHARS, concept_key
from .save import FORMAT_NAME, FORMAT_VERSION

MAX_IMAGE_SIDE = 16384  # ComfyUI's MAX_RESOLUTION: the largest picture its own nodes make
MAX_BATCH = 4096  # ComfyUI's largest latent batch
# Pixels per map cell: 16 on every supported family (8-px latent cells in 2x2 patches, 16-px latent
# cells, 16-px pixel patches), a little more where a picture's size is not a multiple of 16.
MAX_CELL_PIXELS = 32
# Pixel frames per token frame of a video: 4 on causal video VAEs, 8 with a temporal patch of 2; twice
# that is accepted. Like MAX_CELL_PIXELS it bounds what a small file can claim (a MASK per frame).
MAX_FRAMES_PER_TOKEN_FRAME = 16
MAX_JSON_DEPTH = 16
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
        key = concept_key(n)
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
            too_large = output_pixels_problem(shape[0], frames or 0, image_size)
            if too_large:  # refused before the maps are read: the budget does not grow with the file's claims
                raise refuse("sizes ('maps' batch, 'frames', 'image_size')", too_large)
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
