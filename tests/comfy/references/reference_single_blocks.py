"""An independent fp64 re-implementation of the concept stream through the single-stream blocks of hybrid models
(Flux.1, Chroma, Flux.2; HiDream-I1 at the end), for the tests. Nothing here imports or calls the product.

The dual-stream part is reference_concept_attention.py's (run through every DoubleStreamBlock); from its image
stream, text stream and concept residual after the last dual-stream block, each SingleStreamBlock is written out:

* the joint sequence x = [text ; image] and the block's one modulation (shift, scale, gate), shared by every
  row: Flux.1 lin(silu(vec)) of the block's own Modulation with vec = time_in(t) + guidance_in(g) + vector_in(y)
  (the pooled vector the model gets), Chroma the block's 3 vectors of the distilled guidance layer, Flux.2
  single_stream_modulation(vec);
* h = linear1((1 + scale) · LN(x) + shift), split into q, k, v (heads) and the MLP input; RMS q/k-norm; RoPE on
  the ids [text ids ; image ids]; o = softmax(q kᵀ/√d) v; x += gate · linear2([o ; act(mlp)]).

The concept rows c take the same modulation and the same linear1, norms and linear2 (the shared weights), RoPE
with their text positions, and query [image keys ; concept keys]:
o_c = softmax(q_c [k_x ; k_c]ᵀ/√d) [v_x ; v_c], then c += gate · linear2([o_c ; act(mlp_c)]), the MLP branch in
parallel from the same modulated input as the block computes it. The map of a selected single block is the
softmax over concepts of o_x · o_c, as for a dual-stream block; the maps of all selected blocks of both kinds are
averaged.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.references import reference_concept_attention as ref

SINGLE_DEVIATIONS = (
    "zeroed_pooled_modulation",  # Flux.1: single-block concept modulation from the pooled-zeroed concept vector
    "sequential_mlp",            # concept MLP branch fed from the residual after attention (not in parallel)
    "ungated_concept_update",    # concept residual updated without the block's gate
)


def _act(ops, blk, mlp):
    """The single block's MLP activation: GELU(tanh) (Flux.1, Chroma), silu(a)·b of the two halves (Flux.2's
    mlp_silu_act), or SwiGLU with the gate in the second half (Ovis' yak MLP)."""
    if getattr(blk, "yak_mlp", False):
        a, b = mlp.chunk(2, dim=-1)
        return ops.silu(b) * a
    if type(blk.mlp_act).__name__ == "SiLUActivation":
        a, b = mlp.chunk(2, dim=-1)
        return ops.silu(a) * b
    return ops.gelu_tanh(mlp)


def _single_qkv(ops, blk, mod, x, cos, sin):
    """q, k, v heads-first (q, k normed and rotated) and the MLP input of rows x through a SingleStreamBlock."""
    shift, scale, _ = mod
    xm = ops.layer_norm(x, blk.pre_norm.eps) * (1 + scale) + shift
    h = ops.linear(blk.linear1, xm)
    width = blk.hidden_size
    B, L = x.shape[:2]
    q, k, v = h[..., :3 * width].reshape(B, L, 3, blk.num_heads, -1).permute(2, 0, 3, 1, 4)
    qn, kn = blk.norm.query_norm, blk.norm.key_norm
    q = ops.rms_norm(q, ref.rms_scale(qn), ref.rms_eps(qn))
    k = ops.rms_norm(k, ref.rms_scale(kn), ref.rms_eps(kn))
    return ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin), v, h[..., 3 * width:]


def _single_update(ops, blk, mod, x, o_flat, mlp, ungated=False):
    gate = torch.ones_like(mod[2]) if ungated else mod[2]
    return x + gate * ops.linear(blk.linear2, torch.cat([o_flat, _act(ops, blk, mlp)], dim=-1))


