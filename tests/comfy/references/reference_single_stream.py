"""An independent fp64 re-implementation of the shared-weight concept stream of single-stream models.

Nothing here imports or calls the product. It reads the parameters of ComfyUI's own diffusion-model
objects and runs the forward op by op from the equations:

* NextDiT (Z-Image, Lumina 2): time embedding, caption embedder (RMSNorm, Linear) with Z-Image's caption
  pad tokens, context refiner (unmodulated blocks), patch embedding with picture pad tokens, noise refiner,
  then the main layers on [caption ; picture]. A block is
  ``x + tanh(g₁)·N₂(Attn(N₁(x)·(1+s₁)))``, then ``x + tanh(g₂)·N₄(FFN(N₃(x)·(1+s₂)))``, RMS norms N,
  Attn = qkv, per-head RMS q/k norms, RoPE (caption tokens at 1, 2, ... on axis 0; the picture at
  (caption length + 1, row, column)), grouped keys/values repeated to every query head, softmax attention,
  output projection; FFN = w2(silu(w1 x) · w3 x).
* Krea 2 (SingleStreamDiT): text fusion (per-token attention over the 12 tapped layers, a learned
  projection over them, refiner blocks, then txtmlp), patch embedding, then the blocks on [text ; picture]
  with the shared 6-way modulation: ``x + g₁·Attn((1+s₁)·N(x) + b₁)``, ``x + g₂·MLP((1+s₂)·N(x) + b₂)``,
  Attn ending in ``wo(o · sigmoid(gate(x)))``; text ids are zero.

The concept stream (the extension the pack ships for these models): the concepts go through the model's
text preprocessing as one caption of their own (positions: 1 + their position in their own conditioning
for NextDiT), then through every block's shared modules with the text rows' modulation; their queries
attend to [this block's image keys ; concept keys] (``o_c = softmax(q_c [k_x ; k_c]ᵀ/√d) [v_x ; v_c]``), and
their residual is updated with the block's output projection, MLP and gates. The map of a layer is
``softmax_concepts(o_x · o_cᵀ)`` over the picture's tokens (Krea 2: attention outputs before the sigmoid gate).
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.references.reference_concept_attention import (
    ConceptSwitches,
    Ops,
    ReferenceResult,
    apply_rope,
    concept_attention,
    finish,
    flux_rope_tables,
    layer_scores,
)

LUMINA_DEVIATIONS = (
    "concepts_skip_context_refiner",  # concepts enter the blocks straight from cap_embedder
    "concept_positions_at_zero",      # concepts roped at position 0 instead of their caption position
    "update_without_sandwich_norms",  # the concept update skips the post-attention / post-MLP RMS norms
)
KREA2_DEVIATIONS = (
    "maps_after_sigmoid_gate",        # image and concept outputs compared after the sigmoid gate
    "concepts_skip_text_refiner",     # concepts skip txtfusion's refiner blocks
    "ungated_concept_update",         # the concept residual update ignores the block's gates
)

_FP32_EPS = torch.finfo(torch.float32).eps


def _rms(ops, x, weight, eps):
    return ops.rms_norm(x, weight, eps)


def _repeat_kv(x, heads):
    """[B, H_kv, L, D] -> [B, H, L, D], query head h reading key/value head h // (H / H_kv)."""
    rep = heads // x.shape[1]
    return x.repeat_interleave(rep, dim=1)


# ---------------------------------------------------------------------------------------------
# NextDiT (Z-Image, Lumina 2)
# ---------------------------------------------------------------------------------------------


