"""Each weight cast once a block: the concept stream shares the casts the block's own modules make.

When ComfyUI keeps part of a model off the GPU (partial loading, --lowvram) or stores weights in another dtype
than it computes in, a module in cast mode (`comfy_cast_weights`) copies and converts its weights on every call
(comfy.ops.cast_bias_weight). The concept stream calls a block's modules a second time, so without sharing those
weights would cross PCIe twice a step. Here each such module's `forward_comfy_cast_weights` gets an object patch
on the clone (restored when ComfyUI unpatches the model): while a block and its concept stream run (a CastWindow,
opened by ForwardState.run_block), the first call of a module casts as ComfyUI does and keeps a copy of the cast
weights on the compute device; later calls in the window run the module's own forward over that copy, so they
cast nothing. The copies go when the window closes.

Which modules to keep is learned per block: a cast module is kept the first time a window sees it, and from then
on only if it was called more than once in a window (the concept stream shares it with the block). The values are
those ComfyUI's cast gives (LoRA weight functions applied), and the module's own forward runs on them, so the
picture is bit-identical and the maps unchanged. Modules under ComfyUI's dynamic VRAM (`_v`: it keeps recently
used weights resident itself) and quantized weights (whose forward differs once a weight function is present)
keep ComfyUI's own path.
"""

from __future__ import annotations

import contextlib

import torch

_MISSING = object()


class Membership:
    """What one window's scope has learned: the cast modules seen there, and those ever called more than once in a
    window (the ones the concept stream shares). A module not seen yet is kept on its first window, to find out."""

    def __init__(self):
        self.seen: set = set()
        self.shared: set = set()

    def keeps(self, module) -> bool:
        return module in self.shared or module not in self.seen

    def learn(self, calls: dict):
        # Never forgotten: the concept stream may skip a module in some forwards (e.g. a text refiner whose
        # output a run keeps) and need it again in the next run.
        self.seen.update(calls)
        self.shared.update(m for m, n in calls.items() if n > 1)


class CastWindow:
    """The casts kept while one block (or one forward) and its concept stream run."""

    def __init__(self, membership: Membership):
        self.membership = membership
        self.kept: dict = {}  # module -> (input dtype, weight, bias)
        self.calls: dict = {}  # module -> calls in this window

    def call(self, module, original, args, kwargs):
        self.calls[module] = self.calls.get(module, 0) + 1
        dtype = args[0].dtype if args and torch.is_tensor(args[0]) else None
        kept = self.kept.get(module)
        if kept is not None and kept[0] == dtype:
            return _run_on(module, kept[1], kept[2], original, args, kwargs)
        if not self.membership.keeps(module):
            return original(*args, **kwargs)
        out, weight, bias = _run_keeping(module, original, args, kwargs)
        if weight is not None:
            self.kept[module] = (dtype, weight, bias)
        return out


class CastSharing:
    """One session's open windows, and what each window's scope learned (Membership).

    Two scopes: "block" windows (a block and its concept stream) for the modules of the blocks the stream passes,
    and a "forward" window (one model call) for the modules outside every block list (the text and timestep
    embedders that the concept stream also calls once a forward)."""

    def __init__(self):
        self.windows: dict = {}  # scope -> open CastWindow
        self.learned: dict = {}  # (scope, key) -> Membership

    @contextlib.contextmanager
    def window(self, scope: str, key=None):
        if scope in self.windows:  # a nested call: the outer window serves it
            yield
            return
        membership = self.learned.setdefault((scope, key), Membership())
        self.windows[scope] = window = CastWindow(membership)
        try:
            yield
        finally:
            del self.windows[scope]
            membership.learn(window.calls)


class SharedCast:
    """A module's `forward_comfy_cast_weights` that casts once per open window of its scope (module docstring)."""

    def __init__(self, sharing: CastSharing, scope: str, module: torch.nn.Module, previous):
        self.sharing = sharing
        self.scope = scope
        self.module = module
        self.previous = previous

    def __call__(self, *args, **kwargs):
        window = self.sharing.windows.get(self.scope)
        if window is None or not shares_casts(self.module):
            return self.previous(*args, **kwargs)
        return window.call(self.module, self.previous, args, kwargs)


