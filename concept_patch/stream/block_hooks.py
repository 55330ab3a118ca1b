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
    """How a model calls one kind of its blocks.

    blocks:    attribute path of the block list under the diffusion model, e.g. "double_stream_blocks".
    arguments: dit-hook name -> the name of the block forward's parameter, e.g. {"img": "image_tokens"}.
    outputs:   dit-hook names of the values the block returns, in order, e.g. ("img", "txt").
    kind:      the dit hook's block kind: "double_block", or "single_block" for single-stream blocks.
    """

    blocks: str
    arguments: dict
    outputs: tuple
    kind: str = "double_block"


class DitHookShim:
    """A block's `forward` that offers the call to the dit replace patch of (call.kind, index).

    previous: what the block's forward was on this ModelPatcher: the block's own method, or another
    pack's object patch of it (kept and called, so patches chain).
    """

    def __init__(self, call: BlockCall, index: int, previous):
        self.call = call
        self.index = index
        self.previous = previous
        self._parameters = _parameter_names(previous)

    def __call__(self, *args, **kwargs):
        values = dict(zip(self._parameters, args))
        values.update(kwargs)
        options = values.get("transformer_options") or {}
        replace = options.get("patches_replace", {}).get("dit", {}).get((self.call.kind, self.index))
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


def _parameter_names(fn) -> list[str]:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def install_block_hooks(patcher, call: BlockCall, num_blocks: int) -> None:
    """Object-patch the forward of blocks 0..num_blocks-1 on `patcher` (a clone) with DitHookShims."""
    for i in range(num_blocks):
        key = f"diffusion_model.{call.blocks}.{i}.forward"
        existing = patcher.object_patches.get(key)
        if isinstance(existing, DitHookShim):
            continue  # this clone already offers the hook
        if existing is None:
            block = patcher.get_model_object(f"diffusion_model.{call.blocks}.{i}")
            # The class's method, bound to the block: never a patch another clone left on the instance.
            existing = type(block).forward.__get__(block)
        patcher.add_object_patch(key, DitHookShim(call, i, existing))
