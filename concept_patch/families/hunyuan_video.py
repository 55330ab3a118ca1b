"""HunyuanVideo 1 (T2V, I2V, SkyReels I2V), HunyuanVideo 1.5 and HunyuanImage 2.1: comfy's HunyuanVideo class,
whose double blocks are Flux's DoubleStreamBlocks (the block maths is FluxFamily's).

Concept tokens: the concept's own tokens in the LLM's states (HunyuanVideo 1: Llava-Llama-3, whose encoder keeps
only the user span of its template; 1.5 and HunyuanImage 2.1: Qwen2.5-VL), pooled to one vector, then the
model's `txt_in`, a TokenRefiner. The refiner is not a plain projection: its adaLN reads the timestep and the
mean of the sequence it refines, and its self-attention mixes that sequence. So it runs once per forward (the
timestep changes every step), and each concept is refined as a sequence of its own of one token: the mean of a
one-token sequence is the concept's vector, self-attention over one token returns that token, exactly what the
refiner does to a prompt of one token. The concept takes nothing from the prompt (no prompt mean, no prompt
tokens), as its pooled vector was encoded without it. HunyuanVideo 1.5 then adds cond_type_embedding(0), the
type embedding of LLM text (its byT5 glyph tokens take type 1, vision tokens 2; concepts have neither).
Positions: text ids are zero (RoPE leaves text, and the concepts, unrotated).
Modulation: the block's txt_mod on the block's `vec`, the modulation the block's text rows get (on HunyuanVideo 1
it includes the pooled CLIP-L vector). With I2V's guiding_frame_index `vec` has two rows per picture: the
first frame's image tokens take row 0 and everything else, text included, row 1 (modulation_dims_txt).
Token order: text (with byT5 glyph and vision tokens on 1.5), then the ref_latent tokens (SkyReels-style I2V
and others), then the picture: the picture is the last num_image_tokens tokens of the block's image stream.
Video: the token grid is (frames, h, w) with the model's (1, p, p) patches (HunyuanImage 2.1: a picture, (h, w)).
Single-stream blocks (HunyuanVideo 1, HunyuanImage 2.1; 1.5 has none) are Flux's and read as FluxFamily reads them.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from ..stream.options import SINGLE_BLOCK
from .base import ModelClass, TextEncoder, TokenGrid
from .flux import FluxDoubleBlocks, FluxFamily, FluxSingleBlocks
from .modulation import split_modulation

_TIMESTEPS = "refiner_timesteps"
QWEN25_VL_THIRD_FROM_LAST = dict(space="qwen25_7b", name="Qwen2.5-VL 7B", layer="hidden -3",
                                 note="with byT5; concepts from the Qwen2.5-VL part")


class HunyuanVideoBlocks(FluxDoubleBlocks):
    """Flux's DoubleStreamBlocks; text first, then the ref_latent tokens, then the picture."""

    def image_tokens(self, block_args, forward):
        # The picture is the last num_image_tokens tokens of the block's image stream.
        start = block_args["txt"].shape[1] + block_args["img"].shape[1] - forward.num_image_tokens
        return slice(start, start + forward.num_image_tokens)


