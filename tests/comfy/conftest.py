"""Session-wide tiny text encoders (building a CLIP costs a second or two)."""

from __future__ import annotations

import pytest

from concept_attention_tests.comfy.partial_loads import partial_loads  # noqa: F401  (a fixture for every comfy test)
from concept_attention_tests.comfy.tiny import tiny_joyimage, tiny_models, tiny_text_encoders


def _session_clip(build, *args):
    """A session-scoped fixture (named by the attribute it is assigned to) that builds the CLIP once."""

    @pytest.fixture(scope="session")
    def clip(comfyui_path):
        return build(*args)

    return clip


flux_clip = _session_clip(tiny_models.flux_clip)
sd3_clip = _session_clip(tiny_models.sd3_clip)
flux2_dev_clip = _session_clip(tiny_text_encoders.flux2_dev_clip)
klein_4b_clip = _session_clip(tiny_text_encoders.klein_clip, "4b")
klein_8b_clip = _session_clip(tiny_text_encoders.klein_clip, "8b")
longcat_clip = _session_clip(tiny_text_encoders.longcat_clip)
ovis_clip = _session_clip(tiny_text_encoders.ovis_clip)
qwen_image_clip = _session_clip(tiny_text_encoders.qwen_image_clip)
kandinsky5_image_clip = _session_clip(tiny_text_encoders.kandinsky5_image_clip)
mage_flow_clip = _session_clip(tiny_text_encoders.mage_flow_clip)
joyimage_clip = _session_clip(tiny_joyimage.joyimage_clip)
