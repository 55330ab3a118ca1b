"""ConceptAttention for ComfyUI: zero-shot concept saliency maps and masks from dual-stream DiTs.

ComfyUI is imported lazily (inside comfy_entrypoint) so the pure-torch modules in
concept_patch/ import and test without ComfyUI.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import ConceptAttentionExtension

    return ConceptAttentionExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
