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


def _check_weights(name: str, chunks) -> None:
    """ComfyUI's prompt syntax gives tokens weights ('(dog:1.5)', '(dog)'); a concept takes none: its map is
    compared with the other concepts', where a weight means nothing, and a weight of nan, inf or 1e30 would make
    its vector non-finite."""
    weights = {float(tok[1]) for chunk in chunks for tok in chunk}
    odd = sorted((w for w in weights if w != 1.0), key=str)
    if odd:
        raise ConceptAttentionError(
            f"concept {name!r} carries a prompt weight ({', '.join(str(w) for w in odd)}): '(word:weight)' and "
            "'(word)' weigh words in a prompt, but a concept's map is relative to the other concepts', so it takes "
            "no weight; write the concept without it (to look for brackets themselves, escape them: \\( \\))"
        )


def _own_ids(name: str, flat: list, own: list[int], kinds: TokenKinds, encoder: str) -> tuple:
    """What the model reads of a concept: its own token ids (an embedding counts as itself), refused when they
    are nothing but the encoder's unknown token (the same vector for any text it cannot read)."""
    ids = tuple(int(flat[i][0]) if not torch.is_tensor(flat[i][0]) else ("embedding", name, i) for i in own)
    if any(kinds.is_unknown(t) for t in ids) and all(kinds.is_unknown(t) or kinds.is_blank(t) for t in ids):
        raise ConceptAttentionError(
            f"concept {name!r} is nothing but characters the text encoder ({encoder}) cannot read: its tokenizer "
            "gives the unknown token for it, the same as for any other unreadable text; write it in words this "
            "encoder knows"
        )
    return ids


def _tokenized(clip, names: list[str]):
    """(encoder, [(name, tokens with word ids, own token indices)]), with every name checked before any is
    encoded: no weights, not unreadable, and no two the same to the model (same own token ids after the
    tokenizer's normalisation of case-sensitive spelling, spaces and Unicode forms)."""
    info, empty, kinds, out, seen = None, None, None, [], {}
    for name in names:
        with_ids = clip.tokenize(name, return_word_ids=True)
        if info is None:
            info = _encoder(clip, with_ids.keys())
            empty = clip.tokenize("", return_word_ids=True)[info.key]
            kinds = _kinds(clip, info.key)
        _check_weights(name, with_ids[info.key])
        own = own_token_indices(name, with_ids[info.key], empty, kinds, info.description)
        ids = _own_ids(name, [tok for chunk in with_ids[info.key] for tok in chunk], own, kinds, info.description)
        if ids in seen:
            raise ConceptAttentionError(
                f"concepts {seen[ids]!r} and {name!r} are the same to the text encoder ({info.description}): it "
                "reads them as the same tokens, so they would give identical maps; keep one of them"
            )
        seen[ids] = name
        out.append((name, with_ids, own))
    return info, out


def encode_concepts(clip, names: list[str], pooling: str = "mean") -> ConceptSet:
    """Encode each name with `clip` (a comfy.sd.CLIP) and pool its own tokens to one vector."""
    if clip is None:
        raise ConceptAttentionError("no text encoder given: connect the CLIP of the model you want to inspect")
    if pooling not in POOLING_MODES:
        raise ConceptAttentionError(f"pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
    vectors, positions, lengths = [], [], []
    info, tokenized = _tokenized(clip, names)
    for name, with_ids, own in tokenized:
        tokens = _pairs(with_ids)
        cond = clip.encode_from_tokens(tokens)
        rows = conditioning_rows(clip, tokens, info.key, own, cond, info.description)
        states = cond[0, rows].float()
        if not torch.isfinite(states).all():
            raise ConceptAttentionError(
                f"the text encoder ({info.description}) gives concept {name!r} a vector with NaN or infinite values, "
                "so its maps would be meaningless; try another spelling, or load the encoder in a wider dtype"
            )
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
