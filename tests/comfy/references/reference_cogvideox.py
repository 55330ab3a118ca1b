"""An independent re-implementation of ConceptAttention on CogVideoX, from the equations, for the tests.

Nothing here imports or calls the product. It reads the parameters of ComfyUI's CogVideoXTransformer3DModel
and runs the forward op by op in float64:

* the latent [B, C, T, H, W] is padded (circularly, at the end) to whole patches in time and space and cut
  into patches: (C, p, p) per latent frame (1.0), or (C, p_t, p, p) per pair of frames (1.5, p_t = 2); tokens
  run frame by frame, row by row;
* video tokens get a sincos 3-D position table (2B), a learned one (the I2V 1.0 table as ComfyUI detects it),
  or 3-D RoPE on their q/k (5B, 1.5); text gets none;
* timestep features (+ the ofs features of 1.5 I2V) through the time MLP give the modulation input `emb`;
* each block: one LayerNormZero gives video (shift, scale, gate) and text (shift, scale, gate) from emb;
  text and video share the affine LayerNorm, q/k/v, the per-head q/k LayerNorms, the output projection and
  the GELU-tanh FF; joint attention over [text ; video].

The concept stream: c0 = text_proj(e); per block the concepts are modulated with the TEXT share of norm1 /
norm2, go through the shared q/k/v and q/k norms (no RoPE), o_c = softmax(q_c [k_x ; k_c]^T / sqrt(d))
[v_x ; v_c] (k_x after RoPE), then the shared output projection and FF with the text gates. Maps per
selected layer: softmax over concepts of (video attention output . o_c) (or keys . concept queries, values .
concept values), averaged over the layers, on the (T', h', w') token grid: [B, r, T', h', w'].

Two parts follow the model's definition rather than float64: the sinusoidal timestep features and the
position tables (sincos and RoPE) are evaluated in float32, as ComfyUI evaluates them for every dtype.
"""

from __future__ import annotations

import math

import torch

from concept_attention_tests.comfy.references.reference_concept_attention import (
    ConceptSwitches,
    Ops,
    ReferenceResult,
    concept_attention,
    layer_scores,
)

# Deliberate, plausible mistakes the reference makes on request, to show the comparison tells them apart.
COGVIDEOX_DEVIATIONS = (
    "video_modulation_for_concepts",  # concepts take the video share of the LayerNormZero, not the text's
    "ungated_concept_update",         # concept residual updates without the text gates
    "image_keys_before_rope",         # concepts attend to the video keys before RoPE (RoPE variants only)
)


def _affine_layer_norm(ops, norm, x):
    return ops.layer_norm(x, norm.eps) * ops.p(norm.weight) + ops.p(norm.bias)


