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
from .base import is_instance_of
from .flux import FluxFamily
from .modulation import split_modulation

_TIMESTEPS = "refiner_timesteps"


class HunyuanVideoFamily(FluxFamily):
    name = "HunyuanVideo"
    text_spaces = ("llama",)
    # The diffusion-model wrapper sees the timesteps the token refiner gets.
    forward_wrapper_type = "diffusion_model"

    def matches(self, diffusion_model):
        return self.is_hunyuan_video(diffusion_model) and diffusion_model.vector_in is not None

    @staticmethod
    def is_hunyuan_video(diffusion_model) -> bool:
        return is_instance_of(diffusion_model, "comfy.ldm.hunyuan_video.model", "HunyuanVideo")

    def unsupported_reason(self, diffusion_model):
        return None

    def context_dim(self, diffusion_model):
        return diffusion_model.txt_in.input_embedder.in_features

    def spatial_patch(self, diffusion_model) -> tuple[int, int]:
        return tuple(diffusion_model.patch_size[-2:])

    def token_grid(self, diffusion_model, latent_hw):
        # The patch embedder pads the latent to whole patches.
        (ph, pw), (h, w) = self.spatial_patch(diffusion_model), latent_hw
        return (-(-h // ph), -(-w // pw))

    def token_frames(self, diffusion_model, latent_frames):
        patch = diffusion_model.patch_size
        if len(patch) < 3:
            return None  # HunyuanImage 2.1: 2-D patches of a picture latent
        return -(-latent_frames // patch[0])

    def image_tokens(self, block_args, forward):
        # Text first; ref_latent tokens sit between the text and the picture.
        start = block_args["txt"].shape[1] + block_args["img"].shape[1] - forward.num_image_tokens
        return slice(start, start + forward.num_image_tokens)

    def text_id_axes(self, diffusion_model, block_args):
        return []

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
    text_spaces = ("qwen25_7b",)
    text_layers = {"qwen25_7b": "hidden -3"}  # Qwen-Image and LongCat read the same encoder's last layer

    def matches(self, diffusion_model):
        return (self.is_hunyuan_video(diffusion_model)
                and getattr(diffusion_model, "cond_type_embedding", None) is not None)


class HunyuanImage21Family(HunyuanVideoFamily):
    """HunyuanImage 2.1 (2-D patches of a picture latent) and its refiner (1x1x1 patches); Qwen2.5-VL text."""

    name = "HunyuanImage 2.1"
    text_spaces = ("qwen25_7b",)
    text_layers = {"qwen25_7b": "hidden -3"}  # Qwen-Image and LongCat read the same encoder's last layer

    def matches(self, diffusion_model):
        return (self.is_hunyuan_video(diffusion_model) and diffusion_model.vector_in is None
                and getattr(diffusion_model, "cond_type_embedding", None) is None)
