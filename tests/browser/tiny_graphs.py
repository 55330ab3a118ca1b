"""Graphs that run in seconds on the CPU: the pack's nodes over the tiny Flux.1 fixture nodes of
the server tier (tests/server/fixture_nodes/concept_attention_test_nodes), for the browser tests
and the README screenshots."""

from __future__ import annotations

TINY_FLUX = "ConceptAttentionTestTinyFlux"
TINY_CLIP = "ConceptAttentionTestTinyFluxClip"

# The middle name checks that names reach the page as text, never as markup.
CONCEPTS = ["cat", "<b>dog</b> & co", "sky"]


def encode_graph(*, batch: int = 1, size: int = 64, concepts=CONCEPTS, image_node: dict | None = None) -> dict:
    """Concept List + Concept Saliency (encode mode) + Saliency to Mask -> mask preview."""
    image = image_node or {"key": "image", "type": "EmptyImage", "pos": [0, 340],
                           "values": {"width": size, "height": size, "batch_size": batch, "color": 0x4477AA}}
    return {
        "nodes": [
            {"key": "model", "type": TINY_FLUX, "pos": [0, 0], "values": {"seed": 0}},
            {"key": "clip", "type": TINY_CLIP, "pos": [0, 150], "values": {"seed": 1}},
            image,
            {"key": "latent", "type": "EmptySD3LatentImage", "pos": [0, 720],
             "values": {"width": size, "height": size, "batch_size": batch}},
            {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [340, 0], "size": [300, 150],
             "values": {"concepts": ", ".join(concepts)}},
            {"key": "saliency", "type": "ConceptAttentionSaliency", "pos": [700, 0], "size": [330, 700],
             "values": {"layers": "all", "noise_level": 0.5, "seed": 0}},
            {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1090, 0], "size": [320, 320],
             "values": {"concepts": concepts[0], "method": "mean"}},
            {"key": "mask_preview", "type": "MaskPreview", "pos": [1090, 380], "size": [320, 320]},
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


def sampling_graph(*, size: int = 64, concepts=CONCEPTS, steps: int = 2) -> dict:
    """Concept Attention (Generation) -> KSampler -> Concept Saliency from Sampling -> Saliency to
    Mask, with a reroute on the MODEL link the maps are read from."""
    return {
        "nodes": [
            {"key": "model", "type": TINY_FLUX, "pos": [0, 0], "values": {"seed": 0}},
            {"key": "clip", "type": TINY_CLIP, "pos": [0, 150], "values": {"seed": 1}},
            {"key": "concepts", "type": "ConceptAttentionConceptList", "pos": [340, 0], "size": [300, 150],
             "values": {"concepts": ", ".join(concepts)}},
            {"key": "patch", "type": "ConceptAttentionPatchModel", "pos": [340, 220], "size": [300, 250],
             "values": {"layers": "all"}},
            {"key": "prompt", "type": "CLIPTextEncode", "pos": [340, 520], "size": [300, 120],
             "values": {"text": "a cat and a dog under the sky"}},
            {"key": "negative", "type": "ConditioningZeroOut", "pos": [340, 690]},
            {"key": "latent", "type": "EmptySD3LatentImage", "pos": [0, 320],
             "values": {"width": size, "height": size, "batch_size": 1}},
            {"key": "sampler", "type": "KSampler", "pos": [700, 0], "size": [300, 262],
             "values": {"seed": 3, "steps": steps, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
                        "denoise": 1.0}},
            {"key": "reroute", "type": "Reroute", "pos": [700, 330]},
            {"key": "maps", "type": "ConceptAttentionSamplingSaliency", "pos": [1060, 0], "size": [320, 600]},
            {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [1440, 0], "size": [320, 320],
             "values": {"concepts": concepts[-1], "method": "argmax"}},
            {"key": "mask_preview", "type": "MaskPreview", "pos": [1440, 380], "size": [300, 300]},
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
