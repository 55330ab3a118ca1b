"""Saving and loading saliency maps, and the path checks that keep files inside the output folder.

A saliency file is a safetensors file with one tensor, `maps` (float32 [B, r, h, w]), and string
metadata: format marker, concept names (JSON), image size (JSON), softmax flag, and how the maps
were made (JSON). Next to it go coloured heatmap PNGs, one per (image, concept), for a quick look.
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

from .heatmap import heatmap_png_bytes
from .saliency_maps import SaliencyMaps

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


def resolve_inside(base_dir: str, relative: str) -> str:
    """The real path of base_dir/relative, refusing absolute paths and anything that leaves base_dir
    (through '..' or symlinks). Raises ValueError naming the path and the folder."""
    if not isinstance(relative, str) or "\0" in relative:
        raise ValueError(f"invalid path {relative!r}: give a relative path of text inside {base_dir}")
    if os.path.isabs(relative) or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
        raise ValueError(f"the path {relative!r} is absolute; give a path relative to the output folder {base_dir}")
    base = os.path.realpath(base_dir)
    target = os.path.realpath(os.path.join(base, relative))
    if os.path.commonpath([base, target]) != base:
        raise ValueError(f"the path {relative!r} points outside the output folder {base}; use a path inside it (no '..')")
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


def save_saliency(
    saliency: SaliencyMaps, directory: str, filename_prefix: str = "concept_saliency", heatmaps: bool = True
) -> list[str]:
    """Write <prefix>_<counter:05>.safetensors (+ one heatmap PNG per image and concept) under directory.

    filename_prefix may contain sub-folders ("maps/dog"); they must stay inside directory. Returns the
    written paths, the safetensors file first. Heatmaps are named
    <prefix>_<counter>_b<image>_c<concept index>_<sanitised concept name>.png.
    """
    if not isinstance(saliency, SaliencyMaps):
        raise ValueError(f"expected SALIENCY (SaliencyMaps), got {type(saliency).__name__}")
    prefix = (filename_prefix or "").replace("\\", "/").strip()
    folder_part, _, name_part = prefix.rpartition("/")
    target_dir = resolve_inside(directory, folder_part or ".")
    name = sanitize_filename_part(name_part or "concept_saliency")
    os.makedirs(target_dir, exist_ok=True)

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
    maps = saliency.maps.detach().to("cpu", torch.float32).contiguous()
    paths = [base + ".safetensors"]
    save_file({"maps": maps}, paths[0], metadata=metadata)

    if heatmaps:
        size = tuple(int(s) for s in saliency.image_size)
        for b in range(maps.shape[0]):
            for i, concept in enumerate(saliency.names):
                path = f"{base}_b{b}_c{i}_{sanitize_filename_part(concept, 40)}.png"
                with open(path, "wb") as f:
                    f.write(heatmap_png_bytes(maps[b, i], size))
                paths.append(path)
    return paths


def load_saliency(path: str) -> SaliencyMaps:
    """Read a file written by save_saliency; ValueError when the file is missing or not a saliency file."""
    if not os.path.isfile(path):
        raise ValueError(f"no saliency file at {path!r}; expected a .safetensors file written by Save Saliency")
    not_saliency = f"{path!r} is not a saliency file (expected a .safetensors file written by Save Saliency)"
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT_NAME or "maps" not in keys:
                raise ValueError(f"{not_saliency}: it lacks the saliency marker or the 'maps' tensor")
            maps = f.get_tensor("maps")
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{not_saliency}: {e}") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path!r} is saliency format version {meta.get('format_version')!r}; "
            f"this node pack reads version {FORMAT_VERSION}"
        )
    try:
        names = json.loads(meta["names"])
        image_size = json.loads(meta["image_size"])
        extra = json.loads(meta.get("metadata", "{}"))
        softmax = {"true": True, "false": False}[meta["softmax"]]
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{not_saliency}: its metadata is incomplete or malformed ({e})") from e
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ValueError(f"{not_saliency}: concept names must be a list of text")
    if not (isinstance(image_size, list) and len(image_size) == 2 and all(isinstance(s, int) and s > 0 for s in image_size)):
        raise ValueError(f"{not_saliency}: image size must be two positive whole numbers, got {image_size!r}")
    if maps.ndim != 4 or maps.shape[1] != len(names):
        raise ValueError(f"{not_saliency}: maps of shape {tuple(maps.shape)} do not fit {len(names)} concept names")
    return SaliencyMaps(
        maps=maps.float(),
        names=names,
        image_size=(image_size[0], image_size[1]),
        softmax=softmax,
        metadata=extra if isinstance(extra, dict) else {"metadata": extra},
    )
