"""Concept List: the words to find, encoded with the user's text encoder."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_patch.text.concepts import MAX_CONCEPTS, POOLING_MODES, parse_concept_names
from ..concept_patch.text.encoding import encode_concepts
from .schema import pack_schema
from .types import CLIP_TOOLTIP, Concepts, advanced


class ConceptList(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionConceptList", "Concept List",
            "Encodes the concepts to look for (e.g. 'dog, grass, sky') with the text encoder of the "
            "model you will inspect. Each concept gets its own stream through the model's attention.",
            inputs=[
                io.Clip.Input("clip", tooltip=CLIP_TOOLTIP),
                io.String.Input(
                    "concepts", multiline=True, default="dog, grass, sky",
                    tooltip=f"Concept words or short phrases, separated by commas or new lines; 1 to {MAX_CONCEPTS}, "
                            "each unique. Add background concepts (sky, ground) so every region has a candidate.",
                ),
                io.Combo.Input(
                    "pooling", options=list(POOLING_MODES), default="mean", **advanced(io.Combo.Input),
                    tooltip="How a multi-token concept becomes one vector: 'mean' of its own tokens, or its 'first' "
                            "token (the authors' code). Identical for one-token concepts.",
                ),
            ],
            outputs=[Concepts.Output(display_name="concepts", tooltip="The concept names and their embeddings.")],
        )

    @classmethod
    def execute(cls, clip, concepts, pooling="mean") -> io.NodeOutput:
        names = parse_concept_names(concepts)
        return io.NodeOutput(encode_concepts(clip, names, pooling))
