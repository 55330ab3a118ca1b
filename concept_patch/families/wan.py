"""Wan 2.1 / 2.2 (text-to-video, image-to-video, FLF2V, TI2V 5B): comfy's WanModel, a cross-attention model.

Blocks: WanAttentionBlock, reached through the dit hook ("double_block", i) with args img (the video tokens), txt
(the embedded text, after the CLIP-vision tokens of image-to-video models), vec, pe. Each block runs its
self-attention, then its cross-attention (WanT2VCrossAttention: the video's queries over the text;
WanI2VCrossAttention: first over the CLIP-vision image tokens with their own k_img / norm_k_img, then over the text,
the two outputs summed before the projection `o`), then its FFN. The text never attends to the video and is never
updated, so there is no concept stream through the blocks (families/stream_kinds.CrossAttention): each selected
layer's map compares the concepts' keys with the video's queries, or (output space) with the outputs of the text
call, read from that call. The CLIP-vision keys of image-to-video blocks are not concepts' keys: their call is
never read, and its output is not in o_i (o_i is the text call's output, before the sum).
Concept tokens: the concept's own tokens in the UMT5-XXL states, through text_embedding (Linear, GELU-tanh,
Linear) as Wan embeds its prompt; then, per layer, the cross-attention's k and norm_k (RMSNorm over the full
width), as the layer treats its text. Text has no position and no modulation in Wan.
Time: 1x2x2 patches of the latent (16 channels, 8 px; TI2V 5B: 48 channels, 16 px), one token frame per latent
frame; the causal VAE decodes T latent frames to 4(T-1)+1 pictures.
VACE (VaceWanModel, WanVaceFamily) adds control blocks that ComfyUI runs after some of the main blocks, outside
their dit hook, adding their hints to the video tokens: the main blocks are read as Wan's, the control blocks are not
(they attend to the text too, but for the control video, not for the picture the maps are of). Variants whose blocks
or inputs add more (camera, S2V, HuMo, Animate, causal AR) are other classes, not read yet; a call with reference or
in-context latents in its token sequence is refused.
"""

from __future__ import annotations

from ..checks.errors import ConceptAttentionError
from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .stream_kinds import CrossAttention


class WanBlocks(CrossAttention):
    """WanAttentionBlock: the text call is the second attention call (after self-attention), or the third in
    image-to-video blocks (after the CLIP-vision call)."""

    def text_call(self, block, block_args) -> int:
        from comfy.ldm.wan.model import WanI2VCrossAttention

        return 2 if isinstance(block.cross_attn, WanI2VCrossAttention) else 1

    def concept_keys(self, block, concepts, block_args, forward):
        attention = block.cross_attn
        return attention.norm_k(attention.k(concepts))

    def heads(self, block) -> int:
        return block.cross_attn.num_heads

    def image_tokens(self, block_args, forward):
        tokens = block_args["img"].shape[1]
        if tokens != forward.num_image_tokens:
            raise ConceptAttentionError(
                f"this Wan call has {tokens} tokens for a {forward.num_image_tokens}-token video (reference or "
                "in-context latents in its sequence); ConceptAttention does not read such calls yet"
            )
        return slice(0, tokens)


class WanFamily(ModelFamily):
    name = "Wan 2.1/2.2"
    variants = ("Wan 2.1 T2V 1.3B/14B", "Wan 2.1 I2V/FLF2V 14B", "Wan 2.2 T2V/I2V 14B", "Wan 2.2 TI2V 5B")
    model = ModelClass("comfy.ldm.wan.model", "WanModel", exact=True)
    encoders = (TextEncoder("umt5xxl", "UMT5-XXL", "CLIPLoader `wan`", file="umt5_xxl_fp8_e4m3fn_scaled.safetensors"),)
    blocks = (WanBlocks("blocks"),)
    grid = TokenGrid("patch_size", round_up=True, time_patch="patch_size")
    position = "none: keys of each layer's text cross-attention (Wan's text has no positions)"
    modulation = "none (Wan's text is embedded once by `text_embedding`, never modulated)"
    video = True
    # Not tried on ComfyUI 0.3.x yet: its tests are left out of the compatibility run.
    runs_on_comfyui_0_3 = False
    test_ids = ("wan",)

    def context_dim(self, diffusion_model) -> int:
        return diffusion_model.text_dim

    def initial_concepts(self, diffusion_model, embeddings):
        return diffusion_model.text_embedding(embeddings)


class WanVaceFamily(WanFamily):
    """Wan VACE: Wan's blocks, read as Wan's, with ComfyUI's VACE control blocks between them left alone."""

    name = "Wan VACE"
    variants = ("Wan 2.1 VACE 1.3B/14B",)
    model = ModelClass("comfy.ldm.wan.model", "VaceWanModel", exact=True)
    position = WanFamily.position
    modulation = WanFamily.modulation
    runs_on_comfyui_0_3 = False
    test_ids = ("vace",)
