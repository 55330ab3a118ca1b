"""An independent re-implementation of ConceptAttention (SPEC section 2) for the tests.

Nothing here imports or calls the product (``concept_attention.*``). It takes ComfyUI's own
diffusion-model objects (``model_patcher.model.diffusion_model``), reads their parameters, and
runs the forward itself, op by op, from the equations:

* Flux.1 (comfy.ldm.flux.model.Flux): patchify + img_in, time/guidance/vector embeddings,
  txt_in, then every DoubleStreamBlock: modulation, LayerNorm, qkv, RMS q/k-norm, RoPE on
  [text ; image] (text and concept positions are zero), joint attention, gated residuals.
* Chroma (comfy.ldm.chroma.model.Chroma): Flux.1's double blocks, their modulations from the
  distilled guidance layer (timestep, guidance and a per-vector index through an MLP stack).
* SD3 / SD3.5 (comfy MMDiT): patch embedding + cropped absolute position embedding,
  timestep + pooled-vector embedding, context_embedder, then every JointBlock (context_block
  and x_block, pre_only last context block, MMDiT-X attn2 on the image stream).

The concept stream rides along as the spec says: ``c0 = txt_in(e)`` / ``context_embedder(e)``;
each block modulates the concepts with its *text* modulation (Flux: of
``time_in(t) + guidance_in(g) + vector_in(0)``; SD3: of the block's own c_mod), builds
q_c, k_c, v_c with the text qkv and q/k-norm, and computes
``o_c = softmax(q_c [k_x ; k_c]^T / sqrt(d)) [v_x ; v_c]`` per head (self attention = the
concept keys, cross attention = the image keys; with both off ``o_c = v_c``), then applies the
text projection / MLP with their gates (not in SD3's pre_only last block).

Maps: per selected layer ``S_L = softmax_concepts(image_vectors . concept_vectors^T)`` with
space ``output`` (o_x . o_c), ``cross_attention`` (post-RoPE image keys . concept queries) or
``value`` (v_x . v_c), heads concatenated, main image tokens only; the mean over the selected
layers is reshaped to the token grid ``[B, r, h, w]``.

Everything is computed in ``dtype`` (float64 by default): weights are read from the modules
and applied with explicit matmuls; softmax, norms, activations and RoPE are written out. One
exception follows the model's definition rather than the dtype: the sinusoidal timestep /
guidance features are evaluated in float32, as ComfyUI evaluates them for every model dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

SPACES = ("output", "cross_attention", "value")

# Deliberate, plausible implementation mistakes the reference can make on request, so a test
# can show that the map comparison tells them apart from the method (never used otherwise).
FLUX_DEVIATIONS = (
    "pooled_concept_modulation",   # concepts modulated with the image/text vec (real pooled CLIP vector)
    "image_keys_before_rope",      # concepts attend to the image keys before RoPE
    "ungated_concept_update",      # concept residual updates without the text gates
)
CHROMA_DEVIATIONS = (
    "image_modulation_for_concepts",  # concepts modulated with the block's image-stream vectors
    "ungated_concept_update",
)
SD3_DEVIATIONS = (
    "concept_modulation_without_pooled",  # concepts modulated with the timestep embedding only
    "ungated_concept_update",
)


# ---------------------------------------------------------------------------------------------
# elementary ops, written out
# ---------------------------------------------------------------------------------------------


class Ops:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype

    def p(self, t):
        """A parameter / buffer in the compute dtype."""
        return None if t is None else t.detach().to(dtype=self.dtype)

    def linear(self, module, x):
        y = x @ self.p(module.weight).t()
        if getattr(module, "bias", None) is not None:
            y = y + self.p(module.bias)
        return y

    @staticmethod
    def silu(x):
        return x / (1.0 + torch.exp(-x))

    @staticmethod
    def gelu_tanh(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    @staticmethod
    def layer_norm(x, eps):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps)

    def rms_norm(self, x, weight, eps):
        y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
        return y if weight is None else y * self.p(weight)

    @staticmethod
    def softmax(x, dim=-1):
        e = torch.exp(x - x.amax(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)

    def attention(self, q, k, v):
        """softmax(q k^T / sqrt(d)) v, heads-first [B, H, L, D]."""
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
        return self.softmax(scores, dim=-1) @ v

    @staticmethod
    def flat(x):
        """[B, H, L, D] -> [B, L, H*D] (heads concatenated)."""
        b, h, length, d = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, length, h * d)

    @staticmethod
    def heads(x, num_heads):
        """[B, L, H*D] -> [B, H, L, D]."""
        b, length, hd = x.shape
        return x.reshape(b, length, num_heads, hd // num_heads).permute(0, 2, 1, 3)

    def sinusoidal(self, t, dim, max_period=10000.0):
        """[cos(t w_j) ; sin(t w_j)], w_j = max_period^(-j/half), j < half.

        ComfyUI evaluates these features in float32 whatever the model dtype (its frequency
        table and arguments are float32), so they are evaluated in float32 here too: at
        t = 500 that rounding alone moves the features by ~3e-5, far above the rest of an
        fp32 forward's error, and it is part of the model's definition, not of the method.
        """
        half = dim // 2
        j = torch.arange(half, dtype=torch.float32, device=t.device)
        freqs = torch.exp(-math.log(max_period) * j / half)
        args = t.float()[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb.to(self.dtype)

    @staticmethod
    def patchify(x, p):
        """Circular pad to a multiple of p, then [B, C, H, W] -> [B, (h w), (C p p)]."""
        H, W = x.shape[-2:]
        pad_h, pad_w = (p - H % p) % p, (p - W % p) % p
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="circular")
        b, c, H, W = x.shape
        h, w = H // p, W // p
        x = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(b, h * w, c * p * p), (h, w)


@dataclass
class ConceptSwitches:
    self_attention: bool = True   # concepts attend to the concept keys
    cross_attention: bool = True  # concepts attend to the image keys


@dataclass
class ReferenceResult:
    maps: torch.Tensor                      # [B, r, h, w] (dtype of the computation)
    grid: tuple[int, int]
    layer_scores: dict = field(default_factory=dict)    # layer -> [B, n, r] (after softmax if on)
    block_img: list = field(default_factory=list)       # image stream after each block run
    block_txt: list = field(default_factory=list)       # text stream after each block run
    concepts: list = field(default_factory=list)        # concept residual after each block run
    concept_out: dict = field(default_factory=dict)     # layer -> o_c [B, r, H*D]


def concept_attention(ops, q_c, k_c, v_c, k_x, v_x, switches: ConceptSwitches):
    """o_c per head, [B, H, r, D]: concepts query [image keys ; concept keys] as switched."""
    keys, values = [], []
    if switches.cross_attention:
        keys.append(k_x)
        values.append(v_x)
    if switches.self_attention:
        keys.append(k_c)
        values.append(v_c)
    if not keys:
        return v_c  # each concept attends to itself only
    return ops.attention(q_c, torch.cat(keys, dim=2), torch.cat(values, dim=2))


def layer_scores(ops, space, softmax, o_x, o_c, k_x, q_c, v_x, v_c):
    """[B, n, r] scores of one layer from heads-first image / concept tensors."""
    if space == "output":
        img, con = ops.flat(o_x), ops.flat(o_c)
    elif space == "cross_attention":
        img, con = ops.flat(k_x), ops.flat(q_c)
    elif space == "value":
        img, con = ops.flat(v_x), ops.flat(v_c)
    else:
        raise ValueError(space)
    scores = img @ con.transpose(-1, -2)
    return ops.softmax(scores, dim=-1) if softmax else scores


def finish(result: ReferenceResult, layers, batch):
    total = sum(result.layer_scores[i] for i in layers) / len(layers)
    h, w = result.grid
    result.maps = total.reshape(batch, h, w, -1).permute(0, 3, 1, 2).contiguous()
    return result


# ---------------------------------------------------------------------------------------------
# Flux.1
# ---------------------------------------------------------------------------------------------


def roped_joint_attention(ops, qs, ks, vs, cos, sin, picture, concept_qkv, switches: ConceptSwitches):
    """Joint attention over the streams (their q, k, v concatenated in the order given; RoPE on q and k), and the
    concepts' attention over the picture's keys and values (`picture`: the picture tokens' slice or index).
    Returns the joint output, the concepts' output and the picture's (output, keys, values)."""
    q = apply_rope(torch.cat(qs, dim=2), cos, sin)
    k = apply_rope(torch.cat(ks, dim=2), cos, sin)
    v = torch.cat(vs, dim=2)
    o = ops.attention(q, k, v)
    k_img, v_img, o_img = k[:, :, picture], v[:, :, picture], o[:, :, picture]
    return o, concept_attention(ops, *concept_qkv, k_img, v_img, switches), (o_img, k_img, v_img)


def flux_rope_tables(ids, axes_dim, theta, dtype):
    """cos/sin [B, L, D/2] for position ids [B, L, n_axes]: axis a owns axes_dim[a]/2 pairs,
    pair j of an axis of width d rotates by pos * theta^(-2j/d)."""
    angles = []
    for a, d in enumerate(axes_dim):
        j = torch.arange(d // 2, dtype=dtype)
        omega = 1.0 / (float(theta) ** (2.0 * j / d))
        angles.append(ids[..., a].to(dtype)[..., None] * omega)
    ang = torch.cat(angles, dim=-1)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin):
    """Rotate the consecutive pairs (x[2j], x[2j+1]) of heads-first x [B, H, L, D]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None], sin[:, None]
    out = torch.stack([c * x0 - s * x1, s * x0 + c * x1], dim=-1)
    return out.reshape(x.shape)


