"""Encode mode: maps for an existing picture (or video clip) from one noised forward per noise sample.

The latent is noised to level t with seeded noise and the patched model runs once through ComfyUI's
own sampling machinery (model loading, conds, low-VRAM handling, the model's own noise scaling),
stopping right after the last selected block. Flow models take sigma = t (z = (1-t)·x0 + t·ε);
discrete-time models (CogVideoX's v-prediction DDPM) take the sigma of timestep t of their schedule.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from .requery import cache as image_stream_cache
from .requery import graph as requery_graph
from .text.concepts import ConceptSet
from .checks.errors import ConceptAttentionError
from .stream.options import SaliencyOptions
from .maps.saliency_maps import SaliencyMaps
from .stream.sampling_run import SamplingRun
from .stream.session import inference_dtype, new_session, offer_block_hooks, patched_model_options


def _one_model_call(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A k-diffusion style 'sampler' that evaluates the model once at sigmas[0]."""
    extra_args = extra_args or {}
    model(x, sigmas[0] * x.new_ones([x.shape[0]]), **extra_args)
    return x


def encode_saliency(model, concepts: ConceptSet, latent: torch.Tensor, options: SaliencyOptions,
                    conditioning=None, noise_level: float = 0.5, samples: int = 1, seed: int = 0,
                    image_size: tuple[int, int] | None = None, on_sample=None,
                    cache_budget: int | None = 0) -> SaliencyMaps:
    """Saliency maps of `latent` (a LATENT's raw "samples": [B, C, h, w], or [B, C, T, h, w] for a video model).

    conditioning: the prompt CONDITIONING; without it the concepts' encoder's empty prompt.
    samples: noise draws (seeds seed, seed+1, ...) whose maps are averaged.
    cache_budget: bytes the re-query cache may hold (image_stream_cache.py): a run on a picture already
    analysed with the same model, noise and prompt then runs the concept stream only. None: the default
    budget for the model's device; 0: no cache.
    """
    import comfy.model_management
    import comfy.sample
    import comfy.samplers

    if not 0.0 < noise_level <= 1.0:
        raise ConceptAttentionError(f"noise level {noise_level} is out of range; use a value in (0, 1], e.g. 0.5")
    if samples < 1:
        raise ConceptAttentionError(f"samples must be 1 or more, got {samples}")
    # As the stock samplers do: an empty latent takes the model's channel count, and models with a frame
    # axis (Qwen-Image) get one.
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    if latent.ndim not in (4, 5):
        raise ConceptAttentionError(
            f"expected an image latent [batch, channels, height, width] or a video latent [batch, channels, frames, "
            f"height, width], got shape {tuple(latent.shape)}"
        )
    positive = conditioning if conditioning is not None else concepts.empty_prompt
    if positive is None:
        raise ConceptAttentionError("no prompt conditioning: connect a CONDITIONING or rebuild the Concept List")

    if cache_budget is None:
        cache_budget = image_stream_cache.default_budget(model.load_device)
    keep = cache_budget > 0
    # Each noise sample's forward may record its share of the budget: copies never outgrow what can be kept.
    session = new_session(model, concepts, options, stop_early=True,
                          keep_image_stream=max(0, cache_budget) // max(1, samples))
    _check_frames(session, model, latent)
    sigma = noise_sigma(model.get_model_object("model_sampling"), noise_level)

    h, w = latent.shape[-2:]
    frames = session.pixel_frames(latent.shape[2]) if _is_video(session, model, latent) else 0
    metadata = {**session.metadata, "mode": "encode", "noise_level": noise_level, "samples": samples, "seed": seed}
    size = image_size or (h * session.downscale, w * session.downscale)
    key = None
    if keep:
        cache = image_stream_cache.CACHE
        cache.set_budget(cache_budget)
        key = (image_stream_cache.model_fingerprint(model), image_stream_cache.tensor_digest(latent),
               image_stream_cache.fingerprint(positive), float(noise_level), int(samples), int(seed),
               str(inference_dtype(model.model)))
        recorded = cache.lookup(key, options.last_block_order)
        if recorded is not None:
            maps = requery_maps(model, session, recorded, on_sample)
            logging.info("ConceptAttention: re-query of a picture already analysed; the model's image stream did not run")
            return SaliencyMaps(maps=maps, names=list(concepts.names), image_size=size, softmax=options.softmax,
                                metadata={**metadata, "requery": True}, frames=frames)

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
    sigmas = torch.tensor([sigma, 0.0], dtype=torch.float32)

    total = None
    recorded = []
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
        recorded.extend(record.recorded)
        if on_sample is not None:
            on_sample(k + 1, samples)

    if key is not None and len(recorded) == samples:
        if image_stream_cache.CACHE.store(key, recorded, options.last_block_order, model):
            image_stream_cache.drop_with_model(model)
    return SaliencyMaps(maps=total / samples, names=list(concepts.names), image_size=size, softmax=options.softmax,
                        metadata={**metadata, "requery": False}, frames=frames)


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


def _is_video(session, model, latent) -> bool:
    """Whether the maps get a time axis: a video family's latent [B, C, T, h, w]."""
    if latent.ndim != 5:
        return False
    return session.family.token_frames(model.get_model_object("diffusion_model"), latent.shape[2]) is not None


def _check_frames(session, model, latent) -> None:
    """A picture model takes one frame: refuse a clip rather than mix its frames into one map."""
    if latent.ndim == 5 and latent.shape[2] != 1 and not _is_video(session, model, latent):
        raise ConceptAttentionError(
            f"this latent has {latent.shape[2]} frames (shape {tuple(latent.shape)}), but {session.family.name} is a "
            f"picture model: give it one picture's latent [batch, channels, height, width] (a video latent needs a "
            f"video model such as CogVideoX)"
        )


def requery_maps(model, session, recorded: list, on_sample=None) -> torch.Tensor:
    """Maps [B, r, h, w] (video: [B, r, frames, h, w]) of new concepts over recorded image streams: the concept
    stream alone, no model call."""
    import comfy.model_management

    comfy.model_management.load_models_gpu([model])  # the text-stream modules the concepts run through
    diffusion_model = model.get_model_object("diffusion_model")
    device = model.load_device
    total = None
    stream = requery_graph.side_stream(device)
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream(device))  # the recording and the weights are ready
    with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
        for k, forward_record in enumerate(recorded):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if not forward_record.on(device):
                forward_record = forward_record.to(device)
            run = SamplingRun(session, forward_record.latent_shape, None)
            forward = requery_graph.concept_stream(run, session, diffusion_model, forward_record, device)
            run.commit(forward)
            maps = run.averaged_maps()  # on the CPU: waits for the stream
            total = maps if total is None else total + maps
            if on_sample is not None:
                on_sample(k + 1, len(recorded))
    return total / len(recorded)


__all__ = ["encode_saliency", "requery_maps"]
