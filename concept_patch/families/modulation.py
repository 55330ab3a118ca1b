"""adaLN modulation of the concept rows with as few operations as the maths allows.

The concept stream is a handful of rows: each elementwise step costs a kernel launch and the
Python around it, not bandwidth, and where the model's own forward is already CPU-bound (one
image, encode mode) every launch shows in wall time. So (1 + scale) for all chunks comes from
one add, and LayerNorm takes the modulation as its own weight and bias.
"""

from __future__ import annotations

import torch

_ones_cache: dict = {}


def _one_at_scales(chunks: int, device, dtype) -> torch.Tensor:
    """[chunks, 1, 1]: 1 at each scale of the (shift, scale, gate) triples, else 0.

    Filled on the device: a host tensor would be copied, and waited for, on every call.
    """
    key = (chunks, device, dtype)
    if key not in _ones_cache:
        ones = torch.zeros((chunks, 1, 1), device=device, dtype=dtype)
        ones[1::3] = 1
        _ones_cache[key] = ones
    return _ones_cache[key]


def split_modulation(mod: torch.Tensor, chunks: int) -> tuple[torch.Tensor, ...]:
    """[B, chunks*C] in (shift, scale, gate, ...) order -> chunks tensors [B, 1, C], scales as 1 + scale."""
    mod = mod.view(mod.shape[0], chunks, 1, -1) + _one_at_scales(chunks, mod.device, mod.dtype)
    return mod.unbind(1)


def modulated_layer_norm(x: torch.Tensor, shift: torch.Tensor, scale_plus_one: torch.Tensor, eps: float) -> torch.Tensor:
    """(1 + scale) · LN(x) + shift, for x [B, r, C] and modulation [B, 1, C].

    With one modulation row (the usual single conditional image) the modulation is LayerNorm's
    own weight and bias: one kernel instead of three.
    """
    width = (x.shape[-1],)
    if shift.shape[0] == 1:
        return torch.nn.functional.layer_norm(x, width, scale_plus_one.reshape(-1), shift.reshape(-1), eps)
    return torch.addcmul(shift, torch.nn.functional.layer_norm(x, width, eps=eps), scale_plus_one)


def gated_update(concepts: torch.Tensor, attention_out: torch.Tensor, saved, norm_eps: float, feed_forward):
    """The gated residual updates of an MMDiT block's text side: the attention output (already projected), then the
    feed-forward on (1 + scale) · LN + shift; saved is the block's six modulation chunks (shift, scale, gate) x 2."""
    shift1, scale1, gate1, shift2, scale2, gate2 = saved
    concepts = torch.addcmul(concepts, gate1, attention_out)
    return torch.addcmul(concepts, gate2, feed_forward(modulated_layer_norm(concepts, shift2, scale2, norm_eps)))


class ModulationFromBlockArguments:
    """Mixin for Flux-style families whose blocks receive their modulations in `vec` (Chroma, Flux.2): the concepts
    take the text stream's share from there, so no per-forward preparation and no diffusion-model wrapper."""

    forward_wrapper_type = "apply_model"

    def prepare_forward(self, diffusion_model, forward, call):
        pass

    def text_modulation(self, block, block_args, forward):
        """The text stream's (shift₁, 1+scale₁, gate₁, shift₂, 1+scale₂, gate₂) for the concept rows, from a
        block that receives its modulations in `vec` as ((image mod₁, mod₂), (text mod₁, mod₂)): Chroma's
        per-block vectors, Flux.2's global modulation. The text modulation has one row per picture."""
        _, (mod1, mod2) = block_args["vec"]
        rows = forward.rows
        return (rows(mod1.shift), 1 + rows(mod1.scale), rows(mod1.gate),
                rows(mod2.shift), 1 + rows(mod2.scale), rows(mod2.gate))
