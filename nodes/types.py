"""Socket types and shared widget definitions of the pack's nodes."""

from __future__ import annotations

import inspect

from comfy_api.latest import io

from ..concept_patch.families import FAMILIES, supported_models_text
from ..concept_patch.stream.options import SPACES

CATEGORY = "ConceptAttention"

# Made from the family registry, so they name every family the pack reads.
MODEL_TOOLTIP = f"A diffusion transformer whose text attends jointly with the picture: {supported_models_text()}."
CLIP_TOOLTIP = ("The text encoder loaded for the model, the one its prompts use. " + "; ".join(
    f"{family.name}: {', '.join(e.describe() + (f' ({e.note})' if e.note else '') for e in family.encoders)}"
    for family in FAMILIES) + ".")
_HYBRIDS = ", ".join(f.name for f in FAMILIES if len(f.blocks) > 1)
_SINGLE_STREAM = ", ".join(f.name for f in FAMILIES if f.block_label == "single-stream")

Concepts = io.Custom("CONCEPTS")
Saliency = io.Custom("SALIENCY")

def advanced(input_cls) -> dict:
    """{"advanced": True} where this ComfyUI's inputs know the flag (not in 0.3.x), else nothing."""
    return {"advanced": True} if "advanced" in inspect.signature(input_cls.__init__).parameters else {}


def extra_options(input_cls, **options) -> dict:
    """{"extra_dict": options}: options for the web extension in the node definition, where this ComfyUI's input takes
    them (0.3.x's number inputs do not; the extension then falls back to its own defaults), else nothing."""
    return {"extra_dict": options} if "extra_dict" in inspect.signature(input_cls.__init__).parameters else {}


LAYERS_TOOLTIP = (
    f"Blocks whose maps are averaged (dual-stream blocks; on the single-stream {_SINGLE_STREAM} their blocks): "
    "'last 10' (the paper's choice), 'all', 'first 4', a range '9-18', a list '3,7,11', or a mix. Block numbers "
    "start at 0; 'last N' above the model's block count takes every block (Flux.2 has 5 or 8). Hybrid models "
    f"({_HYBRIDS}) also have single-stream blocks: a part starting with 'single' selects those, e.g. 'last 10, "
    "single last 4' or 'single 30-37' (an extension beyond the paper, which reads dual-stream blocks only)."
)


def model_inputs() -> list:
    """The model to read and the concepts to find in it."""
    return [
        io.Model.Input("model", tooltip=MODEL_TOOLTIP),
        Concepts.Input("concepts", tooltip="From Concept List, made with this model's text encoder."),
    ]


def layer_inputs(default: str = "last 10") -> list:
    return [
        io.String.Input("layers", default=default, tooltip=LAYERS_TOOLTIP),
    ]


def softmax_inputs() -> list:
    """The softmax's temperature and place (advanced, after every other input so saved workflows keep their values).
    The authors' Flux.2 code: layers 5-7, softmax after the mean, temperature 1000 (README)."""
    return [
        io.Float.Input(
            "softmax_temperature", default=1.0, min=0.001, max=1e6, step=0.1, optional=True,
            **advanced(io.Float.Input),
            tooltip="The softmax over concepts reads scores / temperature. 1 is the paper's softmax; the authors' "
                    "Flux.2 code uses 1000 with the softmax after the mean (below). Higher gives softer maps. "
                    "Only with softmax on.",
        ),
        io.Boolean.Input(
            "softmax_after_mean", default=False, optional=True, **advanced(io.Boolean.Input),
            tooltip="Take the softmax once, after averaging the raw scores over layers, steps and noise samples, "
                    "instead of at every layer (the paper). The authors' Flux.2 code does this, with layers '5-7' and "
                    "temperature 1000. Only with softmax on.",
        ),
    ]


def method_inputs() -> list:
    """Space, softmax and the paper's Table-4 switches, shared by encode and generation modes."""
    return [
        io.Combo.Input(
            "space", options=list(SPACES), default="output",
            tooltip="Where image and concept vectors are compared: 'output' = attention outputs (the paper's "
                    "method, sharpest maps); 'cross_attention' = concept queries · image keys; 'value' = value vectors. "
                    "Cross-attention models: 'cross_attention' = image queries · concept keys (the paper's "
                    "baseline); 'output' = the extension o_i · o_c (docs/cross-attention.md); no 'value'.",
        ),
        io.Boolean.Input(
            "softmax", default=True, **advanced(io.Boolean.Input),
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