class _NextDiTBlock:
    def __init__(self, ops, blk, dm):
        self.ops, self.blk = ops, blk
        a = blk.attention
        self.heads, self.kv_heads, self.head_dim = a.n_local_heads, a.n_local_kv_heads, a.head_dim
        self.axes, self.theta = list(dm.axes_dims), dm.rope_embedder.theta

    def norm(self, module, x):
        return _rms(self.ops, x, module.weight, module.eps)

    def qkv(self, x, ids):
        ops, a = self.ops, self.blk.attention
        H, K, D = self.heads, self.kv_heads, self.head_dim
        y = x @ ops.p(a.qkv.weight).t()
        q, k, v = y.split([H * D, K * D, K * D], dim=-1)
        q, k, v = ops.heads(q, H), ops.heads(k, K), ops.heads(v, K)
        eps = a.q_norm.eps if a.q_norm.eps is not None else _FP32_EPS  # as the model's fused rms_rope takes it
        q = _rms(ops, q, a.q_norm.weight, eps)
        k = _rms(ops, k, a.k_norm.weight, eps)
        cos, sin = flux_rope_tables(ids, self.axes, self.theta, ops.dtype)
        return apply_rope(q, cos, sin), _repeat_kv(apply_rope(k, cos, sin), H), _repeat_kv(v, H)

    def out(self, o_flat):
        return o_flat @ self.ops.p(self.blk.attention.out.weight).t()

    def ffn(self, x):
        ops, ff = self.ops, self.blk.feed_forward
        return ops.linear(ff.w2, ops.silu(ops.linear(ff.w1, x)) * ops.linear(ff.w3, x))

    def modulation(self, adaln):
        """(s₁, g₁, s₂, g₂), each [B, 1, C]; Z-Image's adaLN is one Linear, Lumina 2's SiLU then Linear."""
        ops, mod = self.ops, self.blk.adaLN_modulation
        linear = mod[-1]
        inp = adaln if len(mod) == 1 else ops.silu(adaln)
        return [m[:, None] for m in ops.linear(linear, inp).chunk(4, dim=-1)]

    def unmodulated(self, x, ids):
        q, k, v = self.qkv(self.norm(self.blk.attention_norm1, x), ids)
        x = x + self.norm(self.blk.attention_norm2, self.out(self.ops.flat(self.ops.attention(q, k, v))))
        return x + self.norm(self.blk.ffn_norm2, self.ffn(self.norm(self.blk.ffn_norm1, x)))

    def modulated(self, x, ids, mod):
        s1, g1, s2, g2 = mod
        q, k, v = self.qkv(self.norm(self.blk.attention_norm1, x) * (1 + s1), ids)
        o = self.ops.attention(q, k, v)
        x = x + torch.tanh(g1) * self.norm(self.blk.attention_norm2, self.out(self.ops.flat(o)))
        x = x + torch.tanh(g2) * self.norm(self.blk.ffn_norm2, self.ffn(self.norm(self.blk.ffn_norm1, x) * (1 + s2)))
        return x, (q, k, v, o)


def _pad_rows(x, token, multiple):
    if not multiple:
        return x, 0
    extra = (-x.shape[1]) % multiple
    return torch.cat([x, token[None].expand(x.shape[0], extra, -1)], dim=1), extra


def _nextdit_patches(dm, x, dtype):
    """NextDiT's patch rows [B, h·w, p·p·C] (each patch as (p, p, C)) and the token grid; circular padding."""
    p = dm.patch_size
    H, W = x.shape[-2:]
    xp = torch.nn.functional.pad(x.to(dtype), (0, (p - W % p) % p, 0, (p - H % p) % p), mode="circular")
    hh, ww = xp.shape[-2] // p, xp.shape[-1] // p
    rows = xp.reshape(x.shape[0], -1, hh, p, ww, p).permute(0, 2, 4, 3, 5, 1).reshape(x.shape[0], hh * ww, -1)
    return rows, (hh, ww)


def _picture_ids(batch, grid, first_axis, n_axes, dtype):
    hh, ww = grid
    ids = torch.zeros((batch, hh * ww, n_axes), dtype=dtype)
    ids[:, :, 0] = first_axis
    ids[:, :, 1] = torch.arange(hh, dtype=dtype).repeat_interleave(ww)
    ids[:, :, 2] = torch.arange(ww, dtype=dtype).repeat(hh)
    return ids


