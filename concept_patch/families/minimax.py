"""MiniMax H3 (text/image/reference to video with audio): comfy's MiniMaxH3Model, one packed sequence.

Blocks: 50 DiTBlocks over one packed sequence [text | cond rows | audio | video] (text/image to video) or [text |
reference blocks | audio | video] (reference to video), batch size 1, called through the dit hook
("double_block", i). Every row passes the block's one set of weights; only the adaLN differs by segment:
`AdalnProj(..., 6, 3)` gives each timestep a video, a text and an audio row of (shift, scale, gate) x 2, and
`mod_segments` says which row each span of the sequence takes. So the text has a modulation of its own through
weights it shares with video and audio, as CogVideoX's text has (the paper's method, not an extension): the
concepts go through the block's own modules with the text rows' modulation (the text-tag row of the video
timestep, which the text's rows take): RMSNorm · (1 + scale) + shift, qkv_proj, the per-head q/k RMSNorm and the
split-half RoPE (the model's own fused kernel, its out-of-place form: the concept path never writes into the
model's tensors), out_proj, gate; then norm2, the same modulation's MLP half, the SwiGLU MLP and its gate.
Concept tokens: the concept's own tokens in the Qwen3-VL states (MiniMax's presentation is raw prompt text: no
template), through `condition_proj` and the 2-block `token_refiner`, as a prompt of the concepts alone (one
prompt of all concepts when concept self-attention is on, else one prompt per concept). This does not depend on
the timestep: it runs once per run.
Positions: the model numbers its text rows (t, h, w) = (i, 0, 0); a concept takes t = the position its own tokens
had in its conditioning (their mean, for several).
Token order: text first; the target video is the last segment, its rows frame by frame ((frames, h, w) of 1x2x2
patches); the condition rows, reference blocks and the audio come before it and are not in the maps.
Audio shares: the selected layers also score the concepts against the target audio rows (MiniMaxBlocks.side_tokens);
side_metadata gives a share per audio latent frame in the SALIENCY metadata ("audio_shares"); an encode's recording
keeps the audio rows' image stream too, so a re-query (new concepts on an AV latent already analysed) gives them as
well.
Latent: ComfyUI samples the packed [video, audio] latent (latent_shapes); the maps are the video's, per latent
frame. MiniMax's VAE decodes latent frame k to FRAME_PER_TOKEN[k % 5] = 1, 4, 4, 4, 4 pictures (pixel_frames):
7 latent frames are 22 pictures, not the default causal rule's 25.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from .base import ModelClass, TextEncoder, TokenGrid
from .single_stream import SingleStreamFamily
from .stream_kinds import SharedWeights

TEXT_TAG = 1  # mod_segments rows: 3 · (timestep row) + tag, tags video 0, text 1, audio 2
AUDIO = "audio"  # the side token group of the target audio (StreamKind.side_tokens)
AUDIO_FRAME_RATE = 40  # audio latent frames a second (the model's 40 Hz stereo audio latents)


def text_mod_row(mod_segments) -> int:
    """The modulation row the text's own rows take: the first segment (the text starts the sequence) whose row is a
    text-tag row (vision pads inside the text take the video tag)."""
    for _, _, row in mod_segments:
        if not torch.is_tensor(row) and row % 3 == TEXT_TAG:
            return int(row)
    raise ConceptAttentionError("this MiniMax H3 call has no text rows to take the modulation of")


def concept_rope_table(diffusion_model, positions: torch.Tensor, dtype, device) -> torch.Tensor:
    """The concepts' rotation table, as the model builds its own: positions (t, 0, 0) through its rope_freqs."""
    from comfy.ldm.minimax.model import rope_rotation_table

    ids = torch.zeros(positions.shape[0], 3, dtype=torch.float64)
    ids[:, 0] = positions.to(torch.float64)
    return rope_rotation_table(diffusion_model.rope_freqs(ids, device), dtype)


class MiniMaxBlocks(SharedWeights):
    """A DiTBlock: shared weights, the text rows' share of the per-segment adaLN; the target video comes last."""

    label = "packed"

    def image_tokens(self, block_args, forward):
        end = block_args["img"].shape[0]
        return slice(end - forward.num_image_tokens, end)

    def side_tokens(self, block_args, forward):
        # The target audio: the segment before the target video, the last two of the block's mod_segments.
        start, end, _ = block_args["mod_segments"][-2]
        return {AUDIO: slice(start, end)}

    def qkv(self, block, concepts, block_args, forward):
        import comfy.model_management
        import comfy.quant_ops

        row = text_mod_row(block_args["mod_segments"])
        mods = forward.block_constant("minimax_text_mod", lambda: tuple(
            m[row] for m in block.adaln_proj(block_args["t_emb"])))
        shift, scale, gate = (m.to(concepts.dtype) for m in mods[:3])
        x = block.norm1(concepts) * (1.0 + scale) + shift
        attn = block.attn
        b, r = x.shape[0], x.shape[1]
        q, k, v = attn.qkv_proj(x).split(attn.heads * attn.head_dim, dim=-1)
        q = q.reshape(b, r, attn.heads, attn.head_dim)
        k = k.reshape(b, r, attn.heads, attn.head_dim)
        v = v.reshape(b, r, attn.heads, attn.head_dim)
        rope = forward.family.concept_rope(forward, block_args)
        qw = comfy.model_management.cast_to(attn.q_norm.weight, device=x.device)
        kw = comfy.model_management.cast_to(attn.k_norm.weight, device=x.device)
        # The model's fused RMSNorm + split-half RoPE, out of place (the model runs the in-place form on its rows).
        q, k = comfy.quant_ops.ck.rms_rope_split_half(q, k, rope, qw, kw, epsilon=attn.q_norm.eps,
                                                       rot_dim=rope.shape[-3] * 2)
        return (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)), (gate, mods[3:])

    def update(self, block, concepts, concept_out, saved):
        gate, (shift_mlp, scale_mlp, gate_mlp) = saved
        concepts = concepts + block.attn.out_proj(concept_out) * gate
        dtype = concepts.dtype
        x = block.norm2(concepts) * (1.0 + scale_mlp.to(dtype)) + shift_mlp.to(dtype)
        return concepts + block.mlp(x) * gate_mlp.to(dtype)


