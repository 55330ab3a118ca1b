"""The shared-weight concept stream of single-stream models: an extension of ConceptAttention.

The paper reads dual-stream (MM-attention) blocks, where text has modules of its own. In a
single-stream model (Z-Image, Lumina 2, Krea 2) every token goes through the block's one set of
weights. The concept rows then take the path the model's text rows take:

* before the blocks, the model's text preprocessing (its caption embedder and refiner), which does
  not depend on the timestep, so it runs once per sampling run;
* in each block, the block's own modules with the modulation the text rows get: norms, modulation,
  qkv, q/k norms, RoPE at a text position, then a separate attention of the concept queries over
  [the block's image keys/values (read from its attention call) ; the concept keys/values], then the
  block's output projection, MLP and gates.

The model's own joint attention is untouched and nobody attends to the concepts, so the picture is
unchanged. The map is the paper's dot product of the image tokens' and the concepts' attention outputs.
"""

from __future__ import annotations

import weakref

import torch

from ..checks.errors import ConceptAttentionError
from .base import ModelFamily

# Per sampling run, what the concepts' text preprocessing gave (weak: it goes with the run).
_per_run: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SingleStreamFamily(ModelFamily):
    """A single-stream model family: the concept stream goes through the blocks' shared weights (its blocks are
    stream_kinds.SharedWeights), and the concepts pass the model's text preprocessing once per run."""

    extension = True

    def initial_concepts(self, diffusion_model, embeddings):
        # The text refiner needs the concepts' positions and the run's options, which forward_concepts has.
        raise ConceptAttentionError(f"{self.name} embeds its concepts once per run, through forward_concepts")

    def preprocess_concepts(self, diffusion_model, embeddings: torch.Tensor, forward) -> torch.Tensor:
        """[r, hidden]: the concept embeddings through the model's text preprocessing."""
        raise NotImplementedError

    def forward_concepts(self, diffusion_model, embeddings, forward):
        key = ("concept_text_preprocessing", str(embeddings.device), embeddings.dtype,
               forward.options.concept_self_attention, id(diffusion_model))
        cache = _per_run.setdefault(forward.run, {})
        if key not in cache:
            cache[key] = self.preprocess_concepts(diffusion_model, embeddings, forward)
        c0 = cache[key]
        return c0.unsqueeze(0).expand(forward.num_cond_rows, -1, -1).contiguous()


def as_caption(concepts: torch.Tensor, together: bool) -> torch.Tensor:
    """[r, C] concept rows as a caption batch for a text refiner: one caption of r tokens (the concepts attend to
    each other, as they do in the blocks with concept self-attention on) or r captions of one token each."""
    return concepts.unsqueeze(0) if together else concepts.unsqueeze(1)


def from_caption(captions: torch.Tensor, together: bool) -> torch.Tensor:
    """Back to [r, C] from as_caption's layout."""
    return captions[0] if together else captions[:, 0]


def text_rows(vec: torch.Tensor, batch: int, forward, text_half: int | None) -> torch.Tensor:
    """The conditional rows of a block's modulation input that the text tokens use.

    With reference images at timestep 0 the model doubles the modulation batch: `text_half` (0 or 1)
    says which half of [2·batch, ...] the text rows read. None: one half only.
    """
    if text_half is not None and vec.shape[0] == 2 * batch:
        vec = vec[text_half * batch:(text_half + 1) * batch]
    return forward.rows(vec)
