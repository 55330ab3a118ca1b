"""Graphs that run in seconds on the CPU: the pack's nodes over the tiny Flux.1 fixture nodes of
the server tier (tests/server/fixture_nodes/concept_attention_test_nodes), for the browser tests
and the README screenshots."""

from __future__ import annotations

from concept_attention_examples.parts import node

from concept_attention_tests.browser import browser_session  # noqa: F401  (registers concept_attention_examples)

TINY_FLUX = "ConceptAttentionTestTinyFlux"
TINY_CLIP = "ConceptAttentionTestTinyFluxClip"

# The middle name checks that names reach the page as text, never as markup.
CONCEPTS = ["cat", "<b>dog</b> & co", "sky"]


def _tiny_flux(concepts) -> list[dict]:
    """The tiny Flux.1 and its text encoder, and the Concept List."""
    return [node("model", TINY_FLUX, [0, 0], seed=0), node("clip", TINY_CLIP, [0, 150], seed=1),
            node("concepts", "ConceptAttentionConceptList", [340, 0], [300, 150], concepts=", ".join(concepts))]


def mask_nodes(x: int, concept: str, method: str, preview_size=(320, 320)) -> list[dict]:
    """Saliency to Mask and its Preview Mask below it, in the column at x."""
    return [node("mask", "ConceptAttentionSaliencyToMask", [x, 0], [320, 320], concepts=concept, method=method),
            node("mask_preview", "MaskPreview", [x, 380], list(preview_size))]


def encode_graph(*, batch: int = 1, size: int = 64, concepts=CONCEPTS, image_node: dict | None = None,
                 vae: bool = False) -> dict:
    """Concept List + Concept Saliency (encode mode) + Saliency to Mask -> mask preview. vae: the picture
    goes in as IMAGE + a tiny VAE (no LATENT), as a stock graph gives it."""
    image = image_node or node("image", "EmptyImage", [0, 340], width=size, height=size, batch_size=batch,
                               color=0x4477AA)
    model, clip, concept_list = _tiny_flux(concepts)
    graph = {
        "nodes": [
            model, clip, image,
            node("latent", "EmptySD3LatentImage", [0, 720], width=size, height=size, batch_size=batch),
            concept_list,
            node("saliency", "ConceptAttentionSaliency", [700, 0], [330, 700], layers="all", noise_level=0.5, seed=0),
            *mask_nodes(1090, concepts[0], "mean"),
        ],
        "links": [
            ("model", "MODEL", "saliency", "model"),
            ("clip", "CLIP", "concepts", "clip"),
            ("concepts", "concepts", "saliency", "concepts"),
            ("image", "IMAGE", "saliency", "image"),
            ("latent", "LATENT", "saliency", "latent"),
            ("saliency", "saliency", "mask", "saliency"),
            ("mask", "mask", "mask_preview", "mask"),
        ],
    }
    if vae:
        graph["nodes"][3] = node("vae", "ConceptAttentionTestTinyVAE", [0, 720], seed=0)
        graph["links"][4] = ("vae", "VAE", "saliency", "vae")
    return graph


def sampling_graph(*, size: int = 64, concepts=CONCEPTS, steps: int = 2) -> dict:
    """Concept Attention (Generation) -> KSampler -> Concept Saliency from Sampling -> Saliency to
    Mask, with a reroute on the MODEL link the maps are read from."""
    return {
        "nodes": [
            *_tiny_flux(concepts),
            node("patch", "ConceptAttentionPatchModel", [340, 220], [300, 250], layers="all"),
            node("prompt", "CLIPTextEncode", [340, 520], [300, 120], text="a cat and a dog under the sky"),
            node("negative", "ConditioningZeroOut", [340, 690]),
            node("latent", "EmptySD3LatentImage", [0, 320], width=size, height=size, batch_size=1),
            node("sampler", "KSampler", [700, 0], [300, 262], seed=3, steps=steps, cfg=1.0, sampler_name="euler",
                 scheduler="simple", denoise=1.0),
            node("reroute", "Reroute", [700, 330]),
            node("maps", "ConceptAttentionSamplingSaliency", [1060, 0], [320, 600]),
            *mask_nodes(1440, concepts[-1], "argmax", (300, 300)),
        ],
        "links": [
            ("model", "MODEL", "patch", "model"),
            ("clip", "CLIP", "concepts", "clip"),
            ("clip", "CLIP", "prompt", "clip"),
            ("concepts", "concepts", "patch", "concepts"),
            ("prompt", "CONDITIONING", "negative", "conditioning"),
            ("patch", "model", "sampler", "model"),
            ("prompt", "CONDITIONING", "sampler", "positive"),
            ("negative", "CONDITIONING", "sampler", "negative"),
            ("latent", "LATENT", "sampler", "latent_image"),
            ("patch", "model", "reroute", 0),
            ("reroute", 0, "maps", "model"),
            ("sampler", "LATENT", "maps", "latent"),
            ("maps", "saliency", "mask", "saliency"),
            ("mask", "mask", "mask_preview", "mask"),
        ],
    }
