"""CUDA graphs of a re-query's concept stream: the same kernels, launched at once.

A re-query runs a few small kernels per block (modulation, norms, projections, the concepts' attention over
the recorded image keys and values, the map) over every block up to the last selected one. On a GPU their
launch and Python overhead, not the arithmetic, sets its time. So a re-query is captured into a CUDA graph per
recorded forward, concept count and options; a later re-query with the same count and options, whatever the
concepts are, copies the new concepts' inputs into the graph's input buffers and replays it. A new count costs
one capture (the Python pass alone, no kernels run) and a replay: about what an eager pass costs.

Exactness: a replay runs the kernels an eager pass runs, on the same shapes. The first graph of each kind
(device, family, dtype, options) proves it: that re-query runs eagerly (its maps are what the user gets), the
graph is captured and replayed on the same concepts, and graphs of that kind are used only if the maps are equal
(torch.equal). Otherwise, and wherever a capture fails, re-queries run eagerly as before.

Everything that depends on the concepts enters the graph through its inputs: the embeddings, their text
positions and their conditioning lengths are copied into buffers on the device, and what families derive from
them (RoPE tables, through session.cached) is computed inside the graph from those buffers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch

from ..stream.sampling_run import SamplingRun

# Graphs kept per recorded forward (one per concept count and options): each holds a small memory pool.
MAX_GRAPHS_PER_FORWARD = 4
_UNUSABLE = "eager"  # a key whose capture failed or did not reproduce the eager maps
_streams: dict = {}
# Kinds of graph (device, family, options, ...; any concept count) whose first capture reproduced the eager maps.
_verified: set = set()

logger = logging.getLogger("concept_attention")


@dataclass
class CapturedStream:
    """A CUDA graph of one recorded forward's concept stream, its concept input buffers and its forward state
    (whose layer_sum the replay rewrites)."""

    graph: torch.cuda.CUDAGraph
    concepts: object  # ConceptSet whose tensors are the graph's device input buffers
    forward: object   # ForwardState built during capture


def concept_stream(run, session, diffusion_model, recorded, device):
    """The ForwardState of a re-query over `recorded` with the session's concepts, its maps summed
    (from a graph replay where one is kept for these concepts' count and options)."""
    if not _graph_ready(recorded, device) or recorded.side:
        # Side token groups' scores (StreamKind.side_tokens) are not graph outputs: those re-queries run eagerly.
        return _eager(run, diffusion_model, recorded, device)
    concepts = session.concepts
    kind = (str(device), session.family.name, concepts.embeddings.shape[1], recorded.dtype, session.options,
            concepts.positions is None, concepts.cond_lengths is None)
    key = (len(concepts), kind)
    captured = recorded.graphs.get(key)
    if captured is _UNUSABLE:
        return _eager(run, diffusion_model, recorded, device)
    if captured is None:
        if kind not in _verified:
            # The first graph of its kind is proved against the eager pass, which also warms the side stream up.
            forward = _eager(run, diffusion_model, recorded, device)
            captured = _capture(session, diffusion_model, recorded, device, expected=forward.layer_sum)
            _keep(recorded, key, captured)
            if captured is not _UNUSABLE:
                _verified.add(kind)
            return forward
        captured = _capture(session, diffusion_model, recorded, device)
        _keep(recorded, key, captured)
        if captured is _UNUSABLE:
            return _eager(run, diffusion_model, recorded, device)
    else:
        recorded.graphs[key] = recorded.graphs.pop(key)  # most recently used last
        _load_concepts(captured.concepts, concepts)
    captured.graph.replay()
    run.grid = recorded.grid
    return captured.forward


def _keep(recorded, key, captured):
    recorded.graphs[key] = captured
    while len(recorded.graphs) > MAX_GRAPHS_PER_FORWARD:
        recorded.graphs.pop(next(iter(recorded.graphs)))


def side_stream(device):
    """The stream re-queries run on (CUDA graphs cannot be captured on the default stream)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _streams:
        _streams[index] = torch.cuda.Stream(device=index)
    return _streams[index]


def _eager(run, diffusion_model, recorded, device):
    forward = run.begin_recorded_forward(diffusion_model, recorded, device)
    forward.run_recorded(recorded)
    return forward


def _graph_ready(recorded, device) -> bool:
    """Graphs only for a recorded forward that lives on this CUDA device (one in system RAM is copied over for
    each re-query, to new addresses), while re-queries run on the side stream."""
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return False
    if torch.cuda.current_stream(device) != side_stream(device):
        return False
    tensors = recorded.tensors()
    first = next(tensors, None)
    return first is not None and first.is_cuda


def _static_concepts(concepts, device, dtype):
    """The concepts with their tensors copied to the device: the graph's input buffers."""
    def on_device(t, to_dtype=None):
        return None if t is None else t.to(device=device, dtype=to_dtype or t.dtype, copy=True)

    return dataclasses.replace(concepts, embeddings=on_device(concepts.embeddings, dtype),
                               positions=on_device(concepts.positions), cond_lengths=on_device(concepts.cond_lengths))


def _load_concepts(static, concepts):
    static.embeddings.copy_(concepts.embeddings)
    for name in ("positions", "cond_lengths"):
        buffer = getattr(static, name)
        if buffer is not None:
            buffer.copy_(getattr(concepts, name))


def _capture(session, diffusion_model, recorded, device, expected=None) -> CapturedStream | str:
    """Capture the concept stream of `recorded` for the session's concepts (its input buffers hold them, so a
    replay gives their maps); _UNUSABLE where it cannot be captured, or where `expected` (the eager pass's
    summed maps) is given and a replay does not reproduce it exactly."""
    # The same family and options; the concepts' values live in the graph's input buffers, and what the family
    # derives from them (session.cached) is computed inside the graph from those buffers.
    graph_session = session.with_concepts(_static_concepts(session.concepts, device, recorded.dtype))
    run = SamplingRun(graph_session, recorded.latent_shape, None)
    rows = sum(b - a for a, b in recorded.cond_ranges)
    # The output lives outside the graph's pool, like the inputs: nothing the graph allocated outlives it.
    maps = torch.empty((rows, math.prod(recorded.grid), len(session.concepts)), dtype=torch.float32, device=device)
    graph = torch.cuda.CUDAGraph()
    try:
        # On the side stream that is current (not torch.cuda.graph, which would also collect garbage and empty
        # the allocator's cache on every capture); thread-local: other threads' CUDA calls are not disturbed.
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            forward = run.begin_recorded_forward(diffusion_model, recorded, device)
            forward.run_recorded(recorded)
            maps.copy_(forward.layer_sum)
            forward.layer_sum = forward.concepts = None
            graph_session.forget_derived()
        finally:
            graph.capture_end()
        forward.layer_sum = maps
        if expected is not None:
            graph.replay()
            if not torch.equal(maps, expected):
                logger.info("ConceptAttention: a CUDA graph of the re-query did not reproduce its maps exactly; "
                             "re-queries of this kind run without one")
                return _UNUSABLE
    except Exception as error:  # a family step that cannot be captured (e.g. a host sync): stay eager
        logger.info("ConceptAttention: re-queries of this picture run without a CUDA graph (%s)", error)
        return _UNUSABLE
    return CapturedStream(graph, graph_session.concepts, forward)


__all__ = ["concept_stream", "side_stream", "MAX_GRAPHS_PER_FORWARD"]