def _sincos_1d(dim, positions):
    """[cos(p w_j) ; sin(p w_j)], w_j = 10000^(-j/half), float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = positions.float().reshape(-1)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _sincos_3d_table(dim, frames, h, w, spatial_scale, temporal_scale):
    """[frames*h*w, dim]: dim//3 temporal features, then 2*(dim//3) spatial ones (half rows, half columns)."""
    t = torch.arange(frames, dtype=torch.float32) / temporal_scale
    rows = torch.arange(h, dtype=torch.float32) / spatial_scale
    cols = torch.arange(w, dtype=torch.float32) / spatial_scale
    spatial = 2 * (dim // 3)
    tt, rr, cc = torch.meshgrid(t, rows, cols, indexing="ij")
    return torch.cat([_sincos_1d(dim // 3, tt), _sincos_1d(spatial // 2, rr), _sincos_1d(spatial // 2, cc)], dim=-1)


def _rope_tables(dm, frames, h, w):
    """cos, sin [frames*h*w, head_dim] of the model's 3-D RoPE (float32): head_dim/4 features for time, 3/8 each
    for rows and columns, each pair j of an axis of width d rotating by pos * 10000^(-2j/d); 1.0 spaces rows and
    columns by spatial_interpolation_scale, 1.5 numbers them 0, 1, 2, ..."""
    d = dm.attention_head_dim
    widths = (d // 4, d // 8 * 3, d // 8 * 3)
    scale = 1.0 if dm.patch_size_t is not None else dm.spatial_interpolation_scale
    positions = (torch.arange(frames, dtype=torch.float32), torch.arange(h, dtype=torch.float32) * scale,
                 torch.arange(w, dtype=torch.float32) * scale)
    tt, rr, cc = torch.meshgrid(torch.arange(frames), torch.arange(h), torch.arange(w), indexing="ij")
    angles = []
    for width, pos, index in zip(widths, positions, (tt, rr, cc)):
        freqs = 1.0 / (10000.0 ** (torch.arange(0, width, 2, dtype=torch.float32) / width))
        angle = pos[index.reshape(-1)][:, None] * freqs[None]
        angles.append(angle.repeat_interleave(2, dim=-1))
    angle = torch.cat(angles, dim=-1)
    return torch.cos(angle), torch.sin(angle)


def _rotate(x, cos, sin):
    """Interleaved-pair rotation of [B, H, n, D]: pair (a, b) -> (a cos - b sin, b cos + a sin)."""
    a, b = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([-b, a], dim=-1).flatten(-2)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def _patch_tokens(ops, dm, x):
    """Video tokens [B, T'*h'*w', dim] and the grid (T', h', w') of x [B, C, T, H, W]."""
    p, p_t = dm.patch_size, dm.patch_size_t or 1
    T, H, W = x.shape[2:]
    x = torch.nn.functional.pad(x, (0, (p - W % p) % p, 0, (p - H % p) % p, 0, (p_t - T % p_t) % p_t), mode="circular")
    B, C, T, H, W = x.shape
    grid = (T // p_t, H // p, W // p)
    patches = x.reshape(B, C, grid[0], p_t, grid[1], p, grid[2], p).permute(0, 2, 4, 6, 1, 3, 5, 7)
    patches = patches.reshape(B, grid[0] * grid[1] * grid[2], C * p_t * p * p)
    proj = dm.patch_embed.proj
    tokens = patches @ ops.p(proj.weight).reshape(proj.weight.shape[0], -1).t() + ops.p(proj.bias)
    return tokens, grid


def _time_mlp(ops, linear_1, linear_2, features):
    return ops.linear(linear_2, ops.silu(ops.linear(linear_1, features)))


def cogvideox_reference(dm, x, timestep, context, concept_embeddings, layers, space="output", softmax=True,
                        switches: ConceptSwitches | None = None, dtype=torch.float64, deviation: str | None = None,
                        ofs=None) -> ReferenceResult:
    """ConceptAttention maps [B, r, T', h', w'] of a ComfyUI CogVideoX model for the network's own inputs: x
    [B, C, T, H, W] (condition channels included), timestep [B], context = T5 states [B, L, ctx], ofs [B] or None
    (1.5 I2V), and concept embeddings [r, ctx]."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + COGVIDEOX_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    B = x.shape[0]
    img, grid = _patch_tokens(ops, dm, x.to(dtype))
    n = img.shape[1]
    embed = dm.patch_embed
    rope = None
    if dm.use_rotary_positional_embeddings:
        rope = _rope_tables(dm, *grid)
    elif embed.use_learned_positional_embeddings:
        img = img + ops.p(embed.pos_embedding[0, embed.max_text_seq_length:embed.max_text_seq_length + n])
    else:
        table = _sincos_3d_table(dm.dim, *grid, embed.spatial_interpolation_scale, embed.temporal_interpolation_scale)
        img = img + table.to(dtype)

    emb = _time_mlp(ops, dm.time_embedding_linear_1, dm.time_embedding_linear_2,
                    ops.sinusoidal(timestep, dm.time_proj_dim))
    if dm.ofs_embedding_linear_1 is not None and ofs is not None:
        emb = emb + _time_mlp(ops, dm.ofs_embedding_linear_1, dm.ofs_embedding_linear_2,
                              ops.sinusoidal(ofs, dm.ofs_proj_dim))
    txt = ops.linear(embed.text_proj, context.to(dtype))
    concepts = ops.linear(embed.text_proj, concept_embeddings.to(dtype))[None].expand(B, -1, -1)
    L = txt.shape[1]

    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = dm.blocks[i]
        heads = blk.num_heads

        def modulations(norm_zero):
            chunks = ops.linear(norm_zero.linear, ops.silu(emb))[:, None].chunk(6, dim=-1)
            video, text = chunks[:3], chunks[3:]
            return video, text, (video if deviation == "video_modulation_for_concepts" else text)

        def modulated(norm_zero, stream, shift, scale):
            return _affine_layer_norm(ops, norm_zero.norm, stream) * (1 + scale) + shift

        def qkv(stream):
            q = _affine_layer_norm(ops, blk.norm_q, ops.heads(ops.linear(blk.q, stream), heads))
            k = _affine_layer_norm(ops, blk.norm_k, ops.heads(ops.linear(blk.k, stream), heads))
            return q, k, ops.heads(ops.linear(blk.v, stream), heads)

        vm, tm, cm = modulations(blk.norm1)
        q_x, k_x, v_x = qkv(modulated(blk.norm1, img, vm[0], vm[1]))
        q_t, k_t, v_t = qkv(modulated(blk.norm1, txt, tm[0], tm[1]))
        q_c, k_c, v_c = qkv(modulated(blk.norm1, concepts, cm[0], cm[1]))
        k_x_unrotated = k_x
        if rope is not None:
            q_x, k_x = _rotate(q_x, *rope), _rotate(k_x, *rope)
        o = ops.attention(torch.cat([q_t, q_x], dim=2), torch.cat([k_t, k_x], dim=2), torch.cat([v_t, v_x], dim=2))
        o_t, o_x = o[:, :, :L], o[:, :, L:]
        k_seen = k_x_unrotated if deviation == "image_keys_before_rope" else k_x
        o_c = concept_attention(ops, q_c, k_c, v_c, k_seen, v_x, switches)
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_x, o_c, k_x, q_c, v_x, v_c)
            result.concept_out[i] = ops.flat(o_c)
        ungated = deviation == "ungated_concept_update"
        img = img + vm[2] * ops.linear(blk.attn_out, ops.flat(o_x))
        txt = txt + tm[2] * ops.linear(blk.attn_out, ops.flat(o_t))
        concepts = concepts + (1.0 if ungated else cm[2]) * ops.linear(blk.attn_out, ops.flat(o_c))

        def ff(stream):
            return ops.linear(blk.ff_out, ops.gelu_tanh(ops.linear(blk.ff_proj, stream)))

        vm, tm, cm = modulations(blk.norm2)
        img_ff = ff(modulated(blk.norm2, img, vm[0], vm[1]))
        txt_ff = ff(modulated(blk.norm2, txt, tm[0], tm[1]))
        concepts_ff = ff(modulated(blk.norm2, concepts, cm[0], cm[1]))
        img, txt = img + vm[2] * img_ff, txt + tm[2] * txt_ff
        concepts = concepts + (1.0 if ungated else cm[2]) * concepts_ff
        result.block_img.append(img)
        result.block_txt.append(txt)
        result.concepts.append(concepts)

    total = sum(result.layer_scores[i] for i in layers) / len(layers)
    result.maps = total.reshape(B, *grid, -1).permute(0, 4, 1, 2, 3).contiguous()
    return result
