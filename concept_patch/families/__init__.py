"""Model families ConceptAttention can patch, and recognising them from a ComfyUI model."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from .base import DualStreamFamily
from .chroma import ChromaFamily
from .chroma_radiance import ChromaRadianceFamily
from .flux import FluxFamily
from .flux2 import Flux2Family
from .hidream import HiDreamFamily
from .longcat import LongCatFamily
from .mage_flow import MageFlowFamily
from .ovis import OvisFamily
from .qwen_image import QwenImageFamily
from .sd3 import SD3Family

# Specific variants of a shared model class come before the general adapter of that class.
FAMILIES: tuple[DualStreamFamily, ...] = (
    Flux2Family(), LongCatFamily(), OvisFamily(), FluxFamily(), SD3Family(), ChromaRadianceFamily(), ChromaFamily(),
    QwenImageFamily(), MageFlowFamily(), HiDreamFamily(),
)
SUPPORTED_FAMILIES_TEXT = (
    "Flux.1 (dev, schnell, Kontext, Fill), Flux.2 (dev, Klein 4B/9B), SD3/SD3.5 (medium, large, large-turbo), "
    "Chroma, Chroma Radiance, LongCat-Image, Ovis-Image, Qwen-Image (and Edit), Mage-Flow and HiDream-I1/E1"
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
    raise UnsupportedModelError(
        f"ConceptAttention needs a dual-stream DiT (separate text and image streams in joint attention); "
        f"this model's network is {kind}, which is not one. Supported: {SUPPORTED_FAMILIES_TEXT}."
    )


__all__ = ["DualStreamFamily", "FAMILIES", "SUPPORTED_FAMILIES_TEXT", "detect_family"]
