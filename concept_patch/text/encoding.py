"""Concept names -> one text-encoder vector each, with the CLIP object the user loaded.

Each concept is encoded on its own. Its own tokens (own_tokens.py: what its text produced, never
start, end, padding or chat-template tokens) are located in its conditioning (token_rows.py), so
`first` is the concept's first own token (the authors' choice) and `mean` averages its own tokens
only. The same steps serve every encoder: CLIP, T5 and the chat-template LLM encoders.
"""

from __future__ import annotations

import torch

from ..checks.errors import ConceptAttentionError
from .concepts import POOLING_MODES, ConceptSet
from .encoders import EncoderInfo, identify_encoder, keyed_encoder, unsupported_encoder
from .own_tokens import TokenKinds, key_tokenizer, own_token_indices
from .token_rows import conditioning_rows, rows_following_weights

__all__ = ["encode_concepts"]

# Text for asking a multi-key encoder which key its conditioning follows.
_PROBE_TEXT = "a photo"


def _pairs(with_ids: dict) -> dict:
    return {k: [[tuple(tok[:2]) for tok in chunk] for chunk in chunks] for k, chunks in with_ids.items()}


def _kinds(clip, key: str) -> TokenKinds:
    return TokenKinds(key_tokenizer(clip.tokenizer, key).tokenizer)


def _encoder(clip, keys) -> EncoderInfo:
    info = identify_encoder(clip.cond_stage_model, keys)
    if info is not None:
        return info
    # Several token lists (HiDream: CLIP-L, CLIP-G, T5, Llama; HunyuanVideo: CLIP-L, Llama): the
    # conditioning is the one whose rows follow that key's token weights (the others feed pooled
    # vectors or extra inputs, or are not loaded).
    with_ids = clip.tokenize(_PROBE_TEXT, return_word_ids=True)
    empty = clip.tokenize("", return_word_ids=True)
    tokens, followed = _pairs(with_ids), []
    for key in with_ids:
        try:
            own = own_token_indices(_PROBE_TEXT, with_ids[key], empty[key], _kinds(clip, key), key)
        except ConceptAttentionError:
            continue
        rows = rows_following_weights(clip, tokens, key, own)
        if rows and len(rows) == len(own):
            followed.append(key)
    if len(followed) != 1:
        raise unsupported_encoder(clip.cond_stage_model)
    return keyed_encoder(clip.cond_stage_model, followed[0])


def encode_concepts(clip, names: list[str], pooling: str = "mean") -> ConceptSet:
    """Encode each name with `clip` (a comfy.sd.CLIP) and pool its own tokens to one vector."""
    if clip is None:
        raise ConceptAttentionError("no text encoder given: connect the CLIP of the model you want to inspect")
    if pooling not in POOLING_MODES:
        raise ConceptAttentionError(f"pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
    vectors, positions, lengths = [], [], []
    info, empty, kinds = None, None, None
    for name in names:
        with_ids = clip.tokenize(name, return_word_ids=True)
        if info is None:
            info = _encoder(clip, with_ids.keys())
            empty = clip.tokenize("", return_word_ids=True)[info.key]
            kinds = _kinds(clip, info.key)
        own = own_token_indices(name, with_ids[info.key], empty, kinds, info.description)
        tokens = _pairs(with_ids)
        cond = clip.encode_from_tokens(tokens)
        rows = conditioning_rows(clip, tokens, info.key, own, cond, info.description)
        states = cond[0, rows].float()
        if pooling == "first":
            vectors.append(states[0])
            positions.append(float(rows[0]))
        else:
            vectors.append(states.mean(dim=0))
            positions.append(sum(rows) / len(rows))
        lengths.append(cond.shape[1])
    empty_prompt = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    return ConceptSet(
        names=list(names),
        embeddings=torch.stack(vectors).cpu(),
        pooling=pooling,
        encoder=info.description if info else "",
        text_space=info.text_space if info else "",
        text_layer=info.layer if info else "",
        empty_prompt=empty_prompt,
        positions=torch.tensor(positions, dtype=torch.float32),
        cond_lengths=torch.tensor(lengths, dtype=torch.int64),
    )
