"""Encode mode: maps for an existing picture (or video clip) from one noised forward per noise sample.

The latent is noised to level t with seeded noise and the patched model runs once through ComfyUI's
own sampling machinery (model loading, conds, low-VRAM handling, the model's own noise scaling),
stopping right after the last selected block. Flow models take sigma = t (z = (1-t)·x0 + t·ε);
discrete-time models (CogVideoX's v-prediction DDPM) take the sigma of timestep t of their schedule.
A picture already analysed with the same model, noise and prompt is re-queried instead (requery/).
"""

from __future__ import annotations

import logging

import torch

from .checks.errors import ConceptAttentionError
from .checks.finite import check_finite_input, check_finite_maps, streams
from .families import ModelFamily
from .generation import family_for
from .maps.saliency_maps import SaliencyMaps
from .requery import cache as requery_cache
from .requery.run import requery_maps
from .stream.options import SaliencyOptions
from .stream.progress import BlockProgress
from .stream.session import ConceptSession, new_session
from .stream.wrappers import inference_dtype, needs_block_hooks, offer_block_hooks, patched_model_options
from .text.concepts import ConceptSet

# The pack's logger, by a fixed name (ComfyUI imports the pack under its folder's path).
logger = logging.getLogger("concept_attention")


def encode_saliency(model, concepts: ConceptSet, latent: torch.Tensor, options: SaliencyOptions,
                    conditioning=None, noise_level: float = 0.5, samples: int = 1, seed: int = 0,
                    image_size: tuple[int, int] | None = None, on_progress=None,
                    cache_budget: int | None = 0, family: ModelFamily | None = None) -> SaliencyMaps:
    """Saliency maps of `latent` (a LATENT's raw "samples": [B, C, h, w], or [B, C, T, h, w] for a video model).

    conditioning: the prompt CONDITIONING; without it the concepts' encoder's empty prompt.
    samples: noise draws (seeds seed, seed+1, ...) whose maps are averaged.
    cache_budget: bytes the re-query cache may hold (requery/cache.py): a run on a picture already analysed with
    the same model, noise and prompt then runs the concept stream only. None: the default budget for the model's
    device; 0: no cache.
    family: the model's family where the caller detected it and checked the options against it (the nodes do).
    on_progress(done, total): called as the work goes, in blocks: total = samples x the blocks the concept stream
    runs through (a re-query reports once per sample).
    """
    _check_noise(noise_level, samples)
    latent = _checked_latent(model, latent)
    positive = conditioning if conditioning is not None else concepts.empty_prompt
    if positive is None:
        raise ConceptAttentionError("no prompt conditioning: connect a CONDITIONING or rebuild the Concept List")
    family = family or family_for(model, options)
    budget = requery_cache.default_budget(model.load_device) if cache_budget is None else max(0, cache_budget)
    # Each noise sample's forward may record its share of the budget: copies never outgrow what can be kept.
    session = new_session(model, family, concepts, options, stop_early=True,
                          keep_image_stream=budget // max(1, samples))
    _check_frames(session, model, latent)
    _check_latent_layout(session, model, latent)
    metadata = {"mode": "encode", "noise_level": noise_level, "samples": samples, "seed": seed}
    progress = BlockProgress(on_progress, samples, len(session.stream_blocks)) if on_progress else None
    on_sample = progress.sample_done if progress else None

    key = None
    if budget:
        requery_cache.CACHE.set_budget(budget)
        key = requery_cache.requery_key(model, latent, positive, noise_level, samples, seed,
                                        inference_dtype(model.model))
        recorded = requery_cache.CACHE.lookup(key, options.last_block_order)
        if recorded is not None:
            maps, side = requery_maps(model, session, recorded, on_sample)
            check_finite_maps(maps, latent, "latent", inference_dtype(model.model))
            logger.info("ConceptAttention: re-query of a picture already analysed; the model's image stream did not run")
            metadata = {**metadata, "requery": True, **session.side_metadata(side)}
            return session.saliency(maps, tuple(latent.shape), metadata, image_size)

    if progress is not None:
        session.on_block = progress.block_done
    maps, recorded, side = _sampled_maps(model, session, latent, positive, noise_level, samples, seed, on_sample)
    check_finite_maps(maps, latent, "latent", inference_dtype(model.model))
    if key is not None and len(recorded) == samples:
        if requery_cache.CACHE.store(key, recorded, options.last_block_order, model):
            requery_cache.drop_with_model(model)
    metadata = {**metadata, "requery": False, **session.side_metadata(side)}
    return session.saliency(maps, tuple(latent.shape), metadata, image_size)


def _sampled_maps(model, session: ConceptSession, latent, positive, noise_level, samples, seed, on_sample):
    """(maps averaged over the noise samples, the forwards recorded for re-queries, side token groups' scores
    averaged likewise) from one model call each."""
    import comfy.model_management
    import comfy.sample
    import comfy.samplers

    # The patches ride on this guider's model options, not on a clone: a new ModelPatcher would make ComfyUI
    # re-patch the loaded weights on every call. Only models whose blocks need an object patch for their hook
    # (stream/block_hooks.py) get a clone.
    if needs_block_hooks(session):
        model = model.clone()
        offer_block_hooks(model, session)
    guider = comfy.samplers.CFGGuider(model)
    guider.model_options = patched_model_options(model.model_options, session)
    guider.inner_set_conds({"positive": positive})
    guider.set_cfg(1.0)
    sampler = comfy.samplers.KSAMPLER(_one_model_call)
    sigma = noise_sigma(model.get_model_object("model_sampling"), noise_level)
    sigmas = torch.tensor([sigma, 0.0], dtype=torch.float32)

    total, recorded, side = None, [], {}
    for k in range(samples):
        comfy.model_management.throw_exception_if_processing_interrupted()
        noise = comfy.sample.prepare_noise(latent, seed + k)
        guider.sample(noise, latent, sampler, sigmas, disable_pbar=True, seed=seed + k)
        record = session.records.pop() if session.records else None
        if record is None or record.maps is None:
            raise ConceptAttentionError(
                "the model produced no concept maps for this input (its forward never reached the selected layers)"
            )
        total = record.maps if total is None else total + record.maps
        for name, scores in record.side_scores.items():
            side[name] = scores if name not in side else side[name] + scores
        recorded.extend(record.recorded)
        if on_sample is not None:
            on_sample(k + 1, samples)
    return total / samples, recorded, {name: scores / samples for name, scores in side.items()}


def _one_model_call(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A k-diffusion style 'sampler' that evaluates the model once at sigmas[0]."""
    extra_args = extra_args or {}
    model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
    return x


def noise_sigma(model_sampling, noise_level: float) -> float:
    """The sigma a latent is noised to for a noise level in (0, 1], through the model's own sampling.

    Flow models (CONST): sigma = noise level, z = (1 - sigma)·x0 + sigma·ε. Other models: the sigma of
    timestep noise_level · T of their discrete schedule (0.5: timestep 500 of 1000), ComfyUI's
    percent_to_sigma(1 - noise_level); 1.0 is the schedule's largest sigma.
    """
    import comfy.model_sampling

    if isinstance(model_sampling, comfy.model_sampling.CONST):
        return float(noise_level)
    if noise_level >= 1.0:
        return float(model_sampling.sigma_max)
    return float(model_sampling.percent_to_sigma(1.0 - noise_level))


def _check_noise(noise_level: float, samples: int) -> None:
    if not 0.0 < noise_level <= 1.0:
        raise ConceptAttentionError(f"noise level {noise_level} is out of range; use a value in (0, 1], e.g. 0.5")
    if samples < 1:
        raise ConceptAttentionError(f"samples must be 1 or more, got {samples}")


def _checked_latent(model, latent: torch.Tensor) -> torch.Tensor:
    """As the stock samplers do: an empty latent takes the model's channel count, and models with a frame axis
    (Qwen-Image) get one; then it must be a picture's or a video's latent."""
    import comfy.sample

    if latent.ndim not in (4, 5):
        raise ConceptAttentionError(
            f"expected an image latent [batch, channels, height, width] or a video latent [batch, channels, frames, "
            f"height, width], got shape {tuple(latent.shape)}"
        )
    hollow = next((stream for stream in streams(latent) if stream.numel() == 0), None)
    if hollow is not None:
        axes = ("batch", "channels", "frames", "height", "width") if hollow.ndim == 5 else (
            "batch", "channels", "height", "width")
        empty = [axis for axis, size in zip(axes, hollow.shape) if size == 0]
        raise ConceptAttentionError(
            f"the latent has shape {tuple(hollow.shape)}: its {' and '.join(empty)} "
            f"{'size is' if len(empty) == 1 else 'sizes are'} 0, so there is nothing to make maps of; give a latent "
            "of at least one picture (or frame) of at least one cell"
        )
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    check_finite_input(latent, "latent")
    return latent


def _check_latent_layout(session: ConceptSession, model, latent) -> None:
    """The latent the model's own latent format describes (its channels, and a frame axis or none), as the stock
    sampler needs it too: refused here with what the model takes, not a reshape or convolution error."""
    if len(streams(latent)) > 1:
        return  # a multi-stream latent (video and audio): its format describes the streams together
    latent_format = model.get_model_object("latent_format")
    channels, dims = latent_format.latent_channels, latent_format.latent_dimensions
    takes = f"[batch, {channels}, {'frames, ' if dims == 3 else ''}height, width]"
    if latent.ndim != 2 + dims:
        raise ConceptAttentionError(
            f"this latent has shape {tuple(latent.shape)}, but {session.family.name} takes a latent {takes}"
            + (": a picture's latent has no frame axis" if dims == 2 else "")
        )
    if latent.shape[1] != channels:
        raise ConceptAttentionError(
            f"this latent has {latent.shape[1]} channels (shape {tuple(latent.shape)}), but {session.family.name} "
            f"takes {channels}, {takes}: encode the picture with this model's VAE"
        )


def _check_frames(session: ConceptSession, model, latent) -> None:
    """A picture model takes one frame: refuse a clip rather than mix its frames into one map."""
    if latent.ndim != 5 or latent.shape[2] == 1:
        return
    if session.family.token_frames(model.get_model_object("diffusion_model"), latent.shape[2]) is None:
        raise ConceptAttentionError(
            f"this latent has {latent.shape[2]} frames (shape {tuple(latent.shape)}), but {session.family.name} is a "
            f"picture model: give it one picture's latent [batch, channels, height, width] (a video latent needs a "
            f"video model such as CogVideoX)"
        )


__all__ = ["encode_saliency", "noise_sigma"]
