"""LongCat-Image and Ovis-Image: Flux.1's blocks and per-block modulation, text numbered on RoPE axes 1 and 2.

No guidance and no pooled vector: the concept modulation is time_in(t), the text's own. The text encoder
cuts the chat template off its output, so a concept's position is its own tokens' index in that trimmed
conditioning, on both text axes as for prompt tokens (ComfyUI shifts the image ids past the prompt; concepts
stay among the text positions).

LongCat-Image reads Qwen2.5-VL 7B. Ovis-Image has SwiGLU ("yak") MLPs and an RMS-normed text input (the concepts
pass txt_norm like prompt text) and reads Qwen3 2B.
"""

from __future__ import annotations

from .base import TextEncoder
from .flux import FluxFamily

TEXT_ON_AXES_1_2 = "RoPE axes 1 and 2, at the concept's own tokens' position in its template-trimmed conditioning"


def _numbers_text_on_axes_1_2(diffusion_model) -> bool:
    params = diffusion_model.params
    return not getattr(params, "global_modulation", False) and list(getattr(params, "txt_ids_dims", None) or []) == [1, 2]


class LongCatFamily(FluxFamily):
    name = "LongCat-Image"
    variants = ("LongCat-Image",)
    encoders = (TextEncoder("qwen25_7b", "Qwen2.5-VL 7B", "CLIPLoader, `longcat_image`", file="qwen_2.5_vl_7b",
                            layer="last"),)
    position = TEXT_ON_AXES_1_2
    modulation = "`time_in(t)` (no guidance, no pooled vector), as the text's"
    runs_on_comfyui_0_3 = False
    test_ids = ("longcat",)

    def is_variant(self, diffusion_model):
        return _numbers_text_on_axes_1_2(diffusion_model) and not getattr(diffusion_model.params, "yak_mlp", False)


class OvisFamily(FluxFamily):
    name = "Ovis-Image"
    variants = ("Ovis-Image",)
    encoders = (TextEncoder("qwen3_2b", "Qwen3 2B", "CLIPLoader, `ovis`", file="ovis_2.5"),)
    position = TEXT_ON_AXES_1_2
    modulation = "`time_in(t)`, as the text's (concepts also pass `txt_norm`)"
    runs_on_comfyui_0_3 = False
    test_ids = ("ovis",)

    def is_variant(self, diffusion_model):
        params = diffusion_model.params
        return (_numbers_text_on_axes_1_2(diffusion_model) and getattr(params, "yak_mlp", False)
                and getattr(params, "txt_norm", False))
