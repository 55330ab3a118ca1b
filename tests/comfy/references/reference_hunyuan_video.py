"""An independent re-implementation of ConceptAttention on HunyuanVideo 1, 1.5 and HunyuanImage 2.1 for the tests.

Nothing here imports or calls the product (``concept_attention.*``) or runs a ComfyUI module's forward: it reads the
parameters of ComfyUI's HunyuanVideo (``model_patcher.model.diffusion_model``) and writes the forward out, op by op
(the elementary ops, RoPE and the concept-attention equations are those of reference_concept_attention):

* patch embedding (circular padding to whole patches, one matmul per patch), RoPE ids (frame, row, column; 2-D on
  HunyuanImage 2.1), reference-latent tokens before the picture with ids (-1, row, column + width);
* vec = time_in(t) [+ vector_in(pooled CLIP-L)] [+ guidance_in(g)]; with guiding_frame_index two rows per picture,
  (vector_in + time_in(index), vector_in + time_in(t)), the first frame's image tokens taking row 0, all else row 1;
* the TokenRefiner on the LLM states: c = t_embedder(t) + c_embedder(mean of the sequence), input_embedder, then
  each refiner block: x += proj(attention(qkv(LN(x)))) * gate1(c); x += mlp(LN(x)) * gate2(c) (affine LayerNorms);
  cond_type_embedding(0) on 1.5; byT5 glyph states through byt5_in (before the text on 1.5, after it on 2.1) and
  vision states through vision_in (before the text), each with its type embedding on 1.5;
* every double block (Flux's DoubleStreamBlock): modulations, LayerNorm, qkv, RMS q/k-norm, RoPE on
  [text ; image], joint attention, gated residuals.

The concept stream: each concept's pooled vector e is refined as a sequence of its own of one token at the forward's
timestep (c = t_embedder(t) + c_embedder(e); attention over one token gives its value), plus cond_type_embedding(0)
on 1.5; in each block it is modulated with the block's txt_mod of the vec row the text takes, runs through the text
qkv and q/k-norm (no RoPE: text ids are zero), attends to [picture keys ; concept keys], and is updated with the
text projection / MLP and their gates. Maps: per selected layer softmax over concepts of the picture's tokens
(never the reference latent's) against the concepts in the chosen space, averaged over the layers, reshaped to the
token grid: [B, r, frames, h, w] for video, [B, r, h, w] for HunyuanImage 2.1.
"""

from __future__ import annotations

import math

import torch

from concept_attention_tests.comfy.references.reference_concept_attention import (
    ConceptSwitches,
    Ops,
    affine_layer_norm,
    flux_mlp,
    flux_rope_tables,
    layer_scores,
    mlp_embed,
    rms_eps,
    rms_scale,
    roped_joint_attention,
)

# Deliberate, plausible implementation mistakes the reference can make on request, so a test can show that the map
# comparison tells them apart from the method (never used otherwise).
DEVIATIONS = (
    "refiner_without_timestep",   # the concepts' refiner conditioning lacks t_embedder(t)
    "projection_only_txt_in",     # concepts only through the refiner's input_embedder (no refiner blocks)
    "ungated_concept_update",     # concept residual updates without the text gates
)
GUIDING_DEVIATIONS = ("image_vec_row_for_concepts",)  # concepts modulated with vec row 0 (the first frame's)
REF_LATENT_DEVIATIONS = ("reference_tokens_as_picture",)  # maps read the tokens right after the text
TYPE_EMBEDDING_DEVIATIONS = ("no_cond_type_embedding",)  # HunyuanVideo 1.5 concepts without the text type


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _patch_embed(ops, embed, x):
    """Conv with kernel = stride = patch after circular padding to whole patches: [B, n, hidden], token grid."""
    patch = list(embed.patch_size)
    pad = []
    for i in reversed(range(len(patch))):
        pad += [0, (patch[i] - x.shape[2 + i] % patch[i]) % patch[i]]
    if any(pad):
        x = torch.nn.functional.pad(x, pad, mode="circular")
    b, c = x.shape[:2]
    grid = [x.shape[2 + i] // patch[i] for i in range(len(patch))]
    shape = [b, c]
    for g, p in zip(grid, patch):
        shape += [g, p]
    x = x.reshape(shape)
    dims = len(patch)
    # [B, C, g0, p0, g1, p1, ...] -> [B, g0, g1, ..., C, p0, p1, ...]
    order = [0] + [2 + 2 * i for i in range(dims)] + [1] + [3 + 2 * i for i in range(dims)]
    patches = x.permute(order).reshape(b, math.prod(grid), -1)
    proj = embed.proj
    out = patches @ ops.p(proj.weight).reshape(proj.weight.shape[0], -1).t()
    return (out if proj.bias is None else out + ops.p(proj.bias)), tuple(grid)


def _grid_ids(ops, grid, offset=(0.0, 0.0, 0.0)):
    axes = [torch.arange(g, dtype=ops.dtype) + off for g, off in zip(grid, offset)]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=-1).reshape(-1, len(grid))


