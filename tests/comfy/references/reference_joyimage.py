"""An independent re-implementation of ConceptAttention on JoyImage, from the equations, for the tests.

Nothing here imports or calls the product. It reads the parameters of ComfyUI's JoyImageTransformer3DModel and runs
the text-to-image forward op by op in float64:

* the picture: the latent [B, C, 1, H, W] padded circularly to whole 2x2 patches, each patch (C, 1, 2, 2) flattened
  through img_in (a Conv3d with kernel = stride = the patch: one matrix product); tokens row-major; an edit's
  reference pictures the same way, after the picture;
* the timestep: features [cos(t w_j) ; sin(t w_j)], w_j = 10000^(-j/128) (float32, as ComfyUI evaluates them), then
  time_embedder (Linear, SiLU, Linear) -> temb, vec = time_proj(SiLU(temb)) split into six rows [B, 6, hidden];
* text: text_embedder (Linear, GELU(tanh), Linear) of the encoder states;
* positions: the picture's tokens at (0, row, column), reference k's at (k + 1, row, column); the head's 128
  channels split 16 / 56 / 56 over the three axes, pair j of an axis of width d rotated by pos x theta^(-2j/d)
  (angles in float32), pairs interleaved (channels 2j, 2j+1). Text is not rotated;
* each block: per stream (image: img_*, text: txt_*) the six modulation rows are the stream's table + vec:
  (shift1, scale1, gate1, shift2, scale2, gate2). x_m = LN(x)(1 + scale1) + shift1 (LayerNorm without affine);
  q, k, v = qkv(x_m) split into heads; q, k RMS-normed per head (with their weights); the picture's q, k rotated;
  joint attention over [picture ; references ; text]; x += gate1 proj(o); x += gate2 mlp(LN(x)(1 + scale2) + shift2), the MLP
  Linear, GELU(tanh), Linear.

The concept stream: c0 = text_embedder(e); per block the concepts take the TEXT stream's modulation and modules,
unrotated, and o_c = softmax(q_c [k_picture ; k_c]^T / sqrt(d)) [v_picture ; v_c]; then the text stream's gated
updates. Maps per selected layer: softmax over the concepts of (picture output . o_c), or keys . concept queries, or
values . concept values, heads concatenated; averaged over the layers, on the (h, w) token grid: [B, r, h, w].
"""

from __future__ import annotations

import math

import torch

from concept_attention_tests.comfy.references.reference_concept_attention import (
    ConceptSwitches,
    Ops,
    ReferenceResult,
    concept_attention,
    finish,
    layer_scores,
)

JOYIMAGE_DEVIATIONS = (
    "image_modulation_for_concepts",  # concepts modulated with the block's image-stream rows
    "text_first_order",               # the picture read as if text came first in the joint sequence
    "ungated_concept_update",         # concept residual updates without the text gates
)