def single_stream_reference(dm, dual: ref.ReferenceResult, ids, concept_ids, single_mods, double_layers,
                            single_layers, space="output", softmax=True, switches=None, dtype=torch.float64,
                            deviation=None, concept_single_mods=None):
    """Maps [B, r, h, w] averaged over the selected dual-stream layers (from `dual`, a reference run through every
    dual-stream block) and the selected single-stream layers, run here.

    ids [B, T+n, axes] / concept_ids [B, r, axes]: RoPE positions of [text ; image] and of the concepts.
    single_mods(i) -> the (shift, scale, gate) of single block i, each [B, 1, hidden]; concept_single_mods(i),
    when given, the concepts' (a deliberate deviation)."""
    switches = switches or ref.ConceptSwitches()
    assert deviation in (None,) + SINGLE_DEVIATIONS, deviation
    ops = ref.Ops(dtype)
    prm = dm.params
    img, txt, concepts = dual.block_img[-1], dual.block_txt[-1], dual.concepts[-1]
    B, T = img.shape[0], txt.shape[1]
    h, w = dual.grid
    n = h * w
    cos, sin = ref.flux_rope_tables(ids, prm.axes_dim, prm.theta, dtype)
    c_cos, c_sin = ref.flux_rope_tables(concept_ids, prm.axes_dim, prm.theta, dtype)

    x = torch.cat([txt, img], dim=1)
    scores = {("double_block", i): dual.layer_scores[i] for i in double_layers}
    for i in range(max(single_layers) + 1):
        blk = dm.single_blocks[i]
        mod = single_mods(i)
        con_mod = concept_single_mods(i) if concept_single_mods is not None else mod
        q, k, v, mlp = _single_qkv(ops, blk, mod, x, cos, sin)
        q_c, k_c, v_c, mlp_c = _single_qkv(ops, blk, con_mod, concepts, c_cos, c_sin)
        o = ops.attention(q, k, v)
        k_img, v_img, o_img = k[:, :, T:T + n], v[:, :, T:T + n], o[:, :, T:T + n]
        o_c = ref.concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)
        if i in single_layers:
            scores[("single_block", i)] = ref.layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
        x = _single_update(ops, blk, mod, x, ops.flat(o), mlp)
        if deviation == "sequential_mlp":
            attn_only = concepts + con_mod[2] * ops.linear(
                blk.linear2, torch.cat([ops.flat(o_c), torch.zeros_like(_act(ops, blk, mlp_c))], dim=-1))
            _, _, _, mlp_c = _single_qkv(ops, blk, con_mod, attn_only, c_cos, c_sin)
        concepts = _single_update(ops, blk, con_mod, concepts, ops.flat(o_c), mlp_c,
                                  ungated=deviation == "ungated_concept_update")
    total = sum(scores.values()) / len(scores)
    return total.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()


def _chunks3(ops, modulation, vec):
    """A single-block Modulation: lin(silu(vec)) -> (shift, scale, gate), each [B, 1, hidden]."""
    return ops.linear(modulation.lin, ops.silu(vec))[:, None, :].chunk(3, dim=-1)


def flux_single_reference(dm, x, timestep, context, y, guidance, concept_embeddings, double_layers, single_layers,
                          space="output", softmax=True, switches=None, dtype=torch.float64, deviation=None,
                          concept_positions=None, image_id_offset=(0.0, 0.0, 0.0)):
    """Flux.1-class models with per-block modulation: maps over dual- and single-stream layers. Text and concept
    ids are zero on Flux.1; models that number their text (`params.txt_ids_dims`: LongCat, Ovis) put text at
    0..T-1 and each concept at concept_positions on those axes, with the image ids shifted by image_id_offset."""
    ops = ref.Ops(dtype)
    prm = dm.params
    text_axes = list(getattr(prm, "txt_ids_dims", None) or [])
    dual = ref.flux_reference(dm, x, timestep, context, y, guidance, concept_embeddings,
                              list(range(len(dm.double_blocks))), space, softmax, switches, dtype=dtype,
                              concept_positions=concept_positions, image_id_offset=image_id_offset)
    B = x.shape[0]
    vec = ref.mlp_embed(ops, dm.time_in, ops.sinusoidal(timestep.float() * 1000.0, 256))
    if prm.guidance_embed and guidance is not None:
        vec = vec + ref.mlp_embed(ops, dm.guidance_in, ops.sinusoidal(guidance.float() * 1000.0, 256))
    cvec = vec
    if dm.vector_in is not None:
        y = torch.zeros((B, prm.vec_in_dim)) if y is None else y
        cvec = vec + ref.mlp_embed(ops, dm.vector_in, torch.zeros((B, prm.vec_in_dim), dtype=dtype))
        vec = vec + ref.mlp_embed(ops, dm.vector_in, y[:, :prm.vec_in_dim].to(dtype))
    T, r, n_axes = context.shape[1], concept_embeddings.shape[0], len(prm.axes_dim)
    ids = torch.cat([ref.text_ids(ops, B, torch.arange(T), n_axes, text_axes),
                     ref.image_ids(ops, B, dual.grid, n_axes, *image_id_offset)], dim=1)
    concept_ids = ref.text_ids(ops, B, concept_positions if text_axes else torch.zeros(r), n_axes, text_axes)
    concept_mods = None
    if deviation == "zeroed_pooled_modulation":
        concept_mods = lambda i: _chunks3(ops, dm.single_blocks[i].modulation, cvec)  # noqa: E731
        deviation = None
    return single_stream_reference(
        dm, dual, ids, concept_ids, lambda i: _chunks3(ops, dm.single_blocks[i].modulation, vec),
        double_layers, single_layers, space, softmax, switches, dtype, deviation, concept_mods)


