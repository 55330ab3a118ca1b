"""What a run accepts, checked before any work, so that a bad value gets a message saying what is
accepted instead of an exception from deep inside torch or ComfyUI."""

from __future__ import annotations

from .errors import ConceptAttentionError

MAX_SEED = 0xFFFFFFFFFFFFFFFF  # the seed widgets' maximum; torch's generator takes no more

# One budget for what any node makes from maps at picture resolution, whoever made the maps (this pack, or a
# file claiming a size): a MASK holds every pixel of every frame of every clip (its concepts are combined into
# it), while previews and heatmap files are preview-sized within budgets of their own over all concepts and
# frames (maps/panels.py). ComfyUI's largest picture, MAX_RESOLUTION² = 16384² = 2^28 pixels, is 1 GiB as a
# MASK and 3 GiB as an IMAGE, and no supported model makes maps for it (a million tokens). Half of it, 2^27
# pixels (a 512 MiB MASK), holds the largest real work: a 121-frame 1280x720 clip (111.5 M), eight 4096²
# pictures (2^27), a 16384x8192 picture; and it does not grow with what a file claims.
MAX_OUTPUT_PIXELS = 2**27


def output_pixels_problem(clips: int, frames: int, image_size: tuple[int, int]) -> str | None:
    """Why maps of `clips` clips of `frames` pixel frames (1 for pictures) of image_size (height, width) are beyond
    MAX_OUTPUT_PIXELS, with the numbers; None when they fit."""
    height, width = (int(s) for s in image_size)
    total = int(clips) * max(1, int(frames)) * height * width
    if total <= MAX_OUTPUT_PIXELS:
        return None
    what = f"{clips} clip(s) x {frames} frames" if frames else f"{clips} picture(s)"
    return (f"describe {what} of {width}x{height} pixels, {total:,} pixels in all; masks, previews and heatmaps "
            f"are made for at most {MAX_OUTPUT_PIXELS:,} pixels in all (e.g. 121 frames of 1280x720, or eight "
            f"4096x4096 pictures)")


def check_output_pixels(clips: int, frames: int, image_size: tuple[int, int]) -> None:
    problem = output_pixels_problem(clips, frames, image_size)
    if problem:
        raise ConceptAttentionError(f"these saliency maps {problem}: use fewer pictures, frames or pixels")


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
