"""Socket types and shared widget definitions of the pack's nodes."""

from __future__ import annotations

import inspect

from comfy_api.latest import io

from ..concept_patch.stream.options import SPACES

CATEGORY = "ConceptAttention"
NODE_PREFIX = "ConceptAttention"

MODEL_TOOLTIP = (
    "A dual-stream DiT: Flux.1 (dev, schnell, Kontext, Fill), Flux.2 (dev, Klein 4B/9B), SD3/SD3.5, "
    "Qwen-Image (and Edit), HiDream-I1/E1, Chroma, Chroma Radiance, LongCat-Image, Ovis-Image, Mage-Flow, "
    "HunyuanImage 2.1, or the video models CogVideoX and HunyuanVideo 1/1.5 (a map per frame); or, as an "
    "extension of the method (concepts through the blocks' shared weights), a single-stream Z-Image, Lumina 2 or "
    "Krea 2."
)

Concepts = io.Custom("CONCEPTS")
Saliency = io.Custom("SALIENCY")

def advanced(input_cls) -> dict:
    """{"advanced": True} where this ComfyUI's inputs know the flag (not in 0.3.x), else nothing."""
    return {"advanced": True} if "advanced" in inspect.signature(input_cls.__init__).parameters else {}


LAYERS_TOOLTIP = (
    "Blocks whose maps are averaged (dual-stream blocks; on single-stream Z-Image, Lumina 2 and Krea 2 the "
    "main blocks): 'last 10' (the paper's choice), 'all', 'first 4', "
    "a range '9-18', a list '3,7,11', or a mix. Block numbers start at 0; 'last N' above the model's block "
    "count takes every block (Flux.2 has 5 or 8). Hybrid models (Flux, Chroma, HiDream) also have single-stream "
    "blocks: a part starting with 'single' selects those, e.g. 'last 10, single last 4' or 'single 30-37' "
    "(an extension beyond the paper, which reads dual-stream blocks only)."
)


def layer_inputs(default: str = "last 10") -> list:
    return [
        io.String.Input("layers", default=default, tooltip=LAYERS_TOOLTIP),
    ]


def method_inputs() -> list:
    """Space, softmax and the paper's Table-4 switches, shared by encode and generation modes."""
    return [
        io.Combo.Input(
            "space", options=list(SPACES), default="output",
            tooltip="Where image and concept vectors are compared: 'output' = attention outputs (the paper's "
                    "method, sharpest maps); 'cross_attention' = concept queries · image keys; 'value' = value vectors.",
        ),
        io.Boolean.Input(
            "softmax", default=True,
            tooltip="Softmax over concepts at every image token (the paper's default): each token's values sum to 1. "
                    "Off gives raw dot products.",
        ),
        io.Boolean.Input(
            "concept_self_attention", default=True, **advanced(io.Boolean.Input),
            tooltip="Concepts attend to each other (paper Table 4). Helps concepts stay distinct.",
        ),
        io.Boolean.Input(
            "concept_cross_attention", default=True, **advanced(io.Boolean.Input),
            tooltip="Concepts attend to the image tokens (paper Table 4). Off makes maps ignore the image context.",
        ),
    ]