def _timestep_features(ops, t, dim=256, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(ops.dtype)


def _rope_angles(dm, h, w, frame=0):
    """[h*w, head_dim / 2] angles of a picture's tokens at (frame, row, column), evaluated in float32."""
    pos = torch.stack(torch.meshgrid(torch.full((1,), float(frame)), torch.arange(h, dtype=torch.float32),
                                     torch.arange(w, dtype=torch.float32), indexing="ij"), dim=0)
    parts = []
    for axis, d in enumerate(dm.rope_dim_list):
        freqs = 1.0 / (dm.theta ** (torch.arange(0, d, 2, dtype=torch.float32)[: d // 2] / d))
        parts.append(pos[axis].reshape(-1)[:, None] * freqs[None])
    return torch.cat(parts, dim=1)


def _rotate(x, angles):
    """Interleaved RoPE of heads-first x [B, H, n, D] by angles [n, D/2]."""
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1).reshape(x.shape)


def _mlp(ops, ff, x):
    return ops.linear(ff.net[2], ops.gelu_tanh(ops.linear(ff.net[0].proj, x)))


def joyimage_reference(dm, x, timestep, context, concept_embeddings, layers, space="output", softmax=True,
                       switches: ConceptSwitches | None = None, dtype=torch.float64,
                       deviation: str | None = None, ref_latents=None) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI JoyImage model for the network inputs x [B, C, 1, H, W], timestep [B],
    context [B, T, ctx], concept embeddings [r, ctx] and the edit's reference pictures (each [B, C, 1, H', W'], as
    the network receives them): they follow the picture in the joint sequence, reference k at frame position k + 1
    with rows and columns from 0; the concepts attend to the picture's tokens only, the maps cover them."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + JOYIMAGE_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    assert x.ndim == 5 and x.shape[2] == 1, "one picture"
    B = x.shape[0]
    patches, grid = ops.patchify(x[:, :, 0].to(dtype), 2)
    h, w = grid
    n = h * w
    conv = dm.img_in

    def embed_picture(p):
        return p @ ops.p(conv.weight).reshape(conv.weight.shape[0], -1).t() + ops.p(conv.bias)

    img = embed_picture(patches)
    angles = [_rope_angles(dm, h, w)]
    for k, ref_latent in enumerate(ref_latents or ()):
        ref_patches, (rh, rw) = ops.patchify(ref_latent[:, :, 0].to(dtype), 2)
        img = torch.cat([img, embed_picture(ref_patches).expand(B, -1, -1)], dim=1)
        angles.append(_rope_angles(dm, rh, rw, frame=k + 1))
    angles = torch.cat(angles, dim=0)
    N = img.shape[1]  # the picture's and the references' tokens

    ce = dm.condition_embedder
    temb = ops.linear(ce.time_embedder.linear_2, ops.silu(ops.linear(ce.time_embedder.linear_1,
                                                                     _timestep_features(ops, timestep))))
    vec = ops.linear(ce.time_proj, ops.silu(temb)).reshape(B, 6, -1)

    def embed_text(states):
        te = ce.text_embedder
        return ops.linear(te.linear_2, ops.gelu_tanh(ops.linear(te.linear_1, states)))

    txt = embed_text(context.to(dtype))
    concepts = embed_text(concept_embeddings.to(dtype))[None].expand(B, -1, -1)
    T = txt.shape[1]
    picture = slice(T, T + n) if deviation == "text_first_order" else slice(0, n)

    def rows(table):
        m = ops.p(table.modulate_table) + vec  # [B, 6, hidden]
        return [m[:, j:j + 1] for j in range(6)]

    def qkv(attn, prefix, xm, heads):
        q, k, v = (ops.heads(t, heads) for t in ops.linear(getattr(attn, f"{prefix}_attn_qkv"), xm).chunk(3, dim=-1))
        qn, kn = getattr(attn, f"{prefix}_attn_q_norm"), getattr(attn, f"{prefix}_attn_k_norm")
        return ops.rms_norm(q, qn.weight, qn.eps), ops.rms_norm(k, kn.weight, kn.eps), v

    def modulated(x_, shift, scale, eps):
        return ops.layer_norm(x_, eps) * (1 + scale) + shift

    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = dm.double_blocks[i]
        a = blk.attn
        heads = a.num_attention_heads
        im, tm = rows(blk.img_mod), rows(blk.txt_mod)
        cm = im if deviation == "image_modulation_for_concepts" else tm
        q_x, k_x, v_x = qkv(a, "img", modulated(img, im[0], im[1], blk.img_norm1.eps), heads)
        q_x, k_x = _rotate(q_x, angles), _rotate(k_x, angles)
        q_t, k_t, v_t = qkv(a, "txt", modulated(txt, tm[0], tm[1], blk.txt_norm1.eps), heads)
        q_c, k_c, v_c = qkv(a, "txt", modulated(concepts, cm[0], cm[1], blk.txt_norm1.eps), heads)
        q, k, v = torch.cat([q_x, q_t], dim=2), torch.cat([k_x, k_t], dim=2), torch.cat([v_x, v_t], dim=2)
        o = ops.attention(q, k, v)
        k_img, v_img, o_img = k[:, :, picture], v[:, :, picture], o[:, :, picture]
        o_c = concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
            result.concept_out[i] = ops.flat(o_c)
        o_flat = ops.flat(o)
        img = img + im[2] * ops.linear(a.img_attn_proj, o_flat[:, :N])
        txt = txt + tm[2] * ops.linear(a.txt_attn_proj, o_flat[:, N:])
        gate1, gate2 = (torch.ones_like(cm[2]), torch.ones_like(cm[5])) if deviation == "ungated_concept_update" \
            else (cm[2], cm[5])
        concepts = concepts + gate1 * ops.linear(a.txt_attn_proj, ops.flat(o_c))
        img = img + im[5] * _mlp(ops, blk.img_mlp, modulated(img, im[3], im[4], blk.img_norm2.eps))
        txt = txt + tm[5] * _mlp(ops, blk.txt_mlp, modulated(txt, tm[3], tm[4], blk.txt_norm2.eps))
        concepts = concepts + gate2 * _mlp(ops, blk.txt_mlp, modulated(concepts, cm[3], cm[4], blk.txt_norm2.eps))
        result.block_img.append(img)
        result.block_txt.append(txt)
        result.concepts.append(concepts)
    return finish(result, layers, B)
