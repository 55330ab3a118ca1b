"""The ConceptAttention equations on tensors, independent of any model class.

Image keys and values are read in the layout the block's attention call got them, never
copied: "heads-first" [B, H, n, D] (Flux) or "tokens-first" [B, n, H, D] (SD3's [B, n, H*D]
viewed per head). Concept tensors are heads-first [B, H, r, D]. Flat tensors are
[B, L, H*D] (heads concatenated, as attention outputs are before the projection).

Grouped-query attention: keys and values (image or concept) may have fewer heads than the concept
queries, H_kv dividing H; query head h then reads key/value head h // (H / H_kv), as
repeat_interleave expands them (ComfyUI's enable_gqa). The query heads of a group share one batch
of keys, so the image keys are never expanded.
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
        return heads_to_flat(repeat_heads(concept_v, h))
    image_k, image_v, concept_k, concept_v = _common_kv_heads(image_k, image_v, concept_k, concept_v, tokens_first)
    kv = concept_k.shape[1]
    # Query heads of one key/value head side by side: [B, H_kv, (H/H_kv)·r, D].
    q = concept_q.reshape(b, kv, (h // kv) * r, d)
    if not tokens_first:
        n = image_k.shape[2]
        out = _attend(
            q.reshape(b * kv, -1, d), image_k.reshape(b * kv, n, d), image_v.reshape(b * kv, n, d),
            concept_k.reshape(b * kv, r, d), concept_v.reshape(b * kv, r, d), self_attention, cross_attention,
        ).view(b, h, r, d)
    else:
        # [n, H, D] -> [H, n, D] is a strided view per image; one batch row at a time keeps it so.
        per_row = [
            _attend(q[i], image_k[i].transpose(0, 1), image_v[i].transpose(0, 1),
                    concept_k[i], concept_v[i], self_attention, cross_attention)
            for i in range(b)
        ]
        out = (per_row[0].unsqueeze(0) if b == 1 else torch.stack(per_row)).view(b, h, r, d)
    return heads_to_flat(out)


def repeat_heads(x: torch.Tensor, heads: int, dim: int = 1) -> torch.Tensor:
    """x with its heads (axis `dim`) repeated to `heads`, each head kept next to its copies (GQA)."""
    have = x.shape[dim]
    if have == heads:
        return x
    if heads % have:
        raise ValueError(f"{have} key/value heads cannot serve {heads} query heads")
    return x.repeat_interleave(heads // have, dim=dim)


def _common_kv_heads(image_k, image_v, concept_k, concept_v, tokens_first):
    """Image and concept keys/values with one head count: the smaller side (usually the few concept rows)
    is repeated to the larger."""
    image_heads = image_k.shape[2 if tokens_first else 1]
    concept_heads = concept_k.shape[1]
    if concept_heads < image_heads:
        concept_k, concept_v = repeat_heads(concept_k, image_heads), repeat_heads(concept_v, image_heads)
    elif image_heads < concept_heads:
        axis = 2 if tokens_first else 1
        image_k = repeat_heads(image_k, concept_heads, axis)
        image_v = repeat_heads(image_v, concept_heads, axis)
    return image_k, image_v, concept_k, concept_v


def heads_to_flat(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D]."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


def dot_scores(image_vectors: torch.Tensor, concept_vectors: torch.Tensor) -> torch.Tensor:
    """fp32 [B, n, r] = image [B, n, C] · concept [B, r, C]ᵀ."""
    return bmm_f32(image_vectors, concept_vectors.transpose(1, 2))


def head_dot_scores(image_x: torch.Tensor, concept_x: torch.Tensor, tokens_first: bool,
                    heads: int | None = None) -> torch.Tensor:
    """fp32 [B, n, r] of image · concept vectors with heads concatenated, from per-head tensors.

    image_x: [B, H, n, D] (heads-first) or [B, n, H, D] (tokens-first); concept_x: [B, H, r, D].
    heads: the query heads (GQA: either side may have fewer heads); the scores are those of both sides
    expanded to `heads` heads, whether the attention call got its keys and values expanded or grouped.
    """
    image_heads = image_x.shape[2 if tokens_first else 1]
    widest = max(image_heads, concept_x.shape[1])
    if concept_x.shape[1] > image_heads:
        # An image head stands for a group of concept heads: summing the group's concept vectors gives the
        # same dot product as expanding the image heads.
        b, h, r, d = concept_x.shape
        concept_x = concept_x.reshape(b, image_heads, h // image_heads, r, d).sum(dim=2)
    concept_x = repeat_heads(concept_x, image_heads)
    b, h, r, d = concept_x.shape
    if tokens_first:
        n = image_x.shape[1]
        scores = dot_scores(image_x.reshape(b, n, h * d), heads_to_flat(concept_x))
    else:
        n = image_x.shape[2]
        per_head = bmm_f32(image_x.reshape(b * h, n, d), concept_x.reshape(b * h, r, d).transpose(1, 2))
        scores = per_head.view(b, h, n, r).sum(dim=1)
    if heads is not None and heads > widest:
        scores = scores * (heads // widest)  # each of the widest side's heads serves this many query heads
    return scores


def to_map(scores: torch.Tensor, softmax: bool, temperature: float = 1.0) -> torch.Tensor:
    """The per-layer map: softmax over concepts at every token (paper Eq. 11) of scores / temperature, or the raw
    scores."""
    return concept_softmax(scores, -1, temperature) if softmax else scores


def concept_softmax(scores: torch.Tensor, dim: int, temperature: float = 1.0) -> torch.Tensor:
    """softmax over the concept axis `dim` of scores / temperature, in fp32 (temperature 1: no division at all,
    so the paper's maps stay bit for bit what they were)."""
    scores = scores.float()
    return (scores if temperature == 1.0 else scores / temperature).softmax(dim=dim)
