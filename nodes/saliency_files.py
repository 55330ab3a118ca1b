"""Save Saliency / Load Saliency: maps as .safetensors in ComfyUI's output and input folders."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..concept_patch.checks.errors import ConceptAttentionError
from ..concept_patch.files.load import load_saliency
from ..concept_patch.files.paths import resolve_inside
from ..concept_patch.files.save import save_saliency
from .schema import pack_schema
from .types import Saliency

INPUT_FOLDER = "input folder"
OUTPUT_FOLDER = "output folder"


def _saliency_files_in_input() -> list[str]:
    base = folder_paths.get_input_directory()
    found = []
    for root, _, files in os.walk(base):
        for name in files:
            if name.endswith(".safetensors"):
                found.append(os.path.relpath(os.path.join(root, name), base).replace(os.sep, "/"))
    return sorted(found)


class SaveSaliency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionSaveSaliency", "Save Saliency",
            "Writes the maps, concept names and metadata to ComfyUI's output folder as .safetensors, "
            "with one coloured heatmap PNG per picture and concept (preview-sized, on the previews' "
            "shared colour scale; for a video an animated WebP per clip and concept, and the maps keep "
            "their frames). Copy the file to the input folder to use it with Load Saliency.",
            is_output_node=True,
            inputs=[
                Saliency.Input("saliency", tooltip="The maps to save."),
                io.String.Input("filename_prefix", default="concept_saliency/maps",
                                tooltip="File name prefix inside the output folder; sub-folders allowed, never outside it."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, saliency, filename_prefix) -> io.NodeOutput:
        out_dir = folder_paths.get_output_directory()
        paths = save_saliency(saliency, out_dir, filename_prefix, folder=OUTPUT_FOLDER)
        images = []
        for path in paths[1:]:
            rel = os.path.relpath(path, out_dir)
            images.append({"filename": os.path.basename(rel), "subfolder": os.path.dirname(rel), "type": "output"})
        files = [os.path.relpath(paths[0], out_dir).replace(os.sep, "/")]
        payload = {"images": images, "saliency_files": files}
        if saliency.is_video and saliency.frames > 1:
            payload["animated"] = (True,)  # the heatmaps are animated WebPs
        return io.NodeOutput(ui=payload)


class LoadSaliency(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return pack_schema(
            "ConceptAttentionLoadSaliency", "Load Saliency",
            "Reads maps written by Save Saliency from ComfyUI's input folder.",
            inputs=[
                io.Combo.Input("file", options=_saliency_files_in_input(),
                               tooltip="A .safetensors file from Save Saliency, in the input folder."),
            ],
            outputs=[Saliency.Output(display_name="saliency", tooltip="The loaded maps.")],
        )

    @classmethod
    def validate_inputs(cls, file) -> bool | str:
        if not file:
            return "choose a saliency .safetensors file from the input folder"
        try:
            resolve_inside(folder_paths.get_input_directory(), file, INPUT_FOLDER)
        except ValueError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, file):
        try:
            path = resolve_inside(folder_paths.get_input_directory(), file, INPUT_FOLDER)
            return os.path.getmtime(path) if os.path.exists(path) else ""
        except (ValueError, OSError):
            return ""  # execute() reports what is wrong with the path

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        path = resolve_inside(folder_paths.get_input_directory(), file, INPUT_FOLDER)
        if not os.path.isfile(path):
            raise ConceptAttentionError(f"no file {file!r} in the input folder; put a Save Saliency .safetensors file there")
        saliency = load_saliency(path, label=file)
        # The web extension offers these names in Saliency to Mask (no Concept List upstream).
        return io.NodeOutput(saliency, ui={"concept_names": list(saliency.names)})