def refine_tokens(ops, refiner, x, timesteps, deviation=None):
    """The TokenRefiner on sequences x [N, L, text_dim] at timesteps [N] (no padding mask)."""
    t = mlp_embed(ops, refiner.t_embedder, ops.sinusoidal(timesteps.double(), 256))
    c = mlp_embed(ops, refiner.c_embedder, x.mean(dim=1))
    if deviation != "refiner_without_timestep":
        c = c + t
    h = ops.linear(refiner.input_embedder, x)
    if deviation == "projection_only_txt_in":
        return h
    for blk in refiner.individual_token_refiner.blocks:
        gate1, gate2 = ops.linear(blk.adaLN_modulation[1], ops.silu(c)).chunk(2, dim=-1)
        qkv = ops.linear(blk.self_attn.qkv, affine_layer_norm(ops, blk.norm1, h))
        n, length = qkv.shape[:2]
        q, k, v = qkv.view(n, length, 3, blk.heads, -1).permute(2, 0, 3, 1, 4)
        h = h + ops.linear(blk.self_attn.proj, ops.flat(ops.attention(q, k, v))) * gate1[:, None]
        mlp = blk.mlp
        hidden = ops.silu(ops.linear(mlp[0], affine_layer_norm(ops, blk.norm2, h)))
        h = h + ops.linear(mlp[2], hidden) * gate2[:, None]
    return h


def _type_embedding(ops, dm, kind):
    return ops.p(dm.cond_type_embedding.weight[kind])


def _byt5_in(ops, mapper, x):
    x = affine_layer_norm(ops, mapper.layernorm, x)
    x = _gelu(ops.linear(mapper.fc2, _gelu(ops.linear(mapper.fc1, x))))
    return ops.linear(mapper.fc3, x)


def _vision_in(ops, proj, x):
    seq = proj.proj
    x = ops.linear(seq[1], affine_layer_norm(ops, seq[0], x))
    return affine_layer_norm(ops, seq[4], ops.linear(seq[3], _gelu(x)))


def _mod(ops, modulation, vec):
    """lin(silu(vec)) -> six [B, rows, hidden] chunks (rows: 1, or 2 with guiding_frame_index)."""
    out = ops.linear(modulation.lin, ops.silu(vec))
    if out.ndim == 2:
        out = out[:, None]
    return out.chunk(6, dim=-1)


def _per_token(chunk, token_rows):
    """Modulation chunk [B, rows, C] spread over tokens by token_rows [L] (the vec row each token takes)."""
    return chunk[:, token_rows]


def _stream_qkv(ops, blk, attn, norm1, shift, scale, x):
    xm = ops.layer_norm(x, norm1.eps) * (1 + scale) + shift
    qkv = ops.linear(attn.qkv, xm)
    b, length = qkv.shape[:2]
    q, k, v = qkv.view(b, length, 3, blk.num_heads, -1).permute(2, 0, 3, 1, 4)
    qn, kn = attn.norm.query_norm, attn.norm.key_norm
    return ops.rms_norm(q, rms_scale(qn), rms_eps(qn)), ops.rms_norm(k, rms_scale(kn), rms_eps(kn)), v


def _stream_update(ops, attn, norm2, mlp, mods, x, attn_out):
    _, _, gate1, shift2, scale2, gate2 = mods
    x = x + ops.linear(attn.proj, attn_out) * gate1
    return x + flux_mlp(ops, mlp, ops.layer_norm(x, norm2.eps) * (1 + scale2) + shift2) * gate2