def chroma_single_reference(dm, x, timestep, context, guidance, concept_embeddings, double_layers, single_layers,
                            space="output", softmax=True, switches=None, dtype=torch.float64, deviation=None):
    """Chroma (text and concept ids zero): single block i takes rows 3i..3i+2 of the distilled guidance layer."""
    ops = ref.Ops(dtype)
    prm = dm.params
    dual = ref.chroma_reference(dm, x, timestep, context, guidance, concept_embeddings,
                                list(range(len(dm.double_blocks))), space, softmax, switches, dtype=dtype)
    B, T, r, n_axes = x.shape[0], context.shape[1], concept_embeddings.shape[0], len(prm.axes_dim)

    def mods(i):
        rows = ref.chroma_modulation_rows(ops, dm, timestep, guidance, [3 * i, 3 * i + 1, 3 * i + 2])
        return rows[:, 0:1], rows[:, 1:2], rows[:, 2:3]

    ids = torch.cat([ref.text_ids(ops, B, torch.arange(T), n_axes, []),
                     ref.image_ids(ops, B, dual.grid, n_axes)], dim=1)
    concept_ids = ref.text_ids(ops, B, torch.zeros(r), n_axes, [])
    return single_stream_reference(dm, dual, ids, concept_ids, mods, double_layers, single_layers, space,
                                   softmax, switches, dtype, deviation)


def flux2_single_reference(dm, x, timestep, context, guidance, concept_embeddings, concept_positions, double_layers,
                           single_layers, space="output", softmax=True, switches=None, dtype=torch.float64,
                           deviation=None):
    """Flux.2: one single-stream modulation for every single block (single_stream_modulation of
    vec = time_in(t) [+ guidance_in(g)]); text ids 0..T-1 on axis 3, each concept at its position there."""
    ops = ref.Ops(dtype)
    prm = dm.params
    dual = ref.flux2_reference(dm, x, timestep, context, guidance, concept_embeddings, concept_positions,
                               list(range(len(dm.double_blocks))), space, softmax, switches, dtype=dtype)
    vec = ref.mlp_embed(ops, dm.time_in, ops.sinusoidal(timestep.float() * 1000.0, 256))
    if prm.guidance_embed and guidance is not None:
        vec = vec + ref.mlp_embed(ops, dm.guidance_in, ops.sinusoidal(guidance.float() * 1000.0, 256))
    mod = _chunks3(ops, dm.single_stream_modulation, vec)
    B, T, n_axes = x.shape[0], context.shape[1], len(prm.axes_dim)
    ids = torch.cat([ref.text_ids(ops, B, torch.arange(T), n_axes, [3]),
                     ref.image_ids(ops, B, dual.grid, n_axes)], dim=1)
    concept_ids = ref.text_ids(ops, B, concept_positions, n_axes, [3])
    return single_stream_reference(dm, dual, ids, concept_ids, lambda i: mod, double_layers, single_layers,
                                   space, softmax, switches, dtype, deviation)


