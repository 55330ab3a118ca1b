"""The ConceptAttention equations on tensors, independent of any model class.

Image keys and values are read in the layout the block's attention call got them, never
copied: "heads-first" [B, H, n, D] (Flux) or "tokens-first" [B, n, H, D] (SD3's [B, n, H*D]
viewed per head). Concept tensors are heads-first [B, H, r, D]. Flat tensors are
[B, L, H*D] (heads concatenated, as attention outputs are before the projection).
"""

from __future__ import annotations

import torch

_HALF = (torch.float16, torch.bfloat16)
_bmm_out_dtype_ok: bool | None = None


def bmm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched a @ b with an fp32 result.

    On CUDA, half inputs stay half and only the output is fp32 (no upcast copy of the large
    image operand); elsewhere the operands are upcast. Dot products of a few hundred must not
    be rounded to bf16 before a softmax, which would turn them into a different map.
    """
    global _bmm_out_dtype_ok
    if a.is_cuda and a.dtype in _HALF and _bmm_out_dtype_ok is not False:
        try:
            out = torch.bmm(a, b, out_dtype=torch.float32)
            _bmm_out_dtype_ok = True
            return out
        except (TypeError, RuntimeError):
            _bmm_out_dtype_ok = False  # older torch: no out_dtype
    return torch.bmm(a.float(), b.float())


def _attend(q, image_k, image_v, concept_k, concept_v, self_attention, cross_attention):
    """softmax(q [k_x ; k_c]ᵀ / √d) [v_x ; v_c] for 3-D per-head batches, without concatenating keys."""
    logits = []
    if cross_attention:
        logits.append(bmm_f32(q, image_k.transpose(1, 2)))
    if self_attention:
        logits.append(bmm_f32(q, concept_k.transpose(1, 2)))
    weights = torch.cat(logits, dim=-1).mul_(q.shape[-1] ** -0.5).softmax(dim=-1).to(image_v.dtype)
    n = image_k.shape[1] if cross_attention else 0
    out = torch.bmm(weights[..., :n], image_v) if cross_attention else None
    if self_attention:
        out = torch.bmm(weights[..., n:], concept_v) if out is None else torch.baddbmm(out, weights[..., n:], concept_v)
    return out


def concept_attention(
    concept_q: torch.Tensor,
    concept_k: torch.Tensor,
    concept_v: torch.Tensor,
    image_k: torch.Tensor,
    image_v: torch.Tensor,
    self_attention: bool = True,
    cross_attention: bool = True,
    tokens_first: bool = False,
) -> torch.Tensor:
    """Concept attention output o_c (paper Eq. 7), flat [B, r, H*D].

    Concepts query [image ; concepts] (cross and self attention). Image and text tokens never
    query the concepts, so the picture is unchanged. With both switches off each concept
    attends only to itself, which makes o_c its own value vector.
    """
    b, h, r, d = concept_q.shape
    if not self_attention and not cross_attention:
        out = concept_v
    elif not tokens_first:
        n = image_k.shape[2]
        out = _attend(
            concept_q.reshape(b * h, r, d), image_k.reshape(b * h, n, d), image_v.reshape(b * h, n, d),
            concept_k.reshape(b * h, r, d), concept_v.reshape(b * h, r, d), self_attention, cross_attention,
        ).view(b, h, r, d)
    else:
        # [n, H, D] -> [H, n, D] is a strided view per image; one batch row at a time keeps it so.
        per_row = [
            _attend(concept_q[i], image_k[i].transpose(0, 1), image_v[i].transpose(0, 1),
                    concept_k[i], concept_v[i], self_attention, cross_attention)
            for i in range(b)
        ]
        out = per_row[0].unsqueeze(0) if b == 1 else torch.stack(per_row)
    return heads_to_flat(out)


def heads_to_flat(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D]."""
    b, h, l, d = x.shape
    return x.transpose(1, 2).reshape(b, l, h * d)


def dot_scores(image_vectors: torch.Tensor, concept_vectors: torch.Tensor) -> torch.Tensor:
    """fp32 [B, n, r] = image [B, n, C] · concept [B, r, C]ᵀ."""
    return bmm_f32(image_vectors, concept_vectors.transpose(1, 2))


def head_dot_scores(image_x: torch.Tensor, concept_x: torch.Tensor, tokens_first: bool) -> torch.Tensor:
    """fp32 [B, n, r] of image · concept vectors with heads concatenated, from per-head tensors.

    image_x: [B, H, n, D] (heads-first) or [B, n, H, D] (tokens-first); concept_x: [B, H, r, D].
    """
    b, h, r, d = concept_x.shape
    if tokens_first:
        n = image_x.shape[1]
        return dot_scores(image_x.reshape(b, n, h * d), heads_to_flat(concept_x))
    n = image_x.shape[2]
    per_head = bmm_f32(image_x.reshape(b * h, n, d), concept_x.reshape(b * h, r, d).transpose(1, 2))
    return per_head.view(b, h, n, r).sum(dim=1)


def to_map(scores: torch.Tensor, softmax: bool) -> torch.Tensor:
    """The per-layer map: softmax over concepts at every token (paper Eq. 11), or the raw scores."""
    return scores.softmax(dim=-1) if softmax else scores
