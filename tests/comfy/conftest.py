"""Session-wide tiny text encoders (building a CLIP costs a second or two)."""

from __future__ import annotations

import pytest

from concept_attention_tests.comfy import tiny_models


@pytest.fixture(scope="session")
def flux_clip(comfyui_path):
    return tiny_models.flux_clip()


@pytest.fixture(scope="session")
def sd3_clip(comfyui_path):
    return tiny_models.sd3_clip()
