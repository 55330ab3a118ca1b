"""The ModelPatcher patches and wrappers that carry a session through ComfyUI's sampling.

Everything goes through ModelPatcher APIs: dit replace patches on the blocks the concept stream passes
(chaining any patch already there), an APPLY_MODEL wrapper that opens and closes each forward, an OUTER_SAMPLE
wrapper that scopes one sampling run, and for families that read them (Flux.1, HunyuanVideo) a DIFFUSION_MODEL
wrapper that sees the inputs the network itself gets. Blocks ComfyUI calls without a dit hook get one through
object patches on a clone (block_hooks.py).
"""

from __future__ import annotations

from ..checks.errors import ConceptAttentionError
from ..checks.input_limits import check_latent_fits
from .block_hooks import install_block_hooks, parameter_names
from .forward_state import StopForward
from .options import DOUBLE_BLOCK
from .sampling_run import SamplingRun
from .session import COMPILE_WRAPPER_KEY, ConceptSession
from .shared_casts import FORWARD, install_shared_casts

WRAPPER_KEY = "concept_attention"


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


def inference_dtype(base_model):
    """The dtype ComfyUI runs the diffusion model in (0.3.x has no get_dtype_inference)."""
    if hasattr(base_model, "get_dtype_inference"):
        return base_model.get_dtype_inference()
    return getattr(base_model, "manual_cast_dtype", None) or base_model.get_dtype()


class ForwardWrapper:
    """APPLY_MODEL wrapper: opens a ForwardState for full-frame calls and commits its maps."""

    def __init__(self, session: ConceptSession):
        self.session = session

    def __call__(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None,
                 **kwargs):
        transformer_options = {} if transformer_options is None else transformer_options
        run = transformer_options.get(self.session.run_key)
        if run is None:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        base_model = executor.class_obj
        forward = run.begin_forward(base_model.diffusion_model, x, t, transformer_options, inference_dtype(base_model))
        if forward is None:
            return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
        options = {**transformer_options, self.session.forward_key: forward}
        try:
            with self.session.casts.window(FORWARD):
                out = executor(x, t, c_concat, c_crossattn, control, options, **kwargs)
        except StopForward as stop:
            if stop.forward is not forward:
                raise
            # Encode mode: the maps are complete and nobody uses the prediction.
            out = x
        run.commit(forward)
        return out


class DiffusionModelInputsWrapper:
    """DIFFUSION_MODEL wrapper: hands the family the network's own inputs (timestep, guidance, ...) by name.

    Positional arguments are named after the parameters of the function the executor wraps (the
    model's own `_forward`), so each model's signature, and each ComfyUI version's, is read as it is."""

    def __init__(self, session: ConceptSession):
        self.session = session

    def __call__(self, executor, *args, **kwargs):
        call = dict(zip(parameter_names(executor.original), args))
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
        run = SamplingRun(self.session, noise.shape, sigmas, kwargs.get("latent_shapes"))
        if patcher is not None:
            # A picture larger than the model's position table: say so before ComfyUI's model asserts.
            check_latent_fits(patcher.get_model_object("diffusion_model"), run.latent_hw, self.session.downscale)
            # Copy the concept embeddings to the device now, not inside the denoising loop.
            self.session.embeddings_on(patcher.load_device, inference_dtype(patcher.model))
        saved = guider.model_options
        transformer_options = {**saved.get("transformer_options", {}), self.session.run_key: run}
        guider.model_options = {**saved, "transformer_options": transformer_options}
        try:
            output = executor(*args, **kwargs)
        finally:
            guider.model_options = saved
        self.session.record(run, output, args[1] if len(args) > 1 else None)
        return output


def find_sessions(model) -> list[ConceptSession]:
    """ConceptAttention sessions installed on a ModelPatcher, oldest first."""
    from comfy.patcher_extension import WrappersMP, get_wrappers_with_key

    wrappers = get_wrappers_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, model.model_options, is_model_options=True)
    return [w.session for w in wrappers if isinstance(w, RunWrapper)]


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
    for stream in session.family.blocks:
        count = sum(1 for kind, _ in session.stream_blocks if kind == stream.hook)
        if stream.call is not None and count:
            install_block_hooks(patcher, stream.blocks, stream.hook, stream.call, count)


def offer_shared_casts(patcher, session: ConceptSession) -> None:
    """On a clone: the blocks the concept stream passes share each offloaded weight's cast with it
    (shared_casts.py), so a partially loaded model moves no weight twice."""
    blocks = [(session.family.stream_kind(kind).blocks, index) for kind, index in session.stream_blocks]
    install_shared_casts(patcher, session.casts, blocks, [stream.blocks for stream in session.family.blocks])


def needs_block_hooks(session: ConceptSession) -> bool:
    return any(stream.call is not None for stream in session.family.blocks)
