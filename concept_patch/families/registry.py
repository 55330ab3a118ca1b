"""The family registry: every adapter, recognising a model, and every list users read that names families.

Families of one ComfyUI model class tell themselves apart by declared predicates (ModelFamily.is_variant) that
exclude each other; detection takes the one family that claims a model, so the order below is only the order
lists show. The supported-model messages, the node tooltips, the supported models in README.md and docs/models.md and the test
script's compatibility selection are made from these declarations (tests/unit/test_family_registry.py checks
those files against them).
"""

from __future__ import annotations

from ..checks.errors import UnsupportedModelError
from .base import ModelFamily
from .chroma import ChromaFamily, ChromaRadianceFamily
from .cogvideox import CogVideoXFamily
from .flux import FluxFamily
from .flux2 import Flux2Family
from .flux_text_positions import LongCatFamily, OvisFamily
from .hidream import HiDreamFamily
from .hunyuan_video import HunyuanImage21Family, HunyuanVideo15Family, HunyuanVideoFamily
from .joyimage import JoyImageFamily
from .krea2 import Krea2Family
from .ltx2 import LTX2Family, LTXVideoFamily
from .lumina import LuminaFamily, ZImageFamily
from .mage_flow import MageFlowFamily
from .minimax import MiniMaxH3Family
from .qwen_image import QwenImageFamily
from .sd3 import SD3Family
from .wan import WanFamily, WanVaceFamily

FAMILIES: tuple[ModelFamily, ...] = (
    FluxFamily(), Flux2Family(), SD3Family(), ChromaFamily(), ChromaRadianceFamily(), LongCatFamily(), OvisFamily(),
    QwenImageFamily(), MageFlowFamily(), JoyImageFamily(), HiDreamFamily(), CogVideoXFamily(),
    HunyuanVideoFamily(), HunyuanVideo15Family(), HunyuanImage21Family(), MiniMaxH3Family(),
    WanFamily(), WanVaceFamily(), LTX2Family(), LTXVideoFamily(),
    ZImageFamily(), LuminaFamily(), Krea2Family(),
)

_CROSS_ATTENTION = ("a cross-attention model: its text is read as keys and values only and never attends to the "
                    "picture, so there is no text-side attention output to compare with")
_WAN_VARIANT = ("a Wan variant whose extra blocks or inputs (camera, speech, HuMo, Animate, causal) this pack does "
                "not read yet (it reads Wan 2.1/2.2 text-, image- and text-image-to-video models and Wan VACE by "
                "cross-attention)")
_SINGLE_STREAM = ("a single-stream model (text and picture share every block's weights) whose blocks this pack "
                  "has no shared-weight concept stream for")
#: Why the model families of comfy.ldm that have no adapter cannot be read (by their package name).
UNSUPPORTED = {
    "wan": _WAN_VARIANT, "kandinsky5": _CROSS_ATTENTION,
    "cosmos": _CROSS_ATTENTION, "anima": _CROSS_ATTENTION, "pixart": _CROSS_ATTENTION, "hydit": _CROSS_ATTENTION,
    "omnigen": _SINGLE_STREAM, "ernie": _SINGLE_STREAM,
    "ideogram4": _SINGLE_STREAM,
    "modules": "a UNet (its text enters by cross-attention only)",
}


