"""Concept Soundtrack Curve and Apply Soundtrack Curve to Audio: where along a generated soundtrack each concept is
heard, as a MASK curve and as an audio gain (docs/soundtrack.md)."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_patch.families import FAMILIES
from ..concept_patch.maps.soundtrack import (
    CURVE_MODES,
    concept_curve,
    curve_of_mask,
    curve_table,
    gate_audio,
    require_soundtrack,
)
from .schema import pack_schema
from .types import Saliency

# Made from the registry: the families whose SALIENCY has a soundtrack.
SOUNDTRACK_FAMILIES = ", ".join(family.name for family in FAMILIES if family.soundtrack)


class SoundtrackCurve(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSoundtrackCurve", "Concept Soundtrack Curve",
            f"Where along the generated soundtrack a concept is heard ({SOUNDTRACK_FAMILIES}: video with audio). "
            "For every audio latent frame, the concept's share of the audio tokens' attention among the concepts "
            "given (the same score as the video maps, for the audio tokens): a MASK [clips, 1, audio frames] to "
            "view (Convert Mask to Image), threshold or invert with the stock mask nodes, or to gate the audio with "
            "Apply Soundtrack Curve to Audio. A share among the concepts listed, not a loudness and not a source "
            "separation.",
            inputs=[
                Saliency.Input("saliency", tooltip=f"From a {SOUNDTRACK_FAMILIES} run: Concept Saliency on its "
                                                   "audio-video latent, Concept Saliency from Sampling, or Load "
                                                   "Saliency."),
                io.String.Input("concept", default="",
                                tooltip="One concept of the SALIENCY (matched without regard to case)."),
                io.Combo.Input(
                    "mode", options=list(CURVE_MODES), default="share",
                    tooltip="share: the concept's share at each audio frame, 0-1 (softmax maps: the shares of all "
                            "concepts sum to 1; softmax off: raw scores placed between the smallest and largest of "
                            "all concepts); threshold: 1 where the share is at least 'threshold'; winner: 1 where the "
                            "concept has the largest share of all concepts."),
                io.Float.Input("threshold", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="The share at or above which 'threshold' gives 1. Ignored by the other modes."),
                io.Boolean.Input("invert", default=False, tooltip="1 - the curve: everything but the concept."),
            ],
            outputs=[
                io.Mask.Output(display_name="curve", tooltip="MASK [clips, 1, audio frames], values 0-1: time runs "
                                                             "along the width, one column per audio latent frame."),
                io.Float.Output(display_name="frames_per_second",
                                tooltip="Audio latent frames per second (40 for MiniMax H3): column k starts at "
                                        "k / this seconds. 0 where the SALIENCY does not say."),
                io.String.Output(display_name="table", tooltip="The curve as CSV text: time (s) and value per "
                                                                "audio frame."),
            ],
        )

    @classmethod
    def execute(cls, saliency, concept, mode, threshold, invert) -> io.NodeOutput:
        soundtrack = require_soundtrack(saliency, SOUNDTRACK_FAMILIES)
        curve = concept_curve(saliency, concept, mode=mode, threshold=threshold, invert=invert,
                              makers=SOUNDTRACK_FAMILIES)
        name = saliency.names[saliency.index_of(concept)]
        table = curve_table(curve, name + (" (inverted)" if invert else ""), soundtrack.frame_rate)
        return io.NodeOutput(curve[:, None, :].contiguous(), float(soundtrack.frame_rate or 0.0), table)


class ApplySoundtrackCurve(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionApplySoundtrackCurve", "Apply Soundtrack Curve to Audio",
            "Makes the audio's loudness follow a curve: each sample times floor + (1 - floor) x the curve there. The "
            "curve (a MASK from Concept Soundtrack Curve, time along its width) is stretched over the audio's "
            "length, as the audio frames span the clip. Keeps the stretches of the soundtrack where a concept is "
            "heard (or, inverted, where it is not); it does not separate sounds that play at the same time.",
            inputs=[
                io.Audio.Input("audio", tooltip="The clip's soundtrack (VAE Decode Audio of the same latent, or "
                                                "Load Audio)."),
                io.Mask.Input("curve", tooltip="From Concept Soundtrack Curve (or any MASK: its last axis is time, "
                                               "rows are averaged)."),
                io.Float.Input("floor", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="The gain where the curve is 0 (0 = silence there, 0.2 = a fifth of the "
                                       "loudness)."),
            ],
            outputs=[io.Audio.Output(display_name="audio", tooltip="The audio, its loudness following the curve: "
                                                                   "for Save Audio, Preview Audio or Create Video.")],
        )

    @classmethod
    def execute(cls, audio, curve, floor) -> io.NodeOutput:
        return io.NodeOutput(gate_audio(audio, curve_of_mask(curve), floor))
