"""Chroma and Chroma Radiance: Flux.1's DoubleStreamBlocks without per-block modulation layers.

Chroma computes every block's modulation from timestep and guidance alone (its distilled
guidance layer; there is no pooled CLIP vector), and hands the text stream's share to each
block in `vec`. The concepts take exactly that text modulation, which is what Flux.1's
concept modulation (pooled vector zeroed) amounts to. Text ids are zero, so are the concepts'.
Everything else is as for Flux.1.

Chroma Radiance runs the same blocks on 16-pixel patches of the picture itself (no VAE latent). Its
token grid comes from the picture padded up to whole patches (ComfyUI pads with pad_to_patch_size),
ceil(H/16) × ceil(W/16). Checkpoints that number their text tokens (`use_sequential_txt_ids`, axis 0)
give each concept the position its own tokens had in its conditioning on that axis.
"""

from __future__ import annotations

from .base import ModelClass, TextEncoder, TokenGrid
from .flux import FluxFamily
from .modulation import ModulationFromBlockArguments

T5_FOR_CHROMA = TextEncoder("t5xxl", "T5-XXL", "CLIPLoader, `chroma`")


class ChromaFamily(ModulationFromBlockArguments, FluxFamily):
    name = "Chroma"
    variants = ("Chroma", "Chroma1-HD")
    model = ModelClass("comfy.ldm.chroma.model", "Chroma", exact=True)  # Radiance (a subclass) has its own
    encoders = (T5_FOR_CHROMA,)
    position = "zero position ids, as its text has"
    modulation = "the text's share of Chroma's modulation (timestep and guidance only, no pooled vector)"
    runs_on_comfyui_0_3 = True

    def is_variant(self, diffusion_model):
        return True

    def text_id_axes(self, diffusion_model, block_args):
        return []


class ChromaRadianceFamily(ChromaFamily):
    name = "Chroma Radiance"
    variants = ("Chroma1-Radiance (pixel space; VAELoader `pixel_space`)",)
    model = ModelClass("comfy.ldm.chroma_radiance.model", "ChromaRadiance")
    grid = TokenGrid("patch_size")
    position = ("text ids zero, so the concepts' too; checkpoints that number their text sequentially on axis 0 "
                "number the concepts likewise. The token grid is the picture's 16-px patches, ceil(H/16) × ceil(W/16)")
    modulation = "as Chroma"
    runs_on_comfyui_0_3 = False
    test_ids = ("radiance",)

    def cacheable_block_args(self, block_args):
        kept = super().cacheable_block_args(block_args)
        options = (block_args.get("transformer_options") or {}).get("chroma_radiance_options")
        kept["transformer_options"] = {} if options is None else {"chroma_radiance_options": options}
        return kept

    def text_id_axes(self, diffusion_model, block_args):
        overrides = (block_args.get("transformer_options") or {}).get("chroma_radiance_options", {})
        params = diffusion_model.radiance_get_override_params(overrides)
        return [0] if getattr(params, "use_sequential_txt_ids", False) else []
