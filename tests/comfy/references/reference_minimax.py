"""An independent re-implementation of ConceptAttention on MiniMax H3, from the equations, for the tests.

Nothing here imports or calls the product. It reads the parameters of ComfyUI's MiniMaxH3Model and runs the
text-to-video forward op by op in float64:

* text: Qwen3-VL states through condition_proj and the token refiner (blocks of x + attn(rms(x)), x + mlp(rms(x)),
  q/k RMS-normed per head, no positions; a final RMSNorm);
* the packed sequence [text (L) ; audio (2 channels x A frames, channel-major) ; video (T x h x w of 1x2x2
  patches)], each row embedded by its projection (the latents as the network gets them: the audio undone from the
  sampler's carried scale);
* timesteps: sigma_v = timestep / 1000, t_v = 1 - sigma_v; the audio's sigma is the video's mapped from shift 12 to
  shift 3 (sigma = s b / (1 + (s - 1) b) of a base b), t_a = 1 - sigma_a. Each block's adaLN gives, per timestep,
  three rows of (shift, scale, gate) x 2: video (tag 0), text (1), audio (2); video rows take t_v's video row,
  text rows t_v's text row, audio rows t_a's audio row;
* positions (t, h, w): text (i, 0, 0); audio frame j of either channel (L + j, 0, w_lo / w_hi), w_lo and w_hi the
  video columns' extremes; video frame k at t = L + the sum of the spans of the frames before it (5/3 x 1, 4, 4,
  4, 4, ... pixel frames per latent frame), (h, w) on an area-normalised grid; RoPE rotates the first 3 x 2F
  channels of each head as split halves (pair i: channels i and i + 3F), by angles pos_axis x inv_freq;
* each block: x + g1 x out_proj(attention(rope(rms_head(q)), rope(rms_head(k)), v) of rms(x)(1 + s1) + b1),
  then x + g2 x fc2(silu(a) * u) of rms(x)(1 + s2) + b2, (a, u) = fc1(.) halves.

The concept stream: c0 = refiner(condition_proj(e)) (one sequence of all concepts); per block the concepts take the
TEXT rows' modulation at t_v and the text position (p, 0, 0), p = the position of the concept's tokens in its
conditioning; o_c = softmax(q_c [k_video ; k_c]^T / sqrt(d)) [v_video ; v_c] (keys after RoPE). Maps per selected
layer: softmax over concepts of (video attention output . o_c) (or keys . concept queries, values . concept values),
averaged over the layers, on the (T, h, w) token grid: [1, r, T, h, w]. Audio shares: the same scores of the target
audio rows, averaged over the layers and over each audio latent frame's two stereo rows: [1, r, A].

The sinusoidal timestep features and the RoPE angles are evaluated in float32, as ComfyUI evaluates them for every
dtype (part of the model's definition, not of the method).
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

MINIMAX_DEVIATIONS = (
    "video_modulation_for_concepts",  # concepts take the video rows' adaLN share, not the text's
    "audio_in_maps",                  # the audio rows counted as picture tokens: concepts attend to them too
    "concepts_at_position_zero",      # every concept at text position 0 instead of its own tokens' position
)
FRAME_PER_TOKEN = (1, 4, 4, 4, 4)
FRAME_RESCALE = 5.0 / 3.0


def _shift(sigma, from_shift, to_shift):
    base = sigma / (from_shift + sigma * (1.0 - from_shift))
    return to_shift * base / (1.0 + (to_shift - 1.0) * base)


def _axis(dim, sqrt_area):
    n = dim // 2
    ratio = dim / sqrt_area
    return (torch.arange(n, dtype=torch.float64) * (ratio / n) + (1.0 - ratio) / 2.0) * 32.0


def _video_positions(start, frames, lat_h, lat_w):
    """[frames*h*w, 3] (t, h, w) of video rows whose first frame sits at t = start."""
    area = math.sqrt(lat_h * lat_w)
    rows, cols = _axis(lat_h, area), _axis(lat_w, area)
    starts = [float(start)]
    for k in range(frames - 1):
        starts.append(starts[-1] + FRAME_RESCALE * FRAME_PER_TOKEN[k % 5])
    tt, hh, ww = torch.meshgrid(torch.tensor(starts, dtype=torch.float64), rows, cols, indexing="ij")
    return torch.stack([tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)], dim=-1), cols


def _audio_positions(start, audio_frames, cols):
    audio = torch.zeros(2 * audio_frames, 3, dtype=torch.float64)
    audio[:, 0] = (start + torch.arange(audio_frames, dtype=torch.float64)).repeat(2)
    audio[:audio_frames, 2] = cols[0]
    audio[audio_frames:, 2] = cols[-1]
    return audio


def _rope(dm, pos):
    """cos, sin [S, F3] (F3 = 3F pairs) of the model's split-half RoPE, angles in float32."""
    inv = dm.rope.inv_freq.detach().float()
    angles = torch.cat([pos[:, a].float()[:, None] * inv[None] for a in range(3)], dim=-1)
    return torch.cos(angles.double()), torch.sin(angles.double())


