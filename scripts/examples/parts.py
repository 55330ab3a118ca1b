"""The pieces the example graphs (specs.py) and the browser tier's own graphs are made of: one node,
one loader group, one subgraph each.

A node is a dict {key, type, pos, size?, title?, values?, properties?} (see specs.py); a link is a
tuple (from_key, output name, to_key, input name). The order of nodes and links is the order the
browser creates them in, which fixes the node and link ids of the saved workflow.
"""

from __future__ import annotations

NOTE_COLOR = {"color": "#432", "bgcolor": "#653"}

# Concept Saliency (and Concept Saliency from Sampling) grow after a run: legend and maps. Each sits
# at its post-run size with the legend's largest growth (tests/browser: example_runs.py) free below it.
SALIENCY_SIZE = [340, 760]
SAMPLING_SALIENCY_SIZE = [320, 520]


def node(key: str, type_: str, pos, size=None, *, title: str | None = None, properties: dict | None = None,
         **values) -> dict:
    """One node; `values` (widget name -> value) are set in the order given."""
    spec = {"key": key, "type": type_, "pos": list(pos)}
    if size is not None:
        spec["size"] = size
    if title is not None:
        spec["title"] = title
    if values:
        spec["values"] = values
    if properties is not None:
        spec["properties"] = properties
    return spec


def note(text: str, pos, size=(420, 300)) -> dict:
    """A Markdown Note (links and tables render), as ComfyUI's stock templates have."""
    return {**node("note", "MarkdownNote", pos, list(size), text=text), **NOTE_COLOR}


def models(*files: tuple[str, str, str]) -> dict:
    """A loader's `properties` naming the files it needs ((name, url, directory) each), as ComfyUI's
    stock templates do."""
    return {"models": [{"name": name, "url": url, "directory": directory} for name, url, directory in files]}


def loaders(unet: str, clip: str, clip_type: str, vae: str, urls: dict[str, str]) -> list[dict]:
    """Load Diffusion Model, Load CLIP and Load VAE in the first column; a file with a URL in `urls`
    carries it in its loader's properties."""

    def props(name: str, directory: str):
        return models((name, urls[name], directory)) if name in urls else None

    return [
        node("unet", "UNETLoader", [0, 0], [320, 82], properties=props(unet, "diffusion_models"),
             unet_name=unet, weight_dtype="default"),
        node("clip", "CLIPLoader", [0, 130], [320, 106], properties=props(clip, "text_encoders"),
             clip_name=clip, type=clip_type),
        node("vae", "VAELoader", [0, 290], [320, 58], properties=props(vae, "vae"), vae_name=vae),
    ]


def flux_loaders(unet_url: str, text_encoders_url: str, vae_url: str) -> list[dict]:
    """Flux.1's loaders: the model, T5-XXL + CLIP-L (Load CLIP (Dual)) and its VAE."""
    return [
        node("unet", "UNETLoader", [0, 0], [320, 82],
             properties=models(("flux1-dev.safetensors", unet_url, "diffusion_models")),
             unet_name="flux1-dev.safetensors", weight_dtype="default"),
        node("clip", "DualCLIPLoader", [0, 130], [320, 130],
             properties=models(*((f, f"{text_encoders_url}/{f}", "text_encoders")
                                 for f in ("t5xxl_fp16.safetensors", "clip_l.safetensors"))),
             clip_name1="t5xxl_fp16.safetensors", clip_name2="clip_l.safetensors", type="flux"),
        node("vae", "VAELoader", [0, 310], [320, 58], properties=models(("ae.safetensors", vae_url, "vae")),
             vae_name="ae.safetensors"),
    ]


def concept_list(concepts: str, pos, width: int = 320) -> dict:
    return node("concepts", "ConceptAttentionConceptList", pos, [width, 160], concepts=concepts)


def saliency_node(pos, **values) -> dict:
    return node("saliency", "ConceptAttentionSaliency", pos, SALIENCY_SIZE, layers="last 10", noise_level=0.5,
                **values)


def find_concept_nodes(concept: str, method: str, grow: int, feather: float) -> list[dict]:
    """Concept Saliency with its preview, and Saliency to Mask -> Preview Mask below it (columns at
    x 760 and 1160)."""
    return [
        saliency_node([760, 0]),
        node("heatmaps", "PreviewImage", [1160, 0], [320, 320]),
        node("mask", "ConceptAttentionSaliencyToMask", [1160, 380], [340, 300],
             concepts=concept, method=method, grow=grow, feather=feather),
        node("mask_preview", "MaskPreview", [1160, 740], [320, 320]),
    ]


