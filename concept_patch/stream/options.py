"""What the user chose: which layers, steps, space and attention switches."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..checks.errors import ConceptAttentionError

SPACES = ("output", "cross_attention", "value")

# Block kinds, named as ComfyUI's dit replace patches name them. A block is (kind, index).
DOUBLE_BLOCK = "double_block"
SINGLE_BLOCK = "single_block"
# The concept stream passes every dual-stream block before the first single-stream block.
_KIND_ORDER = {DOUBLE_BLOCK: 0, SINGLE_BLOCK: 1}


def block_order(block: tuple[str, int]) -> tuple[int, int]:
    """A block's place in the model's order, comparable across kinds (every dual block comes first)."""
    kind, index = block
    return (_KIND_ORDER[kind], index)


@dataclass(frozen=True)
class SaliencyOptions:
    """layers: 0-based dual-stream block indices whose maps are averaged.
    single_layers: 0-based single-stream block indices of a hybrid model (dual- and single-stream blocks) whose maps
    are averaged too: an extension beyond the paper, which reads dual-stream blocks only. The concept stream then
    runs through every dual-stream block and on into the single-stream blocks.
    start_percent/end_percent: the part of the sampling schedule (0 = first step, 1 = last)
    whose steps contribute maps in generation mode.
    concept_self_attention / concept_cross_attention: paper Table 4 switches; with both off
    each concept attends only to itself (its attention output is its own value vector).
    softmax_temperature: the softmax over concepts reads scores / temperature (1: the paper's softmax).
    softmax_after_mean: the softmax comes once, after the mean over layers, steps and noise samples, instead of at
    every layer (the authors' Flux.2 code: layers 5-7, temperature 1000). Both only matter with softmax on.
    """

    layers: tuple[int, ...]
    space: str = "output"
    softmax: bool = True
    concept_self_attention: bool = True
    concept_cross_attention: bool = True
    start_percent: float = 0.0
    end_percent: float = 1.0
    single_layers: tuple[int, ...] = ()
    softmax_temperature: float = 1.0
    softmax_after_mean: bool = False

    def __post_init__(self):
        if not self.layers and not self.single_layers:
            raise ConceptAttentionError("no layers selected; choose at least one dual-stream block, e.g. 'last 10'")
        if any(i < 0 for i in (*self.layers, *self.single_layers)):
            raise ConceptAttentionError(
                f"layer indices must be 0 or more, got {list(self.layers)} (single-stream: {list(self.single_layers)})"
            )
        if self.space not in SPACES:
            raise ConceptAttentionError(f"space {self.space!r} is not one of {', '.join(SPACES)}")
        if not (0.0 <= self.start_percent < self.end_percent <= 1.0):
            raise ConceptAttentionError(
                f"step range {self.start_percent}-{self.end_percent} is empty or out of bounds; "
                "use 0 <= start_percent < end_percent <= 1"
            )
        temperature = self.softmax_temperature
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
                math.isfinite(temperature) and temperature > 0):
            raise ConceptAttentionError(
                f"softmax_temperature must be a positive number, got {temperature!r}; 1 is the paper's softmax, "
                "1000 the authors' Flux.2 setting"
            )
        object.__setattr__(self, "softmax_temperature", float(temperature))
        object.__setattr__(self, "softmax_after_mean", bool(self.softmax_after_mean))
        object.__setattr__(self, "layers", tuple(sorted(set(self.layers))))
        object.__setattr__(self, "single_layers", tuple(sorted(set(self.single_layers))))

    @property
    def layer_softmax(self) -> bool:
        """Whether each layer's scores go through the softmax (softmax on, and not deferred past the mean)."""
        return self.softmax and not self.softmax_after_mean

    @property
    def mean_softmax(self) -> bool:
        """Whether the softmax comes once, after the mean over layers, steps and samples (the authors' Flux.2)."""
        return self.softmax and self.softmax_after_mean

    @property
    def last_layer(self) -> int:
        """The last selected dual-stream block (-1 when only single-stream blocks are selected)."""
        return self.layers[-1] if self.layers else -1

    @property
    def selected_blocks(self) -> frozenset:
        """Every selected block as (kind, index)."""
        return frozenset([(DOUBLE_BLOCK, i) for i in self.layers] + [(SINGLE_BLOCK, i) for i in self.single_layers])

    @property
    def last_block(self) -> tuple[str, int]:
        """The last block the concept stream needs: after it nobody reads the stream."""
        if self.single_layers:
            return (SINGLE_BLOCK, self.single_layers[-1])
        return (DOUBLE_BLOCK, self.layers[-1])

    @property
    def last_block_order(self) -> tuple[int, int]:
        """block_order of the last block: a recording that reached at least this far holds every block needed."""
        return block_order(self.last_block)

    def stream_blocks(self, num_double_blocks: int) -> tuple:
        """The blocks the concept stream runs through, in the model's order, as (kind, index): the dual-stream
        blocks up to the last selected one, or all of them and then the single-stream blocks up to the last
        selected one."""
        kind, last = self.last_block
        if kind == DOUBLE_BLOCK:
            return tuple((DOUBLE_BLOCK, i) for i in range(last + 1))
        return (tuple((DOUBLE_BLOCK, i) for i in range(num_double_blocks))
                + tuple((SINGLE_BLOCK, i) for i in range(last + 1)))