def _flux_mod(ops, mod, vec):
    """Modulation: lin(silu(vec)) -> (shift, scale, gate) x 2, each [B, 1, hidden]."""
    out = ops.linear(mod.lin, ops.silu(vec))[:, None, :]
    return out.chunk(6, dim=-1)


def flux_mlp(ops, mlp, x):
    if hasattr(mlp, "gate_proj"):  # "yak" SwiGLU MLP (Ovis): down(silu(gate(x)) * up(x))
        return ops.linear(mlp.down_proj, ops.silu(ops.linear(mlp.gate_proj, x)) * ops.linear(mlp.up_proj, x))
    if type(mlp[1]).__name__ == "SiLUActivation":  # Flux.2: one Linear to 2·hidden, silu(first half) · second half
        a, b = ops.linear(mlp[0], x).chunk(2, dim=-1)
        return ops.linear(mlp[2], ops.silu(a) * b)
    # build_mlp's default: Linear, GELU(tanh), Linear
    return ops.linear(mlp[2], ops.gelu_tanh(ops.linear(mlp[0], x)))


def _flux_stream_qkv(ops, block, attn, norm1, mod_vec_chunks, x):
    shift1, scale1 = mod_vec_chunks[0], mod_vec_chunks[1]
    xm = ops.layer_norm(x, norm1.eps) * (1 + scale1) + shift1
    qkv = ops.linear(attn.qkv, xm)
    B, L = qkv.shape[:2]
    q, k, v = qkv.view(B, L, 3, block.num_heads, -1).permute(2, 0, 3, 1, 4)
    qn, kn = attn.norm.query_norm, attn.norm.key_norm
    q = ops.rms_norm(q, rms_scale(qn), rms_eps(qn))
    k = ops.rms_norm(k, rms_scale(kn), rms_eps(kn))
    return q, k, v


def rms_scale(norm):
    """The RMSNorm scale parameter (`weight` in ComfyUI 0.33, `scale` in 0.3.x's Flux RMSNorm)."""
    return norm.weight if hasattr(norm, "weight") else norm.scale


def rms_eps(norm):
    eps = getattr(norm, "eps", None)
    if eps is None:  # torch.nn.RMSNorm(eps=None) uses the input dtype's machine epsilon
        eps = torch.finfo(rms_scale(norm).dtype).eps
    return eps


def _flux_stream_update(ops, attn, norm2, mlp, chunks, x, attn_out_flat):
    _, _, gate1, shift2, scale2, gate2 = chunks
    x = x + ops.linear(attn.proj, attn_out_flat) * gate1
    x = x + flux_mlp(ops, mlp, ops.layer_norm(x, norm2.eps) * (1 + scale2) + shift2) * gate2
    return x


def image_ids(ops, B, grid, n_axes, index=0.0, row_offset=0.0, col_offset=0.0):
    """Image position ids [B, h*w, n_axes]: (index, row, column, 0...)."""
    h, w = grid
    ids = torch.zeros((h, w, n_axes), dtype=ops.dtype)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(h, dtype=ops.dtype)[:, None] + row_offset
    ids[..., 2] = torch.arange(w, dtype=ops.dtype)[None, :] + col_offset
    return ids.reshape(1, h * w, n_axes).expand(B, -1, -1)


def text_ids(ops, B, positions, n_axes, axes):
    """Text (or concept) position ids [B, L, n_axes]: `positions` [L] on each of `axes`, zero elsewhere."""
    ids = torch.zeros((B, positions.shape[0], n_axes), dtype=ops.dtype)
    for a in axes:
        ids[..., a] = positions.to(ops.dtype)
    return ids


