"""What one patched model carries: its family, concepts and options, and the records of its finished runs.

A session is made once per patch (Concept Attention (Generation)) or per encode (Concept Saliency); the
wrappers and block patches that carry it (wrappers.py) reach it through transformer_options under the session's
own keys, so two samplers (or two ConceptAttention patches) never share maps.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from dataclasses import dataclass, field

import torch

from ..checks.errors import ConceptAttentionError
from ..maps.saliency_maps import SaliencyMaps
from ..maths.attention import concept_softmax
from .options import SaliencyOptions
from .shared_casts import CastSharing

_session_ids = itertools.count(1)
# The key under which ComfyUI's TorchCompileModel wraps a model.
COMPILE_WRAPPER_KEY = "torch.compile"


@dataclass
class RunRecord:
    """A finished run: its output latent (to match a sampler's LATENT), its raw maps and what they need to become
    a SALIENCY (the session builds that once, on first use).

    maps is None when no model call of the run could be read (all outside the step range, area-conditioning
    crops, or dropped because another patch skipped a needed block).
    """

    session: ConceptSession
    latent: torch.Tensor | None
    maps: torch.Tensor | None
    latent_shape: tuple
    model_calls: int
    model_calls_used: int
    recorded: list = field(default_factory=list)  # image streams of an encode run that keeps them
    side_scores: dict = field(default_factory=dict)  # side token group -> [B, n, r] (StreamKind.side_tokens)
    start: str | None = None  # latent_digest of the latent the run started from (a sampler's input)
    _saliency: SaliencyMaps | None = field(default=None, repr=False)

    @property
    def saliency(self) -> SaliencyMaps | None:
        if self._saliency is None and self.maps is not None:
            metadata = {"model_calls": self.model_calls, "model_calls_used": self.model_calls_used,
                        **self.session.side_metadata(self.side_scores)}
            self._saliency = self.session.saliency(self.maps, self.latent_shape, metadata)
        return self._saliency


class ConceptSession:
    """The configuration one patched model carries, and the records of its finished runs.

    family: the model's family adapter (families/), detected once by whoever makes the session.
    stop_early: end each forward right after the last selected block (encode mode only; never for generation,
    whose prediction must be complete). keep_image_stream: bytes an encode may record for re-queries (0: none).
    """

    def __init__(self, family, concepts, options: SaliencyOptions, stream_blocks: tuple,
                 stop_early: bool = False, downscale: int = 8, temporal_downscale: int = 1,
                 metadata: dict | None = None, max_records: int = 16, keep_image_stream: int = 0):
        self.uid = next(_session_ids)
        self.run_key = f"concept_attention.run.{self.uid}"
        self.forward_key = f"concept_attention.forward.{self.uid}"
        self.family = family
        self.concepts = concepts
        self.options = options
        # The blocks the concept stream runs through, in order, as (kind, index) (SaliencyOptions.stream_blocks).
        self.stream_blocks = stream_blocks
        self.stop_early = stop_early
        self.keep_image_stream = keep_image_stream
        self.downscale = downscale
        self.temporal_downscale = temporal_downscale
        self.metadata = metadata or {}
        self.records: deque[RunRecord] = deque(maxlen=max_records)
        # Called with no arguments after each block the concept stream runs through (an encode's progress).
        self.on_block = None
        self._embeddings: dict = {}
        self._per_device: dict = {}
        # Casts of offloaded weights shared between each block and its concept stream (shared_casts.py).
        self.casts = CastSharing()

    def __deepcopy__(self, memo):
        # A session is the shared record of a patched model's runs: model clones (ComfyUI 0.3.x
        # deep-copies model_options) must keep pointing at it, not at a copy.
        return self

    def with_concepts(self, concepts) -> ConceptSession:
        """A session of the same model, family and options for other concepts, that records nothing (a re-query's
        CUDA graph runs one over its input buffers)."""
        return ConceptSession(self.family, concepts, self.options, self.stream_blocks, stop_early=self.stop_early,
                              downscale=self.downscale, temporal_downscale=self.temporal_downscale,
                              metadata=self.metadata)

    def embeddings_on(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._embeddings:
            self._embeddings[key] = self.concepts.embeddings.to(device=device, dtype=dtype)
        return self._embeddings[key]

    def cached(self, key, device, build):
        """A value that depends on the concepts and the device only (e.g. their RoPE table), built once."""
        full_key = (key, str(device))
        if full_key not in self._per_device:
            self._per_device[full_key] = build()
        return self._per_device[full_key]

    def forget_derived(self) -> None:
        """Drop the values built by cached() (a CUDA graph capture computes them inside the graph)."""
        self._per_device.clear()

    def record(self, run, output_latent: torch.Tensor, start_latent: torch.Tensor | None = None) -> RunRecord:
        """Keep a finished run's raw maps (and, for a sampler's run, its output latent to match later, and the latent
        it started from, which a second sampler continuing the run (Wan 2.2's low-noise expert) matches with an
        earlier run's output: stream/experts.py)."""
        keep = torch.is_tensor(output_latent) and not self.stop_early  # an encode's output is just its input
        latent = output_latent.detach().to("cpu", torch.float32, copy=True) if keep else None
        start = None
        if keep and torch.is_tensor(start_latent) and not getattr(start_latent, "is_nested", False):
            start = latent_digest(start_latent)
        record = RunRecord(self, latent, run.averaged_maps(), run.latent_shape, run.forwards_seen, run.forwards_used,
                           run.recorded, run.averaged_side_scores(), start)
        self.records.append(record)
        return record

    def saliency(self, maps: torch.Tensor, latent_shape: tuple, metadata: dict,
                 image_size: tuple[int, int] | None = None) -> SaliencyMaps:
        """The SALIENCY of raw maps [B, r, (T,) h, w] of a latent of this shape (averaged over layers, steps and
        samples): names, picture size, frames and how they were made. With softmax_after_mean, the softmax over
        the concepts is taken here, once, of the mean."""
        if self.options.mean_softmax:
            maps = concept_softmax(maps, 1, self.options.softmax_temperature)
        h, w = latent_shape[-2:]
        frames = self.pixel_frames(latent_shape[2]) if maps.ndim == 5 else 0
        return SaliencyMaps(
            maps=maps, names=list(self.concepts.names),
            image_size=image_size or (h * self.downscale, w * self.downscale),
            softmax=self.options.softmax, metadata={**self.metadata, **metadata}, frames=frames,
        )

    def side_metadata(self, side_scores: dict) -> dict:
        """The family's SALIENCY metadata of the side token groups' averaged scores (name -> [B, n, r]), softmaxed
        over the concepts first where the softmax comes after the mean."""
        if self.options.mean_softmax:
            side_scores = {name: concept_softmax(scores, -1, self.options.softmax_temperature)
                           for name, scores in side_scores.items()}
        return self.family.side_metadata(side_scores)

    def pixel_frames(self, latent_frames: int) -> int:
        """Frames a video latent with this many frames decodes to, by the family's VAE (ModelFamily.pixel_frames)."""
        return self.family.pixel_frames(latent_frames, self.temporal_downscale)

    def find_record(self, latent: torch.Tensor) -> RunRecord | None:
        """The newest run whose output equals this LATENT (a sampler output is matched by value)."""
        if getattr(latent, "is_nested", False):
            # A multi-stream LATENT (ComfyUI's NestedTensor, e.g. MiniMax H3's [video, audio]): the run recorded the
            # flat pack the sampler ran on, which ComfyUI unpacks into these streams.
            from comfy.utils import pack_latents

            latent = pack_latents(latent.unbind())[0]
        wanted = latent.detach().to("cpu", torch.float32)
        for record in reversed(self.records):
            if record.latent is not None and record.latent.shape == wanted.shape and torch.equal(record.latent, wanted):
                return record
        return None


def latent_digest(latent: torch.Tensor) -> str:
    """Shape and SHA-1 of a latent's float32 values: what a later run's start is matched by (a digest, not a copy, so
    that the records keep no second latent each)."""
    data = latent.detach().to("cpu", torch.float32).contiguous().reshape(-1).view(torch.uint8).numpy()
    return f"{tuple(latent.shape)}:{hashlib.sha1(data).hexdigest()}"


def new_session(model, family, concepts, options: SaliencyOptions, stop_early: bool = False,
                keep_image_stream: int = 0) -> ConceptSession:
    """The session that will patch `model` (a ModelPatcher of `family`) with these concepts and options, after
    refusing concepts made for another model and compiled models."""
    from comfy.patcher_extension import WrappersMP

    diffusion_model = model.get_model_object("diffusion_model")
    family.check_concepts(diffusion_model, concepts)
    if model.get_wrappers(WrappersMP.APPLY_MODEL, COMPILE_WRAPPER_KEY):
        raise ConceptAttentionError(
            "this model is torch.compile'd; ConceptAttention cannot read a compiled model. "
            "Apply ConceptAttention to the model before TorchCompileModel, or leave compilation off."
        )
    latent_format = model.get_model_object("latent_format")
    metadata = {
        "model_family": family.name,
        "layers": list(options.layers),
        **({"single_layers": list(options.single_layers)} if options.single_layers else {}),
        "space": options.space,
        **({"space_method": method} if (method := family.blocks[0].space_method(options.space)) else {}),
        "softmax": options.softmax,
        **({"softmax_temperature": options.softmax_temperature} if options.softmax_temperature != 1.0 else {}),
        **({"softmax_after_mean": True} if options.mean_softmax else {}),
        "concept_self_attention": options.concept_self_attention,
        "concept_cross_attention": options.concept_cross_attention,
        "pooling": concepts.pooling,
        "step_range": [options.start_percent, options.end_percent],
    }
    return ConceptSession(family, concepts, options, options.stream_blocks(family.block_counts(diffusion_model)[0]),
                          stop_early=stop_early, downscale=getattr(latent_format, "spacial_downscale_ratio", 8),
                          temporal_downscale=getattr(latent_format, "temporal_downscale_ratio", 1),
                          metadata=metadata, keep_image_stream=keep_image_stream)