def saliency_links(picture: str = "image", model=("unet", "MODEL"), vae=("vae", "VAE"),
                   conditioning: str | None = None) -> list[tuple]:
    """Model, concepts, picture, VAE (and a prompt) into Concept Saliency."""
    links = [(*model, "saliency", "model"), ("concepts", "concepts", "saliency", "concepts"),
             (picture, "IMAGE", "saliency", "image"), (*vae, "saliency", "vae")]
    if conditioning:
        links.append((conditioning, "CONDITIONING", "saliency", "conditioning"))
    return links


def mask_links(picture: str = "image", shown_in: str | None = "mask_preview", heatmaps: bool = True) -> list[tuple]:
    """Concept Saliency's preview into Preview Image (`heatmaps`) and its saliency, with the picture, into
    Saliency to Mask, whose mask goes on to `shown_in`."""
    return [*([("saliency", "preview", "heatmaps", "images")] if heatmaps else []),
            ("saliency", "saliency", "mask", "saliency"), (picture, "IMAGE", "mask", "image"),
            *([("mask", "mask", shown_in, "mask")] if shown_in else [])]


def masked_latent_links(picture: str = "image", vae=("vae", "VAE")) -> list[tuple]:
    """The picture's latent with the mask as its noise mask: only the masked region is repainted."""
    return [(picture, "IMAGE", "encode", "pixels"), (*vae, "encode", "vae"),
            ("encode", "LATENT", "noise_mask", "samples"), ("mask", "mask", "noise_mask", "mask")]


def decode_links(sampled=("sampler", "LATENT"), vae=("vae", "VAE")) -> list[tuple]:
    return [(*sampled, "decode", "samples"), (*vae, "decode", "vae")]


def composite_nodes(x: int, y: int) -> list[dict]:
    return [node("composite", "ImageCompositeMasked", [x, y], [320, 150], x=0, y=0, resize_source=False)]


def composite_links(picture: str = "image") -> list[tuple]:
    """The repainted picture pasted back into the original inside the mask, then saved."""
    return [(picture, "IMAGE", "composite", "destination"), ("decode", "IMAGE", "composite", "source"),
            ("mask", "mask", "composite", "mask"), ("composite", "IMAGE", "save", "images")]


def save_image(pos, prefix: str) -> dict:
    return node("save", "SaveImage", pos, [400, 460], filename_prefix=prefix)


def sampler(pos, seed: int, steps: int, cfg: float, sampler_name: str = "euler", scheduler: str = "simple",
            denoise: float = 1.0) -> dict:
    return node("sampler", "KSampler", pos, [320, 262], seed=seed, steps=steps, cfg=cfg,
                sampler_name=sampler_name, scheduler=scheduler, denoise=denoise)


def sampling_maps_nodes(x: int, prefix: str) -> list[dict]:
    """Concept Saliency from Sampling (below the sampler's decode) and Save Saliency below it."""
    return [node("maps", "ConceptAttentionSamplingSaliency", [x, 420], SAMPLING_SALIENCY_SIZE),
            node("save_maps", "ConceptAttentionSaveSaliency", [x, 1060], [320, 82], filename_prefix=prefix)]


def sampling_maps_links() -> list[tuple]:
    """The patched model, the sampled latent and its decoded picture into Concept Saliency from Sampling."""
    return [("patch", "model", "maps", "model"), ("sampler", "LATENT", "maps", "latent"),
            ("decode", "IMAGE", "maps", "image")]


def mask_video_nodes(x: int, mask_values: dict, fps: float | None, prefix: str) -> list[dict]:
    """Saliency to Mask -> Convert Mask to Image -> Create Video -> Save Video, one column at x."""
    return [
        node("mask", "ConceptAttentionSaliencyToMask", [x, 0], [340, 300], **mask_values),
        node("mask_image", "MaskToImage", [x, 360], [340, 26]),
        node("mask_video", "CreateVideo", [x, 440], [340, 82], **({"fps": fps} if fps is not None else {})),
        node("save_mask", "SaveVideo", [x, 640], [400, 420], filename_prefix=prefix),
    ]


def mask_video_links(fps_from: tuple | None = None) -> list[tuple]:
    return [("mask", "mask", "mask_image", "mask"), ("mask_image", "IMAGE", "mask_video", "images"),
            *([(*fps_from, "mask_video", "fps")] if fps_from else []),
            ("mask_video", "VIDEO", "save_mask", "video")]
