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


def node(key: str, type_: str, pos=None, size=None, *, title: str | None = None, properties: dict | None = None,
         **values) -> dict:
    """One node; `values` (widget name -> value) are set in the order given. Without `pos`, columns() places it."""
    spec = {"key": key, "type": type_, "pos": list(pos) if pos is not None else None}
    if size is not None:
        spec["size"] = size
    if title is not None:
        spec["title"] = title
    if values:
        spec["values"] = values
    if properties is not None:
        spec["properties"] = properties
    return spec


def note(text: str, pos=None, size=(420, 300)) -> dict:
    """A Markdown Note (links and tables render), as ComfyUI's stock templates have."""
    return {**node("note", "MarkdownNote", pos, list(size), text=text), **NOTE_COLOR}


# The layout: columns left to right, each node's title bar above its pos. ComfyUI's template browser opens a
# template fitted to its nodes (the bounding box filling 75 % of the canvas, LGraphCanvas.fitToBounds); below
# about 0.57 zoom it draws nodes without their text. So a template spans at most MAX_GRAPH_SIZE graph units: on
# a 1600 x 1000 canvas it opens at 0.6 zoom or more.
TITLE_HEIGHT = 30
COLUMN_GAP = 40
ROW_GAP = 20
NOTE_WIDTH = 400
MAX_GRAPH_SIZE = (2000, 1250)


def columns(*cols: list[dict], note_node: dict | None = None, note_width: int = NOTE_WIDTH) -> list[dict]:
    """Places the nodes of each column one below the other, the columns left to right from x 0; the Note
    (if any) left of them, note_width wide and as tall as the tallest column. Returns every node, the Note first."""
    laid, x, bottom = [], 0, 0
    for col in cols:
        y = 0
        for n in col:
            n["pos"] = [x, y]
            y += n["size"][1] + TITLE_HEIGHT + ROW_GAP
        bottom = max(bottom, y - TITLE_HEIGHT - ROW_GAP)
        x += max(n["size"][0] for n in col) + COLUMN_GAP
        laid += col
    if note_node is not None:
        note_node["pos"] = [-note_width - COLUMN_GAP, 0]
        note_node["size"] = [note_width, max(bottom, 600)]
        laid.insert(0, note_node)
    _, _, width, height = graph_bounds(laid)
    if width > MAX_GRAPH_SIZE[0] or height > MAX_GRAPH_SIZE[1]:
        raise ValueError(f"the graph spans {width} x {height}, more than {MAX_GRAPH_SIZE}: ComfyUI would open it "
                         "at a zoom that draws nodes without their text")
    return laid


def graph_bounds(nodes: list[dict]) -> tuple[float, float, float, float]:
    """(x, y, width, height) of the nodes' boxes, title bars included, as the front end fits them."""
    x0 = min(n["pos"][0] for n in nodes)
    y0 = min(n["pos"][1] - TITLE_HEIGHT for n in nodes)
    x1 = max(n["pos"][0] + n["size"][0] for n in nodes)
    y1 = max(n["pos"][1] + n["size"][1] for n in nodes)
    return x0, y0, x1 - x0, y1 - y0


def opening_view(nodes: list[dict], canvas=(1600, 1000), fill: float = 0.9) -> dict:
    """The view a saved workflow opens at (`extra.ds`) when opened as a file: the nodes filling `fill` of a
    `canvas` (CSS px) and centred on it, at most 100 % zoom. (The template browser fits the view itself.)"""
    x, y, width, height = graph_bounds(nodes)
    scale = min(fill * canvas[0] / width, fill * canvas[1] / height, 1.0)
    offset = [-x - width / 2 + canvas[0] / scale / 2, -y - height / 2 + canvas[1] / scale / 2]
    return {"scale": round(scale, 4), "offset": [round(v, 1) for v in offset]}


def models(*files: tuple[str, str, str]) -> dict:
    """A loader's `properties` naming the files it needs ((name, url, directory) each), as ComfyUI's
    stock templates do."""
    return {"models": [{"name": name, "url": url, "directory": directory} for name, url, directory in files]}


def loaders(unet: str, clip: str, clip_type: str, vae: str, urls: dict[str, str]) -> list[dict]:
    """Load Diffusion Model, Load CLIP and Load VAE; a file with a URL in `urls` carries it in its loader's
    properties."""

    def props(name: str, directory: str):
        return models((name, urls[name], directory)) if name in urls else None

    return [
        node("unet", "UNETLoader", size=[320, 82], properties=props(unet, "diffusion_models"),
             unet_name=unet, weight_dtype="default"),
        node("clip", "CLIPLoader", size=[320, 106], properties=props(clip, "text_encoders"),
             clip_name=clip, type=clip_type),
        node("vae", "VAELoader", size=[320, 58], properties=props(vae, "vae"), vae_name=vae),
    ]


def flux_loaders(unet_url: str, text_encoders_url: str, vae_url: str) -> list[dict]:
    """Flux.1's loaders: the model, T5-XXL + CLIP-L (Load CLIP (Dual)) and its VAE."""
    return [
        node("unet", "UNETLoader", size=[320, 82],
             properties=models(("flux1-dev.safetensors", unet_url, "diffusion_models")),
             unet_name="flux1-dev.safetensors", weight_dtype="default"),
        node("clip", "DualCLIPLoader", size=[320, 130],
             properties=models(*((f, f"{text_encoders_url}/{f}", "text_encoders")
                                 for f in ("t5xxl_fp16.safetensors", "clip_l.safetensors"))),
             clip_name1="t5xxl_fp16.safetensors", clip_name2="clip_l.safetensors", type="flux"),
        node("vae", "VAELoader", size=[320, 58], properties=models(("ae.safetensors", vae_url, "vae")),
             vae_name="ae.safetensors"),
    ]


