"""State of one model forward: the concept residual stream and this forward's layer maps."""

from __future__ import annotations

import math

import torch

from .options import DOUBLE_BLOCK
from .recording import StreamRecorder
from .shared_casts import BLOCK


class StopForward(Exception):
    """Raised after the last needed block when only maps are wanted (encode mode)."""

    def __init__(self, forward):
        super().__init__("concept maps complete")
        self.forward = forward


class ForwardState:
    """Created by the run for each full-frame model call that has conditional rows.

    cond_ranges: the batch rows (start, end) of the conditional chunks; the concept stream
    runs for these rows only, since maps are read from the conditional prediction.
    """

    def __init__(self, run, diffusion_model, cond_ranges, grid, dtype, device, step_weight):
        self.run = run
        self.session = run.session
        self.family = run.session.family
        self.options = run.session.options
        # Blocks are (kind, index): ("double_block", i), or ("single_block", i) in hybrid models.
        self.selected_layers = self.options.selected_blocks
        self.last_block = self.options.last_block
        self.diffusion_model = diffusion_model
        self.cond_ranges = cond_ranges
        self.grid = grid  # (h, w), or (frames, h, w) for a video family
        self.num_image_tokens = math.prod(grid)
        self.dtype = dtype
        self.device = device
        self.step_weight = step_weight
        self.family_state: dict = {}
        self.block_key = None  # (kind, index) of the block the concept stream is in
        self.concepts: torch.Tensor | None = None
        self.layer_sum: torch.Tensor | None = None
        self.side_sums: dict = {}  # side token group -> summed layer scores [Bc, n, r] (StreamKind.side_tokens)
        self.layers_read = 0
        self.blocks_run = 0
        self.complete = True
        # Where the main image sat in the last block of the first block list (a hybrid's single blocks keep it).
        self.main_image_tokens = None
        # Encode runs record what the concept stream reads, for later re-queries (recording.py, requery/).
        limit = run.session.keep_image_stream
        self.recorder = StreamRecorder(limit) if limit else None

    def rows(self, t: torch.Tensor) -> torch.Tensor:
        """The conditional rows of a batch-first tensor (plain slices: no index tensors, no sync)."""
        if len(self.cond_ranges) == 1:
            a, b = self.cond_ranges[0]
            return t if (a == 0 and b == t.shape[0]) else t[a:b]
        return torch.cat([t[a:b] for a, b in self.cond_ranges])

    @property
    def num_cond_rows(self) -> int:
        return sum(b - a for a, b in self.cond_ranges)

    def start_concepts(self):
        embeddings = self.session.embeddings_on(self.device, self.dtype)
        self.concepts = self.family.forward_concepts(self.diffusion_model, embeddings, self)

    def block_constant(self, name: str, build):
        """A value of the current block that depends on this forward but not on the concepts (e.g. the block's text
        modulation of the timestep): kept in family_state, so an encode's recording keeps it and a re-query reads it
        instead of computing it again (a 113 MB Linear a block on Flux)."""
        key = (name, self.block_key)
        value = self.family_state.get(key)
        if value is None:
            value = self.family_state[key] = build()
        return value

    def run_block(self, index: int, args: dict, extra: dict, call_block, kind: str = DOUBLE_BLOCK):
        """Run block (kind, index) through `call_block` while its concept stream rides along."""
        if self.concepts is None:
            self.start_concepts()
        key = self.block_key = (kind, index)
        with self.session.casts.window(BLOCK, key):
            return self._run_block(key, args, extra, call_block, kind)

    def _run_block(self, key, args: dict, extra: dict, call_block, kind: str):
        stream = self.family.stream_kind(kind)
        block = stream.block(self.diffusion_model, key[1])
        concept_qkv, saved = stream.qkv(block, self.concepts, args, self)
        image = stream.image_tokens(args, self)
        if kind == DOUBLE_BLOCK:
            self.main_image_tokens = image
        options = args.get("transformer_options") or {}
        # Side token groups: scored in the selected layers, and recorded in every block for re-queries.
        side = stream.side_tokens(args, self) if key in self.selected_layers or self.recorder is not None else {}
        capture = stream.capture(self, block, key, concept_qkv, image, options.get("optimized_attention_override"),
                                 side, args)
        if self.recorder is not None:
            self.recorder.keep_args(key, self.family.cacheable_block_args(args))
        out = call_block({**args, "transformer_options": {**options, "optimized_attention_override": capture}}, extra)
        if capture.concept_out is None:
            # Another patch skipped this block's attention (e.g. skip-layer guidance): the
            # concept stream is broken from here on, so this forward's maps are dropped.
            self.complete = False
        else:
            if key != self.last_block:  # after the last selected block nobody reads the stream
                self.concepts = stream.update(block, self.concepts, capture.concept_out, saved)
            self.blocks_run += 1
        if self.session.on_block is not None:
            self.session.on_block()
        if self.session.stop_early and key == self.last_block:
            raise StopForward(self)
        return out

    def run_recorded(self, recorded):
        """A re-query's whole concept stream: every block up to the last selected one, over a recorded forward."""
        for kind, index in self.session.stream_blocks:
            self.run_recorded_block(index, recorded, kind)

    def run_recorded_block(self, index: int, recorded, kind: str = DOUBLE_BLOCK):
        """Block (kind, index) of a re-query: the concept stream over the image stream an earlier run recorded."""
        if self.concepts is None:
            self.start_concepts()
        key = self.block_key = (kind, index)
        stream = self.family.stream_kind(kind)
        block = stream.block(self.diffusion_model, index)
        concept_qkv, saved = stream.qkv(block, self.concepts, recorded.block_args[key], self)
        concept_out = stream.read_recorded(self, block, key, concept_qkv, recorded)
        if key != self.last_block:
            self.concepts = stream.update(block, self.concepts, concept_out, saved)
        self.blocks_run += 1

    def add_layer_scores(self, scores: torch.Tensor):
        self.layer_sum = scores if self.layer_sum is None else self.layer_sum + scores
        self.layers_read += 1

    def add_side_scores(self, name: str, scores: torch.Tensor):
        previous = self.side_sums.get(name)
        self.side_sums[name] = scores if previous is None else previous + scores

    @property
    def has_all_layers(self) -> bool:
        return self.complete and self.layers_read == len(self.selected_layers)
