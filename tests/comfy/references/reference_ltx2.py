"""An independent fp64 implementation of the two maps of a cross-attention layer (issue 23), for LTX-2 / LTX-2.3 and
LTX-Video.

Written from the formulas, reading the model's weights directly (never the pack's code). For a selected block, the
inputs of its video text cross-attention (attn2) as the model called it (the video tokens x as attn2 got them, after
the block's norm or AdaLN, and the text context as attn2 got it), the block's prompt timestep (LTX-2.3) and the
audio tokens its audio text attention (audio_attn2) got are given; everything else is computed here in float64:

    q_i   = RMSNorm_q(W_q x_i + b_q)                      the video tokens' queries
    k_t   = RMSNorm_k(W_k t + b_k),  v_t = W_v t + b_v    the text's keys and values
    o_i   = per head softmax_t(q_i·k_t/√d + m_t) v_t      the text call's output (before LTX-2.3's per-head gate and
                                                          to_out), heads concatenated; m the text's additive
                                                          padding mask where the call has one (LTX-Video's T5)
    e_c   the concept, embedded as LTX-2 embeds its text: its encoder states s_c (LTX-2.3: the video projection's
          part, s_c[:cross_attention_dim]) as a text of one token through the video embeddings connector (ComfyUI's
          module, run in float64 on its plain-torch path: a concept's row attends to itself and the learnable
          registers appended after it),
          then caption_projection (LTX-2: W_2 gelu_tanh(W_1 · + b_1) + b_2; LTX-2.3: before the connector, an identity);
          LTX-Video: caption_projection(s_c) alone (no connector)
    t_c   = e_c                                                     LTX-2
    t_c   = e_c (1 + scale) + shift,  (shift, scale) = prompt_scale_shift_table + prompt timestep    LTX-2.3
    k_c   = RMSNorm_k(W_k t_c + b_k)                      its key through the same layer's projection and norm

    cross_attention (the paper's baseline):  score(c, i) = mean_h q_{h,i}·k_{h,c}/√d
    output (the extension):                  o_{h,c} = Σ_i softmax_i(q_{h,i}·k_{h,c}/√d) o_{h,i};  score = o_i·o_c

then softmax over concepts (or raw), mean over the selected layers, reshaped to the token grid (T, h, w).

Deviations (plausible mistakes the comparison must catch):
  no_key_norm     k_c = W_k t_c + b_k, without the layer's key norm
  audio_tokens    the audio tokens of the block's audio text call join the video's: their queries (audio_attn2's q)
                  and outputs are pooled into o_c with the video's (output space)
  audio_text      the concept embedded as the model embeds the audio's text (the audio connector and
                  audio_caption_projection; LTX-2.3: the audio projection's part of the states)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from concept_attention_tests.comfy.references.reference_wan import _attend, _heads, _lin, _rms

DEVIATIONS = ("no_key_norm", "audio_tokens", "audio_text")
SPACES = ("output", "cross_attention")


@dataclass
class LayerInput:
    """One call of a block: attn2's x, context and mask, the block's prompt timestep (or None), audio_attn2's x and
    context (LTX-2)."""

    x: torch.Tensor
    context: torch.Tensor
    prompt_timestep: torch.Tensor | None
    audio_x: torch.Tensor | None = None
    audio_context: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def rows(self, rows):
        def pick(t):
            return None if t is None else (t if t.shape[0] == 1 else t[rows])

        return LayerInput(self.x[rows], self.context[rows], pick(self.prompt_timestep), pick(self.audio_x),
                          pick(self.audio_context), pick(self.mask))


def _caption_projection(projection, x):
    if not isinstance(projection, torch.nn.Module):
        return x  # LTX-2.3's identity (caption_projection_first_linear off)
    return _lin(projection.linear_2, torch.nn.functional.gelu(_lin(projection.linear_1, x), approximate="tanh"))


def concept_embedding(dm, states: torch.Tensor, audio: bool = False) -> torch.Tensor:
    """e_c [r, width] in float64: each concept's states as a one-token text through the model's connector."""
    states = states.double()
    if not hasattr(dm, "video_embeddings_connector"):  # LTX-Video
        return _caption_projection(dm.caption_projection, states)
    cross, audio_cross = dm.cross_attention_dim, dm.audio_cross_attention_dim
    if states.shape[-1] == cross + audio_cross:
        states = states[:, cross:] if audio else states[:, :cross]
    projection = dm.audio_caption_projection if audio else dm.caption_projection
    connector = copy.deepcopy(dm.audio_embeddings_connector if audio else dm.video_embeddings_connector).double()
    x = states
    if dm.caption_proj_before_connector:
        x = _caption_projection(projection, x)
    import comfy.model_management

    # ComfyUI's plain-torch paths (its training mode: RoPE and norms without the fused kernels, which take no float64).
    training = comfy.model_management.in_training
    comfy.model_management.in_training = True
    try:
        with torch.no_grad():
            x = torch.cat([connector(x[i].view(1, 1, -1))[0][:, 0] for i in range(x.shape[0])])
    finally:
        comfy.model_management.in_training = training
    if not dm.caption_proj_before_connector:
        x = _caption_projection(projection, x)
    return x


def _attend_masked(q, k, v, heads, mask):
    if mask is None:
        return _attend(q, k, v, heads)
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    logits = qh @ kh.transpose(-1, -2) / qh.shape[-1] ** 0.5 + mask.double()
    return (logits.softmax(dim=-1) @ vh).transpose(1, 2).reshape(q.shape)


def layer_scores(dm, layer: int, call: LayerInput, states: torch.Tensor, space: str,
                 deviation: str | None = None) -> torch.Tensor:
    """Raw scores [B, n, r] (before the softmax over concepts) of one layer, float64."""
    block = dm.transformer_blocks[layer]
    attn = block.attn2
    heads = attn.heads
    x, context = call.x.double(), call.context.double()
    q = _rms(attn.q_norm, _lin(attn.to_q, x))
    o = _attend_masked(q, _rms(attn.k_norm, _lin(attn.to_k, context)), _lin(attn.to_v, context), heads, call.mask)
    text = concept_embedding(dm, states, audio=deviation == "audio_text")
    text = text.unsqueeze(0).expand(x.shape[0], -1, -1)
    if block.cross_attention_adaln:
        prompt = call.prompt_timestep.double()
        table = block.prompt_scale_shift_table.double()[None, None]
        shift, scale = (table + prompt.reshape(prompt.shape[0], prompt.shape[1], 2, -1)).unbind(dim=2)
        text = text * (1 + scale) + shift
    keys = _lin(attn.to_k, text)
    if deviation != "no_key_norm":
        keys = _rms(attn.k_norm, keys)
    d = q.shape[-1] // heads
    qh, kh = _heads(q, heads), _heads(keys, heads)  # [B, H, n, D], [B, H, r, D]
    logits = qh @ kh.transpose(-1, -2) / d ** 0.5  # [B, H, n, r]
    if space == "cross_attention":
        return logits.mean(dim=1)
    pooled_q, pooled_o = qh, _heads(o, heads)
    if deviation == "audio_tokens":
        audio = block.audio_attn2
        ax, actx = call.audio_x.double(), call.audio_context.double()
        aq = _rms(audio.q_norm, _lin(audio.to_q, ax))
        ao = _attend(aq, _rms(audio.k_norm, _lin(audio.to_k, actx)), _lin(audio.to_v, actx), audio.heads)
        pooled_q = torch.cat([qh, _heads(aq, heads)], dim=2)
        pooled_o = torch.cat([pooled_o, _heads(ao, heads)], dim=2)
    weights = (pooled_q @ kh.transpose(-1, -2) / d ** 0.5).softmax(dim=2)  # over the tokens i
    concept_out = weights.transpose(-1, -2) @ pooled_o  # [B, H, r, D]
    flat = concept_out.transpose(1, 2).reshape(o.shape[0], -1, o.shape[-1])  # [B, r, H*D]
    return o @ flat.transpose(1, 2)


@dataclass
class LTX2Reference:
    maps: torch.Tensor  # [B, r, T, h, w], float64


def ltx2_reference(dm, calls: dict, states: torch.Tensor, grid: tuple, space: str = "output", softmax: bool = True,
                   deviation: str | None = None, rows=slice(None)) -> LTX2Reference:
    """Maps of the selected layers (calls: layer -> LayerInput), averaged over them, on the grid (T, h, w)."""
    r = states.shape[0]
    total = None
    for layer, call in calls.items():
        scores = layer_scores(dm, layer, call.rows(rows), states, space, deviation)
        maps = scores.softmax(dim=-1) if softmax else scores
        total = maps if total is None else total + maps
    total = total / len(calls)
    return LTX2Reference(total.transpose(1, 2).reshape(total.shape[0], r, *grid))
