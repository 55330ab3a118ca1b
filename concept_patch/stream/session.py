"""Installs ConceptAttention on a clone of a ComfyUI model and keeps what its runs produced.

Everything goes through ModelPatcher APIs on `model.clone()`: dit double-block replace
patches (chaining any patch already there), an APPLY_MODEL wrapper that opens and closes each
forward, an OUTER_SAMPLE wrapper that scopes one sampling run, and for families that read them
(Flux.1, HunyuanVideo) a DIFFUSION_MODEL wrapper that sees the inputs the network itself gets.
Per-run state travels in transformer_options under this session's own keys, so two samplers
(or two ConceptAttention patches) never share maps.
"""

from __future__ import annotations

import inspect
import itertools
from collections import deque
from dataclasses import dataclass, field

import torch

from .block_hooks import install_block_hooks
from ..text.concepts import ConceptSet
from ..checks.errors import ConceptAttentionError
from ..families import DualStreamFamily, detect_family
from .forward_state import StopForward
from ..checks.input_limits import check_latent_fits
from .options import DOUBLE_BLOCK, SINGLE_BLOCK, SaliencyOptions
from ..maps.saliency_maps import SaliencyMaps
from .sampling_run import SamplingRun

WRAPPER_KEY = "concept_attention"
COMPILE_WRAPPER_KEY = "torch.compile"
_session_ids = itertools.count(1)


@dataclass
class RunRecord:
    """A finished run: its output latent (to match a sampler's LATENT) and its maps.

    saliency is None when no model call of the run could be read (all outside the step range,
    area-conditioning crops, or dropped because another patch skipped a needed block).
    """

    latent: torch.Tensor | None
    saliency: SaliencyMaps | None
    recorded: list = field(default_factory=list)  # image streams of an encode run that keeps them


class ConceptSession:
    """The configuration one patched model carries, and the records of its finished runs."""

    def __init__(self, family: DualStreamFamily, concepts: ConceptSet, options: SaliencyOptions,
                 stop_early: bool, downscale: int, metadata: dict, max_records: int = 16,
                 keep_image_stream: int = 0, temporal_downscale: int = 1, stream_blocks: tuple | None = None):
        self.uid = next(_session_ids)
        self.run_key = f"concept_attention.run.{self.uid}"
        self.forward_key = f"concept_attention.forward.{self.uid}"
        self.family = family
        self.concepts = concepts
        self.options = options
        # The blocks the concept stream runs through, in order, as (kind, index) (SaliencyOptions.stream_blocks).
        if stream_blocks is None and options.single_layers:
            raise ValueError("a session with single-stream layers needs its stream_blocks (the model's block count)")
        self.stream_blocks = stream_blocks if stream_blocks is not None else options.stream_blocks(0)
        self.stop_early = stop_early
        self.keep_image_stream = keep_image_stream  # bytes an encode may record for re-queries (0: none)
        self.downscale = downscale
        self.temporal_downscale = temporal_downscale
        self.metadata = metadata
        self.records: deque[RunRecord] = deque(maxlen=max_records)
        self._embeddings: dict = {}
        self._per_device: dict = {}

    def __deepcopy__(self, memo):
        # A session is the shared record of a patched model's runs: model clones (ComfyUI 0.3.x
        # deep-copies model_options) must keep pointing at it, not at a copy.
        return self

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

    def record(self, run: SamplingRun, output_latent: torch.Tensor):
        maps = run.averaged_maps()
        h, w = run.latent_hw
        saliency = None if maps is None else SaliencyMaps(
            maps=maps,
            names=list(self.concepts.names),
            image_size=(h * self.downscale, w * self.downscale),
            softmax=self.options.softmax,
            metadata={**self.metadata, "model_calls": run.forwards_seen, "model_calls_used": run.forwards_used},
            frames=self.pixel_frames(run.latent_frames) if maps.ndim == 5 else 0,
        )
        # Kept to match a sampler's LATENT later; an encode run's output is just its input.
        keep = torch.is_tensor(output_latent) and not self.stop_early
        latent = output_latent.detach().to("cpu", torch.float32, copy=True) if keep else None
        self.records.append(RunRecord(latent, saliency, run.recorded))

    def pixel_frames(self, latent_frames: int) -> int:
        """Frames a video latent with this many frames decodes to, by the family's VAE (DualStreamFamily.pixel_frames)."""
        return self.family.pixel_frames(latent_frames, self.temporal_downscale)

    def find_record(self, latent: torch.Tensor) -> RunRecord | None:
        """The newest run whose output equals this LATENT (a sampler output is matched by value)."""
        wanted = latent.detach().to("cpu", torch.float32)
        for record in reversed(self.records):
            if record.latent is not None and record.latent.shape == wanted.shape and torch.equal(record.latent, wanted):
                return record
        return None


