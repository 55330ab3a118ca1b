"""An independent fp64 implementation of the two maps of a cross-attention layer (issue 23), for Wan.

Written from the formulas, reading the model's weights directly (never the pack's code). For a selected layer,
the inputs of its cross-attention module as the model called it (the normed video tokens x, the embedded context
and the CLIP-vision token count) are given; everything else is computed here in float64:

    q_i   = RMSNorm_q(W_q x_i + b_q)                      the video tokens' queries
    k_t   = RMSNorm_k(W_k t + b_k),  v_t = W_v t + b_v    the text's keys and values (the context after the
                                                          CLIP-vision tokens of an image-to-video model)
    o_i   = per head softmax_t(q_i·k_t/√d) v_t            the text call's output, heads concatenated
    e_c   = text_embedding(s_c) = W_2 gelu_tanh(W_1 s_c + b_1) + b_2     the concept, embedded as Wan embeds text
    k_c   = RMSNorm_k(W_k e_c + b_k)                      its key through the same layer's projection and norm

    cross_attention (the paper's baseline):  score(c, i) = mean_h q_{h,i}·k_{h,c}/√d
    output (the extension):                  o_{h,c} = Σ_i softmax_i(q_{h,i}·k_{h,c}/√d) o_{h,i};  score = o_i·o_c

then softmax over concepts (or raw), mean over the selected layers, reshaped to the token grid (T, h, w).

Deviations (plausible mistakes the comparison must catch):
  clip_keys_as_concepts  the CLIP-vision image keys (k_img through norm_k_img) join the concepts' keys in the
                         softmax over concepts (image-embedding keys mixed into the concepts')
  clip_output_in_o       o_i is the block's summed cross-attention output (text call + CLIP-vision call)
  no_key_norm            k_c = W_k e_c + b_k, without the layer's key norm
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DEVIATIONS = ("clip_keys_as_concepts", "clip_output_in_o", "no_key_norm")
SPACES = ("output", "cross_attention")


@dataclass
class LayerInput:
    """One call of a block's cross-attention module: its positional x, the context and CLIP-vision token count."""

    x: torch.Tensor
    context: torch.Tensor
    context_img_len: int | None


@dataclass
class WanReference:
    maps: torch.Tensor  # [B, r, T, h, w], float64


def _lin(linear, x):
    w = linear.weight.double()
    out = x @ w.T
    return out + linear.bias.double() if linear.bias is not None else out


def _rms(norm, x):
    out = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + norm.eps)
    return out * norm.weight.double()


def _heads(x, heads):
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)  # [B, H, n, D]


def _attend(q, k, v, heads):
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    d = qh.shape[-1]
    weights = (qh @ kh.transpose(-1, -2) / d ** 0.5).softmax(dim=-1)
    out = weights @ vh
    return out.transpose(1, 2).reshape(q.shape)


def _concept_embedding(dm, states):
    emb = dm.text_embedding
    return _lin(emb[2], torch.nn.functional.gelu(_lin(emb[0], states.double()), approximate="tanh"))


def layer_scores(dm, layer: int, call: LayerInput, states: torch.Tensor, space: str,
                 deviation: str | None = None) -> torch.Tensor:
    """Raw scores [B, n, r] (before the softmax over concepts) of one layer, float64."""
    attn = dm.blocks[layer].cross_attn
    heads = attn.num_heads
    x, context = call.x.double(), call.context.double()
    img_len = call.context_img_len or 0
    text = context[:, img_len:]
    q = _rms(attn.norm_q, _lin(attn.q, x))
    o = _attend(q, _rms(attn.norm_k, _lin(attn.k, text)), _lin(attn.v, text), heads)
    if deviation == "clip_output_in_o":
        clip = context[:, :img_len]
        o = o + _attend(q, _rms(attn.norm_k_img, _lin(attn.k_img, clip)), _lin(attn.v_img, clip), heads)
    keys = _lin(attn.k, _concept_embedding(dm, states))
    if deviation != "no_key_norm":
        keys = _rms(attn.norm_k, keys)
    keys = keys.unsqueeze(0).expand(x.shape[0], -1, -1)
    if deviation == "clip_keys_as_concepts":
        clip_keys = _rms(attn.norm_k_img, _lin(attn.k_img, context[:, :img_len]))
        keys = torch.cat([keys, clip_keys], dim=1)
    d = q.shape[-1] // heads
    qh, kh = _heads(q, heads), _heads(keys, heads)  # [B, H, n, D], [B, H, r, D]
    logits = qh @ kh.transpose(-1, -2) / d ** 0.5  # [B, H, n, r]
    if space == "cross_attention":
        return logits.mean(dim=1)
    weights = logits.softmax(dim=2)  # over the video tokens i
    concept_out = weights.transpose(-1, -2) @ _heads(o, heads)  # [B, H, r, D]
    flat = concept_out.transpose(1, 2).reshape(o.shape[0], -1, o.shape[-1])  # [B, r, H*D]
    return o @ flat.transpose(1, 2)


def wan_reference(dm, calls: dict, states: torch.Tensor, grid: tuple, space: str = "output", softmax: bool = True,
                  deviation: str | None = None, rows=slice(None)) -> WanReference:
    """Maps of the selected layers (calls: layer -> LayerInput), averaged over them, on the grid (T, h, w)."""
    r = states.shape[0]
    total = None
    for layer, call in calls.items():
        call = LayerInput(call.x[rows], call.context[rows], call.context_img_len)
        scores = layer_scores(dm, layer, call, states, space, deviation)
        maps = scores.softmax(dim=-1) if softmax else scores
        maps = maps[..., :r]  # the concepts' columns (a deviation may have added others)
        total = maps if total is None else total + maps
    total = total / len(calls)
    return WanReference(total.transpose(1, 2).reshape(total.shape[0], r, *grid))