def hidream_single_reference(dm, x, timestep, context, pooled, llama_states, concept_embeddings, double_layers,
                             single_layers, space="output", softmax=True, switches=None, dtype=torch.float64,
                             deviation=None, image_cond=None):
    """HiDream-I1 without MoE (num_routed_experts=0): after the dual-stream blocks the joint sequence is
    [image ; carried text ([T5 ; Llama layer llama_layers[-1]])], with single block j's projected Llama layer
    llama_layers[depth + j] appended for that block and dropped after it. One 6-way adaLN of
    adaln_input = t_emb + pooled_emb modulates every row; q, k RMS-normed over the full width; ids zero
    for text (and concepts), (0, row, column) for the image; x += gate₁ · to_out(o), then
    x += gate₂ · SwiGLU(ff_i, (1 + scale₂) · LN(x) + shift₂) (attention, then the feed-forward, in sequence).
    E1: image_cond [B, C, H, W] joins the picture on the right (its tokens are image tokens, roped on the wider
    grid); the maps cover the picture's columns."""
    switches = switches or ref.ConceptSwitches()
    assert deviation in (None, "ungated_concept_update"), deviation
    ops = ref.Ops(dtype)
    depth = len(dm.double_stream_blocks)
    dual = ref.hidream_reference(dm, x, timestep, context, pooled, llama_states, concept_embeddings,
                                 list(range(depth)), space, softmax, switches, dtype=dtype, image_cond=image_cond)
    img, txt, concepts = dual.block_img[-1], dual.block_txt[-1], dual.concepts[-1]
    B, n = img.shape[0], img.shape[1]
    h, w = dual.grid  # the picture's grid; with E1's condition beside it the token grid is wider
    width = x.shape[-1] + (image_cond.shape[-1] if image_cond is not None else 0)
    ww = -(-width // dm.patch_size)
    hh = n // ww
    keep = (torch.arange(h)[:, None] * ww + torch.arange(w)[None, :]).reshape(-1)
    t_emb = ref.timestep_embedding_mlp(ops, dm.t_embedder.timestep_embedder,
                                        ref.diffusers_timestep_features(ops, timestep, 256))
    adaln = t_emb + ref.timestep_embedding_mlp(ops, dm.p_embedder.pooled_embedder, pooled.to(dtype))
    proj = dm.caption_projection
    llama = llama_states.to(dtype).movedim(1, 0)
    carried_len = context.shape[1] + llama[dm.llama_layers[-1]].shape[1]
    hidden = torch.cat([img, txt[:, :carried_len]], dim=1)
    axes = dm.pe_embedder.axes_dim
    r = concepts.shape[1]
    c_cos, c_sin = ref.flux_rope_tables(torch.zeros((B, r, len(axes)), dtype=dtype), axes, dm.pe_embedder.theta, dtype)

    def modulated(norm, x_, shift, scale):
        return ops.layer_norm(x_, norm.eps) * (1 + scale) + shift

    scores = {("double_block", i): dual.layer_scores[i] for i in double_layers}
    for j in range(max(single_layers) + 1):
        blk = dm.single_stream_blocks[j].block
        a = blk.attn1
        mod = ops.linear(blk.adaLN_modulation[1], ops.silu(adaln))[:, None].chunk(6, dim=-1)
        seq = torch.cat([hidden, ops.linear(proj[depth + j].linear, llama[dm.llama_layers[depth + j]])], dim=1)
        ids = torch.cat([ref.image_ids(ops, B, (hh, ww), len(axes)),
                         torch.zeros((B, seq.shape[1] - n, len(axes)), dtype=dtype)], dim=1)
        cos, sin = ref.flux_rope_tables(ids, axes, dm.pe_embedder.theta, dtype)

        def qkv(rows, cos_, sin_):
            xm = modulated(blk.norm1_i, rows, mod[0], mod[1])
            q = ops.rms_norm(ops.linear(a.to_q, xm), ref.rms_scale(a.q_rms_norm), ref.rms_eps(a.q_rms_norm))
            k = ops.rms_norm(ops.linear(a.to_k, xm), ref.rms_scale(a.k_rms_norm), ref.rms_eps(a.k_rms_norm))
            q, k, v = ops.heads(q, a.heads), ops.heads(k, a.heads), ops.heads(ops.linear(a.to_v, xm), a.heads)
            return ref.apply_rope(q, cos_, sin_), ref.apply_rope(k, cos_, sin_), v

        def update(rows, o_flat, ungated=False):
            g1, g2 = (torch.ones_like(mod[2]), torch.ones_like(mod[5])) if ungated else (mod[2], mod[5])
            rows = rows + g1 * ops.linear(a.to_out, o_flat)
            return rows + g2 * ref.swiglu(ops, blk.ff_i, modulated(blk.norm3_i, rows, mod[3], mod[4]))

        q, k, v = qkv(seq, cos, sin)
        q_c, k_c, v_c = qkv(concepts, c_cos, c_sin)
        o = ops.attention(q, k, v)
        k_img, v_img, o_img = k[:, :, keep], v[:, :, keep], o[:, :, keep]
        o_c = ref.concept_attention(ops, q_c, k_c, v_c, k_img, v_img, switches)
        if j in single_layers:
            scores[("single_block", j)] = ref.layer_scores(ops, space, softmax, o_img, o_c, k_img, q_c, v_img, v_c)
        hidden = update(seq, ops.flat(o))[:, :hidden.shape[1]]
        concepts = update(concepts, ops.flat(o_c), ungated=deviation == "ungated_concept_update")
    total = sum(scores.values()) / len(scores)
    return total.reshape(B, h, w, -1).permute(0, 3, 1, 2).contiguous()
