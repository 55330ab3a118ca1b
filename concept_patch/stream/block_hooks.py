"""dit replace hooks for models whose dual-stream blocks ComfyUI calls directly (HiDream, CogVideoX, ...).

Flux, SD3 and Qwen-Image hand every block call to `transformer_options["patches_replace"]["dit"]`
when a patch is registered for it; some models call their blocks without that hook. For those, an
object patch on each block's `forward` (ModelPatcher.add_object_patch on the clone, restored when
ComfyUI unpatches the model) gives the blocks the same hook: the call goes to the dit replace patch
registered for ("double_block", i) (("single_block", i) for single-stream blocks), with the block's
arguments under the usual names (img, txt, vec, transformer_options), and `original_block` calls the
block. So the concept stream, and any other pack's dit patches, run on these models exactly as on hooked
ones, and weights are untouched: LoRA, fp8 casts and partial loading act inside the block as before.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass


@dataclass(frozen=True)
class BlockCall:
    """How a model calls one list of its blocks.

    arguments: dit-hook name -> the name of the block forward's parameter, e.g. {"img": "image_tokens"}.
    outputs:   dit-hook names of the values the block returns, in order, e.g. ("img", "txt").
    """

    arguments: dict
    outputs: tuple


class DitHookShim:
    """A block's `forward` that offers the call to the dit replace patch of (hook, index).

    previous: what the block's forward was on this ModelPatcher: the block's own method, or another
    pack's object patch of it (kept and called, so patches chain).
    """

    def __init__(self, call: BlockCall, hook: str, index: int, previous):
        self.call = call
        self.hook = hook
        self.index = index
        self.previous = previous
        self._parameters = parameter_names(previous)

    def __call__(self, *args, **kwargs):
        values = dict(zip(self._parameters, args))
        values.update(kwargs)
        options = values.get("transformer_options") or {}
        replace = options.get("patches_replace", {}).get("dit", {}).get((self.hook, self.index))
        if replace is None:
            return self.previous(*args, **kwargs)
        names = self.call.arguments
        hook_args = {hook: values.get(param) for hook, param in names.items()}
        hook_args["transformer_options"] = options

        def original_block(new_args):
            call_values = dict(values)
            call_values.update({param: new_args[hook] for hook, param in names.items() if hook in new_args})
            call_values["transformer_options"] = new_args.get("transformer_options", options)
            out = self.previous(**call_values)
            return dict(zip(self.call.outputs, out if isinstance(out, tuple) else (out,)))

        out = replace(hook_args, {"original_block": original_block})
        result = tuple(out[name] for name in self.call.outputs)
        return result if len(result) > 1 else result[0]


_PARAMETER_NAMES: dict = {}


def parameter_names(function) -> tuple[str, ...]:
    """Names of the parameters `function` takes by position, in order (cached per underlying function; none
    where it has no signature to read, so only keyword arguments are named)."""
    key = getattr(function, "__func__", function)
    if key not in _PARAMETER_NAMES:
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        try:
            parameters = inspect.signature(function).parameters.items()
        except (TypeError, ValueError):
            parameters = ()
        _PARAMETER_NAMES[key] = tuple(name for name, p in parameters if p.kind in kinds)
    return _PARAMETER_NAMES[key]


def install_block_hooks(patcher, blocks: str, hook: str, call: BlockCall, count: int) -> None:
    """Object-patch the forward of blocks 0..count-1 of the list at `blocks` on `patcher` (a clone) with
    DitHookShims offering the (hook, i) dit patches."""
    for i in range(count):
        key = f"diffusion_model.{blocks}.{i}.forward"
        existing = patcher.object_patches.get(key)
        if isinstance(existing, DitHookShim):
            continue  # this clone already offers the hook
        if existing is None:
            block = patcher.get_model_object(f"diffusion_model.{blocks}.{i}")
            # The class's method, bound to the block: never a patch another clone left on the instance.
            existing = type(block).forward.__get__(block)
        patcher.add_object_patch(key, DitHookShim(call, hook, i, existing))
