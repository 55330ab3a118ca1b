"""Concept Saliency: maps for an existing picture (encode mode)."""

from __future__ import annotations

import time

import comfy.utils
from comfy_api.latest import io

from ..concept_patch.checks.errors import ConceptAttentionError
from ..concept_patch.checks.input_limits import check_latent_fits, check_picture_for_vae, check_seed_range
from ..concept_patch.encode import encode_saliency
from ..concept_patch.generation import family_and_options
from ..concept_patch.requery.cache import CACHE
from .preview import PREVIEW_TOOLTIP, saliency_preview
from .schema import pack_schema
from .types import Saliency, advanced, layer_inputs, method_inputs, model_inputs, softmax_inputs


def latent_scale(model) -> int:
    """Pixels per latent cell of this model's latent space (8 for Flux.1/SD3, 16 for Flux.2, 1 in pixel space)."""
    latent_format = model.get_model_object("latent_format")
    return int(getattr(latent_format, "spacial_downscale_ratio", 8))


def latent_for(image, vae, latent, scale: int = 8, model=None, keep: bool = False):
    """The latent to encode and the picture size, from a LATENT or an IMAGE + VAE.

    keep: the IMAGE's latent is kept with the re-query cache (by the picture's content and the VAE object),
    so a re-query does not run the VAE again.

    scale: pixels per latent cell, to check that an IMAGE and a LATENT given together are one picture.
    model: when given, a picture larger than the model takes (SD3's position table) is refused here,
    before the VAE spends time on it."""
    diffusion_model = model.get_model_object("diffusion_model") if model is not None else None
    if latent is not None:
        samples = latent["samples"]
        check_latent_fits(diffusion_model, tuple(int(s) for s in samples.shape[-2:]), scale)
        if image is None:
            return samples, None
        size = (int(image.shape[1]), int(image.shape[2]))
        latent_px = (int(samples.shape[-2]) * scale, int(samples.shape[-1]) * scale)
        if any(abs(a - b) >= max(2 * scale, 2) for a, b in zip(size, latent_px)):
            raise ConceptAttentionError(
                f"the IMAGE is {size[1]}x{size[0]} but the LATENT is for a {latent_px[1]}x{latent_px[0]} picture; "
                "connect the image and latent of the same picture, or only one of them"
            )
        return samples, size
    if image is None:
        raise ConceptAttentionError("nothing to analyse: connect an IMAGE together with a VAE, or a LATENT")
    if vae is None:
        raise ConceptAttentionError("an IMAGE needs its VAE to be encoded: connect the VAE of this model (or pass a LATENT)")
    size = (int(image.shape[1]), int(image.shape[2]))
    check_picture_for_vae(size, vae)
    check_latent_fits(diffusion_model, (size[0] // scale, size[1] // scale), scale)
    encode = lambda: vae.encode(image[:, :, :, :3])  # noqa: E731
    return (CACHE.encoded(image, vae, encode) if keep else encode()), size


class ConceptSaliency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSaliency", "Concept Saliency",
            "Finds each concept in an existing picture: the picture is noised to the chosen level and the "
            "model runs once (stopping after the last selected block); dot products in the attention-output "
            "space give one map per concept. Feed SALIENCY to 'Saliency to Mask'.",
            inputs=[
                *model_inputs(),
                io.Image.Input("image", optional=True,
                               tooltip="The picture to analyse (needs the VAE), also used for the preview."),
                io.Vae.Input("vae", optional=True, tooltip="The model's VAE, to encode the IMAGE."),
                io.Latent.Input("latent", optional=True,
                                tooltip="Alternatively the picture's latent; used instead of encoding the IMAGE."),
                io.Conditioning.Input(
                    "conditioning", optional=True,
                    tooltip="Optional prompt describing the picture. Without it the empty prompt is used.",
                ),
                *layer_inputs(),
                io.Float.Input(
                    "noise_level", default=0.5, min=0.01, max=1.0, step=0.01,
                    tooltip="How much noise is added before the model looks (0.5 = timestep 500 of 1000, the paper's "
                            "setting). Flow models (Flux, SD3, ...) are noised to sigma = noise level; CogVideoX to "
                            "the sigma of that timestep of its own schedule. Lower keeps more detail; higher relies "
                            "more on the concepts.",
                ),
                io.Int.Input("samples", default=1, min=1, max=64, tooltip="Noise draws to average; more gives steadier maps."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=False,
                             tooltip="Seed of the added noise (sample k uses seed + k, so seed + samples - 1 must stay within "
                                     "the seed range)."),
                *method_inputs(),
                io.Int.Input(
                    "requery_cache_mb", default=-1, min=-1, max=1 << 20, optional=True, **advanced(io.Int.Input),
                    tooltip="Memory (MB) for re-queries: what the model computed for a picture is kept, so the same "
                            "picture with other concepts, pooling, space, softmax or layers (within those analysed) "
                            "runs only the concepts, not the model. -1: a quarter of the device's memory, at most "
                            "8 GB; 0: off. Kept on the GPU only while it has room to spare, else in system RAM.",
                ),
                *softmax_inputs(),
            ],
            outputs=[
                Saliency.Output(display_name="saliency", tooltip="Per-concept maps with names and sizes."),
                io.Image.Output(display_name="preview", tooltip=PREVIEW_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, model, concepts, layers, noise_level, samples, seed, space, softmax,
                concept_self_attention=True, concept_cross_attention=True, requery_cache_mb=-1,
                image=None, vae=None, latent=None, conditioning=None, softmax_temperature=1.0,
                softmax_after_mean=False) -> io.NodeOutput:
        started = time.perf_counter()
        family, options = family_and_options(
            model, layers, space=space, softmax=softmax, concept_self_attention=concept_self_attention,
            concept_cross_attention=concept_cross_attention, softmax_temperature=softmax_temperature,
            softmax_after_mean=softmax_after_mean,
        )
        check_seed_range(seed, samples)
        scale = latent_scale(model)
        samples_latent, image_size = latent_for(image, vae, latent, scale, model, keep=requery_cache_mb != 0)
        progress = comfy.utils.ProgressBar(samples)  # re-counted in blocks: samples x blocks (encode_saliency)
        saliency = encode_saliency(
            model, concepts, samples_latent, options, conditioning=conditioning, noise_level=noise_level,
            samples=samples, seed=seed, image_size=image_size,
            on_progress=lambda done, total: progress.update_absolute(done, total),
            cache_budget=None if requery_cache_mb < 0 else requery_cache_mb << 20, family=family,
        )
        preview, payload = saliency_preview(saliency, image, cls)
        payload["concept_run"] = [run_text(saliency.metadata.get("requery") is True, time.perf_counter() - started)]
        return io.NodeOutput(saliency, preview, ui=payload)


def run_text(requery: bool, seconds: float) -> str:
    """What the node shows of its run: a re-query (concepts only) or a model run, and the node's time."""
    return f"Re-query: {seconds:.2f} s (model not run)" if requery else f"Model run: {seconds:.2f} s"