class ConceptBlockPatch:
    """dit (kind, i) replace patch ("double_block", or "single_block" in hybrid models): runs the block with the
    concept stream riding along."""

    def __init__(self, session: ConceptSession, index: int, previous=None, kind: str = DOUBLE_BLOCK):
        self.session = session
        self.index = index
        self.previous = previous
        self.kind = kind

    def call_block(self, args, extra):
        if self.previous is not None:
            return self.previous(args, extra)
        return extra["original_block"](args)

    def __call__(self, args, extra):
        forward = (args.get("transformer_options") or {}).get(self.session.forward_key)
        if forward is None:
            return self.call_block(args, extra)
        return forward.run_block(self.index, args, extra, self.call_block, self.kind)


def inference_dtype(base_model) -> torch.dtype:
    """The dtype ComfyUI runs the diffusion model in (0.3.x has no get_dtype_inference)."""
    if hasattr(base_model, "get_dtype_inference"):
        return base_model.get_dtype_inference()
    return getattr(base_model, "manual_cast_dtype", None) or base_model.get_dtype()


class ForwardWrapper:
    """APPLY_MODEL wrapper: opens a ForwardState for full-frame calls and commits its maps."""

    def __init__(self, session: ConceptSession):
        self.session = session

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
        run = transformer_options.get(self.session.run_key)
        if run is None:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        base_model = executor.class_obj
        forward = run.begin_forward(base_model.diffusion_model, x, t, transformer_options, inference_dtype(base_model))
        if forward is None:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        options = {**transformer_options, self.session.forward_key: forward}
        try:
            out = executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
        except StopForward as stop:
            if stop.forward is not forward:
                raise
            # Encode mode: the maps are complete and nobody uses the prediction.
            out = x
        run.commit(forward)
        return out


def _parameter_names(function) -> tuple[str, ...]:
    """Names of the parameters `function` takes by position, in order (cached per underlying function)."""
    key = getattr(function, "__func__", function)
    if key not in _PARAMETER_NAMES:
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        try:
            parameters = inspect.signature(function).parameters.items()
        except (TypeError, ValueError):  # no signature to read: only keyword arguments are named
            parameters = ()
        _PARAMETER_NAMES[key] = tuple(name for name, p in parameters if p.kind in kinds)
    return _PARAMETER_NAMES[key]


_PARAMETER_NAMES: dict = {}


class DiffusionModelInputsWrapper:
    """DIFFUSION_MODEL wrapper: hands the family the network's own inputs (timestep, guidance, ...) by name.

    Positional arguments are named after the parameters of the function the executor wraps (the
    model's own `_forward`), so each model's signature, and each ComfyUI version's, is read as it is."""

    def __init__(self, session: ConceptSession):
        self.session = session

    def __call__(self, executor, *args, **kwargs):
        call = dict(zip(_parameter_names(executor.original), args))
        call.update(kwargs)
        options = call.get("transformer_options") or {}
        forward = options.get(self.session.forward_key)
        if forward is not None:
            self.session.family.prepare_forward(executor.class_obj, forward, call)
        return executor(*args, **kwargs)


class RunWrapper:
    """OUTER_SAMPLE wrapper: one SamplingRun per guider sample call, recorded when it finishes."""

    def __init__(self, session: ConceptSession):
        self.session = session

    def __call__(self, executor, *args, **kwargs):
        guider = executor.class_obj
        patcher = getattr(guider, "model_patcher", None)
        if patcher is not None and patcher.get_wrappers("apply_model", COMPILE_WRAPPER_KEY):
            raise ConceptAttentionError(
                "ConceptAttention cannot read a torch.compile'd model (its patches run Python inside every "
                "block). Remove the TorchCompileModel node, or use a model that is not compiled, to get maps."
            )
        noise, sigmas = args[0], args[3]
        if patcher is not None:
            # A picture larger than the model's position table: say so before ComfyUI's model asserts.
            check_latent_fits(patcher.get_model_object("diffusion_model"), tuple(noise.shape[-2:]), self.session.downscale)
        if patcher is not None:
            # Copy the concept embeddings to the device now, not inside the denoising loop.
            self.session.embeddings_on(patcher.load_device, inference_dtype(patcher.model))
        run = SamplingRun(self.session, noise.shape, sigmas)
        saved = guider.model_options
        transformer_options = {**saved.get("transformer_options", {}), self.session.run_key: run}
        guider.model_options = {**saved, "transformer_options": transformer_options}
        try:
            output = executor(*args, **kwargs)
        finally:
            guider.model_options = saved
        self.session.record(run, output)
        return output


def find_sessions(model) -> list[ConceptSession]:
    """ConceptAttention sessions installed on a ModelPatcher, oldest first."""
    from comfy.patcher_extension import WrappersMP, get_wrappers_with_key

    wrappers = get_wrappers_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, model.model_options, is_model_options=True)
    return [w.session for w in wrappers if isinstance(w, RunWrapper)]


