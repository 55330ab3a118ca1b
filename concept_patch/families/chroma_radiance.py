"""Chroma Radiance: Chroma's blocks on 16-pixel patches of the picture itself (no VAE latent).

The token grid comes from the picture padded up to whole patches (ComfyUI pads with
pad_to_patch_size), so it is ceil(H/16) × ceil(W/16), not Flux's rounded (h + p//2) // p.
Checkpoints that number their text tokens (`use_sequential_txt_ids`, axis 0) give each concept the
position its own tokens had in its conditioning on that axis; otherwise text and concept ids are zero.
"""

from __future__ import annotations

from .base import is_instance_of
from .chroma import ChromaFamily


class ChromaRadianceFamily(ChromaFamily):
    name = "Chroma Radiance"

    def matches(self, diffusion_model):
        return is_instance_of(diffusion_model, "comfy.ldm.chroma_radiance.model", "ChromaRadiance")

    def token_grid(self, diffusion_model, latent_hw):
        p = diffusion_model.patch_size
        h, w = latent_hw
        return (-(-h // p), -(-w // p))

    def cacheable_block_args(self, block_args):
        kept = super().cacheable_block_args(block_args)
        options = (block_args.get("transformer_options") or {}).get("chroma_radiance_options")
        kept["transformer_options"] = {} if options is None else {"chroma_radiance_options": options}
        return kept

    def text_id_axes(self, diffusion_model, block_args):
        overrides = (block_args.get("transformer_options") or {}).get("chroma_radiance_options", {})
        params = diffusion_model.radiance_get_override_params(overrides)
        return [0] if getattr(params, "use_sequential_txt_ids", False) else []