def _rotate(x, cos, sin):
    """Split-half rotation of [B, H, S, D] on its first 2 x F3 channels."""
    half = cos.shape[-1]
    a, b, rest = x[..., :half], x[..., half:2 * half], x[..., 2 * half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos, rest], dim=-1)


def _time_embedding(ops, dm, t):
    te = dm.time_embedder
    half = te.freq_dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = torch.tensor([t], dtype=torch.float32)[:, None] * freqs[None]
    features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(ops.dtype)
    return ops.linear(te.proj_out, ops.silu(ops.linear(te.proj_in, features)))[0]


def _qkv(ops, attn, x):
    """Heads-first q, k (RMS-normed per head), v of rows x [B, S, hidden]."""
    q, k, v = ops.linear(attn.qkv_proj, x).split(attn.heads * attn.head_dim, dim=-1)
    q = ops.rms_norm(ops.heads(q, attn.heads), attn.q_norm.weight, attn.q_norm.eps)
    k = ops.rms_norm(ops.heads(k, attn.heads), attn.k_norm.weight, attn.k_norm.eps)
    return q, k, ops.heads(v, attn.heads)


def _mlp(ops, mlp, x):
    gate, up = ops.linear(mlp.fc1, x).chunk(2, dim=-1)
    return ops.linear(mlp.fc2, ops.silu(gate) * up)


def refine(ops, dm, states):
    """condition_proj, then the token refiner, of Qwen3-VL states [B, L, text_dim]."""
    x = ops.linear(dm.condition_proj, states)
    for blk in dm.token_refiner.blocks:
        q, k, v = _qkv(ops, blk.attn, ops.rms_norm(x, blk.norm1.weight, blk.norm1.eps))
        x = x + ops.linear(blk.attn.out_proj, ops.flat(ops.attention(q, k, v)))
        x = x + _mlp(ops, blk.mlp, ops.rms_norm(x, blk.norm2.weight, blk.norm2.eps))
    return ops.rms_norm(x, dm.token_refiner.final_norm.weight, dm.token_refiner.final_norm.eps)


def _video_rows(video, dtype):
    """[T*h*w, 24*1*2*2] patches of a video latent [1, 24, T, H, W], frame by frame, row by row."""
    T, H, W = video.shape[2:]
    assert H % 2 == 0 and W % 2 == 0, "the reference takes whole 2x2 patches"
    h, w = H // 2, W // 2
    return video.to(dtype).reshape(24, T, 1, h, 2, w, 2).permute(1, 3, 5, 0, 2, 4, 6).reshape(T * h * w, -1)


