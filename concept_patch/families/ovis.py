"""Ovis-Image: Flux.1's blocks with SwiGLU ("yak") MLPs and an RMS-normed text input, Qwen3-2B text
numbered on RoPE axes 1 and 2.

The concepts go through txt_norm and txt_in like prompt text, take time_in(t) as modulation vector
(the model has no guidance or pooled vector) and the position their own tokens had in their own
(template-trimmed) conditioning, on both text axes.
"""

from __future__ import annotations

from .flux import FluxFamily


class OvisFamily(FluxFamily):
    name = "Ovis-Image"
    text_spaces = ("qwen3_2b",)

    def matches(self, diffusion_model):
        from comfy.ldm.flux.model import Flux

        params = getattr(diffusion_model, "params", None)
        return (isinstance(diffusion_model, Flux) and not getattr(params, "global_modulation", False)
                and getattr(params, "yak_mlp", False) and getattr(params, "txt_norm", False))

    def unsupported_reason(self, diffusion_model):
        return None
