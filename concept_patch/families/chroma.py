"""Chroma: Flux.1's DoubleStreamBlocks without per-block modulation layers.

Chroma computes every block's modulation from timestep and guidance alone (its distilled
guidance layer; there is no pooled CLIP vector), and hands the text stream's share to each
block in `vec`. The concepts take exactly that text modulation, which is what Flux.1's
concept modulation (pooled vector zeroed) amounts to. Everything else is as for Flux.1.
"""

from __future__ import annotations

from .flux import FluxFamily


class ChromaFamily(FluxFamily):
    name = "Chroma"
    text_spaces = ("t5xxl",)
    # The modulation comes with the block's own arguments: no diffusion-model wrapper needed.
    forward_wrapper_type = "apply_model"

    def matches(self, diffusion_model):
        from comfy.ldm.chroma.model import Chroma

        return type(diffusion_model) is Chroma  # Chroma Radiance works in pixel space: not this adapter

    def unsupported_reason(self, diffusion_model):
        return None

    def prepare_forward(self, diffusion_model, forward, call):
        pass

    def text_modulation(self, block, block_args, forward):
        from comfy.ldm.flux.layers import ModulationOut

        _, text_mods = block_args["vec"]
        return tuple(
            ModulationOut(shift=forward.rows(m.shift), scale=forward.rows(m.scale), gate=forward.rows(m.gate))
            for m in text_mods
        )
