"""What an encode run records of the image stream for later re-queries, built in one place.

Image tokens never attend to the concepts, so everything the concept stream reads from a block (the picture's
keys and values as the block's attention got them, and its attention output) is the same for any concept list.
A forward that records keeps copies of those per block, with the block arguments and per-forward values the
family's maths reads; requery/ keeps and replays them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .attention_capture import ImageStream


@dataclass
class RecordedForward:
    """What one forward's concept stream read: per block its image stream and the block arguments the family reads."""

    blocks: dict = field(default_factory=dict)       # block (kind, index) -> ImageStream
    side: dict = field(default_factory=dict)         # block (kind, index) -> {side token group -> ImageStream}
    block_args: dict = field(default_factory=dict)   # block (kind, index) -> the family's cacheable block arguments
    family_state: dict = field(default_factory=dict)
    grid: tuple = ()
    cond_ranges: list = field(default_factory=list)
    latent_shape: tuple = ()
    dtype: torch.dtype | None = None
    # CUDA graphs of re-queries over this recording, by concept count and options (requery/graph.py).
    graphs: dict = field(default_factory=dict, repr=False, compare=False)

    def on(self, device) -> bool:
        """Whether every kept tensor is on `device` already."""
        device = torch.device(device)
        return all(t.device.type == device.type and (device.index is None or t.device.index == device.index)
                   for t in self.tensors())

    def tensors(self):
        for view in list(self.blocks.values()) + [v for groups in self.side.values() for v in groups.values()]:
            yield from (view.image_k, view.image_v, view.image_out)
        for value in list(_flat(self.family_state)) + [v for a in self.block_args.values() for v in _flat(a)]:
            if torch.is_tensor(value) and not value.is_meta:
                yield value

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def to(self, device) -> RecordedForward:
        move = lambda t: t.to(device) if torch.is_tensor(t) and not t.is_meta else t  # noqa: E731
        moved = lambda v: ImageStream(move(v.image_k), move(v.image_v), move(v.image_out), v.tokens_first)  # noqa: E731
        return RecordedForward(
            blocks={i: moved(v) for i, v in self.blocks.items()},
            side={i: {name: moved(v) for name, v in groups.items()} for i, groups in self.side.items()},
            block_args={i: _map_tensors(a, move) for i, a in self.block_args.items()},
            family_state=_map_tensors(self.family_state, move),
            grid=self.grid, cond_ranges=self.cond_ranges, latent_shape=self.latent_shape, dtype=self.dtype,
        )


class StreamRecorder:
    """Collects one forward's image streams while it runs (the forward then reads the same copies).

    limit: bytes the recording may take; past it the recording is dropped at once (it could not be kept
    anyway), so an encode never holds more than the cache budget in copies."""

    def __init__(self, limit: int):
        self.recorded = RecordedForward()
        self.limit = limit
        self.nbytes = 0
        self.overflow = False

    def keep(self, layer: int, view: ImageStream, side: str | None = None) -> ImageStream:
        """A copy of a block's image stream (or of one of its side token groups, StreamKind.side_tokens), kept."""
        if self.overflow:
            return view
        size = sum(t.numel() * t.element_size() for t in (view.image_k, view.image_v, view.image_out))
        if self.nbytes + size > self.limit:
            self.overflow = True
            self.recorded.blocks.clear()
            self.recorded.side.clear()
            return view
        self.nbytes += size
        kept = ImageStream(view.image_k.clone(), view.image_v.clone(), view.image_out.clone(), view.tokens_first)
        if side is None:
            self.recorded.blocks[layer] = kept
        else:
            self.recorded.side.setdefault(layer, {})[side] = kept
        return kept

    def keep_args(self, layer: int, args: dict):
        self.recorded.block_args[layer] = args

    def finish(self, forward, latent_shape: tuple) -> RecordedForward | None:
        """The recording of a finished forward whose maps were used, with what a re-query needs of the forward
        itself; None where it outgrew its limit."""
        if self.overflow:
            return None
        recorded = self.recorded
        recorded.family_state = dict(forward.family_state)
        recorded.grid, recorded.cond_ranges = forward.grid, list(forward.cond_ranges)
        recorded.latent_shape, recorded.dtype = tuple(latent_shape), forward.dtype
        return recorded



def _flat(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _flat(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _flat(v)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _flat(getattr(value, name))
    else:
        yield value


def _map_tensors(value, fn):
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(v, fn) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return type(value)(**{n: _map_tensors(getattr(value, n), fn) for n in value.__dataclass_fields__})
    return value
