"""The ConceptAttention equations on tensors, independent of any model class.

Layouts: heads-first tensors are [B, heads, L, head_dim]; "flat" tensors are
[B, L, heads*head_dim] (heads concatenated, as attention outputs are before projection).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def concept_attention(
    concept_q: torch.Tensor,
    concept_k: torch.Tensor,
    concept_v: torch.Tensor,
    image_k: torch.Tensor,
    image_v: torch.Tensor,
    self_attention: bool = True,
    cross_attention: bool = True,
) -> torch.Tensor:
    """Concept attention output o_c (paper Eq. 7), heads-first in, flat [B, r, H*D] out.

    Concepts query [image ; concepts] (cross and self attention). Image and text tokens never
    query the concepts, so the picture is unchanged. With both switches off each concept
    attends only to itself, which makes o_c its own value vector.
    """
    if not self_attention and not cross_attention:
        out = concept_v
    else:
        keys, values = [], []
        if cross_attention:
            keys.append(image_k)
            values.append(image_v)
        if self_attention:
            keys.append(concept_k)
            values.append(concept_v)
        k = keys[0] if len(keys) == 1 else torch.cat(keys, dim=2)
        v = values[0] if len(values) == 1 else torch.cat(values, dim=2)
        out = F.scaled_dot_product_attention(concept_q, k, v)
    b, h, r, d = out.shape
    return out.transpose(1, 2).reshape(b, r, h * d)


def heads_to_flat(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D]."""
    b, h, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, h * d)


def token_scores(image_vectors: torch.Tensor, concept_vectors: torch.Tensor, softmax: bool) -> torch.Tensor:
    """Per-token concept scores [B, n, r] in fp32: image · conceptᵀ, optionally softmax over concepts (Eq. 11).

    The dot products run in fp32: in bf16 a logit of a few hundred carries an error of
    several units, which a softmax would turn into a different map.
    """
    scores = torch.matmul(image_vectors.float(), concept_vectors.float().transpose(1, 2))
    return scores.softmax(dim=-1) if softmax else scores
