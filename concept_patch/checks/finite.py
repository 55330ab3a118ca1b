"""NaN in, a clear error out: a non-finite input, or maps that came out non-finite, are refused with what to fix,
instead of all-NaN maps reported as success (which Save Saliency would write and Load Saliency refuse)."""

from __future__ import annotations

import torch

from .errors import ConceptAttentionError

# VAE latents stay within a few tens. A latent far beyond this overflows the model whatever its dtype, so the
# fix is the latent, not a wider dtype.
LATENT_PLAUSIBLE_PEAK = 1000.0


def streams(latent) -> list[torch.Tensor]:
    """The tensors of a LATENT: its streams where it holds several (ComfyUI's NestedTensor, e.g. MiniMax H3's
    [video, audio]), else the one tensor."""
    return list(latent.unbind()) if getattr(latent, "is_nested", False) else [latent]


def check_finite_input(tensor: torch.Tensor, what: str) -> None:
    """Refuse a tensor (or every stream of a multi-stream latent) with NaN or infinite values, naming the input and
    how many values are bad."""
    parts = streams(tensor)
    bad = sum(int((~torch.isfinite(t)).sum()) for t in parts if t.is_floating_point())
    if bad:
        raise ConceptAttentionError(
            f"the {what} holds {bad} NaN or infinite values (of {sum(t.numel() for t in parts)}), so no maps can be "
            "made from it; check the node that made it"
        )


def check_finite_maps(maps: torch.Tensor, latent: torch.Tensor, what: str, dtype) -> None:
    """Maps that came out NaN or infinite from a finite latent: say whether the latent or the model's dtype is to
    blame (a latent far outside what a VAE makes overflows any dtype; a plausible one overflows a narrow dtype)."""
    if torch.isfinite(maps).all():
        return
    peak = max((float(t.detach().abs().max()) for t in streams(latent) if t.numel()), default=0.0)
    if peak > LATENT_PLAUSIBLE_PEAK:
        raise ConceptAttentionError(
            f"the model gave NaN or infinite maps for the {what}: its largest value is {peak:.3g}, far beyond what a "
            f"VAE makes (a few tens), and the model overflows on it; check the node that made the {what}"
        )
    raise ConceptAttentionError(
        f"the model gave NaN or infinite maps for the {what} (largest value {peak:.3g}): it overflowed in {dtype}; "
        "load the model in a wider dtype (bf16 or fp32, the loader's weight_dtype) and run again"
    )


def check_finite_saliency(maps: torch.Tensor, what: str) -> None:
    """Maps handed to a node that makes something of them (a file, a mask) must be finite."""
    if not torch.isfinite(maps).all():
        raise ConceptAttentionError(
            f"the saliency maps hold NaN or infinite values, so {what}; the pack's nodes never output such maps: "
            "recompute them with Concept Saliency or Concept Saliency from Sampling"
        )