def shares_casts(module) -> bool:
    """Whether ComfyUI casts this module's weights on each call on the classic path (not dynamic VRAM, not a
    quantized weight)."""
    if not getattr(module, "comfy_cast_weights", False) or hasattr(module, "_v"):
        return False
    weight = getattr(module, "weight", None)
    return torch.is_tensor(weight) and type(weight) in (torch.Tensor, torch.nn.Parameter)


def _run_keeping(module, original, args, kwargs):
    """(the module's own output, copies of the weight and bias its cast gave)."""
    kept = {}

    def keep(name):
        def record(tensor):
            kept[name] = tensor.clone()
            return tensor
        return record

    has_bias = getattr(module, "bias", None) is not None
    with _functions(module, extra_weight=keep("weight"), extra_bias=keep("bias") if has_bias else None):
        out = original(*args, **kwargs)
    return out, kept.get("weight"), kept.get("bias")


def _run_on(module, weight, bias, original, args, kwargs):
    """The module's own forward over already-cast weights: its cast finds them on the device in the right dtype
    and copies nothing; no weight function runs a second time."""
    params = module._parameters
    saved = params["weight"], params.get("bias", _MISSING)
    params["weight"] = weight
    if bias is not None:
        params["bias"] = bias
    try:
        with _functions(module, replace=True):
            return original(*args, **kwargs)
    finally:
        params["weight"] = saved[0]
        if saved[1] is not _MISSING:
            params["bias"] = saved[1]


@contextlib.contextmanager
def _functions(module, extra_weight=None, extra_bias=None, replace=False):
    """Temporarily add to (or empty) a module's weight and bias function lists, restoring them as they were
    (an instance list, or the class default)."""
    names = ("weight_function", "bias_function")
    saved = {name: module.__dict__.get(name, _MISSING) for name in names}
    for name, extra in zip(names, (extra_weight, extra_bias)):
        current = [] if replace else list(getattr(module, name, []))
        if extra is not None:
            current.append(extra)
        setattr(module, name, current)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                delattr(module, name)
            else:
                setattr(module, name, value)


BLOCK = "block"
FORWARD = "forward"


def install_shared_casts(patcher, sharing: CastSharing, blocks: list[tuple[str, int]], block_lists: list[str]) -> None:
    """On a clone: a SharedCast on every cast-capable module of the given blocks ((list path, index) under the
    diffusion model; "block" scope), and on those outside every block list ("forward" scope). Modules that never
    cast never call it, so a resident model runs exactly as before."""
    for path, index in blocks:
        _share(patcher, sharing, BLOCK, f"diffusion_model.{path}.{index}")
    inside = tuple(f"{path}." for path in block_lists)
    root = patcher.get_model_object("diffusion_model")
    for name, _ in root.named_modules():
        if name and not f"{name}.".startswith(inside) and not any(p.startswith(f"{name}.") for p in inside):
            _share(patcher, sharing, FORWARD, f"diffusion_model.{name}", recurse=False)


def _share(patcher, sharing: CastSharing, scope: str, prefix: str, recurse: bool = True) -> None:
    top = patcher.get_model_object(prefix)
    modules = top.named_modules() if recurse else [("", top)]
    for name, module in modules:
        if not hasattr(module, "forward_comfy_cast_weights") or not hasattr(module, "weight_function"):
            continue
        key = f"{prefix}.{name}.forward_comfy_cast_weights" if name else f"{prefix}.forward_comfy_cast_weights"
        existing = patcher.object_patches.get(key)
        if isinstance(existing, SharedCast) and existing.sharing is sharing:
            continue
        if existing is None:
            existing = type(module).forward_comfy_cast_weights.__get__(module)
        patcher.add_object_patch(key, SharedCast(sharing, scope, module, existing))
