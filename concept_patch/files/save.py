"""Saving saliency maps: a safetensors file, and a heatmap file per (clip, concept) for a quick look.

A saliency file is a safetensors file with one tensor, `maps` (float32 [B, r, h, w]), and string
metadata: format marker, concept names (JSON), image size (JSON), softmax flag, and how the maps
were made (JSON). A video's maps keep their time axis, [B, r, T, h, w], and the file adds `frames`:
the pixel frames each clip decodes to (written only for video, so picture files are as they always
were). Next to it go the heatmaps: a PNG per (picture, concept), an animated WebP per (clip, concept).
Where the output folder is (ComfyUI's folder_paths) is the node layer's business, not this module's.
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from ..checks.errors import ConceptAttentionError
from ..checks.finite import check_finite_saliency
from ..maps.colors import ColorScale
from ..maps.panels import FILE_MAX_SIDE, FILE_PIXEL_BUDGET, PREVIEW_MIN_SIDE, panel_size
from ..maps.saliency_maps import SaliencyMaps
from ..text.concepts import check_concept_names, names_json
from .paths import numbered_base, output_target, sanitize_filename_part
from .pictures import heatmap_extension, heatmap_file_bytes

FORMAT_NAME = "concept_attention.saliency"
FORMAT_VERSION = "1"
# Animated heatmaps of a video: all their frames together stay within FILE_PIXEL_BUDGET, frames no
# smaller than this on the longer side.
VIDEO_FILE_MIN_SIDE = 32


def save_saliency(
    saliency: SaliencyMaps, directory: str, filename_prefix: str = "concept_saliency", heatmaps: bool = True,
    folder: str = "output folder",
) -> list[str]:
    """Write <prefix>_<counter:05>.safetensors (+ one heatmap file per clip and concept) under directory.

    filename_prefix may contain sub-folders ("maps/dog"); they must stay inside directory. Returns the
    written paths, the safetensors file first. Heatmaps are named
    <prefix>_<counter>_b<clip>_c<concept index>_<sanitised concept name>.png (.webp for a video); they
    are preview-sized (panel_size with FILE_MAX_SIDE and FILE_PIXEL_BUDGET for all of them and all
    their frames together) and use the colour scale the node previews use. folder: the directory's
    name in error messages.
    """
    if not isinstance(saliency, SaliencyMaps):
        raise ConceptAttentionError(f"expected SALIENCY (SaliencyMaps), got {type(saliency).__name__}")
    check_finite_saliency(saliency.maps, "Load Saliency could not read a file of them; nothing was written")
    check_concept_names(list(saliency.names))  # Load Saliency's limits: never write a file it refuses
    target_dir, name, folder_part = output_target(directory, filename_prefix, folder)
    base = numbered_base(target_dir, name)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "names": names_json(saliency.names),
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
        if heatmaps:
            paths += _write_heatmaps(saliency, base)
    except OSError as e:
        raise ConceptAttentionError(
            f"cannot write the saliency files in {folder_part or '.'!r} of the {folder} "
            f"({e.strerror or type(e).__name__})"
        ) from None
    return paths


def _write_heatmaps(saliency: SaliencyMaps, base: str) -> list[str]:
    """One heatmap file per (clip, concept): <base>_b<clip>_c<concept>_<name><extension>."""
    image_size = tuple(int(s) for s in saliency.image_size)
    count = saliency.batch_size * len(saliency.names) * saliency.clip_frames
    min_side = VIDEO_FILE_MIN_SIDE if saliency.is_video else PREVIEW_MIN_SIDE
    size = panel_size(image_size, count, FILE_MAX_SIDE, FILE_PIXEL_BUDGET, min_side=min_side, upscale=False)
    scale = ColorScale.of(saliency)
    extension = heatmap_extension(saliency)
    paths = []
    for clip in range(saliency.batch_size):
        for i, concept in enumerate(saliency.names):
            path = f"{base}_b{clip}_c{i}_{sanitize_filename_part(concept, 40)}{extension}"
            with open(path, "wb") as f:
                f.write(heatmap_file_bytes(saliency, clip, i, size, scale))
            paths.append(path)
    return paths
