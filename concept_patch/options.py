"""What the user chose: which layers, steps, space and attention switches."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConceptAttentionError

SPACES = ("output", "cross_attention", "value")
SPACE_HELP = {
    "output": "attention-output space, o_x · o_c (the paper's method, Eq. 11)",
    "cross_attention": "concept queries · image keys (post-RoPE), heads concatenated (paper Table 3, 'CA')",
    "value": "concept values · image values, heads concatenated (paper Table 3, 'Value')",
}


@dataclass(frozen=True)
class SaliencyOptions:
    """layers: 0-based dual-stream block indices whose maps are averaged.
    start_percent/end_percent: the part of the sampling schedule (0 = first step, 1 = last)
    whose steps contribute maps in generation mode.
    concept_self_attention / concept_cross_attention: paper Table 4 switches; with both off
    each concept attends only to itself (its attention output is its own value vector).
    """

    layers: tuple[int, ...]
    space: str = "output"
    softmax: bool = True
    concept_self_attention: bool = True
    concept_cross_attention: bool = True
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self):
        if not self.layers:
            raise ConceptAttentionError("no layers selected; choose at least one dual-stream block, e.g. 'last 10'")
        if any(i < 0 for i in self.layers):
            raise ConceptAttentionError(f"layer indices must be 0 or more, got {list(self.layers)}")
        if self.space not in SPACES:
            raise ConceptAttentionError(f"space {self.space!r} is not one of {', '.join(SPACES)}")
        if not (0.0 <= self.start_percent < self.end_percent <= 1.0):
            raise ConceptAttentionError(
                f"step range {self.start_percent}-{self.end_percent} is empty or out of bounds; "
                "use 0 <= start_percent < end_percent <= 1"
            )
        object.__setattr__(self, "layers", tuple(sorted(set(self.layers))))

    @property
    def last_layer(self) -> int:
        return self.layers[-1]