def _double_stream_reference(ops, dm, img, grid, txt, ids, concepts, concept_ids, layers, block_mods, space, softmax,
                             switches: ConceptSwitches, deviation=None) -> ReferenceResult:
    """The DoubleStreamBlocks of a Flux-class model (Flux.1, Flux.2, Chroma, LongCat, Ovis) with the concept stream.

    img [B, n, hidden] and txt [B, T, hidden] are the embedded streams, ids [B, T+n, axes] their RoPE
    positions (text first), concepts [B, r, hidden] the embedded concepts with ids concept_ids [B, r, axes].
    block_mods(i, block) -> (image modulation, text modulation, concept modulation), each the six
    chunks (shift, scale, gate) x 2 of [B, 1, hidden]."""
    prm = dm.params
    B = img.shape[0]
    n = grid[0] * grid[1]
    T = txt.shape[1]
    cos, sin = flux_rope_tables(ids, prm.axes_dim, prm.theta, ops.dtype)
    c_cos, c_sin = flux_rope_tables(concept_ids, prm.axes_dim, prm.theta, ops.dtype)

    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = dm.double_blocks[i]
        img_mod, txt_mod, con_mod = block_mods(i, blk)

        q_x, k_x, v_x = _flux_stream_qkv(ops, blk, blk.img_attn, blk.img_norm1, img_mod, img)
        q_t, k_t, v_t = _flux_stream_qkv(ops, blk, blk.txt_attn, blk.txt_norm1, txt_mod, txt)
        q_c, k_c, v_c = _flux_stream_qkv(ops, blk, blk.txt_attn, blk.txt_norm1, con_mod, concepts)

        q = apply_rope(torch.cat([q_t, q_x], dim=2), cos, sin)
        k = apply_rope(torch.cat([k_t, k_x], dim=2), cos, sin)
        v = torch.cat([v_t, v_x], dim=2)
        if deviation != "unrotated_concepts":
            q_c, k_c = apply_rope(q_c, c_cos, c_sin), apply_rope(k_c, c_cos, c_sin)

        o = ops.attention(q, k, v)              # joint attention of the block itself
        k_img, v_img = k[:, :, T:T + n], v[:, :, T:T + n]
        o_img = o[:, :, T:T + n]
        if deviation == "image_keys_before_rope":
            k_img = k_x
        o_c = concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)

        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
            result.concept_out[i] = ops.flat(o_c)

        o_flat = ops.flat(o)
        img = _flux_stream_update(ops, blk.img_attn, blk.img_norm2, blk.img_mlp, img_mod, img, o_flat[:, T:])
        txt = _flux_stream_update(ops, blk.txt_attn, blk.txt_norm2, blk.txt_mlp, txt_mod, txt, o_flat[:, :T])
        if deviation == "ungated_concept_update":
            con_mod = con_mod[:2] + (torch.ones_like(con_mod[2]),) + con_mod[3:5] + (torch.ones_like(con_mod[5]),)
        concepts = _flux_stream_update(ops, blk.txt_attn, blk.txt_norm2, blk.txt_mlp, con_mod, concepts, ops.flat(o_c))
        result.block_img.append(img)
        result.block_txt.append(txt)
        result.concepts.append(concepts)
    return finish(result, layers, B)


def _flux_text_in(ops, dm, context):
    """txt_in, after the RMS-normed text input of models that have one (Ovis)."""
    if getattr(dm, "txt_norm", None) is not None:
        context = ops.rms_norm(context, rms_scale(dm.txt_norm), rms_eps(dm.txt_norm))
    return ops.linear(dm.txt_in, context)


def mlp_embed(ops, emb, v):
    """MLPEmbedder: in_layer, SiLU, out_layer."""
    return ops.linear(emb.out_layer, ops.silu(ops.linear(emb.in_layer, v)))


def _flux_embed_image(ops, dm, x):
    """Patchify (circular padding to whole patches) and img_in: [B, n, hidden] and the token grid."""
    if hasattr(dm, "img_in_patch"):  # Chroma Radiance: a Conv2d with kernel = stride = patch on the pixels
        patches, grid = ops.patchify(x, dm.patch_size)
        conv = dm.img_in_patch
        img = patches @ ops.p(conv.weight).reshape(conv.weight.shape[0], -1).t()
        return (img if conv.bias is None else img + ops.p(conv.bias)), grid
    patches, grid = ops.patchify(x, dm.patch_size)
    return ops.linear(dm.img_in, patches), grid


def flux_reference(dm, x, timestep, context, y, guidance, concept_embeddings, layers, space="output",
                   softmax=True, switches: ConceptSwitches | None = None, dtype=torch.float64,
                   deviation: str | None = None, concept_positions=None,
                   image_id_offset=(0.0, 0.0, 0.0)) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI Flux.1-class model with per-block modulation (Flux.1,
    LongCat-Image, Ovis-Image; dm = model.diffusion_model) for the network inputs x [B, C, H, W],
    timestep [B], context [B, T, ctx], y [B, vec_in_dim] or None, guidance [B] or None, and concept
    embeddings [r, ctx]. All rows are treated as cond rows.

    Text positions: zero on Flux.1; 0..T-1 on each axis of `params.txt_ids_dims` (LongCat, Ovis), where
    each concept sits at concept_positions [r] on the same axes. image_id_offset: (index, row, column)
    added to the image ids (LongCat puts its image after the text: (1, T, T)).

    deviation: None for the method; else one deliberate, plausible mistake (see DEVIATIONS),
    used only to show that the comparison would catch it."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + FLUX_DEVIATIONS + ("unrotated_concepts",), deviation
    ops = Ops(dtype)
    prm = dm.params
    assert not getattr(prm, "global_modulation", False), "per-block modulation only (Flux.2: flux2_reference)"
    text_axes = list(getattr(prm, "txt_ids_dims", None) or [])
    layers = sorted(set(layers))
    x, context = x.to(dtype), context.to(dtype)
    B = x.shape[0]

    t_emb = ops.sinusoidal(timestep.float() * 1000.0, 256)
    vec_common = mlp_embed(ops, dm.time_in, t_emb)
    if prm.guidance_embed and guidance is not None:
        vec_common = vec_common + mlp_embed(ops, dm.guidance_in, ops.sinusoidal(guidance.float() * 1000.0, 256))
    vec, cvec = vec_common, vec_common
    if dm.vector_in is not None:
        if y is None:
            y = torch.zeros((B, prm.vec_in_dim))
        vec = vec_common + mlp_embed(ops, dm.vector_in, y[:, : prm.vec_in_dim].to(dtype))
        # concept modulation vector: the pooled vector replaced by zeros
        cvec = vec_common + mlp_embed(ops, dm.vector_in, torch.zeros((B, prm.vec_in_dim), dtype=dtype))
    if deviation == "pooled_concept_modulation":
        cvec = vec

    def block_mods(i, blk):
        return _flux_mod(ops, blk.img_mod, vec), _flux_mod(ops, blk.txt_mod, vec), _flux_mod(ops, blk.txt_mod, cvec)

    img, grid = _flux_embed_image(ops, dm, x)
    txt = _flux_text_in(ops, dm, context)
    T, r, n_axes = txt.shape[1], concept_embeddings.shape[0], len(prm.axes_dim)
    ids = torch.cat([text_ids(ops, B, torch.arange(T), n_axes, text_axes),
                     image_ids(ops, B, grid, n_axes, *image_id_offset)], dim=1)
    if text_axes:
        assert concept_positions is not None, "this model numbers text tokens: give the concept positions"
    concept_ids = text_ids(ops, B, concept_positions if text_axes else torch.zeros(r), n_axes, text_axes)
    concepts = _flux_text_in(ops, dm, concept_embeddings.to(dtype))[None].expand(B, -1, -1)
    return _double_stream_reference(ops, dm, img, grid, txt, ids, concepts, concept_ids, layers, block_mods, space,
                                    softmax, switches, deviation)


