"""Model families ConceptAttention can patch, and recognising them from a ComfyUI model."""

from __future__ import annotations

from ..checks.errors import UnsupportedModelError
from .base import DualStreamFamily
from .chroma import ChromaFamily
from .chroma_radiance import ChromaRadianceFamily
from .cogvideox import CogVideoXFamily
from .flux import FluxFamily
from .flux2 import Flux2Family
from .hidream import HiDreamFamily
from .hunyuan_video import HunyuanImage21Family, HunyuanVideo15Family, HunyuanVideoFamily
from .krea2 import Krea2Family
from .longcat import LongCatFamily
from .lumina import LuminaFamily, ZImageFamily
from .mage_flow import MageFlowFamily
from .ovis import OvisFamily
from .qwen_image import QwenImageFamily
from .sd3 import SD3Family

# Specific variants of a shared model class come before the general adapter of that class.
FAMILIES: tuple[DualStreamFamily, ...] = (
    Flux2Family(), LongCatFamily(), OvisFamily(), FluxFamily(), SD3Family(), ChromaRadianceFamily(), ChromaFamily(),
    QwenImageFamily(), MageFlowFamily(), HiDreamFamily(), CogVideoXFamily(),
    HunyuanVideoFamily(), HunyuanVideo15Family(), HunyuanImage21Family(),
    ZImageFamily(), LuminaFamily(), Krea2Family(),
)
SUPPORTED_FAMILIES_TEXT = (
    "Flux.1 (dev, schnell, Kontext, Fill), Flux.2 (dev, Klein 4B/9B), SD3/SD3.5 (medium, large, large-turbo), "
    "Chroma, Chroma Radiance, LongCat-Image, Ovis-Image, Qwen-Image (and Edit), Mage-Flow, HiDream-I1/E1, "
    "CogVideoX (2B, 5B, 1.5; text- and image-to-video), HunyuanVideo 1 (text- and image-to-video, SkyReels I2V), "
    "HunyuanVideo 1.5 and HunyuanImage 2.1; single-stream, as an extension of the method (concepts through the "
    "blocks' shared weights): Z-Image (Turbo, Base, Omni), Lumina 2 (NetaYume, NewBie) and Krea 2"
)


def detect_family(diffusion_model) -> DualStreamFamily:
    """The adapter for this diffusion model, or an error naming the supported families."""
    for family in FAMILIES:
        if family.matches(diffusion_model):
            reason = family.unsupported_reason(diffusion_model)
            if reason:
                raise UnsupportedModelError(
                    f"ConceptAttention cannot patch this model: {reason}. Supported: {SUPPORTED_FAMILIES_TEXT}."
                )
            return family
    kind = type(diffusion_model).__name__
    package = type(diffusion_model).__module__.split(".")[2:3]
    why = WHY_NOT.get(package[0] if package else "", "which is not one")
    raise UnsupportedModelError(
        f"ConceptAttention needs a DiT whose text tokens attend jointly with the picture's (dual-stream blocks, or "
        f"one of the single-stream models it knows); this model's network is {kind}, {why}. "
        f"Supported: {SUPPORTED_FAMILIES_TEXT}."
    )


_CROSS_ATTENTION = ("a cross-attention model: its text is read as keys and values only and never attends to the "
                    "picture, so there is no text-side attention output to compare with")
_SINGLE_STREAM = ("a single-stream model (text and picture share every block's weights) whose blocks this pack "
                  "has no shared-weight concept stream for")
# Why the model families of comfy.ldm that have no adapter cannot be read (by their package name).
WHY_NOT = {
    "wan": _CROSS_ATTENTION, "lightricks": _CROSS_ATTENTION, "kandinsky5": _CROSS_ATTENTION,
    "cosmos": _CROSS_ATTENTION, "anima": _CROSS_ATTENTION, "pixart": _CROSS_ATTENTION, "hydit": _CROSS_ATTENTION,
    "omnigen": _SINGLE_STREAM, "ernie": _SINGLE_STREAM,
    "minimax": _SINGLE_STREAM, "ideogram4": _SINGLE_STREAM,
    "modules": "a UNet (its text enters by cross-attention only)",
}


__all__ = ["DualStreamFamily", "FAMILIES", "SUPPORTED_FAMILIES_TEXT", "detect_family"]
