"""Model families ConceptAttention reads: one adapter module each, gathered in registry.py."""

from __future__ import annotations

from .base import ModelFamily
from .registry import FAMILIES, detect_family, supported_encoders_text, supported_models_text

__all__ = ["FAMILIES", "ModelFamily", "detect_family", "supported_encoders_text", "supported_models_text"]
