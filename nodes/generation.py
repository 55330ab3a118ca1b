"""Generation mode: patch a model for the stock samplers, then read the maps of a finished run."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_patch.checks.errors import ConceptAttentionError
from ..concept_patch.checks.finite import check_finite_input, check_finite_maps
from ..concept_patch.generation import family_and_options, find_sessions, install_concept_attention
from ..concept_patch.stream.experts import continued_record, two_expert_saliency
from ..concept_patch.stream.layer_spec import parse_step_range
from ..concept_patch.stream.wrappers import inference_dtype
from .preview import PREVIEW_TOOLTIP, saliency_preview
from .schema import pack_schema
from .types import Saliency, layer_inputs, method_inputs, model_inputs, softmax_inputs


class ConceptAttentionPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionPatchModel", "Concept Attention (Generation)",
            "Lets KSampler, KSamplerAdvanced or SamplerCustomAdvanced record where each concept is while "
            "they generate. The picture is bit-identical to the unpatched model's. Read the maps with "
            "'Concept Saliency from Sampling' on the sampler's LATENT output.",
            inputs=[
                *model_inputs(),
                *layer_inputs(),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="First part of the sampling schedule whose steps count (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="End of the counted part of the schedule (1 = through the last step)."),
                *method_inputs(),
                *softmax_inputs(),
            ],
            outputs=[io.Model.Output(display_name="model",
                                     tooltip="The model with ConceptAttention; connect it to the sampler.")],
        )

    @classmethod
    def execute(cls, model, concepts, layers, start_percent, end_percent, space, softmax,
                concept_self_attention=True, concept_cross_attention=True, softmax_temperature=1.0,
                softmax_after_mean=False) -> io.NodeOutput:
        start, end = parse_step_range(start_percent, end_percent)
        family, options = family_and_options(
            model, layers, space=space, softmax=softmax, concept_self_attention=concept_self_attention,
            concept_cross_attention=concept_cross_attention, start_percent=start, end_percent=end,
            softmax_temperature=softmax_temperature, softmax_after_mean=softmax_after_mean,
        )
        patched, _ = install_concept_attention(model, concepts, options, family)
        return io.NodeOutput(patched)


class SamplingSaliency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSamplingSaliency", "Concept Saliency from Sampling",
            "The concept maps recorded while a sampler generated this LATENT with the model from "
            "'Concept Attention (Generation)'. Runs again whenever the sampler does (new seed, new maps).",
            inputs=[
                io.Model.Input("model", tooltip="The model output of 'Concept Attention (Generation)' that the sampler used."),
                io.Latent.Input("latent", tooltip="The sampler's LATENT output (not the denoised x0 preview)."),
                io.Image.Input("image", optional=True,
                               tooltip="The decoded picture, for the preview (must be the picture of this latent)."),
                io.Model.Input("model_2", optional=True,
                               tooltip="Sampling split between two models (a high-noise and a low-noise expert, two "
                                       "KSamplerAdvanced): the patched model of the FIRST sampler, from a Concept "
                                       "Attention (Generation) node with the same concepts; 'model' is the second "
                                       "sampler's. The maps then cover every step of both."),
            ],
            outputs=[
                Saliency.Output(display_name="saliency", tooltip="Per-concept maps averaged over the chosen steps and layers."),
                io.Image.Output(display_name="preview", tooltip=PREVIEW_TOOLTIP),
            ],
        )

    @classmethod
    def execute(cls, model, latent, image=None, model_2=None) -> io.NodeOutput:
        sessions = find_sessions(model)
        if not sessions:
            raise ConceptAttentionError(
                "this MODEL has no ConceptAttention patch: connect the model output of 'Concept Attention (Generation)' "
                "that the sampler used"
            )
        # a NaN latent equals no run's output (NaN != NaN): say what is wrong with it instead
        check_finite_input(latent["samples"], "sampler's LATENT")
        for session in reversed(sessions):
            record = session.find_record(latent["samples"])
            if record is not None:
                break
        else:
            raise ConceptAttentionError(
                "no sampling run of this model produced this LATENT: connect the sampler's LATENT output (not its "
                "denoised output or an edited latent), and the same patched model the sampler used"
            )
        saliency = record.saliency
        if model_2 is not None:
            saliency = _two_expert_saliency(record, model_2)
        if saliency is None:
            raise ConceptAttentionError(
                "the sampling run that made this LATENT recorded no maps: none of its model calls could be read. "
                "Widen start_percent/end_percent so the range holds a step, and give the sampler a conditioning "
                "that covers the whole picture (area-conditioned crops are not read)"
            )
        check_finite_maps(saliency.maps, latent["samples"], "sampler's LATENT", inference_dtype(model.model))
        preview, payload = saliency_preview(saliency, image, cls)
        return io.NodeOutput(saliency, preview, ui=payload)


def _two_expert_saliency(final, model_2):
    """One SALIENCY over a sampling that model_2's sampler began and `final`'s finished (stream/experts.py)."""
    sessions = find_sessions(model_2)
    if not sessions:
        raise ConceptAttentionError(
            "model_2 has no ConceptAttention patch: connect the model output of the 'Concept Attention (Generation)' "
            "node of the first sampler's model (Wan 2.2's high-noise expert)"
        )
    first = continued_record(final, sessions)
    if first is None:
        raise ConceptAttentionError(
            "no sampling run of model_2 produced the latent the sampler of 'model' started from: connect the first "
            "sampler's LATENT output (with its leftover noise) to the second sampler, and model_2 to the model the "
            "first sampler used"
        )
    return two_expert_saliency(first, final)
