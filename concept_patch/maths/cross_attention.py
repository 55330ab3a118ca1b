"""The two maps of a cross-attention layer (models whose text enters by cross-attention only: Wan, ...).

The picture's tokens query the text in such a layer, and the text never attends to the picture, so there is no
text-side attention output to compare with (the paper's output space needs one). Two maps are still well defined
from what the layer computes for the picture plus a few small products; a concept c is embedded as the model
embeds its text and its key k_c taken through the same layer's key projection and key norm:

* cross_attention (the paper's baseline, DAAM-like): score(c, i) = mean over heads h of q_{h,i}·k_{h,c}/√d;
* output (an extension beyond the paper, after IMAP): the concept's vector in the layer's attention-output space
  o_c = Σ_i softmax_i(q_{h,i}·k_{h,c}/√d) o_{h,i} per head (the image tokens' own attention outputs, weighted by where
  the concept's key points), heads concatenated; score(c, i) = o_i·o_c.

Either is then softmaxed over the concepts (or kept raw) by to_map. Tensors are flat, heads concatenated:
image queries and outputs [B, n, H*D] as the layer's attention call got and gave them, concept keys [B, r, H*D].
"""

from __future__ import annotations

import math

import torch

from .attention import bmm_f32, dot_scores


def cross_attention_scores(image_q: torch.Tensor, concept_k: torch.Tensor, heads: int) -> torch.Tensor:
    """fp32 [B, n, r]: mean over heads of q_{h,i}·k_{h,c}/√d. The sum over heads of per-head dot products is the
    dot product of the concatenated vectors, so this is one product of the flat tensors."""
    head_dim = image_q.shape[-1] // heads
    return dot_scores(image_q, concept_k.to(image_q.dtype)).mul_(1.0 / (heads * math.sqrt(head_dim)))


def _per_head_keys(concept_k: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, H*r, H*D]: row (h, c) holds k_{h,c} in head h's columns and zeros elsewhere, so that one product with the
    flat image queries gives every head's logits without a per-head copy of the (large) queries."""
    b, r, width = concept_k.shape
    d = width // heads
    eye = torch.eye(heads, dtype=concept_k.dtype, device=concept_k.device)
    per_head = concept_k.view(b, r, heads, d)
    return torch.einsum("brhd,hg->bhrgd", per_head, eye).reshape(b, heads * r, width)


def output_space_concepts(image_q: torch.Tensor, concept_k: torch.Tensor, image_out: torch.Tensor,
                          heads: int) -> torch.Tensor:
    """o_c [B, r, H*D] (fp32): per head, the image tokens' attention outputs averaged with the weights
    softmax over i of q_{h,i}·k_{h,c}/√d."""
    b, n, width = image_q.shape
    r = concept_k.shape[1]
    d = width // heads
    keys = _per_head_keys(concept_k.to(image_q.dtype), heads)
    logits = bmm_f32(keys, image_q.transpose(1, 2))  # [B, H*r, n]
    weights = logits.mul_(d ** -0.5).softmax(dim=-1)
    pooled = bmm_f32(weights.to(image_out.dtype), image_out)  # [B, H*r, H*D]: every head's rows over every head
    own = pooled.view(b, heads, r, heads, d).diagonal(dim1=1, dim2=3)  # [B, r, D, H]: head h's rows, head h's columns
    return own.permute(0, 1, 3, 2).reshape(b, r, width)


def output_space_scores(image_q: torch.Tensor, concept_k: torch.Tensor, image_out: torch.Tensor,
                        heads: int) -> torch.Tensor:
    """fp32 [B, n, r]: o_i·o_c with o_c from output_space_concepts."""
    concept_out = output_space_concepts(image_q, concept_k, image_out, heads)
    return dot_scores(image_out, concept_out.to(image_out.dtype))