class HunyuanVideoFamily(FluxFamily):
    name = "HunyuanVideo"
    variants = ("HunyuanVideo 1 text-to-video", "image-to-video (`HunyuanImageToVideo`: v1 concat, v2 "
                "`guiding_frame_index`, custom `ref_latent`)", "SkyReels I2V")
    model = ModelClass("comfy.ldm.hunyuan_video.model", "HunyuanVideo")
    encoders = (TextEncoder("llama", "Llava-Llama-3 8B", "DualCLIPLoader, `hunyuan_video`",
                            note="with CLIP-L; the encoder keeps the template's user span, concepts are their own tokens in it"),)
    blocks = (HunyuanVideoBlocks("double_blocks"), FluxSingleBlocks("single_blocks", hook=SINGLE_BLOCK))
    grid = TokenGrid("patch_size", time_patch="patch_size")
    video = True
    position = "zero ids, as its text has"
    modulation = ("the block's `txt_mod` on the block's `vec` (timestep + pooled CLIP-L + guidance), the row the text "
                  "takes (row 1 with `guiding_frame_index`). Concepts enter through `txt_in`, the TokenRefiner, per "
                  "model call (it reads the timestep), each as a one-token sequence. Maps are `[batch, concepts, "
                  "frames, h, w]`; reference-latent tokens are not in them")
    test_ids = ("hunyuan",)
    runs_on_comfyui_0_3 = True
    # The diffusion-model wrapper sees the timesteps the token refiner gets.
    forward_wrapper_type = "diffusion_model"

    def is_variant(self, diffusion_model):
        return (diffusion_model.vector_in is not None
                and getattr(diffusion_model, "cond_type_embedding", None) is None)

    def context_dim(self, diffusion_model):
        return diffusion_model.txt_in.input_embedder.in_features

    def prepare_forward(self, diffusion_model, forward, call):
        forward.family_state[_TIMESTEPS] = forward.rows(call["timestep"])

    def initial_concepts(self, diffusion_model, embeddings):
        raise ConceptAttentionError(
            f"{self.name} embeds concepts per model call (its token refiner reads the timestep): use forward_concepts"
        )

    def forward_concepts(self, diffusion_model, embeddings, forward):
        timesteps = forward.family_state.get(_TIMESTEPS)
        if timesteps is None:
            raise ConceptAttentionError(
                f"the {self.name} concept stream started without the model call's timestep; the model's forward "
                "was not seen by ConceptAttention's diffusion-model wrapper"
            )
        rows, r = timesteps.shape[0], embeddings.shape[0]
        # Every concept of every row as a sequence of one token, at that row's timestep.
        sequences = embeddings.unsqueeze(1).repeat(rows, 1, 1)
        refined = diffusion_model.txt_in(sequences, timesteps.repeat_interleave(r), None)
        concepts = refined.view(rows, r, -1)
        type_embedding = getattr(diffusion_model, "cond_type_embedding", None)
        if type_embedding is not None:
            # As the model adds it to LLM text: type 0, cast to the text's dtype.
            text_type = type_embedding(torch.zeros((1, 1), dtype=torch.long, device=concepts.device))
            concepts = concepts + text_type.to(concepts.dtype)
        return concepts

    def text_modulation(self, block, block_args, forward):
        """(shift₁, 1+scale₁, gate₁, shift₂, 1+scale₂, gate₂) for the concept rows, each [Bc, 1, C]: the block's
        txt_mod on the `vec` row its text tokens take."""
        vec = block_args["vec"]
        if vec.ndim == 3:
            vec = vec[:, self.text_vec_row(block_args)]
        return split_modulation(block.txt_mod.lin(torch.nn.functional.silu(forward.rows(vec))), 6)

    def text_id_axes(self, diffusion_model, block_args):
        return []

    @staticmethod
    def text_vec_row(block_args) -> int:
        """The row of a per-token `vec` [B, rows, C] that the text takes (guiding_frame_index: row 1)."""
        dims = block_args.get("modulation_dims_txt")
        rows = {row for _, _, row in dims or ()}
        if len(rows) != 1 or any(start != 0 or end is not None for start, end, _ in dims):
            raise ConceptAttentionError(
                f"this HunyuanVideo block modulates its text tokens in parts ({dims}); ConceptAttention reads "
                "models whose text takes one modulation row"
            )
        return rows.pop()


class HunyuanVideo15Family(HunyuanVideoFamily):
    name = "HunyuanVideo 1.5"
    variants = ("480p/720p, text- and image-to-video",)
    encoders = (TextEncoder(loader="DualCLIPLoader, `hunyuan_video_15`", **QWEN25_VL_THIRD_FROM_LAST),)
    blocks = HunyuanVideoFamily.blocks[:1]  # no single-stream blocks
    position = "zero ids"
    runs_on_comfyui_0_3 = False
    test_ids = ("hv15", "hunyuan_video_15", "hunyuanvideo15")
    modulation = ("as HunyuanVideo, plus the text type embedding (`cond_type_embedding(0)`); byT5 glyph and vision "
                  "tokens stay in the prompt's text stream only")

    def is_variant(self, diffusion_model):
        return getattr(diffusion_model, "cond_type_embedding", None) is not None


class HunyuanImage21Family(HunyuanVideoFamily):
    """HunyuanImage 2.1 (2-D patches of a picture latent) and its refiner (1x1x1 patches); Qwen2.5-VL text."""

    name = "HunyuanImage 2.1"
    variants = ("HunyuanImage 2.1 (and its refiner)",)
    encoders = (TextEncoder(loader="DualCLIPLoader, `hunyuan_image`", **QWEN25_VL_THIRD_FROM_LAST),)
    video = False
    runs_on_comfyui_0_3 = False
    test_ids = ("hunyuan_image", "hunyuanimage")
    position = "zero ids"
    modulation = "as HunyuanVideo 1.5 (no type embedding); maps are `[batch, concepts, h, w]`"

    def is_variant(self, diffusion_model):
        return (diffusion_model.vector_in is None
                and getattr(diffusion_model, "cond_type_embedding", None) is None)
