"""Hand-written saliency files for the loader's tests: the maps tensor and metadata, any field overridden or left
out (None)."""

from __future__ import annotations

import json

from safetensors.torch import save_file


def write_saliency_file(path, maps, **overrides):
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