def concept_list(concepts: str, pos=None, width: int = 340) -> dict:
    return node("concepts", "ConceptAttentionConceptList", pos, [width, 160], concepts=concepts)


def saliency_node(pos=None, **values) -> dict:
    return node("saliency", "ConceptAttentionSaliency", pos, SALIENCY_SIZE, layers="last 10", noise_level=0.5,
                **values)


def find_concept_nodes(concept: str, method: str, grow: int, feather: float) -> tuple[dict, list[dict]]:
    """Concept Saliency, and Saliency to Mask with its Preview Mask: (saliency, [mask, mask preview]). Concept
    Saliency shows its maps and legend itself: no Preview Image repeats them."""
    return saliency_node(), [
        node("mask", "ConceptAttentionSaliencyToMask", size=[340, 300],
             concepts=concept, method=method, grow=grow, feather=feather),
        node("mask_preview", "MaskPreview", size=[300, 260]),
    ]


def saliency_links(picture: str = "image", model=("unet", "MODEL"), vae=("vae", "VAE"),
                   conditioning: str | None = None) -> list[tuple]:
    """Model, concepts, picture, VAE (and a prompt) into Concept Saliency."""
    links = [(*model, "saliency", "model"), ("concepts", "concepts", "saliency", "concepts"),
             (picture, "IMAGE", "saliency", "image"), (*vae, "saliency", "vae")]
    if conditioning:
        links.append((conditioning, "CONDITIONING", "saliency", "conditioning"))
    return links


def mask_links(picture: str = "image", shown_in: str | None = "mask_preview") -> list[tuple]:
    """Concept Saliency's saliency, with the picture, into Saliency to Mask, whose mask goes on to `shown_in`."""
    return [("saliency", "saliency", "mask", "saliency"), (picture, "IMAGE", "mask", "image"),
            *([("mask", "mask", shown_in, "mask")] if shown_in else [])]


def masked_latent_links(picture: str = "image", vae=("vae", "VAE")) -> list[tuple]:
    """The picture's latent with the mask as its noise mask: only the masked region is repainted."""
    return [(picture, "IMAGE", "encode", "pixels"), (*vae, "encode", "vae"),
            ("encode", "LATENT", "noise_mask", "samples"), ("mask", "mask", "noise_mask", "mask")]


def decode_links(sampled=("sampler", "LATENT"), vae=("vae", "VAE")) -> list[tuple]:
    return [(*sampled, "decode", "samples"), (*vae, "decode", "vae")]


def composite_node() -> dict:
    return node("composite", "ImageCompositeMasked", size=[320, 150], x=0, y=0, resize_source=False)


def composite_links(picture: str = "image") -> list[tuple]:
    """The repainted picture pasted back into the original inside the mask, then saved."""
    return [(picture, "IMAGE", "composite", "destination"), ("decode", "IMAGE", "composite", "source"),
            ("mask", "mask", "composite", "mask"), ("composite", "IMAGE", "save", "images")]


def save_image(prefix: str, height: int = 320) -> dict:
    return node("save", "SaveImage", size=[320, height], filename_prefix=prefix)


def sampler(seed: int, steps: int, cfg: float, sampler_name: str = "euler", scheduler: str = "simple",
            denoise: float = 1.0) -> dict:
    return node("sampler", "KSampler", size=[320, 262], seed=seed, steps=steps, cfg=cfg,
                sampler_name=sampler_name, scheduler=scheduler, denoise=denoise)


def sampling_maps_nodes(prefix: str) -> list[dict]:
    """Concept Saliency from Sampling and Save Saliency below it."""
    return [node("maps", "ConceptAttentionSamplingSaliency", size=SAMPLING_SALIENCY_SIZE),
            node("save_maps", "ConceptAttentionSaveSaliency", size=[320, 82], filename_prefix=prefix)]


def sampling_maps_links() -> list[tuple]:
    """The patched model, the sampled latent and its decoded picture into Concept Saliency from Sampling."""
    return [("patch", "model", "maps", "model"), ("sampler", "LATENT", "maps", "latent"),
            ("decode", "IMAGE", "maps", "image")]


def mask_video_nodes(mask_values: dict, fps: float | None, prefix: str) -> list[dict]:
    """Saliency to Mask -> Convert Mask to Image -> Create Video -> Save Video, one column."""
    return [
        node("mask", "ConceptAttentionSaliencyToMask", size=[340, 300], **mask_values),
        node("mask_image", "MaskToImage", size=[340, 26]),
        node("mask_video", "CreateVideo", size=[340, 102], **({"fps": fps} if fps is not None else {})),
        node("save_mask", "SaveVideo", size=[340, 320], filename_prefix=prefix),
    ]


def mask_video_links(fps_from: tuple | None = None) -> list[tuple]:
    return [("mask", "mask", "mask_image", "mask"), ("mask_image", "IMAGE", "mask_video", "images"),
            *([(*fps_from, "mask_video", "fps")] if fps_from else []),
            ("mask_video", "VIDEO", "save_mask", "video")]
