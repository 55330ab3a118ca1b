"""Pictures of the shapes model's maps, as the Concept Saliency node previews them, next to the truth.

Each row: the picture, its true segmentation (each object in its concept's legend colour, background in the
background word's), then the node's preview (segmentation view and every concept's heatmap, made by the pack's own
render_preview). Encode mode on held-out pictures of the synthetic world; with --generated, also pictures the model
generates from held-out captions, with the maps recorded while it generated them (no truth: the sampled picture's
objects are whatever the model drew).

    python -m quality.figures --model quality/weights/shapes_radiance.safetensors --out docs/images/shapes_maps.png
"""

from __future__ import annotations

import argparse

import numpy as np

HELD_OUT_SEED = 3
BACKGROUND_WORD = "background"


def pack(name: str):
    from .evaluate import pack_module

    return pack_module(name)


def truth_picture(sample, names) -> np.ndarray:
    """uint8 [H, W, 3]: each pixel in the legend colour of its true concept (background: the background word's)."""
    colors = pack("concept_patch.maps.colors").concept_colors_u8(len(names))
    out = np.empty((*sample.size, 3), dtype=np.uint8)
    out[:] = colors[names.index(BACKGROUND_WORD)]
    for concept, mask in sample.masks.items():
        out[mask] = colors[names.index(concept)]
    return out


def encode_row(model, clip, sample, noise_level: float = 0.5):
    """(picture, truth, the node's preview sheet) for one held-out picture, default settings, encode mode."""
    import torch

    from .evaluate import picture_latent

    names = [*sample.concepts, BACKGROUND_WORD]
    concepts = pack("concept_patch.text.encoding").encode_concepts(clip, names, "mean")
    family, options = pack("concept_patch.generation").family_and_options(model, "all")
    prompt = clip.encode_from_tokens_scheduled(clip.tokenize(sample.caption))
    saliency = pack("concept_patch.encode").encode_saliency(
        model, concepts, picture_latent(model, None, sample.image), options, conditioning=prompt,
        noise_level=noise_level, image_size=sample.size, family=family)
    image = torch.from_numpy(sample.image).float().div(255.0)[None]
    return sample.image, truth_picture(sample, names), _preview(saliency, image)


def generated_row(model, clip, caption: str, names: list[str], seed: int, size: int):
    """(picture, None, preview) of a picture generated from `caption` with the maps recorded while sampling."""
    import comfy.sample
    import torch

    concepts = pack("concept_patch.text.encoding").encode_concepts(clip, names, "mean")
    family, options = pack("concept_patch.generation").family_and_options(model, "all")
    patched, session = pack("concept_patch.generation").install_concept_attention(model, concepts, options, family)
    positive = clip.encode_from_tokens_scheduled(clip.tokenize(caption))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    latent = torch.zeros(1, 3, size, size)
    out = comfy.sample.sample(patched, comfy.sample.prepare_noise(latent, seed), 24, 4.0, "euler", "simple",
                              positive, negative, latent, seed=seed, disable_pbar=True)
    image = (out[0].movedim(0, -1).float() + 1.0).div(2.0).clamp(0.0, 1.0)[None]
    saliency = session.records[-1].saliency
    picture = (image[0] * 255).round().to(torch.uint8).numpy()
    return picture, None, _preview(saliency, image)


def _preview(saliency, image) -> np.ndarray:
    sheet = pack("concept_patch.maps.preview").render_preview(saliency, image)
    # One picture: its segmentation view and maps are panels 0..r of the batch; tile them in a row.
    panels = [(p.clamp(0, 1) * 255).round().byte().numpy() for p in sheet]
    height = max(p.shape[0] for p in panels)
    return np.concatenate([np.pad(p, ((0, height - p.shape[0]), (0, 4), (0, 0)), constant_values=255)
                           for p in panels], axis=1)


def compose(rows):
    """Rows of (picture, truth or None, preview) on one white sheet; pictures scaled to the preview's height."""
    from PIL import Image

    tiles = []
    for picture, truth, preview in rows:
        side = preview.shape[0]
        parts = [picture, truth] if truth is not None else [picture, np.full_like(picture, 255)]
        big = [np.asarray(Image.fromarray(p).resize((side * p.shape[1] // p.shape[0], side), Image.NEAREST))
               for p in parts]
        gap = np.full((side, 6, 3), 255, dtype=np.uint8)
        tiles.append(np.concatenate([big[0], gap, big[1], gap, preview], axis=1))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 8), (0, width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    return Image.fromarray(np.concatenate(tiles, axis=0))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m quality.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--pictures", nargs="*", type=int, default=[0, 1, 2, 3], help="held-out picture indices (seed 3)")
    p.add_argument("--generated", nargs="*", default=[], help="captions to generate from (their object words and "
                   "'background' are the concepts)")
    args = p.parse_args(argv)

    from .comfy_setup import setup_comfyui

    setup_comfyui(cpu=True)
    from . import shapes_model, synthetic_world

    model, clip, metadata = shapes_model.load_shapes_model(args.model)
    size = int(metadata["size"])
    dataset = synthetic_world.make_dataset(HELD_OUT_SEED, max(args.pictures, default=0) + 1, size=size)
    rows = [encode_row(model, clip, dataset[i]) for i in args.pictures]
    for seed, caption in enumerate(args.generated):
        objects = caption.split(" on a ")[0].replace(" and ", ", ").split(", ")
        names = [o.split(" ", 1)[1] for o in objects] + [BACKGROUND_WORD]
        rows.append(generated_row(model, clip, caption, names, seed, size))
    compose(rows).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
