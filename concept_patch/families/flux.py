"""Flux.1 (dev, schnell, Kontext, Fill): comfy.ldm.flux.model.Flux with DoubleStreamBlocks.

Concept tokens: one vector per concept from the T5 states, then txt_in (and txt_norm when
the model has one). Positions: Flux.1 gives text tokens zero ids, so RoPE leaves concept q/k
unchanged and is skipped. Variants of the same class that number their text tokens
(`params.txt_ids_dims`, e.g. LongCat-Image and Ovis-Image) give each concept the position its
own tokens had in its own conditioning, on the same axes, and rope its q/k with the model's
own `pe_embedder` and `apply_rope`.
Modulation: time_in(t) + guidance_in(g) + vector_in(0), the text modulation with the pooled
CLIP vector replaced by zeros (the authors' Flux code), through each block's txt_mod.
Single-stream blocks (selected by "single ..." layers, an extension beyond the paper; also for the families that
build on this adapter): the concepts continue from the last double block through each SingleStreamBlock's
shared modules with the modulation every row of the block gets (the `vec` it is called with), and their text
position as in the double blocks.
"""

from __future__ import annotations

import torch

from ..stream.options import SINGLE_BLOCK
from .base import ModelClass, ModelFamily, TextEncoder, TokenGrid
from .modulation import modulated_layer_norm, split_modulation
from .stream_kinds import SharedWeights, TextModules


def clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """As Flux-style blocks clamp their streams in fp16."""
    if x.dtype == torch.float16:
        return torch.nan_to_num(x, nan=0.0, posinf=65504, neginf=-65504)
    return x


def roped(q: torch.Tensor, k: torch.Tensor, forward, block_args: dict):
    """q, k through the model's own RoPE at the concepts' text positions (unchanged where text is not rotated)."""
    pe = forward.family.concept_rope(forward, block_args)
    if pe is None:
        return q, k
    from comfy.ldm.flux.math import apply_rope

    return apply_rope(q, k, pe)


class FluxDoubleBlocks(TextModules):
    """A DoubleStreamBlock's text modules: txt_norm1 with the text modulation, txt_attn (qkv, q/k norm, proj),
    txt_norm2 and txt_mlp with their gates."""

    def qkv(self, block, concepts, block_args, forward):
        mod = forward.family.text_modulation(block, block_args, forward)
        x = modulated_layer_norm(concepts, mod[0], mod[1], block.txt_norm1.eps)
        qkv = block.txt_attn.qkv(x)
        q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = block.txt_attn.norm(q, k, v)
        q, k = roped(q, k, forward, block_args)
        return (q, k, v), mod

    def update(self, block, concepts, concept_out, saved):
        shift1, scale1, gate1, shift2, scale2, gate2 = saved
        concepts = torch.addcmul(concepts, block.txt_attn.proj(concept_out), gate1)
        mlp_in = modulated_layer_norm(concepts, shift2, scale2, block.txt_norm2.eps)
        return clamp_fp16(torch.addcmul(concepts, block.txt_mlp(mlp_in), gate2))


