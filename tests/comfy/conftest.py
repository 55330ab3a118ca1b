"""Session-wide tiny text encoders (building a CLIP costs a second or two)."""

from __future__ import annotations

import pytest

from concept_attention_tests.comfy.tiny import tiny_models, tiny_text_encoders


@pytest.fixture(scope="session")
def flux_clip(comfyui_path):
    return tiny_models.flux_clip()


@pytest.fixture(scope="session")
def sd3_clip(comfyui_path):
    return tiny_models.sd3_clip()


@pytest.fixture(scope="session")
def flux2_dev_clip(comfyui_path):
    return tiny_text_encoders.flux2_dev_clip()


@pytest.fixture(scope="session")
def klein_4b_clip(comfyui_path):
    return tiny_text_encoders.klein_clip("4b")


@pytest.fixture(scope="session")
def klein_8b_clip(comfyui_path):
    return tiny_text_encoders.klein_clip("8b")


@pytest.fixture(scope="session")
def longcat_clip(comfyui_path):
    return tiny_text_encoders.longcat_clip()


@pytest.fixture(scope="session")
def ovis_clip(comfyui_path):
    return tiny_text_encoders.ovis_clip()


@pytest.fixture(scope="session")
def qwen_image_clip(comfyui_path):
    return tiny_text_encoders.qwen_image_clip()


@pytest.fixture(scope="session")
def kandinsky5_image_clip(comfyui_path):
    return tiny_text_encoders.kandinsky5_image_clip()


@pytest.fixture(scope="session")
def mage_flow_clip(comfyui_path):
    return tiny_text_encoders.mage_flow_clip()
