"""Where a concept's tokens sit in its conditioning (the text encoder's output rows).

An encoder whose conditioning has one row per token (CLIP, T5, Flux.2, Klein) keeps them in
order: token i is row i. Others cut part of their template off the output, each by rules of its
own (LongCat-Image cuts a prefix and a suffix, Ovis-Image and Qwen-Image a prefix, HunyuanVideo
keeps the user span); those rules are not copied here. The encoder itself is asked instead:
ComfyUI's text encoders apply token weights to the output states row by row, after the
transformer ((state - empty-prompt state) * weight + empty-prompt state), and then cut, stack or
reshape rows. So the concept's tokens are encoded twice more, weighted 2 and then 3: both runs
take the same weighted path with the same inputs, every other row comes out bit-identical, and the
rows that change are the concept's, in token order. The count of changed rows must equal the
count of own tokens, else the encoder is refused with a clear error rather than guessed at.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from ..families.registry import supported_encoders_text

PROBE_WEIGHTS = (2.0, 3.0)
# A row counts as changed when it moved by more than this fraction of its size: a concept row moves
# by its distance from the empty prompt's row, untouched rows by nothing (or kernel noise).
CHANGED_ROW = 1e-3


def _with_weight(tokens: dict, key: str, indices, weight: float) -> dict:
    chosen, out, flat = set(indices), dict(tokens), 0
    chunks = []
    for chunk in tokens[key]:
        new = []
        for tok in chunk:
            new.append((tok[0], weight) if flat in chosen else tuple(tok[:2]))
            flat += 1
        chunks.append(new)
    out[key] = chunks
    return out


def rows_following_weights(clip, tokens: dict, key: str, indices: list[int]) -> list[int] | None:
    """Conditioning rows that change with the weight of the tokens at `indices` of `tokens[key]`
    (flattened over chunks), in order; None when the conditioning changes shape instead."""
    low, high = (clip.encode_from_tokens(_with_weight(tokens, key, indices, w))[0].float() for w in PROBE_WEIGHTS)
    if high.shape != low.shape:
        return None
    moved = (high - low).abs().flatten(1).amax(dim=1)
    size = torch.maximum(low.abs().flatten(1).amax(dim=1), high.abs().flatten(1).amax(dim=1))
    return torch.nonzero(moved > CHANGED_ROW * size).flatten().tolist()


def conditioning_rows(clip, tokens: dict, key: str, indices: list[int], cond: torch.Tensor, encoder: str) -> list[int]:
    """Conditioning rows of the tokens at `indices` of `tokens[key]` (flattened over chunks).

    tokens: the (token, weight) pairs `cond` was encoded from (clip.encode_from_tokens)."""
    if cond.shape[1] == sum(len(chunk) for chunk in tokens[key]):
        return list(indices)
    rows = rows_following_weights(clip, tokens, key, indices)
    if rows is None or len(rows) != len(indices):
        # Krea 2's encoder applies token weights before it stacks its 12 layers, so its rows do not follow them.
        shifted = rows_after_prefix_cut(clip, tokens, key, indices, cond)
        if shifted is None:
            # LTX-2's encoder cuts its left padding off and normalises its states over the whole sequence.
            shifted = rows_after_padding_cut(clip, tokens, key, indices, cond)
        if shifted is not None:
            return shifted
    if rows is None:
        raise _not_found(encoder, len(indices), "its output changes shape with token weights")
    if len(rows) != len(indices):
        raise _not_found(encoder, len(indices), f"{len(rows)} output rows follow their weights")
    return rows


def rows_after_prefix_cut(clip, tokens: dict, key: str, indices: list[int], cond: torch.Tensor) -> list[int] | None:
    """The rows of the tokens at `indices` for a causal (decoder-only) encoder that cuts a prefix off its output,
    asked of the encoder: with the concept's first token changed, a causal encoder's rows change from that token's
    row on and nowhere before it. Accepted only when that row is where a prefix cut puts the token (the output is
    the token list less its first tokens); else None."""
    if len(tokens[key]) != 1:
        return None
    flat = tokens[key][0]
    first = indices[0]
    cut = len(flat) - cond.shape[1]
    if cut <= 0 or first - cut < 0 or indices[-1] - cut >= cond.shape[1]:
        return None
    # Any other token of the prompt's own vocabulary stands in for the concept's first token.
    other = next((tok[0] for tok in flat if tok[0] != flat[first][0] and isinstance(tok[0], int)), None)
    if other is None:
        return None
    changed = {key: [[(other, tok[1]) if i == first else tuple(tok[:2]) for i, tok in enumerate(flat)]]}
    out = clip.encode_from_tokens({**tokens, **changed})[0].float()
    base = cond[0].float()
    if out.shape != base.shape:
        return None
    moved = (out - base).abs().flatten(1).amax(dim=1)
    size = torch.maximum(base.abs().flatten(1).amax(dim=1), out.abs().flatten(1).amax(dim=1))
    rows = torch.nonzero(moved > CHANGED_ROW * size).flatten().tolist()
    if not rows or rows[0] != first - cut or rows != list(range(rows[0], cond.shape[1])):
        return None
    return [i - cut for i in indices]


def rows_after_padding_cut(clip, tokens: dict, key: str, indices: list[int], cond: torch.Tensor) -> list[int] | None:
    """The rows of the tokens at `indices` for an encoder that drops its tokenizer's padding from its output (by its
    attention mask) and whose rows follow no token weight (e.g. one that normalises its states over the whole
    sequence, so a weight moves every row): accepted only when the output is exactly the token list less its leading
    (or trailing) run of the tokenizer's pad token; else None."""
    from .own_tokens import key_tokenizer

    pad = getattr(key_tokenizer(clip.tokenizer, key), "pad_token", None)
    if pad is None or len(tokens[key]) != 1:
        return None
    ids = [tok[0] for tok in tokens[key][0]]
    leading = next((i for i, t in enumerate(ids) if t != pad), len(ids))
    trailing = next((i for i, t in enumerate(reversed(ids)) if t != pad), len(ids))
    rows = cond.shape[1]
    if leading and rows == len(ids) - leading and indices[0] >= leading:
        return [i - leading for i in indices]
    if trailing and rows == len(ids) - trailing and indices[-1] < rows:
        return list(indices)
    return None


def _not_found(encoder: str, count: int, why: str) -> ConceptAttentionError:
    return ConceptAttentionError(
        f"could not find the concept's {count} token(s) in the output of the text encoder ({encoder}): {why}; "
        f"load the text encoder of a supported model: {supported_encoders_text()}"
    )
