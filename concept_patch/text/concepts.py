"""The CONCEPTS value: concept names and one embedding vector per concept."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import torch

from ..checks.errors import ConceptAttentionError

# One set of limits for Concept List, Save Saliency and Load Saliency (files/load.py imports them): what the
# user may type is what a file may hold, so what is saved loads.
MAX_CONCEPTS = 64
MAX_NAME_CHARS = 256
MAX_METADATA_CHARS = 65536  # per metadata field of a saliency file, the concept names' JSON among them
POOLING_MODES = ("mean", "first")


def split_names(text: str) -> list[str]:
    """Comma- or newline-separated names, trimmed, empty entries dropped."""
    return [n for n in (part.strip() for part in re.split(r"[,\n\r]+", text or "")) if n]


def parse_concept_names(text: str) -> list[str]:
    """Split comma- or newline-separated concept names, trimmed, empty entries dropped.

    Duplicates (regardless of case and spacing) are rejected: two identical concept streams would split
    every softmax map between them and make masks ambiguous.
    """
    names = split_names(text)
    if not names:
        raise ConceptAttentionError(
            "no concepts given: write one or more words separated by commas or new lines, e.g. 'dog, grass, sky'"
        )
    check_concept_names(names)
    return names


def concept_key(name: str) -> str:
    """What two names must differ in to be two concepts: case and spacing (any Unicode space) never do."""
    return " ".join(name.casefold().split())


def names_json(names: list[str]) -> str:
    """The concept names as a saliency file's 'names' field holds them."""
    return json.dumps(list(names), ensure_ascii=False)


def check_concept_names(names: list[str]) -> None:
    """The limits every node holds names to: count, length of each, the file field they fill, each unique."""
    if len(names) > MAX_CONCEPTS:
        raise ConceptAttentionError(f"{len(names)} concepts given; at most {MAX_CONCEPTS} are accepted")
    for n in names:
        if len(n) > MAX_NAME_CHARS:
            raise ConceptAttentionError(
                f"concept {n[:40]!r}... is {len(n)} characters long; at most {MAX_NAME_CHARS} are accepted "
                "(a concept is a word or short phrase)"
            )
    field = len(names_json(names))
    if field > MAX_METADATA_CHARS:  # only names full of characters JSON escapes get here
        raise ConceptAttentionError(
            f"the concept names take {field} characters in a saliency file; at most {MAX_METADATA_CHARS} are "
            "accepted: use fewer or shorter names, without control characters"
        )
    seen: dict[str, str] = {}
    for n in names:
        key = concept_key(n)
        if key in seen:
            raise ConceptAttentionError(
                f"concept {n!r} is listed twice (as {seen[key]!r} and {n!r}); each concept must be unique"
            )
        seen[key] = n


@dataclass
class ConceptSet:
    """Concept names with their text-encoder embeddings.

    embeddings:    float32 [r, context_dim] on the CPU, in the text encoder's output space
                   (before the model's txt_in / context_embedder).
    pooling:       how each concept's own tokens became one vector ("mean" or "first").
    encoder:       a short description of the text encoder (for error messages and metadata).
    text_space:    whose states the embeddings are: "t5xxl", "clip-lg", or the tokenizer key of a
                   single-key encoder ("mistral3_24b", "qwen3_4b", "qwen25_7b", ...); "" when not known.
    empty_prompt:  the same encoder's conditioning for the empty prompt, used when the user
                   gives no prompt to encode an image with ([[cond, {"pooled_output": ...}]]).
    positions:     float32 [r]: where each concept's pooled tokens sit in its own conditioning
                   (index along the conditioning's token axis: the first own token for `first`,
                   the mean of the own tokens' indices for `mean`). Models whose text tokens carry
                   RoPE positions give a concept the position its tokens have there.
    cond_lengths:  int64 [r]: the token length of each concept's own conditioning (a model may
                   shift text positions by it, e.g. Flux.2 pads text on the left to 512).
    text_layer:    which of the encoder's layers the embeddings come from ("last", "hidden -3", ...; see
                   text/encoders.encoder_layer); "" when not known.
    """

    names: list[str]
    embeddings: torch.Tensor
    pooling: str = "mean"
    encoder: str = ""
    text_space: str = ""
    empty_prompt: list | None = field(default=None, repr=False)
    positions: torch.Tensor | None = None
    cond_lengths: torch.Tensor | None = None
    text_layer: str = ""

    def __post_init__(self):
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != len(self.names):
            raise ConceptAttentionError(
                f"concept embeddings must be [{len(self.names)}, dim], got {tuple(self.embeddings.shape)}"
            )
        for name in ("positions", "cond_lengths"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (len(self.names),):
                raise ConceptAttentionError(f"concept {name} must be [{len(self.names)}], got {tuple(value.shape)}")
        if self.pooling not in POOLING_MODES:
            raise ConceptAttentionError(f"pooling {self.pooling!r} is not one of {', '.join(POOLING_MODES)}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def context_dim(self) -> int:
        return self.embeddings.shape[1]