def lumina_reference(dm, x, timesteps, context, concept_embeddings, concept_positions, layers, space="output",
                     softmax=True, switches: ConceptSwitches | None = None, dtype=torch.float64,
                     deviation: str | None = None, pooled=None) -> ReferenceResult:
    """Maps of a ComfyUI NextDiT (Z-Image or Lumina 2) for x [B, C, H, W], timesteps [B] (as the network gets
    them), caption states context [B, T, cap_dim] and concept embeddings [r, cap_dim] at positions [r].
    NewBie: its pooled CLIP vector [B, clip_dim] (zeros where missing) joins the timestep in the adaLN input,
    ``time_text_embed(silu([t ; Linear(RMSNorm(pooled))]))``. Pixel space (RGB patches) changes nothing here:
    its decoder reads the last layer's picture tokens, which no map needs."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + LUMINA_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    B = x.shape[0]
    multiple = dm.pad_tokens_multiple

    t = (1.0 - timesteps.float()) * dm.time_scale  # float32, as the model computes it
    mlp = dm.t_embedder.mlp
    adaln = ops.linear(mlp[2], ops.silu(ops.linear(mlp[0], ops.sinusoidal(t, dm.t_embedder.frequency_embedding_size))))
    if dm.clip_text_pooled_proj is not None:
        norm, proj = dm.clip_text_pooled_proj
        pooled = torch.zeros((B, dm.clip_text_dim), dtype=dtype) if pooled is None else pooled.to(dtype)
        pooled = ops.linear(proj, _rms(ops, pooled, norm.weight, norm.eps))
        adaln = ops.linear(dm.time_text_embed[1], ops.silu(torch.cat([adaln, pooled], dim=-1)))

    def caption_embed(states):
        return ops.linear(dm.cap_embedder[1], _rms(ops, states.to(dtype), dm.cap_embedder[0].weight,
                                                   dm.cap_embedder[0].eps))

    n_axes = len(dm.axes_dims)
    cap = caption_embed(context)
    pad_token = ops.p(dm.cap_pad_token) if multiple else None
    cap, _ = _pad_rows(cap, pad_token, multiple)
    Lc = cap.shape[1]
    cap_ids = torch.zeros((B, Lc, n_axes), dtype=dtype)
    cap_ids[:, :, 0] = torch.arange(Lc, dtype=dtype) + 1.0

    patches, grid = _nextdit_patches(dm, x, dtype)
    img = ops.linear(dm.x_embedder, patches)
    n = img.shape[1]
    img_ids = _picture_ids(B, grid, Lc + 1, n_axes, dtype)
    img, extra = _pad_rows(img, ops.p(dm.x_pad_token) if multiple else None, multiple)
    img_ids = torch.cat([img_ids, torch.zeros((B, extra, n_axes), dtype=dtype)], dim=1)

    blocks = {id(b): _NextDiTBlock(ops, b, dm) for b in [*dm.context_refiner, *dm.noise_refiner, *dm.layers]}
    for blk in dm.context_refiner:
        cap = blocks[id(blk)].unmodulated(cap, cap_ids)
    for blk in dm.noise_refiner:
        img, _ = blocks[id(blk)].modulated(img, img_ids, blocks[id(blk)].modulation(adaln))

    r = concept_embeddings.shape[0]
    concept_ids = torch.zeros((1, r, n_axes), dtype=dtype)
    if deviation != "concept_positions_at_zero":
        concept_ids[0, :, 0] = concept_positions.to(dtype) + 1.0
    # One caption of all concepts; with concept self-attention off, one caption per concept.
    concepts = caption_embed(concept_embeddings)[None]
    if not switches.self_attention:
        concepts, concept_ids = concepts.transpose(0, 1), concept_ids.transpose(0, 1)
    if deviation != "concepts_skip_context_refiner":
        for blk in dm.context_refiner:
            concepts = blocks[id(blk)].unmodulated(concepts, concept_ids)
    if not switches.self_attention:
        concepts, concept_ids = concepts.transpose(0, 1), concept_ids.transpose(0, 1)
    concepts = concepts.expand(B, -1, -1)

    joint = torch.cat([cap, img], dim=1)
    ids = torch.cat([cap_ids, img_ids], dim=1)
    image = slice(Lc, Lc + n)
    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = blocks[id(dm.layers[i])]
        mod = blk.modulation(adaln)
        joint, (q, k, v, o) = blk.modulated(joint, ids, mod)
        k_img, v_img, o_img = k[:, :, image], v[:, :, image], o[:, :, image]
        s1, g1, s2, g2 = mod
        q_c, k_c, v_c = blk.qkv(blk.norm(blk.blk.attention_norm1, concepts) * (1 + s1), concept_ids.expand(B, -1, -1))
        o_c = concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
            result.concept_out[i] = ops.flat(o_c)
        post = (lambda norm, x_: x_) if deviation == "update_without_sandwich_norms" else blk.norm
        concepts = concepts + torch.tanh(g1) * post(blk.blk.attention_norm2, blk.out(ops.flat(o_c)))
        ffn_in = blk.norm(blk.blk.ffn_norm1, concepts) * (1 + s2)
        concepts = concepts + torch.tanh(g2) * post(blk.blk.ffn_norm2, blk.ffn(ffn_in))
    return finish(result, layers, B)


def z_image_omni_reference(dm, x, timesteps, context, references, concept_embeddings, concept_positions, layers,
                           space="output", softmax=True, dtype=torch.float64,
                           deviation: str | None = None) -> ReferenceResult:
    """Maps of a Z-Image Omni NextDiT (SigLIP embedder, pad tokens) with reference pictures and no SigLIP features.

    Sequence: [each reference's caption (32 pad tokens) ; the caption (padded)] then [a SigLIP pad block (32) per
    reference and for the picture] then [each reference picture (padded) ; the picture (padded)]. RoPE axis 0
    counts on from reference to reference (a reference's caption at offset+1.., its picture at offset+1, the next
    offset 2 further on; the caption at offset+1.., the picture at offset + caption length + 1); SigLIP pads at 0.
    Modulation per token: the caption and the picture read the timestep, everything of the references (and the
    SigLIP pads) timestep 0. The concepts: as lumina_reference, with the timestep's modulation
    (deviation "concepts_at_timestep_zero": the references' rows instead)."""
    ops = Ops(dtype)
    layers = sorted(set(layers))
    B = x.shape[0]
    multiple = dm.pad_tokens_multiple
    n_axes = len(dm.axes_dims)
    mlp = dm.t_embedder.mlp

    def time_vec(tt):
        f = ops.sinusoidal((1.0 - tt.float()) * dm.time_scale, dm.t_embedder.frequency_embedding_size)
        return ops.linear(mlp[2], ops.silu(ops.linear(mlp[0], f)))

    adaln, adaln0 = time_vec(timesteps), time_vec(timesteps * 0)

    def pads(token, count, first_id=None):
        rows = ops.p(token)[None].expand(B, count, -1)
        ids = torch.zeros((B, count, n_axes), dtype=dtype)
        if first_id is not None:
            ids[:, :, 0] = torch.arange(count, dtype=dtype) + first_id
        return rows, ids

    def padded_picture(latent, first_axis):
        rows, grid = _nextdit_patches(dm, latent.expand(B, -1, -1, -1), dtype)
        img = ops.linear(dm.x_embedder, rows)
        ids = _picture_ids(B, grid, first_axis, n_axes, dtype)
        img, extra = _pad_rows(img, ops.p(dm.x_pad_token), multiple)
        return img, torch.cat([ids, torch.zeros((B, extra, n_axes), dtype=dtype)], dim=1), grid, rows.shape[1]

    caps, sigs, pics = [], [], []  # (rows, ids, timestep-0?) per segment
    offset = 0.0
    for latent in references:
        caps.append((*pads(dm.cap_pad_token, multiple, offset + 1.0), True))
        sigs.append((*pads(dm.siglip_pad_token, multiple), True))
        img, ids, _, _ = padded_picture(latent, offset + 1.0)
        pics.append((img, ids, True))
        offset += 2.0
    cap_rows = ops.linear(dm.cap_embedder[1], _rms(ops, context.to(dtype), dm.cap_embedder[0].weight,
                                                   dm.cap_embedder[0].eps))
    T = cap_rows.shape[1]
    cap_rows, _ = _pad_rows(cap_rows, ops.p(dm.cap_pad_token), multiple)
    cap_ids = torch.zeros((B, cap_rows.shape[1], n_axes), dtype=dtype)
    cap_ids[:, :, 0] = torch.arange(cap_rows.shape[1], dtype=dtype) + 1.0 + offset
    caps.append((cap_rows, cap_ids, False))
    sigs.append((*pads(dm.siglip_pad_token, multiple), True))
    img, img_ids, grid, n = padded_picture(x, offset + T + 1.0)
    pics.append((img, img_ids, False))

    blocks = {id(b): _NextDiTBlock(ops, b, dm) for b in [*dm.context_refiner, *dm.siglip_refiner, *dm.noise_refiner,
                                                          *dm.layers]}

    def joined(segments):
        return (torch.cat([s[0] for s in segments], dim=1), torch.cat([s[1] for s in segments], dim=1),
                [s[0].shape[1] for s in segments], [s[2] for s in segments])

    def per_token_mod(blk, lengths, at_zero):
        real, zero = blk.modulation(adaln), blk.modulation(adaln0)
        return [torch.cat([(z if z0 else r).expand(B, length, -1) for length, z0 in zip(lengths, at_zero)], dim=1)
                for r, z in zip(real, zero)]

    cap, cap_ids, cap_lengths, cap_zero = joined(caps)
    for blk in dm.context_refiner:
        cap = blocks[id(blk)].unmodulated(cap, cap_ids)
    sig, sig_ids, sig_lengths, sig_zero = joined(sigs)
    for blk in dm.siglip_refiner:
        sig = blocks[id(blk)].unmodulated(sig, sig_ids)
    pic, pic_ids, pic_lengths, pic_zero = joined(pics)
    for blk in dm.noise_refiner:
        pic, _ = blocks[id(blk)].modulated(pic, pic_ids, per_token_mod(blocks[id(blk)], pic_lengths, pic_zero))

    r = concept_embeddings.shape[0]
    concept_ids = torch.zeros((1, r, n_axes), dtype=dtype)
    concept_ids[0, :, 0] = concept_positions.to(dtype) + 1.0
    concepts = ops.linear(dm.cap_embedder[1], _rms(ops, concept_embeddings.to(dtype)[None], dm.cap_embedder[0].weight,
                                                   dm.cap_embedder[0].eps))
    for blk in dm.context_refiner:
        concepts = blocks[id(blk)].unmodulated(concepts, concept_ids)
    concepts = concepts.expand(B, -1, -1)

    joint = torch.cat([cap, sig, pic], dim=1)
    ids = torch.cat([cap_ids, sig_ids, pic_ids], dim=1)
    lengths, at_zero = cap_lengths + sig_lengths + pic_lengths, cap_zero + sig_zero + pic_zero
    start = joint.shape[1] - pic_lengths[-1]
    image = slice(start, start + n)
    switches = ConceptSwitches()
    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = blocks[id(dm.layers[i])]
        joint, (q, k, v, o) = blk.modulated(joint, ids, per_token_mod(blk, lengths, at_zero))
        s1, g1, s2, g2 = blk.modulation(adaln0 if deviation == "concepts_at_timestep_zero" else adaln)
        q_c, k_c, v_c = blk.qkv(blk.norm(blk.blk.attention_norm1, concepts) * (1 + s1), concept_ids.expand(B, -1, -1))
        o_c = concept_attention(ops, q_c, k_c, v_c, k[:, :, image], v[:, :, image], switches)
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o[:, :, image], o_c, k[:, :, image], q_c,
                                                   v[:, :, image], v_c)
        concepts = concepts + torch.tanh(g1) * blk.norm(blk.blk.attention_norm2, blk.out(ops.flat(o_c)))
        ffn_in = blk.norm(blk.blk.ffn_norm1, concepts) * (1 + s2)
        concepts = concepts + torch.tanh(g2) * blk.norm(blk.blk.ffn_norm2, blk.ffn(ffn_in))
    return finish(result, layers, B)