def detect_family(diffusion_model) -> ModelFamily:
    """The family that reads this diffusion model, or an error naming the supported families."""
    claims = [family for family in FAMILIES if family.matches(diffusion_model)]
    if len(claims) > 1:
        raise RuntimeError(f"families {[f.name for f in claims]} all claim {type(diffusion_model).__name__}: their "
                           "is_variant predicates must exclude each other")
    kind = type(diffusion_model).__name__
    if claims:
        reason = claims[0].refusal(diffusion_model)
        if reason:
            raise UnsupportedModelError(
                f"ConceptAttention cannot patch this model: {reason}. Supported: {supported_models_text()}."
            )
        return claims[0]
    known = [f.name for f in FAMILIES if f.model.matches(diffusion_model)]
    if known:
        raise UnsupportedModelError(
            f"ConceptAttention cannot patch this model: its network is {kind}, the class of {', '.join(known)}, but "
            f"it is none of the variants this pack knows. Supported: {supported_models_text()}."
        )
    package = type(diffusion_model).__module__.split(".")[2:3]
    why = UNSUPPORTED.get(package[0] if package else "", "which is not one")
    raise UnsupportedModelError(
        f"ConceptAttention needs a DiT whose text tokens attend jointly with the picture's (dual-stream blocks, or "
        f"one of the single-stream models it knows), or one of the cross-attention models it knows; this model's "
        f"network is {kind}, {why}. "
        f"Supported: {supported_models_text()}."
    )


def _named(family: ModelFamily) -> str:
    return f"{family.name} ({', '.join(family.variants)})" if family.variants else family.name


def supported_models_text() -> str:
    """Every family with its variants, for messages and tooltips."""
    paper = [_named(f) for f in FAMILIES if not f.extension and not f.cross_attention]
    extension = [_named(f) for f in FAMILIES if f.extension]
    cross = [_named(f) for f in FAMILIES if f.cross_attention]
    text = ", ".join(paper)
    if extension:
        text += ("; single-stream, as an extension of the method (concepts through the blocks' shared weights): "
                 + ", ".join(extension))
    if cross:
        text += ("; cross-attention models, in the paper's cross-attention baseline or an output-space extension: "
                 + ", ".join(cross))
    return text


def supported_encoders_text() -> str:
    """Each family's text encoders, for the messages of Concept List."""
    return ", ".join(f"{f.name} ({'; '.join(e.describe() for e in f.encoders)})" for f in FAMILIES)


def encoder_names() -> dict[str, str]:
    """What users call the encoder of each text space (one name per space: tests/unit/test_family_registry.py)."""
    return {e.space: e.name for f in FAMILIES for e in f.encoders}


def readme_model_list() -> str:
    """The README's opening list of families: pictures, video, then the single-stream extension."""
    def listed(names):
        return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)

    pictures = [f.name for f in FAMILIES if not f.video and not f.extension and not f.cross_attention]
    video = [f.name for f in FAMILIES if f.video and not f.extension and not f.cross_attention]
    extension = [f.name for f in FAMILIES if f.extension]
    cross = [f.name for f in FAMILIES if f.cross_attention]
    text = ", ".join(pictures)
    if video:
        text += f", the video models {listed(video)} with a map per frame"
    if extension:
        text += f"; and, as an extension through their shared weights, the single-stream {listed(extension)}"
    if cross:
        text += (f"; and the cross-attention {listed(cross)}, in the paper's cross-attention baseline or an "
                 "output-space extension ([cross-attention models](docs/cross-attention.md))")
    return text + "."


def readme_table() -> str:
    """docs/models.md's table of supported models (docs/adding-a-family.md: regenerate it with
    `scripts/families.py readme`)."""
    rows = [
        "| family | variants | text encoder (Concept List's `clip`) | concepts' position | concepts' modulation |",
        "| --- | --- | --- | --- | --- |",
    ]
    for f in FAMILIES:
        name = f.name + (" (video)" if f.video else "")
        if f.extension:
            name += " (single-stream, [extension](#single-stream-models-an-extension-beyond-the-paper))"
        if f.cross_attention:
            name += " (cross-attention, [two spaces](cross-attention.md))"
        encoders = "; ".join(e.describe() + (f", {e.note}" if e.note else "") for e in f.encoders)
        rows.append(f"| {name} | {', '.join(f.variants)} | {encoders} | {f.position} | {f.modulation} |")
    return "\n".join(rows)


def compatibility_exclusions() -> list[str]:
    """Words naming, in test ids, the families ComfyUI 0.3.x cannot run (scripts/test.sh's compatibility run)."""
    return list(dict.fromkeys(word for f in FAMILIES if not f.runs_on_comfyui_0_3 for word in f.test_ids))
