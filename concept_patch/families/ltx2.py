"""LTX-2 / LTX-2.3 (text/image to video with audio, comfy's LTXAVModel) and LTX-Video (comfy's LTXVModel):
cross-attention models.

Blocks: BasicAVTransformerBlock, reached through the dit hook ("double_block", i) with args img = (video tokens,
audio tokens), v_context / a_context (the video's and the audio's embedded text), v_prompt_timestep (LTX-2.3's
text modulation) and the rest. Each block runs, in this order, the video's self-attention (attn1), the video's
cross-attention over its text (attn2), then the audio's self- and text attention, the audio-to-video and
video-to-audio attention, then both FFNs. The text never attends to the video and is never updated, so there is no
concept stream through the blocks (families/stream_kinds.CrossAttention): each selected layer's map compares the
concepts' keys with the video's queries of attn2, or (output space) with that call's outputs. Only the video's text
call is read: the audio's tokens, its text and the audio<->video attention are not in the maps. Spatio-temporal
guidance (STG) skips a block's video self-attention call (its output is its values), so the text call is then the
block's first; a guide attention mask (keyframe guides of strength other than 1) splits the self-attention into a
call per query group (the clip's tokens, the tracked guide tokens, any after them), so the text call comes after those.
Concept tokens: the concept's own tokens in the conditioning of LTX-2's Gemma 3 encoder (LTXAVTEModel: every Gemma
layer, normalised and projected; LTX-2.3: the video projection's part), embedded as the model embeds its text:
(LTX-2.3: caption_projection,) the video embeddings connector (two self-attention blocks with 1-D RoPE and learnable
registers after the text; a concept is a text of one token, so it attends to itself and the registers, never to
the other concepts), (LTX-2: caption_projection); then, per layer, attn2's to_k and k_norm (RMSNorm over the full
width). LTX-2.3's blocks modulate their text first (cross-attention AdaLN: text · (1 + scale) + shift from
prompt_scale_shift_table and the prompt timestep), and so the concepts' keys.
Time: 1x1x1 patches of the 128-channel latent (32 px, 8 frames), one token frame per latent frame; the causal VAE
decodes T latent frames to 8(T-1)+1 pictures. ComfyUI samples the packed [video, audio] latent (latent_shapes); the
maps are the video's. Keyframe guides (LTXVAddGuide) are latent frames appended to the clip's latent: the maps have
them too, after the clip's frames; a call that leaves part of them out of its sequence is refused.
LTX-Video (0.9.x, video only) has the video half of these blocks (BasicTransformerBlock: attn1, then attn2 over the
text, through the dit hook with img = the video tokens and prompt_timestep) and T5-XXL text through caption_projection
alone (PixArt's Linear, GELU-tanh, Linear; no connector); the same reading serves it.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .stream_kinds import CrossAttention


def _video(block_args) -> torch.Tensor:
    img = block_args["img"]
    return img[0] if isinstance(img, (tuple, list)) else img


def _self_attention_calls(block_args) -> int:
    """The attention calls of a block's video self-attention: one, or with a guide attention mask (GuideAttentionMask,
    comfy's _attention_with_guide_mask) one per query group it splits the tokens into."""
    from comfy.ldm.lightricks import model

    mask = block_args.get("self_attention_mask")
    guide_mask = getattr(model, "GuideAttentionMask", None)
    if guide_mask is None or not isinstance(mask, guide_mask):
        return 1
    tracked_end = mask.guide_start + mask.tracked_count
    return int(mask.guide_start > 0) + 1 + int(tracked_end < _video(block_args).shape[1])


class LTX2Blocks(CrossAttention):
    """BasicAVTransformerBlock: the video's text call (attn2) comes after the video's self-attention call(s)."""

    #: The dit hook argument holding the prompt timestep of the cross-attention AdaLN.
    prompt_timestep = "v_prompt_timestep"

    def text_call(self, block, block_args) -> int:
        options = block_args.get("transformer_options") or {}
        if not options.get("run_vx", True):
            return -1  # a call without the video: no text call of the video to read (the forward's maps are dropped)
        if options.get("stg_skip_self_attn", False):
            return 0  # STG: the self-attention's output is its values, with no attention call
        return _self_attention_calls(block_args)

    def concept_keys(self, block, concepts, block_args, forward):
        attention = block.attn2
        if block.cross_attention_adaln:
            # LTX-2.3: apply_cross_attention_adaln's modulation of the text, from the conditional rows' prompt timestep.
            prompt = forward.rows(block_args[self.prompt_timestep])
            table = block.prompt_scale_shift_table[None, None].to(device=concepts.device, dtype=concepts.dtype)
            shift, scale = (table + prompt.reshape(prompt.shape[0], prompt.shape[1], 2, -1).to(concepts.dtype)).unbind(2)
            concepts = concepts * (1 + scale) + shift
        return attention.k_norm(attention.to_k(concepts))

    def heads(self, block) -> int:
        return block.attn2.heads

    def image_tokens(self, block_args, forward):
        tokens = _video(block_args).shape[1]
        if tokens != forward.num_image_tokens:
            raise ConceptAttentionError(
                f"this LTX call has {tokens} video tokens for a {forward.num_image_tokens}-token latent (keyframe "
                "guide frames left out of its sequence in part); ConceptAttention does not read such calls yet: use "
                "in-place image conditioning, or guides the whole of which the model attends to"
            )
        return slice(0, tokens)


