"""Concept names -> one text-encoder vector each, with the CLIP object the user loaded.

Each concept is encoded on its own. Its own tokens are found through the tokenizer's word
ids (0 marks start, end and padding tokens), so `first` is the concept's first own token
(the authors' choice) and `mean` averages its own tokens only, never EOS or padding.
"""

from __future__ import annotations

import torch

from .concepts import POOLING_MODES, ConceptSet
from .errors import ConceptAttentionError

SUPPORTED_ENCODERS_TEXT = (
    "Flux.1 (T5-XXL with CLIP-L), SD3/SD3.5 (any of CLIP-L, CLIP-G, T5-XXL) and Chroma (T5-XXL)"
)


def _token_source(cond_stage_model, token_keys) -> tuple[str, str]:
    """(tokenizer key whose positions index the conditioning, description, text space).

    The text space names whose states these are ("t5xxl", "clip-lg"), so concepts are only used
    with models that read that space.
    """
    from comfy.text_encoders.flux import FluxClipModel
    from comfy.text_encoders.sd3_clip import SD3ClipModel

    if isinstance(cond_stage_model, FluxClipModel):
        return "t5xxl", "Flux T5-XXL", "t5xxl"
    if isinstance(cond_stage_model, SD3ClipModel):
        # SD3 conditioning starts with the CLIP-L|G states (77 tokens), T5 follows.
        if getattr(cond_stage_model, "clip_l", None) is not None:
            return "l", "SD3 CLIP-L/G", "clip-lg"
        if getattr(cond_stage_model, "clip_g", None) is not None:
            return "g", "SD3 CLIP-G", "clip-lg"
        if getattr(cond_stage_model, "t5xxl", None) is not None:
            return "t5xxl", "SD3 T5-XXL", "t5xxl"
    if len(token_keys) == 1:
        key = next(iter(token_keys))
        # e.g. the T5-only encoder Chroma loads
        return key, f"{type(cond_stage_model).__name__} ({key})", "t5xxl" if key == "t5xxl" else ""
    raise ConceptAttentionError(
        f"the text encoder {type(cond_stage_model).__name__} is not supported for concepts; "
        f"load the text encoder of a supported model: {SUPPORTED_ENCODERS_TEXT}"
    )


def _own_token_positions(chunks) -> list[int]:
    flat = [tok for chunk in chunks for tok in chunk]
    return [i for i, tok in enumerate(flat) if len(tok) > 2 and tok[2] > 0]


def encode_concepts(clip, names: list[str], pooling: str = "mean") -> ConceptSet:
    """Encode each name with `clip` (a comfy.sd.CLIP) and pool its own tokens to one vector."""
    if clip is None:
        raise ConceptAttentionError("no text encoder given: connect the CLIP of the model you want to inspect")
    if pooling not in POOLING_MODES:
        raise ConceptAttentionError(f"pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
    vectors = []
    encoder, text_space = "", ""
    for name in names:
        with_ids = clip.tokenize(name, return_word_ids=True)
        key, encoder, text_space = _token_source(clip.cond_stage_model, with_ids.keys())
        positions = _own_token_positions(with_ids[key])
        if not positions:
            raise ConceptAttentionError(f"concept {name!r} produced no tokens of its own; use a word or phrase")
        tokens = {k: [[tok[:2] for tok in chunk] for chunk in chunks] for k, chunks in with_ids.items()}
        cond = clip.encode_from_tokens(tokens)
        if positions[-1] >= cond.shape[1]:
            raise ConceptAttentionError(
                f"the text encoder returned {cond.shape[1]} token states for {name!r}, fewer than its tokens; "
                f"load the text encoder of a supported model: {SUPPORTED_ENCODERS_TEXT}"
            )
        own = cond[0, positions].float()
        vectors.append(own[0] if pooling == "first" else own.mean(dim=0))
    empty_prompt = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    return ConceptSet(
        names=list(names),
        embeddings=torch.stack(vectors).cpu(),
        pooling=pooling,
        encoder=encoder,
        text_space=text_space,
        empty_prompt=empty_prompt,
    )
