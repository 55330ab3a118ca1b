"""Concept List: the words to find, encoded with the user's text encoder."""

from __future__ import annotations

from comfy_api.latest import io

from ..concept_patch.text.encoding import encode_concepts
from ..concept_patch.text.concepts import MAX_CONCEPTS, POOLING_MODES, parse_concept_names
from .types import CATEGORY, NODE_PREFIX, Concepts, advanced


class ConceptList(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}ConceptList",
            display_name="Concept List",
            category=CATEGORY,
            description="Encodes the concepts to look for (e.g. 'dog, grass, sky') with the text encoder of the "
                        "model you will inspect. Each concept gets its own stream through the model's attention.",
            inputs=[
                io.Clip.Input(
                    "clip",
                    tooltip="The text encoder loaded for the model, the one its prompts use. Flux.1: T5 + CLIP-L "
                            "(DualCLIPLoader flux); Flux.2: Mistral Small 3.1 (dev) or Qwen3 4B / 8B (Klein 4B / 9B), "
                            "CLIPLoader flux2; SD3/SD3.5: CLIP-L/G and/or T5; Chroma and Chroma Radiance: T5 "
                            "(CLIPLoader chroma); LongCat-Image: Qwen2.5-VL 7B (CLIPLoader longcat_image); "
                            "Ovis-Image: Qwen3 2B (CLIPLoader ovis); Qwen-Image: Qwen2.5-VL 7B (CLIPLoader "
                            "qwen_image); Mage-Flow: Qwen3-VL 4B (CLIPLoader mage); HiDream: its four encoders, "
                            "T5-XXL among them (concepts are read from T5); CogVideoX: T5 (CLIPLoader cogvideox); "
                            "HunyuanVideo: Llava-Llama-3 + CLIP-L (DualCLIPLoader hunyuan_video); HunyuanVideo 1.5 / "
                            "HunyuanImage 2.1: Qwen2.5-VL 7B + byT5 (DualCLIPLoader hunyuan_video_15 / hunyuan_image); "
                            "Z-Image: Qwen3 4B and Lumina 2: Gemma 2 2B (CLIPLoader lumina2); Krea 2: Qwen3-VL 4B "
                            "(CLIPLoader krea2).",
                ),
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
