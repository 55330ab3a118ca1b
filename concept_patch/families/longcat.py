"""LongCat-Image: Flux.1's blocks and per-block modulation, Qwen2.5-VL text, text numbered on RoPE axes 1 and 2.

No guidance and no pooled vector: the concept modulation is time_in(t), the text's own. The text
encoder cuts the chat template off its output, so a concept's position is its own tokens' index in
that trimmed conditioning, on both text axes as for prompt tokens (ComfyUI shifts the image ids
past the prompt; concepts stay among the text positions).
"""

from __future__ import annotations

from .flux import FluxFamily


class LongCatFamily(FluxFamily):
    name = "LongCat-Image"
    text_spaces = ("qwen25_7b",)
    text_layers = {"qwen25_7b": "last"}

    def matches(self, diffusion_model):
        from comfy.ldm.flux.model import Flux

        params = getattr(diffusion_model, "params", None)
        return (isinstance(diffusion_model, Flux) and not getattr(params, "global_modulation", False)
                and list(getattr(params, "txt_ids_dims", None) or []) == [1, 2]
                and not getattr(params, "yak_mlp", False))

    def unsupported_reason(self, diffusion_model):
        return None