class LTXVideoBlocks(LTX2Blocks):
    """LTX-Video's BasicTransformerBlock: the video half of LTX-2's, its prompt timestep named as such."""

    prompt_timestep = "prompt_timestep"


class LTX2Family(ModelFamily):
    name = "LTX-2"
    variants = ("LTX-2 (text/image to video with audio)", "LTX-2.3", "their distilled models")
    model = ModelClass("comfy.ldm.lightricks.av_model", "LTXAVModel", exact=True)
    encoders = (TextEncoder("gemma3_12b", "Gemma 3 12B", "LTXAVTextEncoderLoader, or CLIPLoader `ltxv`",
                            note="all Gemma layers through the encoder's text projection; LTX-2.3: its video part"),)
    blocks = (LTX2Blocks("transformer_blocks"),)
    grid = TokenGrid("patchifier.patch_size", time_patch="patchifier.patch_size")
    position = ("none in the blocks: keys of each layer's video text cross-attention; in the embeddings connector a "
                "concept is a one-token text (RoPE position 0) before the learnable registers")
    modulation = ("none on LTX-2; LTX-2.3: each block's cross-attention AdaLN of the text (shift and scale from the "
                  "prompt timestep), as its text gets. Maps are `[batch, concepts, frames, h, w]` over the video; the "
                  "audio and the audio-video attention are not in them")
    video = True
    runs_on_comfyui_0_3 = False
    test_ids = ("ltx2",)

    def context_dim(self, diffusion_model) -> int:
        # LTX-2's encoder gives caption_channels-wide states (one projection, shared by video and audio); LTX-2.3's
        # its video and audio projections side by side.
        if diffusion_model.caption_proj_before_connector:
            return diffusion_model.cross_attention_dim + diffusion_model.audio_cross_attention_dim
        return diffusion_model.caption_channels

    def initial_concepts(self, diffusion_model, embeddings):
        dm = diffusion_model
        video = embeddings
        if video.shape[-1] == dm.cross_attention_dim + dm.audio_cross_attention_dim:
            video = video[..., :dm.cross_attention_dim]  # preprocess_text_embeds: the video's part
        if dm.caption_proj_before_connector:
            video = dm.caption_projection(video)
        # Each concept a text of one token (a batch of r texts): the connector appends its registers to each.
        video = dm.video_embeddings_connector(video.unsqueeze(1))[0][:, 0]
        if not dm.caption_proj_before_connector:
            video = dm.caption_projection(video)  # _prepare_context
        return video

    def forward_concepts(self, diffusion_model, embeddings, forward):
        # The connector and caption_projection read no timestep: the concepts are embedded once per session, device
        # and dtype (the model runs its connector on its own text once per conditioning, not per call either).
        c0 = forward.session.cached(("ltx_concepts", forward.dtype), forward.device,
                                    lambda: self.initial_concepts(diffusion_model, embeddings))
        return c0.unsqueeze(0).expand(forward.num_cond_rows, -1, -1).contiguous()

    def cacheable_block_args(self, block_args):
        # A re-query needs only the text modulation's timestep (LTX-2.3) to make the concepts' keys again.
        name = self.blocks[0].prompt_timestep
        prompt = block_args.get(name)
        return {} if prompt is None else {name: prompt}


class LTXVideoFamily(LTX2Family):
    name = "LTX-Video"
    variants = ("LTX-Video 0.9.x 2B/13B (text/image to video)",)
    model = ModelClass("comfy.ldm.lightricks.model", "LTXVModel", exact=True)
    encoders = (TextEncoder("t5xxl", "T5-XXL", "CLIPLoader `ltxv`"),)
    blocks = (LTXVideoBlocks("transformer_blocks"),)
    position = "none: keys of each layer's text cross-attention (LTX-Video's text has no positions)"
    modulation = ("none (LTX-Video's text is embedded once by `caption_projection`; a model with cross-attention AdaLN "
                  "modulates the concepts as its text)")
    # Not tried on ComfyUI 0.3.x yet: its tests are left out of the compatibility run.
    runs_on_comfyui_0_3 = False
    test_ids = ("ltxv",)

    def context_dim(self, diffusion_model) -> int:
        return diffusion_model.caption_channels

    def initial_concepts(self, diffusion_model, embeddings):
        if diffusion_model.caption_proj_before_connector:
            return embeddings  # no projection in the model's _prepare_context
        return diffusion_model.caption_projection(embeddings)