# ---------------------------------------------------------------------------------------------
# Krea 2
# ---------------------------------------------------------------------------------------------


def _krea_norm(ops, norm, x):
    """Krea 2's RMSNorm: weight 1 + scale (the scale is stored zero-centred)."""
    return _rms(ops, x, norm.scale.detach().to(ops.dtype) + 1.0, norm.eps)


def _krea_attention(ops, attn, x, rope=None):
    """(o [B, H, L, D] before the gate, sigmoid(gate(x)) [B, L, C], q, k, v) of a Krea 2 Attention on x."""
    q = ops.heads(ops.linear(attn.wq, x), attn.heads)
    k = ops.heads(ops.linear(attn.wk, x), attn.kvheads)
    v = ops.heads(ops.linear(attn.wv, x), attn.kvheads)
    q, k = _krea_norm(ops, attn.qknorm.qnorm, q), _krea_norm(ops, attn.qknorm.knorm, k)
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    k, v = _repeat_kv(k, attn.heads), _repeat_kv(v, attn.heads)
    o = ops.attention(q, k, v)
    gate = 1.0 / (1.0 + torch.exp(-ops.linear(attn.gate, x)))
    return o, gate, q, k, v


def _krea_mlp(ops, mlp, x):
    return ops.linear(mlp.down, ops.silu(ops.linear(mlp.gate, x)) * ops.linear(mlp.up, x))