def minimax_reference(dm, video, audio, timestep, text_states, concept_embeddings, concept_positions, layers,
                      space="output", softmax=True, switches: ConceptSwitches | None = None, payload=None,
                      deviation: str | None = None, dtype=torch.float64) -> ReferenceResult:
    """ConceptAttention maps [1, r, T, h, w] of a ComfyUI MiniMax H3 model for a text-, image- or reference-to-video
    call: video
    [1, 24, T, H, W] and audio [1, 32, 2, A] as the model's forward gets them (the audio still carrying the sampler's
    scale), timestep [1], the prompt's Qwen3-VL states [1, L, text_dim], concept embeddings [r, text_dim] at
    positions [r]. payload: the call's minimax_payload, read for the audio scale, the text's modality tags (a picture
    in the prompt: its rows take the video tag) and the keyframes (image to video): each keyframe latent becomes
    condition rows after the text, noised by the payload's seed (aug x z + (1 - aug) x noise, aug = 0.999), at
    timestep max(t_v, aug) with the video tag, positioned at t = L + 5/3 x its frame index; and the reference blocks
    (reference to video), between the text and the targets in their order, each at the timeline cursor (from L): a
    picture (1 frame, cursor + 1), an audio (its frames, at the target's w extremes), a clip with its soundtrack's
    rows first (the clip's own w extremes; cursor + the longer of the two); picture and clip rows as condition rows,
    audio rows at max(t_a, 1.0) with the audio tag. The target audio and video then start at the cursor."""
    switches = switches or ConceptSwitches()
    payload = payload or {}
    assert deviation in (None,) + MINIMAX_DEVIATIONS, deviation
    ops = Ops(dtype)
    layers = sorted(set(layers))
    sigma_v = max(float(timestep.flatten()[0].float()) / 1000.0, 1e-6)
    sigma_a = _shift(sigma_v, dm.sigma_shift_video, dm.sigma_shift_audio)
    t_v, t_a = 1.0 - sigma_v, 1.0 - sigma_a
    if float(payload.get("audio_scale", 1.0)) != 1.0:
        audio = audio.double() * (sigma_a / sigma_v)  # the stream's own latent, undone from the sampler's carry

    # segments: (embedded rows [n, hidden], positions [n, 3], timestep, modality tag per row [n])
    T, H, W = video.shape[2:]
    h, w = H // 2, W // 2
    txt = refine(ops, dm, text_states.to(dtype))[0]
    L = txt.shape[0]
    tags = payload.get("text_token_tags")
    tags = torch.ones(L, dtype=torch.long) if tags is None else tags.reshape(-1).long().cpu()
    text_pos = torch.zeros(L, 3, dtype=torch.float64)
    text_pos[:, 0] = torch.arange(L)
    segments = [(txt, text_pos, t_v, tags)]
    aug = float(payload.get("visual_cond_noise_aug", 0.999))
    audio_aug = float(payload.get("audio_cond_noise_aug", 1.0))
    _, cols = _video_positions(L, T, H, W)
    seed = int(payload.get("seed", 0))

    def condition_video(z, pos):
        rows = _video_rows(z.float(), torch.float32)
        if aug < 1.0:  # every condition restarts the same noise stream
            noise = torch.randn(rows.shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
            rows = aug * rows.double() + (1.0 - aug) * noise.double()
        return (ops.linear(dm.video_patch_proj, rows.to(dtype)), pos, max(t_v, aug),
                torch.zeros(rows.shape[0], dtype=torch.long))

    def condition_audio(z, pos):
        rows = z.double()[0].permute(1, 2, 0).reshape(-1, z.shape[1])
        if audio_aug < 1.0:
            noise = torch.randn(rows.shape, generator=torch.Generator("cpu").manual_seed(seed + 1),
                                dtype=torch.float32)
            rows = audio_aug * rows + (1.0 - audio_aug) * noise.double()
        return (ops.linear(dm.audio_patch_proj, rows.to(dtype)), pos, max(t_a, audio_aug),
                torch.full((rows.shape[0],), 2))

    # reference blocks (reference to video) sit between the text and the targets, and push the targets' timeline
    cursor = float(L)
    reference_segments = []
    for block in payload.get("refs") or ():
        kind = block["kind"]
        if kind == "image":
            pos, _ = _video_positions(cursor, 1, block["latent_h"], block["latent_w"])
            reference_segments.append(condition_video(block["latent"], pos))
            cursor += 1.0
        elif kind == "audio":
            if block["ref_audio_t"] > 0:
                pos = _audio_positions(cursor, block["ref_audio_t"], cols)
                reference_segments.append(condition_audio(block["audio_latent"], pos))
            cursor += float(block["ref_audio_t"])
        else:  # a clip, with its soundtrack's rows first, both from the block's origin
            pos, ref_cols = _video_positions(cursor, block["latent_t"], block["latent_h"], block["latent_w"])
            if block["ref_audio_t"] > 0:
                reference_segments.append(condition_audio(
                    block["audio_latent"], _audio_positions(cursor, block["ref_audio_t"], ref_cols)))
            reference_segments.append(condition_video(block["latent"], pos))
            spans = sum(FRAME_RESCALE * FRAME_PER_TOKEN[k % 5] for k in range(block["latent_t"]))
            cursor += max(float(block["ref_audio_t"]), spans)
    video_pos, _ = _video_positions(cursor, T, H, W)
    for keyframe in payload.get("keyframes") or ():
        z = keyframe.get("latent")
        if z is not None:
            start = cursor + FRAME_RESCALE * keyframe["resolved_frame_index"]
            segments.append(condition_video(z, _video_positions(start, z.shape[2], H, W)[0]))
    segments += reference_segments
    A = audio.shape[-1]
    aud = ops.linear(dm.audio_patch_proj, audio.to(dtype)[0].permute(1, 2, 0).reshape(2 * A, -1))
    segments.append((aud, _audio_positions(cursor, A, cols), t_a, torch.full((2 * A,), 2)))
    img = ops.linear(dm.video_patch_proj, _video_rows(video, dtype))
    segments.append((img, video_pos, t_v, torch.zeros(img.shape[0], dtype=torch.long)))
    n = img.shape[0]
    S = sum(seg[0].shape[0] for seg in segments)
    first_audio = S - n - 2 * A
    x = torch.cat([seg[0] for seg in segments])[None]
    cos, sin = _rope(dm, torch.cat([seg[1] for seg in segments]))

    concepts = refine(ops, dm, concept_embeddings.to(dtype)[None])
    c_pos = torch.zeros(concepts.shape[1], 3, dtype=torch.float64)
    if deviation != "concepts_at_position_zero":
        c_pos[:, 0] = concept_positions.double()
    c_cos, c_sin = _rope(dm, c_pos)

    embeddings = {t: _time_embedding(ops, dm, t) for t in {seg[2] for seg in segments}}
    audio_scores = []  # per selected layer: [1, 2A, r] scores of the target audio rows
    result = ReferenceResult(maps=None, grid=(T, h, w))
    for i in range(layers[-1] + 1):
        blk = dm.blocks[i]

        def modulation(t, blk=blk):
            """[3 tags, 6, hidden]: (shift, scale, gate) x 2 of each modality row at timestep t."""
            return ops.linear(blk.adaln_proj.linear, ops.silu(embeddings[t])).reshape(3, 6, -1)

        per_row = torch.cat([modulation(t)[row_tags] for _, _, t, row_tags in segments])  # [S, 6, hidden]
        concept_m = modulation(t_v)[0 if deviation == "video_modulation_for_concepts" else 1]

        def modulated(norm, stream, shift, scale):
            return ops.rms_norm(stream, norm.weight, norm.eps) * (1 + scale) + shift

        q, k, v = _qkv(ops, blk.attn, modulated(blk.norm1, x, per_row[:, 0], per_row[:, 1]))
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        o = ops.attention(q, k, v)
        q_c, k_c, v_c = _qkv(ops, blk.attn, modulated(blk.norm1, concepts, concept_m[0], concept_m[1]))
        q_c, k_c = _rotate(q_c, c_cos, c_sin), _rotate(k_c, c_cos, c_sin)
        first = first_audio if deviation == "audio_in_maps" else S - n
        o_c = concept_attention(ops, q_c, k_c, v_c, k[:, :, first:], v[:, :, first:], switches)
        o_x, k_x, v_x = o[:, :, S - n:], k[:, :, S - n:], v[:, :, S - n:]
        if i in layers:
            result.layer_scores[i] = layer_scores(ops, space, softmax, o_x, o_c, k_x, q_c, v_x, v_c)
            result.concept_out[i] = ops.flat(o_c)
            audio_rows = slice(first_audio, S - n)
            audio_scores.append(layer_scores(ops, space, softmax, o[:, :, audio_rows], o_c, k[:, :, audio_rows], q_c,
                                             v[:, :, audio_rows], v_c))
        x = x + per_row[:, 2] * ops.linear(blk.attn.out_proj, ops.flat(o))
        x = x + per_row[:, 5] * _mlp(ops, blk.mlp, modulated(blk.norm2, x, per_row[:, 3], per_row[:, 4]))
        concepts = concepts + concept_m[2] * ops.linear(blk.attn.out_proj, ops.flat(o_c))
        concepts = concepts + concept_m[5] * _mlp(ops, blk.mlp, modulated(blk.norm2, concepts, concept_m[3],
                                                                          concept_m[4]))
        result.block_img.append(x)
        result.concepts.append(concepts)

    total = sum(result.layer_scores[i] for i in layers) / len(layers)
    result.maps = total.reshape(1, T, h, w, -1).permute(0, 4, 1, 2, 3).contiguous()
    # The concepts' audio shares [1, r, A]: per audio latent frame, the mean over its two stereo rows of the layer-
    # averaged scores.
    audio_total = sum(audio_scores) / len(audio_scores)
    result.audio_shares = audio_total.reshape(1, 2, A, -1).mean(dim=1).permute(0, 2, 1)
    return result
