"""The pack's nodes: thin schemas over concept_patch/."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

from .concept_list import ConceptList
from .concept_saliency import ConceptSaliency
from .generation import ConceptAttentionPatch, SamplingSaliency
from .saliency_files import LoadSaliency, SaveSaliency
from .saliency_to_mask import SaliencyToMask
from .sam3 import SaliencyToSAM3InitialMasks, SaliencyToSAM3Prompts
from .soundtrack import ApplySoundtrackCurve, SoundtrackCurve

NODES: list[type[io.ComfyNode]] = [
    ConceptList,
    ConceptSaliency,
    ConceptAttentionPatch,
    SamplingSaliency,
    SaliencyToMask,
    SaliencyToSAM3Prompts,
    SaliencyToSAM3InitialMasks,
    SaveSaliency,
    LoadSaliency,
    SoundtrackCurve,
    ApplySoundtrackCurve,
]
NODE_IDS = [node.define_schema().node_id for node in NODES]


class ConceptAttentionExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)
