"""What a run accepts, checked before any work, so that a bad value gets a message saying what is
accepted instead of an exception from deep inside torch or ComfyUI."""

from __future__ import annotations

from .errors import ConceptAttentionError

MAX_SEED = 0xFFFFFFFFFFFFFFFF  # the seed widgets' maximum; torch's generator takes no more


def check_seed_range(seed: int, samples: int) -> None:
    """Noise sample k uses seed + k: the last one must still be a seed torch takes."""
    if seed < 0 or seed > MAX_SEED:
        raise ConceptAttentionError(f"seed {seed} is out of range; use 0 to {MAX_SEED}")
    if seed + samples - 1 > MAX_SEED:
        raise ConceptAttentionError(
            f"seed {seed} with {samples} samples runs past the largest seed ({MAX_SEED}): sample k uses seed + k, "
            f"so with {samples} samples the seed can be at most {MAX_SEED - samples + 1}"
        )


def check_picture_for_vae(image_hw: tuple[int, int], vae) -> None:
    """The VAE encodes whole latent cells: a picture smaller than one cell has nothing to encode."""
    ratio = _vae_ratio(vae)
    height, width = image_hw
    if height < ratio or width < ratio:
        raise ConceptAttentionError(
            f"the picture is {width}x{height} pixels; this VAE needs at least {ratio}x{ratio} "
            f"(one latent cell is {ratio} pixels): use a larger picture"
        )


def _vae_ratio(vae) -> int:
    ratio = getattr(vae, "spacial_compression_encode", None)
    try:
        value = ratio() if callable(ratio) else getattr(vae, "downscale_ratio", 8)
        return max(1, int(value))
    except (TypeError, ValueError):
        return 8


def largest_latent_side(diffusion_model) -> int | None:
    """The longest latent side a model with a learned position table takes (SD3/SD3.5: the table is
    pos_embed_max_size patches across), or None when the model has no such limit."""
    max_size = getattr(diffusion_model, "pos_embed_max_size", None)
    if max_size is None or getattr(diffusion_model, "pos_embed", None) is None:
        return None
    embedder = getattr(diffusion_model, "x_embedder", None)
    patch = getattr(embedder, "patch_size", None) or (getattr(diffusion_model, "patch_size", 2),)
    p = int(patch[0]) if isinstance(patch, (tuple, list)) else int(patch)
    # the model takes (side + 1) // p patches and asserts that is at most max_size
    return p * int(max_size) + p - 2


def check_latent_fits(diffusion_model, latent_hw: tuple[int, int], pixels_per_cell: int) -> None:
    """Refuse a latent larger than the model's position table, naming the largest picture it takes."""
    side = largest_latent_side(diffusion_model)
    if side is None:
        return
    height, width = latent_hw
    if height > side or width > side:
        largest = side * pixels_per_cell
        raise ConceptAttentionError(
            f"the picture is {width * pixels_per_cell}x{height * pixels_per_cell} pixels but this model takes at most "
            f"{largest}x{largest} (its position table covers {side} latent cells a side): scale the picture down"
        )