def _krea_text_block(ops, blk, x):
    o, gate, *_ = _krea_attention(ops, blk.attn, _krea_norm(ops, blk.prenorm, x))
    x = x + ops.linear(blk.attn.wo, ops.flat(o) * gate)
    return x + _krea_mlp(ops, blk.mlp, _krea_norm(ops, blk.postnorm, x))


def _krea_text(ops, dm, stack, refine=True):
    """txtmlp(txtfusion(stack)) for stack [B, L, layers, width]."""
    b, length, n, d = stack.shape
    x = stack.reshape(b * length, n, d)
    for blk in dm.txtfusion.layerwise_blocks:
        x = _krea_text_block(ops, blk, x)
    x = x.reshape(b, length, n, d).permute(0, 1, 3, 2)  # [B, L, width, layers]
    x = ops.linear(dm.txtfusion.projector, x)[..., 0]
    if refine:
        for blk in dm.txtfusion.refiner_blocks:
            x = _krea_text_block(ops, blk, x)
    m = dm.txtmlp
    x = _krea_norm(ops, m[0], x)
    return ops.linear(m[3], ops.gelu_tanh(ops.linear(m[1], x)))


def krea2_reference(dm, x, timesteps, context, concept_embeddings, layers, space="output", softmax=True,
                    switches: ConceptSwitches | None = None, dtype=torch.float64,
                    deviation: str | None = None, reference=None) -> ReferenceResult:
    """Maps of a ComfyUI Krea 2 SingleStreamDiT for x [B, C, H, W] (one frame), timesteps [B], context
    [B, T, layers·width] (the 12 tapped layers side by side) and concept embeddings [r, layers·width].
    reference: a reference picture's latent [1, C, h, w] after the picture (ids (1, row, column)), modulated with
    timestep 0 (index_timestep_zero); text and picture keep the timestep's modulation."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + KREA2_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    B = x.shape[0]
    n_layers, width = dm.txtlayers, dm.txtdim

    txt = _krea_text(ops, dm, context.to(dtype).reshape(B, context.shape[1], n_layers, width))
    r = concept_embeddings.shape[0]
    stack = concept_embeddings.to(dtype).reshape(1, r, n_layers, width)
    if not switches.self_attention:  # one caption per concept
        stack = stack.transpose(0, 1)
    concepts = _krea_text(ops, dm, stack, refine=deviation != "concepts_skip_text_refiner")
    if not switches.self_attention:
        concepts = concepts.transpose(0, 1)
    concepts = concepts.expand(B, -1, -1)

    patches, grid = ops.patchify(x.to(dtype), dm.patch)
    img = ops.linear(dm.first, patches)
    t = ops.sinusoidal(timesteps.float() * 1000.0, dm.tdim)
    tm = dm.tmlp
    temb = ops.linear(tm[2], ops.gelu_tanh(ops.linear(tm[0], t)))[:, None]
    tvec = ops.linear(dm.tproj[1], ops.gelu_tanh(temb))

    def picture_ids(grid_hw, index):
        h_, w_ = grid_hw
        out = torch.zeros((B, h_ * w_, 3), dtype=dtype)
        out[:, :, 0] = index
        out[:, :, 1] = torch.arange(h_, dtype=dtype).repeat_interleave(w_)
        out[:, :, 2] = torch.arange(w_, dtype=dtype).repeat(h_)
        return out

    T, n = txt.shape[1], img.shape[1]
    ids = torch.cat([torch.zeros((B, T, 3), dtype=dtype), picture_ids(grid, 0.0)], dim=1)
    joint = torch.cat([txt, img], dim=1)
    n_ref, tvec0 = 0, None
    if reference is not None:
        ref_patches, ref_grid = ops.patchify(reference.to(dtype).expand(B, -1, -1, -1), dm.patch)
        joint = torch.cat([joint, ops.linear(dm.first, ref_patches)], dim=1)
        ids = torch.cat([ids, picture_ids(ref_grid, 1.0)], dim=1)
        n_ref = ref_patches.shape[1]
        t0 = ops.sinusoidal(torch.zeros_like(timesteps, dtype=torch.float32), dm.tdim)
        tvec0 = ops.linear(dm.tproj[1], ops.gelu_tanh(ops.linear(tm[2], ops.gelu_tanh(ops.linear(tm[0], t0)))[:, None]))
    rope = flux_rope_tables(ids, dm.pe_embedder.axes_dim, dm.pe_embedder.theta, dtype)

    image = slice(T, T + n)
    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = dm.blocks[i]
        mods = (tvec + ops.p(blk.mod.lin)).chunk(6, dim=-1)
        s1, b1, g1, s2, b2, g2 = mods  # the text's (and the concepts')
        if tvec0 is not None:  # per token: text and picture at the timestep, the reference at timestep 0
            mods0 = (tvec0 + ops.p(blk.mod.lin)).chunk(6, dim=-1)
            mods = [torch.cat([m.expand(B, T + n, -1), m0.expand(B, n_ref, -1)], dim=1) for m, m0 in zip(mods, mods0)]
        js1, jb1, jg1, js2, jb2, jg2 = mods
        o, gate, q, k, v = _krea_attention(ops, blk.attn, (1 + js1) * _krea_norm(ops, blk.prenorm, joint) + jb1, rope)
        k_img, v_img, o_img = k[:, :, image], v[:, :, image], o[:, :, image]
        xc = (1 + s1) * _krea_norm(ops, blk.prenorm, concepts) + b1
        a = blk.attn
        q_c = _krea_norm(ops, a.qknorm.qnorm, ops.heads(ops.linear(a.wq, xc), a.heads))
        k_c = _repeat_kv(_krea_norm(ops, a.qknorm.knorm, ops.heads(ops.linear(a.wk, xc), a.kvheads)), a.heads)
        v_c = _repeat_kv(ops.heads(ops.linear(a.wv, xc), a.kvheads), a.heads)
        o_c = concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)
        gate_c = 1.0 / (1.0 + torch.exp(-ops.linear(a.gate, xc)))
        if i in layers:
            if deviation == "maps_after_sigmoid_gate":
                gi = ops.heads(gate[:, image], a.heads)
                gc = ops.heads(gate_c, a.heads)
                result.layer_scores[i] = layer_scores(ops, space, softmax, o_img * gi, o_c * gc, k_img, q_c, v_img,
                                                       v_c)
            else:
                result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
            result.concept_out[i] = ops.flat(o_c)
        joint = joint + jg1 * ops.linear(a.wo, ops.flat(o) * gate)
        joint = joint + jg2 * _krea_mlp(ops, blk.mlp, (1 + js2) * _krea_norm(ops, blk.postnorm, joint) + jb2)
        c1, c2 = (torch.ones_like(g1), torch.ones_like(g2)) if deviation == "ungated_concept_update" else (g1, g2)
        concepts = concepts + c1 * ops.linear(a.wo, ops.flat(o_c) * gate_c)
        concepts = concepts + c2 * _krea_mlp(ops, blk.mlp, (1 + s2) * _krea_norm(ops, blk.postnorm, concepts) + b2)
    return finish(result, layers, B)


__all__ = ["KREA2_DEVIATIONS", "LUMINA_DEVIATIONS", "krea2_reference", "lumina_reference", "z_image_omni_reference"]
