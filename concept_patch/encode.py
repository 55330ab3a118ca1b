"""Encode mode: maps for an existing picture from one noised forward per noise sample.

The latent is noised to level t with seeded noise (z = (1-t)·x0 + t·ε for flow models) and
the patched model runs once through ComfyUI's own sampling machinery (model loading, conds,
low-VRAM handling), stopping right after the last selected block.
"""

from __future__ import annotations

import torch

from .concepts import ConceptSet
from .errors import ConceptAttentionError
from .options import SaliencyOptions
from .saliency_maps import SaliencyMaps
from .session import new_session, offer_block_hooks, patched_model_options


def _one_model_call(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A k-diffusion style 'sampler' that evaluates the model once at sigmas[0]."""
    extra_args = extra_args or {}
    model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
    return x


def encode_saliency(model, concepts: ConceptSet, latent: torch.Tensor, options: SaliencyOptions,
                    conditioning=None, noise_level: float = 0.5, samples: int = 1, seed: int = 0,
                    image_size: tuple[int, int] | None = None, on_sample=None) -> SaliencyMaps:
    """Saliency maps of `latent` (a LATENT's raw "samples", [B, C, h, w]).

    conditioning: the prompt CONDITIONING; without it the concepts' encoder's empty prompt.
    samples: noise draws (seeds seed, seed+1, ...) whose maps are averaged.
    """
    import comfy.model_management
    import comfy.model_sampling
    import comfy.sample
    import comfy.samplers

    if not 0.0 < noise_level <= 1.0:
        raise ConceptAttentionError(f"noise level {noise_level} is out of range; use a value in (0, 1], e.g. 0.5")
    if samples < 1:
        raise ConceptAttentionError(f"samples must be 1 or more, got {samples}")
    if latent.ndim not in (4, 5) or (latent.ndim == 5 and latent.shape[2] != 1):
        raise ConceptAttentionError(
            f"expected an image latent [batch, channels, height, width] (or one frame [batch, channels, 1, height, "
            f"width]), got shape {tuple(latent.shape)}"
        )
    positive = conditioning if conditioning is not None else concepts.empty_prompt
    if positive is None:
        raise ConceptAttentionError("no prompt conditioning: connect a CONDITIONING or rebuild the Concept List")

    session = new_session(model, concepts, options, stop_early=True)
    model_sampling = model.get_model_object("model_sampling")
    if not isinstance(model_sampling, comfy.model_sampling.CONST):
        raise ConceptAttentionError("encode mode needs a flow-matching model (Flux, SD3); this model samples differently")

    # The patches ride on this guider's model options, not on a clone: a new ModelPatcher
    # would make ComfyUI re-patch the loaded weights on every call. Only models whose blocks need
    # an object patch for their hook (block_hooks.py) get a clone.
    if session.family.block_call is not None:
        model = model.clone()
        offer_block_hooks(model, session)
    guider = comfy.samplers.CFGGuider(model)
    guider.model_options = patched_model_options(model.model_options, session)
    guider.inner_set_conds({"positive": positive})
    guider.set_cfg(1.0)
    sampler = comfy.samplers.KSAMPLER(_one_model_call)
    sigmas = torch.tensor([noise_level, 0.0], dtype=torch.float32)

    total = None
    for k in range(samples):
        comfy.model_management.throw_exception_if_processing_interrupted()
        noise = comfy.sample.prepare_noise(latent, seed + k)
        guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=seed + k)
        record = session.records.pop() if session.records else None
        if record is None or record.saliency is None:
            raise ConceptAttentionError(
                "the model produced no concept maps for this input (its forward never reached the selected layers)"
            )
        maps = record.saliency.maps
        total = maps if total is None else total + maps
        if on_sample is not None:
            on_sample(k + 1, samples)

    h, w = latent.shape[-2:]
    return SaliencyMaps(
        maps=total / samples,
        names=list(concepts.names),
        image_size=image_size or (h * session.downscale, w * session.downscale),
        softmax=options.softmax,
        metadata={**session.metadata, "mode": "encode", "noise_level": noise_level, "samples": samples, "seed": seed},
    )


__all__ = ["encode_saliency"]