class FluxSingleBlocks(SharedWeights):
    """A SingleStreamBlock: one LayerNorm and Linear (linear1) give q, k, v and the MLP input at once; the concepts
    take the modulation every row of the block gets, from the `vec` the block is called with."""

    def modulation(self, block, block_args, forward):
        """(shift, 1+scale, gate) for the concept rows, each [Bc, 1, C]: the block's own Modulation of `vec`
        (Flux.1), or the modulation it is handed in `vec` (Chroma, Flux.2). Where the model modulates some image
        tokens differently (Flux.2's zero-timestep references), the text rows take the first."""
        vec = block_args["vec"]
        modulation = getattr(block, "modulation", None)  # ComfyUI 0.3.x's Chroma blocks have no attribute
        mod = modulation(forward.rows(vec))[0] if modulation is not None else vec
        rows = (lambda t: t[:, :1]) if modulation is not None else (lambda t: forward.rows(t)[:, :1])
        return rows(mod.shift), 1 + rows(mod.scale), rows(mod.gate)

    def qkv(self, block, concepts, block_args, forward):
        shift, scale, gate = self.modulation(block, block_args, forward)
        x = modulated_layer_norm(concepts, shift, scale, block.pre_norm.eps)
        mlp_width = getattr(block, "mlp_hidden_dim_first", block.mlp_hidden_dim)  # 0.3.x: one width
        qkv, mlp = torch.split(block.linear1(x), [3 * block.hidden_size, mlp_width], dim=-1)
        q, k, v = qkv.view(qkv.shape[0], qkv.shape[1], 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k = block.norm(q, k, v)
        q, k = roped(q, k, forward, block_args)
        # The block's MLP branch runs in parallel with its attention, from the same modulated input.
        return (q, k, v), (gate, mlp)

    def update(self, block, concepts, concept_out, saved):
        gate, mlp = saved
        if getattr(block, "yak_mlp", False):  # SwiGLU (Ovis): silu(second half) · first half
            half = mlp.shape[-1] // 2
            mlp = block.mlp_act(mlp[..., half:]) * mlp[..., :half]
        else:
            mlp = block.mlp_act(mlp)
        out = block.linear2(torch.cat((concept_out.to(mlp.dtype), mlp), 2))
        return clamp_fp16(torch.addcmul(concepts, out, gate))


FLUX_BLOCKS = (FluxDoubleBlocks("double_blocks"), FluxSingleBlocks("single_blocks", hook=SINGLE_BLOCK))


class FluxFamily(ModelFamily):
    name = "Flux.1"
    variants = ("dev", "schnell", "Kontext", "Fill")
    model = ModelClass("comfy.ldm.flux.model", "Flux")
    encoders = (TextEncoder("t5xxl", "T5-XXL", "DualCLIPLoader, `flux`", note="with CLIP-L; concepts from T5"),)
    blocks = FLUX_BLOCKS
    grid = TokenGrid("patch_size", round_up=False)
    position = "zero position ids, as Flux.1's text has (RoPE leaves them unchanged)"
    modulation = "`time_in(t) + guidance_in(g) + vector_in(0)`: the text's, pooled CLIP vector zeroed"
    runs_on_comfyui_0_3 = True
    # The diffusion-model wrapper sees timesteps and guidance exactly as forward_orig does.
    forward_wrapper_type = "diffusion_model"

    def is_variant(self, diffusion_model):
        params = diffusion_model.params
        return not getattr(params, "global_modulation", False) and not getattr(params, "txt_ids_dims", None)

    def context_dim(self, diffusion_model):
        return diffusion_model.params.context_in_dim

    def initial_concepts(self, diffusion_model, embeddings):
        if getattr(diffusion_model, "txt_norm", None) is not None:
            embeddings = diffusion_model.txt_norm(embeddings)
        return diffusion_model.txt_in(embeddings)

    def prepare_forward(self, diffusion_model, forward, call):
        from comfy.ldm.flux.layers import timestep_embedding

        dm = diffusion_model
        dtype = forward.dtype
        timesteps = forward.rows(call["timestep"])
        vec = dm.time_in(timestep_embedding(timesteps, 256).to(dtype))
        guidance = call.get("guidance")
        if dm.params.guidance_embed and guidance is not None:
            vec = vec + dm.guidance_in(timestep_embedding(forward.rows(guidance), 256).to(dtype))
        if dm.vector_in is not None:
            zeros = torch.zeros((vec.shape[0], dm.params.vec_in_dim), device=vec.device, dtype=dtype)
            vec = vec + dm.vector_in(zeros)
        # Modulation applies its Linear to silu(vec); every block's text modulation starts from this.
        forward.family_state["concept_vec_silu"] = torch.nn.functional.silu(vec)

    def text_modulation(self, block, block_args, forward):
        """(shift₁, 1+scale₁, gate₁, shift₂, 1+scale₂, gate₂) for the concept rows, each [Bc, 1, C]:
        the block's txt_mod on the concept vector (its Linear on silu(vec), which Modulation applies)."""
        return forward.block_constant("text_modulation", lambda: split_modulation(
            block.txt_mod.lin(forward.family_state["concept_vec_silu"]), 6))

    def text_id_axes(self, diffusion_model, block_args):
        return list(getattr(diffusion_model.params, "txt_ids_dims", None) or [])

    def concept_rope(self, forward, block_args):
        """The concepts' RoPE table (pe_embedder of their position ids), or None when their ids are zero."""
        diffusion_model = forward.diffusion_model
        axes = self.text_id_axes(diffusion_model, block_args)
        if not axes:
            return None

        def build():
            positions = self.required_text_positions(diffusion_model, forward.session.concepts)
            # Built where the positions are (on the device inside a re-query's CUDA graph: no host copy).
            ids = torch.zeros((1, positions.shape[0], len(diffusion_model.params.axes_dim)), dtype=torch.float32,
                              device=positions.device)
            for axis in axes:
                ids[0, :, axis] = positions
            return diffusion_model.pe_embedder(ids.to(forward.device))

        return forward.session.cached(("concept_rope", tuple(axes)), forward.device, build)