# ---------------------------------------------------------------------------------------------
# Flux.2
# ---------------------------------------------------------------------------------------------

FLUX2_DEVIATIONS = (
    "image_modulation_for_concepts",  # concepts modulated with the global image-stream modulation
    "unrotated_concepts",             # concept q/k without RoPE (as if their position were 0)
    "ungated_concept_update",
)


def flux2_reference(dm, x, timestep, context, guidance, concept_embeddings, concept_positions, layers,
                    space="output", softmax=True, switches: ConceptSwitches | None = None, dtype=torch.float64,
                    deviation: str | None = None) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI Flux.2 model (global modulation): vec = time_in(t) [+ guidance_in(g)],
    no pooled vector; one image and one text modulation (Linear on silu(vec), no bias) for every double
    block; SiLU-gated MLPs. Text tokens are numbered 0..T-1 on RoPE axis 3 (context as the network gets
    it, i.e. after ComfyUI's left padding); each concept sits at concept_positions [r] on that axis."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + FLUX2_DEVIATIONS, deviation
    ops = Ops(dtype)
    prm = dm.params
    assert prm.global_modulation and list(prm.txt_ids_dims) == [3]
    layers = sorted(set(layers))
    x, context = x.to(dtype), context.to(dtype)
    B = x.shape[0]

    vec = mlp_embed(ops, dm.time_in, ops.sinusoidal(timestep.float() * 1000.0, 256))
    if prm.guidance_embed and guidance is not None:
        vec = vec + mlp_embed(ops, dm.guidance_in, ops.sinusoidal(guidance.float() * 1000.0, 256))
    img_mod = _flux_mod(ops, dm.double_stream_modulation_img, vec)
    txt_mod = _flux_mod(ops, dm.double_stream_modulation_txt, vec)
    con_mod = img_mod if deviation == "image_modulation_for_concepts" else txt_mod

    def block_mods(i, blk):
        return img_mod, txt_mod, con_mod

    img, grid = _flux_embed_image(ops, dm, x)
    txt = ops.linear(dm.txt_in, context)
    T, n_axes = txt.shape[1], len(prm.axes_dim)
    ids = torch.cat([text_ids(ops, B, torch.arange(T), n_axes, [3]), image_ids(ops, B, grid, n_axes)], dim=1)
    concept_ids = text_ids(ops, B, concept_positions, n_axes, [3])
    concepts = ops.linear(dm.txt_in, concept_embeddings.to(dtype))[None].expand(B, -1, -1)
    return _double_stream_reference(ops, dm, img, grid, txt, ids, concepts, concept_ids, layers, block_mods, space,
                                    softmax, switches, deviation)


# ---------------------------------------------------------------------------------------------
# Chroma
# ---------------------------------------------------------------------------------------------


def chroma_modulation_rows(ops, dm, timestep, guidance, rows):
    """Chroma's distilled guidance layer for the modulation vectors `rows`, [B, len(rows), hidden].

    Row k's input is [emb16(t) ; emb16(g) ; emb32(k)] (sinusoidal features of the timestep, the
    guidance and the row index, each scaled by 1000 like Flux's timestep features); the layer
    maps each row on its own: in_proj, then x += MLP(RMSNorm(x)) per layer, then out_proj."""
    approx = dm.distilled_guidance_layer
    B = timestep.shape[0]
    index = torch.tensor(rows, dtype=torch.float32)
    tg = torch.cat([ops.sinusoidal(timestep.float() * 1000.0, 16), ops.sinusoidal(guidance.float() * 1000.0, 16)], dim=-1)
    v = torch.cat([tg[:, None].expand(B, len(rows), -1),
                   ops.sinusoidal(index * 1000.0, 32)[None].expand(B, -1, -1)], dim=-1)
    x = ops.linear(approx.in_proj, v)
    for layer, norm in zip(approx.layers, approx.norms):
        x = x + mlp_embed(ops, layer, ops.rms_norm(x, rms_scale(norm), rms_eps(norm)))
    return ops.linear(approx.out_proj, x)


def chroma_reference(dm, x, timestep, context, guidance, concept_embeddings, layers, space="output", softmax=True,
                     switches: ConceptSwitches | None = None, dtype=torch.float64,
                     deviation: str | None = None, concept_positions=None,
                     sequential_text_ids=False) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI Chroma or Chroma Radiance model: Flux.1 double blocks whose
    modulations come from the distilled guidance layer. Its vectors are laid out as 3 per single block,
    then 6 per double block for the image stream, then 6 per double block for the text stream; the
    concepts take their block's text modulation (Chroma has no pooled vector to leave out).
    Radiance embeds 16-pixel patches of the picture itself; with sequential_text_ids its text tokens
    are numbered 0..T-1 on RoPE axis 0 and each concept sits at concept_positions [r] there (else all
    text and concept ids are zero)."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + CHROMA_DEVIATIONS, deviation
    ops = Ops(dtype)
    prm = dm.params
    layers = sorted(set(layers))
    x, context = x.to(dtype), context.to(dtype)
    img_start = 3 * prm.depth_single_blocks
    txt_start = img_start + 6 * prm.depth

    def block_mods(i, blk):
        rows = [img_start + 6 * i + j for j in range(6)] + [txt_start + 6 * i + j for j in range(6)]
        mods = chroma_modulation_rows(ops, dm, timestep, guidance, rows)
        chunks = tuple(mods[:, j:j + 1] for j in range(12))
        concept_mods = chunks[:6] if deviation == "image_modulation_for_concepts" else chunks[6:]
        return chunks[:6], chunks[6:], concept_mods

    B = x.shape[0]
    img, grid = _flux_embed_image(ops, dm, x)
    txt = ops.linear(dm.txt_in, context)
    T, r, n_axes = txt.shape[1], concept_embeddings.shape[0], len(prm.axes_dim)
    text_axes = [0] if sequential_text_ids else []
    ids = torch.cat([text_ids(ops, B, torch.arange(T), n_axes, text_axes), image_ids(ops, B, grid, n_axes)], dim=1)
    concept_ids = text_ids(ops, B, concept_positions if sequential_text_ids else torch.zeros(r), n_axes, text_axes)
    concepts = ops.linear(dm.txt_in, concept_embeddings.to(dtype))[None].expand(B, -1, -1)
    return _double_stream_reference(ops, dm, img, grid, txt, ids, concepts, concept_ids, layers, block_mods, space,
                                    softmax, switches, deviation)


# ---------------------------------------------------------------------------------------------
# Qwen-Image (and Mage-Flow's blocks)
# ---------------------------------------------------------------------------------------------

QWEN_DEVIATIONS = (
    "unrotated_concepts",           # concept q/k without RoPE
    "concept_position_from_zero",   # concept ids without the model's txt_start offset
    "ungated_concept_update",
)


def diffusers_timestep_features(ops, t, dim, scale=1.0, max_period=10000.0):
    """get_timestep_embedding(flip_sin_to_cos=True, downscale_freq_shift=0): [cos(s·t·w) ; sin(s·t·w)],
    evaluated in float32 in the model's own order (t·w first, then the scale), as ComfyUI does."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.float()[:, None] * freqs[None]) * scale
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(ops.dtype)


def timestep_embedding_mlp(ops, emb, v):
    """TimestepEmbedding: linear_1, SiLU, linear_2."""
    return ops.linear(emb.linear_2, ops.silu(ops.linear(emb.linear_1, v)))


def _qwen_mlp(ops, ff, x):
    """FeedForward: GELU(tanh) projection, dropout, Linear."""
    return ops.linear(ff.net[2], ops.gelu_tanh(ops.linear(ff.net[0].proj, x)))


def _qwen_blocks(ops, dm, img, txt, concepts, temb, grid, ids, concept_ids, layers, space, softmax,
                 switches: ConceptSwitches, deviation=None) -> ReferenceResult:
    """The QwenImageTransformerBlocks of a Qwen-Image-class model (Qwen-Image, Mage-Flow) with the concept stream.

    img [B, n, hidden] and txt [B, T, hidden] are the embedded streams, temb [B, hidden] the timestep embedding
    every block modulates with, ids [B, T+n, 3] the RoPE positions of [text ; image] (the joint order), and
    concepts [B, r, hidden] the embedded concepts at concept_ids [B, r, 3] (None: their q/k are not rotated).
    Each block: img_mod / txt_mod (SiLU, Linear) of temb, affine-free LayerNorm, q/k/v with RMS q/k-norm on the
    image (to_*) and text (add_*_proj) modules, joint attention over [text ; image], gated to_out / to_add_out
    residuals and gated GELU(tanh) MLPs. The concepts take the text stream's modules and modulation."""
    B = img.shape[0]
    n = grid[0] * grid[1]
    T = txt.shape[1]
    axes, theta = dm.pe_embedder.axes_dim, dm.pe_embedder.theta
    cos, sin = flux_rope_tables(ids, axes, theta, ops.dtype)
    c_rope = None if concept_ids is None else flux_rope_tables(concept_ids, axes, theta, ops.dtype)

    def mod(seq, vec):
        return ops.linear(seq[1], ops.silu(vec))[:, None, :].chunk(6, dim=-1)

    def qkv(attn, to_q, to_k, to_v, norm_q, norm_k, xm):
        q, k, v = (ops.heads(ops.linear(lin, xm), attn.heads) for lin in (to_q, to_k, to_v))
        return ops.rms_norm(q, rms_scale(norm_q), rms_eps(norm_q)), ops.rms_norm(k, rms_scale(norm_k), rms_eps(norm_k)), v

    def modulated(norm, x_, shift, scale):
        return ops.layer_norm(x_, norm.eps) * (1 + scale) + shift

    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = dm.transformer_blocks[i]
        a = blk.attn
        im = mod(blk.img_mod, temb)
        tm = mod(blk.txt_mod, temb)
        cm = im if deviation == "image_modulation_for_concepts" else tm
        q_x, k_x, v_x = qkv(a, a.to_q, a.to_k, a.to_v, a.norm_q, a.norm_k, modulated(blk.img_norm1, img, im[0], im[1]))
        q_t, k_t, v_t = qkv(a, a.add_q_proj, a.add_k_proj, a.add_v_proj, a.norm_added_q, a.norm_added_k,
                            modulated(blk.txt_norm1, txt, tm[0], tm[1]))
        q_c, k_c, v_c = qkv(a, a.add_q_proj, a.add_k_proj, a.add_v_proj, a.norm_added_q, a.norm_added_k,
                            modulated(blk.txt_norm1, concepts, cm[0], cm[1]))
        q = apply_rope(torch.cat([q_t, q_x], dim=2), cos, sin)
        k = apply_rope(torch.cat([k_t, k_x], dim=2), cos, sin)
        v = torch.cat([v_t, v_x], dim=2)
        if c_rope is not None:
            q_c, k_c = apply_rope(q_c, *c_rope), apply_rope(k_c, *c_rope)
        o = ops.attention(q, k, v)
        k_img, v_img, o_img = k[:, :, T:T + n], v[:, :, T:T + n], o[:, :, T:T + n]
        o_c = concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
            result.concept_out[i] = ops.flat(o_c)
        o_flat = ops.flat(o)
        img = img + im[2] * ops.linear(a.to_out[0], o_flat[:, T:])
        txt = txt + tm[2] * ops.linear(a.to_add_out, o_flat[:, :T])
        c_gate1, c_gate2 = (torch.ones_like(cm[2]), torch.ones_like(cm[5])) if deviation == "ungated_concept_update" \
            else (cm[2], cm[5])
        concepts = concepts + c_gate1 * ops.linear(a.to_add_out, ops.flat(o_c))
        img = img + im[5] * _qwen_mlp(ops, blk.img_mlp, modulated(blk.img_norm2, img, im[3], im[4]))
        txt = txt + tm[5] * _qwen_mlp(ops, blk.txt_mlp, modulated(blk.txt_norm2, txt, tm[3], tm[4]))
        concepts = concepts + c_gate2 * _qwen_mlp(ops, blk.txt_mlp, modulated(blk.txt_norm2, concepts, cm[3], cm[4]))
        result.block_img.append(img)
        result.block_txt.append(txt)
        result.concepts.append(concepts)
    return finish(result, layers, B)


def _qwen_text_and_concepts(ops, dm, context, concept_embeddings, B):
    """txt_in(txt_norm(.)) of the text states [B, T, ctx] and of the concept embeddings [r, ctx] (-> [B, r, hidden])."""
    norm = dm.txt_norm

    def embed(states):
        return ops.linear(dm.txt_in, ops.rms_norm(states, rms_scale(norm), rms_eps(norm)))

    return embed(context), embed(concept_embeddings.to(ops.dtype))[None].expand(B, -1, -1)


def qwen_image_reference(dm, x, timestep, context, concept_embeddings, concept_positions, layers, space="output",
                         softmax=True, switches: ConceptSwitches | None = None, dtype=torch.float64,
                         deviation: str | None = None) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI Qwen-Image model for the network inputs x [B, C, 1, H, W], timestep [B],
    context [B, T, ctx] (no text mask) and concept embeddings [r, ctx]. Text positions: (l, l, l) for
    l = txt_start + 0..T-1, txt_start = max(h/2, w/2) of the token grid; image ids (0, row - h//2, col - w//2);
    each concept at txt_start + concept_positions [r]. The concepts take the block's text modulation."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + QWEN_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    x, context = x.to(dtype), context.to(dtype)
    B = x.shape[0]
    assert x.ndim == 5 and x.shape[2] == 1, "one picture, no layers"

    patches, grid = ops.patchify(x[:, :, 0], dm.patch_size)
    h, w = grid
    img = ops.linear(dm.img_in, patches)
    txt, concepts = _qwen_text_and_concepts(ops, dm, context, concept_embeddings, B)
    T = txt.shape[1]

    tte = dm.time_text_embed
    temb = timestep_embedding_mlp(ops, tte.timestep_embedder, diffusers_timestep_features(ops, timestep, 256, 1000.0))

    start = float(round(max(w // 2, h // 2)))
    txt_pos = start + torch.arange(T, dtype=dtype)
    con_pos = concept_positions.to(dtype) + (0.0 if deviation == "concept_position_from_zero" else start)
    img_ids = image_ids(ops, B, grid, 3, 0.0, -(h // 2), -(w // 2))
    ids = torch.cat([text_ids(ops, B, txt_pos, 3, [0, 1, 2]), img_ids], dim=1)
    concept_ids = None if deviation == "unrotated_concepts" else text_ids(ops, B, con_pos, 3, [0, 1, 2])
    return _qwen_blocks(ops, dm, img, txt, concepts, temb, grid, ids, concept_ids, layers, space, softmax, switches,
                        deviation)


# ---------------------------------------------------------------------------------------------
# Mage-Flow
# ---------------------------------------------------------------------------------------------

MAGE_FLOW_DEVIATIONS = (
    "concepts_on_the_qwen_text_diagonal",  # concepts roped at Qwen-Image's txt_start + position (Mage: id 0)
    "image_modulation_for_concepts",       # concepts modulated with the block's image-stream modulation
    "ungated_concept_update",
)


def _mage_timestep_features(ops, timestep):
    """MageTimestepProjEmbeddings' 256 features of the timestep as model_base.MageFlow gives it (rounded to
    bfloat16 by process_timestep): the float32 frequency table w_j = exp(-ln(10000)·j/128) rounded to the
    timestep's dtype, then in float32 1000·(t·w) and [cos ; sin] (flip_sin_to_cos)."""
    t = timestep.to(torch.bfloat16)  # process_timestep (the network's input already is; kept for the definition)
    half = 128
    table = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half).to(t.dtype)
    args = 1000.0 * (t[:, None].float() * table[None, :].float())
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(ops.dtype)


def mage_flow_reference(dm, x, timestep, context, concept_embeddings, layers, space="output", softmax=True,
                        switches: ConceptSwitches | None = None, dtype=torch.float64, deviation: str | None = None,
                        concept_positions=None) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI Mage-Flow model for the network inputs x [B, 128, H, W], timestep [B],
    context [B, T, ctx] (no text mask) and concept embeddings [r, ctx].

    Tokens are the latent's pixels (patch 1) through img_in; text and concepts through txt_norm (RMS) and txt_in.
    Image ids (0, row - (h - h//2), col - (w - w//2)) (Mage's centring: rows from -ceil(h/2)); text ids and
    concept ids are zero, so RoPE leaves text and concepts as they are. The timestep features are Mage's own
    (_mage_timestep_features) through time_text_embed.timestep_embedder; then Qwen-Image's blocks, the concepts
    on the text-stream modules with the block's text modulation.

    concept_positions [r] is read only by the deviation that (wrongly) puts the concepts on Qwen-Image's text
    diagonal."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + MAGE_FLOW_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    x, context = x.to(dtype), context.to(dtype)
    assert x.ndim == 4, "[B, C, H, W]"
    B, C, h, w = x.shape
    grid = (h, w)

    img = ops.linear(dm.img_in, x.permute(0, 2, 3, 1).reshape(B, h * w, C))  # 1x1 patches, row-major
    txt, concepts = _qwen_text_and_concepts(ops, dm, context, concept_embeddings, B)
    T, r = txt.shape[1], concepts.shape[1]
    temb = timestep_embedding_mlp(ops, dm.time_text_embed.timestep_embedder, _mage_timestep_features(ops, timestep))

    img_ids = image_ids(ops, B, grid, 3, 0.0, -(h - h // 2), -(w - w // 2))
    ids = torch.cat([torch.zeros((B, T, 3), dtype=dtype), img_ids], dim=1)
    concept_ids = torch.zeros((B, r, 3), dtype=dtype)
    if deviation == "concepts_on_the_qwen_text_diagonal":
        start = float(round(max(w // 2, h // 2)))
        concept_ids = text_ids(ops, B, start + concept_positions.to(dtype), 3, [0, 1, 2])
    return _qwen_blocks(ops, dm, img, txt, concepts, temb, grid, ids, concept_ids, layers, space, softmax, switches,
                        deviation)

# ---------------------------------------------------------------------------------------------
# HiDream-I1 / E1
# ---------------------------------------------------------------------------------------------

HIDREAM_DEVIATIONS = (
    "image_modulation_for_concepts",  # concepts modulated with the block's image share of the adaLN
    "ungated_concept_update",
)


def swiglu(ops, ff, x):
    """FeedForwardSwiGLU: w2(silu(w1 x) · w3 x)."""
    return ops.linear(ff.w2, ops.silu(ops.linear(ff.w1, x)) * ops.linear(ff.w3, x))


def hidream_reference(dm, x, timestep, context, pooled, llama_states, concept_embeddings, layers, space="output",
                      softmax=True, switches: ConceptSwitches | None = None, dtype=torch.float64,
                      deviation: str | None = None, image_cond=None) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI HiDream model whose image stream has no MoE (num_routed_experts=0:
    the MoE acts on image tokens only, which the method does not touch) for x [B, C, H, W], timestep [B]
    (as the network gets it), context = T5 states [B, T, ctx], pooled [B, 2048], llama_states
    [B, layers, L, D] and concept embeddings [r, ctx]. Image tokens come first; all text and concept ids
    are zero. E1: image_cond [B, C, H, W] joins the picture on the right; the maps cover the picture.

    Text stream: [T5 ; Llama layer llama_layers[-1]] projected, carried from block to block, with the
    projected Llama layer llama_layers[b] appended for block b and dropped after it."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + HIDREAM_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    x = x.to(dtype)
    B, _, H, W = x.shape
    p = dm.patch_size
    if image_cond is not None:
        x = torch.cat([x, image_cond.to(dtype)], dim=-1)
    x_p = torch.nn.functional.pad(x, (0, (p - x.shape[-1] % p) % p, 0, (p - x.shape[-2] % p) % p), mode="circular")
    hh, ww = x_p.shape[-2] // p, x_p.shape[-1] // p
    # 'B C (H p1) (W p2) -> B (H W) (p1 p2 C)'
    patches = x_p.reshape(B, -1, hh, p, ww, p).permute(0, 2, 4, 3, 5, 1).reshape(B, hh * ww, -1)
    img = ops.linear(dm.x_embedder.proj, patches)
    grid = (-(-H // p), -(-W // p))
    keep = (torch.arange(grid[0])[:, None] * ww + torch.arange(grid[1])[None, :]).reshape(-1)

    t_emb = timestep_embedding_mlp(ops, dm.t_embedder.timestep_embedder, diffusers_timestep_features(ops, timestep, 256))
    adaln = t_emb + timestep_embedding_mlp(ops, dm.p_embedder.pooled_embedder, pooled.to(dtype))

    proj = dm.caption_projection
    llama = llama_states.to(dtype).movedim(1, 0)
    llama = [ops.linear(proj[i].linear, llama[k]) for i, k in enumerate(dm.llama_layers)]
    t5 = ops.linear(proj[-1].linear, context.to(dtype))
    carried = torch.cat([t5, llama[-1]], dim=1)
    concepts = ops.linear(proj[-1].linear, concept_embeddings.to(dtype))[None].expand(B, -1, -1)

    n_img = img.shape[1]
    axes = dm.pe_embedder.axes_dim
    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        blk = dm.double_stream_blocks[i].block
        a = blk.attn1
        mods = ops.linear(blk.adaLN_modulation[1], ops.silu(adaln))[:, None].chunk(12, dim=-1)
        im, tm = mods[:6], mods[6:]
        cm = im if deviation == "image_modulation_for_concepts" else tm
        txt = torch.cat([carried, llama[i]], dim=1)
        T = txt.shape[1]

        def qkv(xm, to_q, to_k, to_v, nq, nk):
            q = ops.rms_norm(ops.linear(to_q, xm), rms_scale(nq), rms_eps(nq))
            k = ops.rms_norm(ops.linear(to_k, xm), rms_scale(nk), rms_eps(nk))
            return ops.heads(q, a.heads), ops.heads(k, a.heads), ops.heads(ops.linear(to_v, xm), a.heads)

        def modulated(norm, x_, shift, scale):
            return ops.layer_norm(x_, norm.eps) * (1 + scale) + shift

        q_x, k_x, v_x = qkv(modulated(blk.norm1_i, img, im[0], im[1]), a.to_q, a.to_k, a.to_v, a.q_rms_norm, a.k_rms_norm)
        q_t, k_t, v_t = qkv(modulated(blk.norm1_t, txt, tm[0], tm[1]), a.to_q_t, a.to_k_t, a.to_v_t, a.q_rms_norm_t,
                            a.k_rms_norm_t)
        q_c, k_c, v_c = qkv(modulated(blk.norm1_t, concepts, cm[0], cm[1]), a.to_q_t, a.to_k_t, a.to_v_t,
                            a.q_rms_norm_t, a.k_rms_norm_t)
        ids = torch.cat([image_ids(ops, B, (hh, ww), len(axes)), torch.zeros((B, T, len(axes)), dtype=dtype)], dim=1)
        cos, sin = flux_rope_tables(ids, axes, dm.pe_embedder.theta, dtype)
        o, o_c, (o_img, k_img, v_img) = roped_joint_attention(ops, (q_x, q_t), (k_x, k_t), (v_x, v_t), cos, sin, keep,
                                                              (q_c, k_c, v_c), switches)
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
            result.concept_out[i] = ops.flat(o_c)
        o_flat = ops.flat(o)
        img = img + im[2] * ops.linear(a.to_out, o_flat[:, :n_img])
        txt = txt + tm[2] * ops.linear(a.to_out_t, o_flat[:, n_img:])
        g1, g2 = (torch.ones_like(cm[2]), torch.ones_like(cm[5])) if deviation == "ungated_concept_update" else (cm[2], cm[5])
        concepts = concepts + g1 * ops.linear(a.to_out_t, ops.flat(o_c))
        img = img + im[5] * swiglu(ops, blk.ff_i, modulated(blk.norm3_i, img, im[3], im[4]))
        txt = txt + tm[5] * swiglu(ops, blk.ff_t, modulated(blk.norm3_t, txt, tm[3], tm[4]))
        concepts = concepts + g2 * swiglu(ops, blk.ff_t, modulated(blk.norm3_t, concepts, cm[3], cm[4]))
        carried = txt[:, :carried.shape[1]]
        result.block_img.append(img)
        result.block_txt.append(txt)
        result.concepts.append(concepts)
    return finish(result, layers, B)


# ---------------------------------------------------------------------------------------------
# SD3 / SD3.5 (MMDiT, MMDiT-X)
# ---------------------------------------------------------------------------------------------


def affine_layer_norm(ops, norm, x):
    """nn.LayerNorm with its weight and bias when it has them."""
    y = ops.layer_norm(x, norm.eps)
    if norm.weight is not None:
        y = y * ops.p(norm.weight)
    if norm.bias is not None:
        y = y + ops.p(norm.bias)
    return y


def _sd3_qk_norm(ops, norm, x):
    import torch.nn as nn

    if isinstance(norm, nn.Identity):
        return x
    if isinstance(norm, nn.LayerNorm):
        return affine_layer_norm(ops, norm, x)
    # mmdit.RMSNorm: x / rms(x) * weight, eps 1e-6
    return ops.rms_norm(x, norm.weight, norm.eps)


def _sd3_qkv(ops, attn, x):
    """q, k, v heads-first [B, H, L, D] from an mmdit SelfAttention."""
    qkv = ops.linear(attn.qkv, x)
    B, L = qkv.shape[:2]
    q, k, v = qkv.reshape(B, L, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q = _sd3_qk_norm(ops, attn.ln_q, q)
    k = _sd3_qk_norm(ops, attn.ln_k, k)
    return q, k, v


def _sd3_norm(ops, norm, x):
    import torch.nn as nn

    assert isinstance(norm, nn.LayerNorm) and norm.weight is None, "SD3 uses affine-free LayerNorm"
    return ops.layer_norm(x, norm.eps)


def _modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


def _sd3_mlp(ops, mlp, x):
    return ops.linear(mlp.fc2, ops.gelu_tanh(ops.linear(mlp.fc1, x)))


def _sd3_ada(ops, block, c):
    """adaLN_modulation = Sequential(SiLU, Linear)."""
    return ops.linear(block.adaLN_modulation[1], ops.silu(c))


class _SD3Stream:
    """Pre-attention of one DismantledBlock for one stream: q, k, v and what the update needs."""

    def __init__(self, ops, block, x, c):
        self.block = block
        assert not block.scale_mod_only
        mods = _sd3_ada(ops, block, c)
        if block.pre_only:
            shift, scale = mods.chunk(2, dim=1)
            self.post = None
        elif block.x_block_self_attn:
            (shift, scale, gate, shift_mlp, scale_mlp, gate_mlp, shift2, scale2, gate2) = mods.chunk(9, dim=1)
            self.post = (gate, shift_mlp, scale_mlp, gate_mlp, gate2)
        else:
            shift, scale, gate, shift_mlp, scale_mlp, gate_mlp = mods.chunk(6, dim=1)
            self.post = (gate, shift_mlp, scale_mlp, gate_mlp, None)
        self.x = x
        xn = _sd3_norm(ops, block.norm1, x)
        self.q, self.k, self.v = _sd3_qkv(ops, block.attn, _modulate(xn, shift, scale))
        if block.x_block_self_attn:
            self.q2, self.k2, self.v2 = _sd3_qkv(ops, block.attn2, _modulate(xn, shift2, scale2))

    def update(self, ops, attn_out_flat):
        """The stream after the block; None for a pre_only block."""
        if self.post is None:
            return None
        blk = self.block
        gate, shift_mlp, scale_mlp, gate_mlp, gate2 = self.post
        x = self.x + gate[:, None] * ops.linear(blk.attn.proj, attn_out_flat)
        if blk.x_block_self_attn:  # MMDiT-X: a second, image-only self attention
            o2 = ops.flat(ops.attention(self.q2, self.k2, self.v2))
            x = x + gate2[:, None] * ops.linear(blk.attn2.proj, o2)
        x = x + gate_mlp[:, None] * _sd3_mlp(ops, blk.mlp, _modulate(_sd3_norm(ops, blk.norm2, x), shift_mlp, scale_mlp))
        return x


def _sd3_pos_embed(ops, dm, h, w):
    m = dm.pos_embed_max_size
    pe = ops.p(dm.pos_embed).reshape(m, m, -1)
    top, left = (m - h) // 2, (m - w) // 2
    return pe[top:top + h, left:left + w].reshape(1, h * w, -1)


def sd3_reference(dm, x, timestep, context, y, concept_embeddings, layers, space="output", softmax=True,
                  switches: ConceptSwitches | None = None, dtype=torch.float64,
                  deviation: str | None = None) -> ReferenceResult:
    """ConceptAttention maps of a ComfyUI SD3/SD3.5 MMDiT (dm = model.diffusion_model) for the
    network inputs x [B, C, H, W], timestep [B] (sigma*1000), context [B, T, ctx], y (pooled)
    [B, adm] and concept embeddings [r, ctx]. All rows are treated as cond rows.

    deviation: None for the method; else one deliberate, plausible mistake (see DEVIATIONS)."""
    switches = switches or ConceptSwitches()
    assert deviation in (None,) + SD3_DEVIATIONS, deviation
    ops = Ops(dtype)
    assert dm.register_length == 0 and dm.context_processor is None and dm.pos_embed is not None
    layers = sorted(set(layers))
    x, context = x.to(dtype), context.to(dtype)
    B = x.shape[0]
    p = dm.x_embedder.patch_size[0]

    # x_embedder (Conv2d with kernel = stride = p) as a matmul on patches, + cropped pos_embed
    patches, grid = ops.patchify(x, p)
    h, w = grid
    n = h * w
    conv = dm.x_embedder.proj
    img = patches @ ops.p(conv.weight).reshape(conv.weight.shape[0], -1).t() + ops.p(conv.bias)
    img = img + _sd3_pos_embed(ops, dm, h, w)

    def seq_mlp(mlp, v):  # Sequential(Linear, SiLU, Linear)
        return ops.linear(mlp[2], ops.silu(ops.linear(mlp[0], v)))

    c_mod = seq_mlp(dm.t_embedder.mlp, ops.sinusoidal(timestep.to(dtype), dm.t_embedder.frequency_embedding_size,
                                                        getattr(dm.t_embedder, "max_period", 10000)))
    if y is not None and dm.y_embedder is not None:
        c_mod = c_mod + seq_mlp(dm.y_embedder.mlp, y.to(dtype))
    txt = ops.linear(dm.context_embedder, context)
    T = txt.shape[1]
    concept_c_mod = c_mod
    if deviation == "concept_modulation_without_pooled":
        concept_c_mod = seq_mlp(dm.t_embedder.mlp, ops.sinusoidal(timestep.to(dtype), dm.t_embedder.frequency_embedding_size,
                                                                    getattr(dm.t_embedder, "max_period", 10000)))
    concepts = ops.linear(dm.context_embedder, concept_embeddings.to(dtype))[None].expand(B, -1, -1)

    result = ReferenceResult(maps=None, grid=grid)
    for i in range(layers[-1] + 1):
        jb = dm.joint_blocks[i]
        ctx_s = _SD3Stream(ops, jb.context_block, txt, c_mod)
        img_s = _SD3Stream(ops, jb.x_block, img, c_mod)
        con_s = _SD3Stream(ops, jb.context_block, concepts, concept_c_mod)  # the block's own c_mod
        if deviation == "ungated_concept_update" and con_s.post is not None:
            gate, shift_mlp, scale_mlp, gate_mlp, gate2 = con_s.post
            con_s.post = (torch.ones_like(gate), shift_mlp, scale_mlp, torch.ones_like(gate_mlp), gate2)

        q = torch.cat([ctx_s.q, img_s.q], dim=2)
        k = torch.cat([ctx_s.k, img_s.k], dim=2)
        v = torch.cat([ctx_s.v, img_s.v], dim=2)
        o = ops.attention(q, k, v)
        k_img, v_img, o_img = k[:, :, T:T + n], v[:, :, T:T + n], o[:, :, T:T + n]
        o_c = concept_attention(ops, con_s.q, con_s.k, con_s.v, k_img, v_img, switches)

        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_img, o_c, k_img, con_s.q, v_img, con_s.v)
            result.concept_out[i] = ops.flat(o_c)

        o_flat = ops.flat(o)
        txt = ctx_s.update(ops, o_flat[:, :T])
        img = img_s.update(ops, o_flat[:, T:])
        new_concepts = con_s.update(ops, ops.flat(o_c))
        concepts = concepts if new_concepts is None else new_concepts  # pre_only: attended, not updated
        result.block_img.append(img)
        result.block_txt.append(txt)
        result.concepts.append(concepts)
    return finish(result, layers, B)


__all__ = ["ConceptSwitches", "FLUX2_DEVIATIONS", "FLUX_DEVIATIONS", "MAGE_FLOW_DEVIATIONS", "ReferenceResult",
           "SD3_DEVIATIONS", "SPACES", "chroma_reference", "flux2_reference", "flux_reference", "hidream_reference",
           "mage_flow_reference", "qwen_image_reference", "sd3_reference"]