def hunyuan_video_reference(dm, call: dict, concept_embeddings, layers, space="output", softmax=True,
                            switches: ConceptSwitches | None = None, dtype=torch.float64, deviation=None):
    """Maps [B, r, (frames,) h, w] (dtype of the computation) of one model call on all its rows.

    call: the diffusion model's own inputs by name (x, timestep, context, y, txt_byt5, clip_fea, guidance,
    attention_mask, guiding_frame_index, ref_latent), the rows to read already selected; concept_embeddings [r, ctx]."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + DEVIATIONS + GUIDING_DEVIATIONS + REF_LATENT_DEVIATIONS + TYPE_EMBEDDING_DEVIATIONS
    assert call.get("attention_mask") is None, "the reference covers unpadded prompts"
    ops = Ops(dtype)
    prm = dm.params
    layers = sorted(set(layers))
    x = call["x"].to(dtype)
    timesteps = call["timestep"]
    B = x.shape[0]

    img, grid = _patch_embed(ops, dm.img_in, x)
    ids = _grid_ids(ops, grid)
    n = img.shape[1]
    ref = call.get("ref_latent")
    n_ref = 0
    if ref is not None:
        ref_img, ref_grid = _patch_embed(ops, dm.img_in, ref.to(dtype))
        ref_ids = _grid_ids(ops, ref_grid, (-1.0, 0.0, float(grid[-1])))
        ref_ids[:, 0] = -1.0
        img, ids = torch.cat([ref_img, img], dim=1), torch.cat([ref_ids, ids], dim=0)
        n_ref = ref_img.shape[1]

    vec = mlp_embed(ops, dm.time_in, ops.sinusoidal(timesteps.double(), 256))
    pooled = mlp_embed(ops, dm.vector_in, call["y"][:, : prm.vec_in_dim].to(dtype)) if dm.vector_in is not None else 0
    guiding = call.get("guiding_frame_index")
    img_rows = torch.zeros(img.shape[1], dtype=torch.long)
    text_row = 0
    if guiding is not None:
        replace = mlp_embed(ops, dm.time_in, ops.sinusoidal(guiding.double(), 256))
        vec = torch.stack([pooled + replace, pooled + vec], dim=1)  # [B, 2, C]
        frame_tokens = grid[-1] * grid[-2]
        img_rows[frame_tokens:] = 1
        text_row = 1
    else:
        vec = (vec + pooled)[:, None]  # [B, 1, C]
    if prm.guidance_embed and call.get("guidance") is not None:
        vec = vec + mlp_embed(ops, dm.guidance_in, ops.sinusoidal(call["guidance"].double() * 1000.0, 256))[:, None]

    txt = refine_tokens(ops, dm.txt_in, call["context"].to(dtype), timesteps)
    typed = dm.cond_type_embedding is not None
    if typed:
        txt = txt + _type_embedding(ops, dm, 0)
    if dm.byt5_in is not None and call.get("txt_byt5") is not None:
        glyphs = _byt5_in(ops, dm.byt5_in, call["txt_byt5"].to(dtype))
        txt = torch.cat([glyphs + _type_embedding(ops, dm, 1), txt], dim=1) if typed else torch.cat([txt, glyphs], 1)
    if call.get("clip_fea") is not None:
        vision = _vision_in(ops, dm.vision_in, call["clip_fea"].to(dtype))
        if typed:
            vision = vision + _type_embedding(ops, dm, 2)
        txt = torch.cat([vision, txt], dim=1)
    T = txt.shape[1]
    all_ids = torch.cat([torch.zeros((T, ids.shape[1]), dtype=dtype), ids], dim=0)[None].expand(B, -1, -1)
    cos, sin = flux_rope_tables(all_ids, prm.axes_dim, prm.theta, dtype)

    r = concept_embeddings.shape[0]
    e = concept_embeddings.to(dtype)[None].expand(B, -1, -1).reshape(B * r, 1, -1)
    refiner_deviation = deviation if deviation in ("refiner_without_timestep", "projection_only_txt_in") else None
    concepts = refine_tokens(ops, dm.txt_in, e, timesteps.repeat_interleave(r), refiner_deviation).reshape(B, r, -1)
    if typed and deviation != "no_cond_type_embedding":
        concepts = concepts + _type_embedding(ops, dm, 0)
    concept_row = 0 if deviation == "image_vec_row_for_concepts" else text_row
    start = T if deviation == "reference_tokens_as_picture" else T + n_ref
    picture = slice(start, start + n)

    scores = {}
    for i in range(layers[-1] + 1):
        blk = dm.double_blocks[i]
        img_mod = [_per_token(c, img_rows) for c in _mod(ops, blk.img_mod, vec)]
        txt_mod_rows = _mod(ops, blk.txt_mod, vec)
        txt_mod = [c[:, text_row:text_row + 1] for c in txt_mod_rows]
        con_mod = [c[:, concept_row:concept_row + 1] for c in txt_mod_rows]

        q_x, k_x, v_x = _stream_qkv(ops, blk, blk.img_attn, blk.img_norm1, img_mod[0], img_mod[1], img)
        q_t, k_t, v_t = _stream_qkv(ops, blk, blk.txt_attn, blk.txt_norm1, txt_mod[0], txt_mod[1], txt)
        q_c, k_c, v_c = _stream_qkv(ops, blk, blk.txt_attn, blk.txt_norm1, con_mod[0], con_mod[1], concepts)
        o, o_c, (o_img, k_img, v_img) = roped_joint_attention(ops, (q_t, q_x), (k_t, k_x), (v_t, v_x), cos, sin, picture,
                                                              (q_c, k_c, v_c), switches)
        if i in layers:
            scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)

        o_flat = ops.flat(o)
        img = _stream_update(ops, blk.img_attn, blk.img_norm2, blk.img_mlp, img_mod, img, o_flat[:, T:])
        txt = _stream_update(ops, blk.txt_attn, blk.txt_norm2, blk.txt_mlp, txt_mod, txt, o_flat[:, :T])
        if deviation == "ungated_concept_update":
            con_mod = con_mod[:2] + [torch.ones_like(con_mod[2])] + con_mod[3:5] + [torch.ones_like(con_mod[5])]
        concepts = _stream_update(ops, blk.txt_attn, blk.txt_norm2, blk.txt_mlp, con_mod, concepts, ops.flat(o_c))

    total = sum(scores[i] for i in layers) / len(layers)  # [B, n, r]
    maps = total.reshape(B, *grid, r)  # grid: (frames, h, w) for video, (h, w) for pictures
    return maps.permute(0, len(grid) + 1, *range(1, len(grid) + 1)).contiguous()