def new_session(model, concepts: ConceptSet, options: SaliencyOptions, stop_early: bool = False,
                keep_image_stream: int = 0) -> ConceptSession:
    """Checks that `model` can carry these concepts and options; the session that will patch it.

    stop_early: end each forward right after the last selected block (encode mode only;
    never for generation, whose prediction must be complete).
    """
    from comfy.patcher_extension import WrappersMP

    diffusion_model = model.get_model_object("diffusion_model")
    family = detect_family(diffusion_model)
    blocks = family.num_blocks(diffusion_model)
    if options.last_layer >= blocks:
        raise ConceptAttentionError(
            f"layer {options.last_layer} was selected but this {family.name} model has {blocks} {family.block_kind} "
            f"blocks (0-{blocks - 1})"
        )
    if options.single_layers:
        check_single_layers(family, diffusion_model, options.single_layers, blocks)
    if concepts.text_space and concepts.text_space not in family.text_spaces:
        raise ConceptAttentionError(
            f"the concepts were encoded with {concepts.encoder} ({concepts.text_space} states), but this "
            f"{family.name} model reads {' or '.join(family.text_spaces)} states; build the Concept List with the "
            "CLIP loaded for this model"
        )
    layer = family.text_layers.get(concepts.text_space)
    if layer and concepts.text_layer and concepts.text_layer != layer:
        raise ConceptAttentionError(
            f"the concepts were encoded with {concepts.encoder}, whose states come from its {concepts.text_layer} "
            f"layer, but this {family.name} model reads that encoder's {layer} layer; build the Concept List with the "
            "CLIP loaded for this model"
        )
    expected = family.context_dim(diffusion_model)
    if concepts.context_dim != expected:
        raise ConceptAttentionError(
            f"the concepts were encoded by a text encoder with {concepts.context_dim}-wide states "
            f"({concepts.encoder or 'unknown encoder'}), but this {family.name} model reads {expected}-wide text "
            "states; build the Concept List with the CLIP loaded for this model"
        )
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
        "softmax": options.softmax,
        "concept_self_attention": options.concept_self_attention,
        "concept_cross_attention": options.concept_cross_attention,
        "pooling": concepts.pooling,
        "step_range": [options.start_percent, options.end_percent],
    }
    return ConceptSession(family, concepts, options, stop_early,
                          getattr(latent_format, "spacial_downscale_ratio", 8), metadata,
                          keep_image_stream=keep_image_stream,
                          temporal_downscale=getattr(latent_format, "temporal_downscale_ratio", 1),
                          stream_blocks=options.stream_blocks(blocks))


def check_single_layers(family: DualStreamFamily, diffusion_model, single_layers, num_double: int) -> None:
    """Selected single-stream blocks must exist in this model (hybrid models only)."""
    singles = family.num_single_blocks(diffusion_model)
    if single_layers[-1] >= singles:
        has = f"{singles} single-stream blocks (0-{singles - 1})" if singles else "no single-stream blocks"
        raise ConceptAttentionError(
            f"single-stream layer {single_layers[-1]} was selected but this {family.name} model has {num_double} "
            f"dual-stream blocks (0-{num_double - 1}) and {has}"
        )


def patched_model_options(model_options: dict, session: ConceptSession) -> dict:
    """A copy of ModelPatcher model_options with the session's block patches and wrappers added.

    Replace patches already there (another pack's, skip-layer guidance's) are chained, not replaced.
    """
    from comfy.model_patcher import create_model_options_clone, set_model_options_patch_replace
    from comfy.patcher_extension import WrappersMP, add_wrapper_with_key

    options = create_model_options_clone(model_options)
    options.setdefault("transformer_options", {})
    replace = options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for kind, i in session.stream_blocks:
        patch = ConceptBlockPatch(session, i, replace.get((kind, i)), kind)
        options = set_model_options_patch_replace(options, patch, "dit", kind, i)
    add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, RunWrapper(session), options, is_model_options=True)
    add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, ForwardWrapper(session), options, is_model_options=True)
    if session.family.forward_wrapper_type == "diffusion_model":
        add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, DiffusionModelInputsWrapper(session), options,
                             is_model_options=True)
    return options


def offer_block_hooks(patcher, session: ConceptSession) -> None:
    """On a clone: give the blocks of a model that ComfyUI calls without a dit hook that hook (block_hooks.py)."""
    for call, kind in ((session.family.block_call, DOUBLE_BLOCK), (session.family.single_block_call, SINGLE_BLOCK)):
        count = sum(1 for k, _ in session.stream_blocks if k == kind)
        if call is not None and count:
            install_block_hooks(patcher, call, count)


def install_concept_attention(model, concepts: ConceptSet, options: SaliencyOptions, stop_early: bool = False):
    """(clone of `model` whose forwards also run the concept stream and record maps, its session)."""
    session = new_session(model, concepts, options, stop_early)
    patched = model.clone()
    offer_block_hooks(patched, session)
    patched.model_options = patched_model_options(patched.model_options, session)
    return patched, session


def block_counts(model) -> tuple[DualStreamFamily, int, int]:
    """The model's family, its dual-stream and its single-stream block counts (raises for unsupported models)."""
    diffusion_model = model.get_model_object("diffusion_model")
    family = detect_family(diffusion_model)
    return family, family.num_blocks(diffusion_model), family.num_single_blocks(diffusion_model)