class MiniMaxH3Family(SingleStreamFamily):
    name = "MiniMax H3"
    variants = ("text-to-video", "image-to-video (first/last frame guides)", "reference-to-video (with audio)")
    model = ModelClass("comfy.ldm.minimax.model", "MiniMaxH3Model")
    encoders = (TextEncoder("qwen3vl_32b", "Qwen3-VL 32B", "CLIPLoader, `minimax`",
                            note="layer-50 states, raw prompt text (no template)"),)
    blocks = (MiniMaxBlocks("blocks"),)
    grid = TokenGrid("patch_size", time_patch="patch_size")
    video = True
    soundtrack = True
    extension = False  # the text has an adaLN share of its own, as CogVideoX's
    position = ("RoPE axis t at the concept's own tokens' index in its conditioning, h = w = 0, as the text's tokens "
                "are numbered")
    modulation = ("the paper's method, not an extension: text, video and audio share every block weight but the "
                  "text has an adaLN share of its own, which the concepts take: the text rows' share of each "
                  "block's per-segment adaLN (the text-tag row at the video timestep), not the video's or the audio's. "
                  "Concepts pass `condition_proj` and the token refiner once per run. Maps are `[batch, concepts, "
                  "frames, h, w]` over the target video; condition rows, references and audio are not in them. The target audio "
                  "gets the concepts' shares per audio latent frame in the SALIENCY metadata (`audio_shares`): the preview "
                  "draws them as a strip of concept colours under the frames, and Concept Soundtrack Curve turns one "
                  "concept's into a curve or an audio gain ([what they mean](soundtrack.md))")
    test_ids = ("minimax",)
    runs_on_comfyui_0_3 = False

    def pixel_frames(self, latent_frames, temporal_downscale):
        # MiniMax's VAE decodes latent frame k to FRAME_PER_TOKEN[k % 5] pictures (1, 4, 4, 4, 4, then again 1, ...):
        # 2 latent frames give 5 pictures, 7 give 22 (the 17k + 5 grid of its latent nodes).
        from comfy.ldm.minimax.model import FRAME_PER_TOKEN

        return sum(FRAME_PER_TOKEN[k % len(FRAME_PER_TOKEN)] for k in range(latent_frames))

    def side_metadata(self, side_scores):
        """The concepts' shares of the target audio: per audio latent frame (40 per second), the mean over its two
        stereo rows of the per-row scores (a softmax over the concepts with softmax on, so each frame's shares sum to
        1), as `audio_shares` [batch][concept][frame] in the SALIENCY metadata (Save/Load Saliency keep it), with the
        audio frame rate (maps/soundtrack.py reads these keys)."""
        scores = side_scores.get(AUDIO)
        if scores is None:
            return {}
        batch, rows, concepts = scores.shape
        frames = rows // 2  # channel-major rows: channel 0's frames, then channel 1's
        per_frame = scores.reshape(batch, 2, frames, concepts).mean(dim=1).permute(0, 2, 1)
        shares = [[[round(float(v), 6) for v in concept] for concept in clip] for clip in per_frame.tolist()]
        return {"audio_shares": shares, "audio_frames": frames, "audio_frame_rate": AUDIO_FRAME_RATE}

    def context_dim(self, diffusion_model):
        return diffusion_model.condition_proj.in_features

    def preprocess_concepts(self, diffusion_model, embeddings, forward):
        together = forward.options.concept_self_attention
        projected = diffusion_model.condition_proj(embeddings)
        if together:
            return diffusion_model.token_refiner(projected)
        return torch.cat([diffusion_model.token_refiner(projected[i:i + 1]) for i in range(projected.shape[0])])

    def concept_rope(self, forward, block_args):
        diffusion_model = forward.diffusion_model

        def build():
            concepts = forward.session.concepts
            positions = concepts.positions
            if positions is None:
                positions = torch.arange(concepts.embeddings.shape[0], dtype=torch.float32)
            return concept_rope_table(diffusion_model, positions, forward.dtype, forward.device)

        return forward.session.cached(("minimax_concept_rope", forward.dtype), forward.device, build)
