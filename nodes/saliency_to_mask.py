"""Saliency to Mask: masks for ComfyUI's inpainting and regional nodes."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_patch.maps.masks import saliency_to_mask_and_note
from ..concept_patch.maps.thresholds import DEFAULT_MASK_METHOD, MASK_METHODS, METHODS_READING_THRESHOLD
from ..concept_patch.text.concepts import split_names
from .schema import pack_schema
from .types import Saliency, extra_options


class SaliencyToMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSaliencyToMask", "Saliency to Mask",
            "Turns one or more concepts' maps into a MASK [batch, height, width] at picture resolution, "
            "ready for SetLatentNoiseMask, InpaintModelConditioning, VAEEncodeForInpaint, "
            "ConditioningSetMask or MaskComposite. For a video: one mask per decoded frame "
            "[clips x frames, height, width], with one threshold for the whole clip.",
            inputs=[
                Saliency.Input("saliency", tooltip="From Concept Saliency, Concept Saliency from Sampling or Load Saliency."),
                io.String.Input(
                    "concepts", default="",
                    tooltip="Concept name(s) to mask, comma separated (matched without regard to case). Several "
                            "concepts are combined into one mask.",
                ),
                io.Combo.Input(
                    "method", options=list(MASK_METHODS), default=DEFAULT_MASK_METHOD,
                    tooltip="mean: above the map's mean (the paper's), and an empty mask where the concepts win no "
                            "part of the picture (0 % in the legend; for a video: in no frame); relative_mean: above "
                            "the map's mean even then (always about half the picture); otsu: automatic two-class "
                            "threshold; value: above 'threshold'; top_percent: the 'threshold' percent strongest area; "
                            "argmax: where these concepts beat all others (multi-concept segmentation); soft: the "
                            "continuous map.",
                ),
                io.Float.Input(
                    "threshold", default=0.5, min=0.0, max=100.0, step=0.01,
                    tooltip="Used by 'value' (a map value; softmax maps lie in 0-1) and 'top_percent' (percent of the "
                            "picture, 0-100). Ignored by the other methods (and shown only for these two).",
                    # the web extension shows the widget only for these methods
                    **extra_options(io.Float.Input, read_by_methods=list(METHODS_READING_THRESHOLD)),
                ),
                io.Int.Input("grow", default=0, min=-512, max=512,
                             tooltip="Pixels to grow the mask by (negative shrinks), after thresholding."),
                io.Float.Input("feather", default=0.0, min=0.0, max=256.0, step=0.5,
                               tooltip="Blur radius in pixels for a soft edge (0 = hard edge)."),
                io.Boolean.Input("invert", default=False, tooltip="Mask everything except the concept(s)."),
                io.Image.Input(
                    "image", optional=True,
                    tooltip="The picture the maps were made from: mask edges then follow its edges when upsampling "
                            "from the model's coarse token grid. For a video: its decoded frames (all of them, "
                            "VAE Decode of the same latent).",
                ),
            ],
            outputs=[io.Mask.Output(display_name="mask", tooltip="MASK [batch, height, width], values 0-1; for a "
                                                                 "video one per frame, clips one after another.")],
        )

    @classmethod
    def execute(cls, saliency, concepts, method, threshold, grow, feather, invert, image=None) -> io.NodeOutput:
        mask, note = saliency_to_mask_and_note(
            saliency, split_names(concepts), method=method, threshold=threshold, grow=grow, feather=feather,
            invert=invert, guide_image=image,
        )
        # The web extension shows the note on the node (an empty one clears the last run's).
        return io.NodeOutput(mask, ui={"concept_mask_note": [note]})
