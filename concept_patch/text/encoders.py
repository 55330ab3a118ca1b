"""Which tokens of a CLIP's tokenization become its conditioning, and whose states those are.

A CLIP's tokenizer gives one token list per key ("l", "g", "t5xxl", "qwen3_4b", ...). The text
space names the states the conditioning holds, so concepts are only used with models that read
that space. Single-key encoders (T5 alone, the LLM encoders) use their key as the text space, so a
model family accepts or refuses them by name. Of the multi-key encoders, Flux.1's and SD3's are
named here (SD3 puts CLIP-L|G and T5 rows in one conditioning); for any other, text/encoding.py
asks the encoder which key its conditioning follows and uses that key.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks.errors import ConceptAttentionError
from ..families.registry import encoder_names, supported_encoders_text


def _key_name(key: str) -> str | None:
    """What users call the encoder whose states are text space `key`, as the family registry names it."""
    return encoder_names().get(key)


@dataclass(frozen=True)
class EncoderInfo:
    key: str  # tokenizer key whose tokens make up the conditioning
    description: str  # short, for messages and metadata
    text_space: str
    layer: str = ""  # which of the encoder's layers the conditioning holds (encoder_layer), "" where not known


def encoder_layer(cond_stage_model, key: str) -> str:
    """The layer of the `key` encoder a conditioning holds by default: "last", "hidden -3", "3 layers" (several
    stacked), or "" where not known. Read from the class's defaults (options_default), not from the current options,
    which clip-skip nodes change for the length of an encode. Two models may read one encoder at different layers
    (Qwen-Image its last, HunyuanVideo 1.5 its third from last), at the same width."""
    inner = getattr(cond_stage_model, key, None)
    defaults = getattr(inner, "options_default", None)
    if not defaults:
        return ""
    layer, index = defaults[0], defaults[1]
    if isinstance(layer, (list, tuple)):
        return f"{len(layer)} layers"
    if layer == "hidden":
        return f"hidden {index}"
    return str(layer)


def identify_encoder(cond_stage_model, token_keys) -> EncoderInfo | None:
    """The encoder's key and text space; None for a multi-key encoder not named here."""
    from comfy.text_encoders.flux import FluxClipModel
    from comfy.text_encoders.sd3_clip import SD3ClipModel

    if isinstance(cond_stage_model, FluxClipModel):
        return EncoderInfo("t5xxl", "Flux T5-XXL", "t5xxl")  # CLIP-L only gives the pooled vector
    if isinstance(cond_stage_model, SD3ClipModel):
        # SD3 conditioning starts with the CLIP-L|G states, T5 follows.
        if getattr(cond_stage_model, "clip_l", None) is not None:
            return EncoderInfo("l", "SD3 CLIP-L/G", "clip-lg")
        if getattr(cond_stage_model, "clip_g", None) is not None:
            return EncoderInfo("g", "SD3 CLIP-G", "clip-lg")
        if getattr(cond_stage_model, "t5xxl", None) is not None:
            return EncoderInfo("t5xxl", "SD3 T5-XXL", "t5xxl")
    keys = list(token_keys)
    if len(keys) == 1:
        key = keys[0]
        return EncoderInfo(key, _key_name(key) or f"{type(cond_stage_model).__name__} ({key})", key,
                           encoder_layer(cond_stage_model, key))
    return None


def keyed_encoder(cond_stage_model, key: str) -> EncoderInfo:
    """A multi-key encoder whose conditioning follows the tokens of `key` alone."""
    return EncoderInfo(key, f"{_key_name(key) or key} of {type(cond_stage_model).__name__}", key,
                       encoder_layer(cond_stage_model, key))


def unsupported_encoder(cond_stage_model) -> ConceptAttentionError:
    return ConceptAttentionError(
        f"the text encoder {type(cond_stage_model).__name__} is not supported for concepts; "
        f"load the text encoder of a supported model: {supported_encoders_text()}"
    )
