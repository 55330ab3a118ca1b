"""Video workflows queued over HTTP on a real ComfyUI server: a tiny CogVideoX-5B file read by the stock UNETLoader
(written at test time into the server's models/diffusion_models/), with the tiny CogVideoX text encoder and VAE of
the fixture pack (tests/server/fixture_nodes/concept_attention_test_nodes: ComfyUI builds those two at full width
whatever the file holds).

Generation: UNETLoader -> Concept Attention (Generation) -> KSampler on Empty HunyuanVideo Latent (CogVideoX's
latent: 16 channels, 4x time, 8x space) -> VAE Decode -> Create Video -> Save Video, and the per-frame concept masks
(Saliency to Mask -> Mask To Image) saved as a video next to it. Encode: that saved clip loaded back with Load Video,
its frames through Concept Saliency (IMAGE + VAE), and its mask video saved. The checks read the saved files: the
mask video has exactly as many frames as the clip, and the masks are the saved maps' masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from concept_attention_tests.server.model_files import COGVIDEOX_FILE, write_tiny_cogvideox
from concept_attention_tests.server.workflows import (
    CONCEPT_NAMES,
    CONCEPTS,
    check_patched_is_plain,
    link,
    node,
    output_files,
    patched_and_plain_samplers,
    prompt_nodes,
    require_ok,
    saliency_file,
    to_mask_node,
    unique_prefix,
)

# 48x32 px frames -> latent 6x4 -> a 3x2 token grid per frame; 9 frames -> 3 latent frames, which decode to 9.
WIDTH, HEIGHT, LENGTH = 48, 32, 9
LATENT_FRAMES = (LENGTH - 1) // 4 + 1
FPS = 8.0


@pytest.fixture(scope="module")
def cogvideox_file(comfy_server):
    """The tiny CogVideoX-5B file in the running server's models/diffusion_models/ (ComfyUI lists new files of a
    model folder on the next request)."""
    path = write_tiny_cogvideox(comfy_server.models_dir / "diffusion_models" / COGVIDEOX_FILE)
    yield path.name
    path.unlink(missing_ok=True)


def _loaders(unet_name: str) -> dict:
    return {
        "unet": node("UNETLoader", unet_name=unet_name, weight_dtype="default"),
        "clip": node("ConceptAttentionTestTinyCogVideoXClip", seed=21),
        "vae": node("ConceptAttentionTestTinyCogVideoXVAE", seed=22),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=CONCEPTS, pooling="mean"),
    }


def _video_outputs(images: str, prefix: str, tag: str, fps=FPS) -> dict:
    """IMAGE batch -> stock Create Video -> Save Video (mp4)."""
    return {
        f"{tag}_video": node("CreateVideo", images=link(images), fps=fps),
        f"save_{tag}": node("SaveVideo", video=link(f"{tag}_video"), filename_prefix=f"{prefix}_{tag}",
                            format="mp4", **{"format.codec": "h264"}),
    }


def _mask_outputs(mask: str, prefix: str, fps=FPS) -> dict:
    """The masks as a video (mp4) and as a lossless animated WebP (exact pixels, for comparing with the maps)."""
    return {
        "mask_image": node("MaskToImage", mask=link(mask)),
        **_video_outputs("mask_image", prefix, "mask", fps),
        "save_mask_webp": node("SaveAnimatedWEBP", images=link("mask_image"), filename_prefix=prefix + "_mask_webp",
                               fps=FPS, lossless=True, quality=100, method="default"),
    }


def _mp4_frames(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _webp_masks(path) -> np.ndarray:
    """The frames a lossless animated WebP plays at FPS, as gray uint8 [F, H, W]: the encoder merges identical
    neighbours into one longer frame, which is expanded again by its duration."""
    from PIL import Image, ImageSequence

    frames = []
    with Image.open(path) as im:
        for frame in ImageSequence.Iterator(im):
            frame.load()
            pixels = np.asarray(frame.convert("RGB"))
            assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
            frames += [pixels[..., 0]] * round(frame.info["duration"] * FPS / 1000)
    return np.stack(frames)


def _expected_masks(saliency, concept: str) -> np.ndarray:
    from concept_attention.concept_patch.maps.masks import saliency_to_mask

    return np.clip(255.0 * saliency_to_mask(saliency, concept, method="relative_mean").numpy(), 0, 255).astype(np.uint8)


def _check_mask_files(comfy_server, result, saliency, frames: int) -> None:
    """The mask video has `frames` frames of the picture's size; the lossless copy is exactly the saved maps'
    masks, one per frame, and the mp4 shows them (up to its compression)."""
    [mask_mp4] = output_files(comfy_server, result, "save_mask")
    assert mask_mp4.suffix == ".mp4"
    video = _mp4_frames(mask_mp4)
    assert len(video) == frames
    assert all(f.shape == (HEIGHT, WIDTH, 3) for f in video)
    expected = _expected_masks(saliency, "dog")
    assert expected.shape == (frames, HEIGHT, WIDTH)
    assert 0 < (expected > 0).mean() < 1, "the mask should be neither empty nor full"
    [webp] = output_files(comfy_server, result, "save_mask_webp")
    np.testing.assert_array_equal(_webp_masks(webp), expected)
    agree = ((np.stack(video)[..., 0] > 127) == (expected > 127)).mean()
    assert agree > 0.9, f"the mp4 mask frames should show the masks, {agree:.2%} of pixels agree"


def _load_saliency(path):
    from concept_attention.concept_patch.files.load import load_saliency

    return load_saliency(str(path))


def _check_video_maps(saliency, frames: int) -> None:
    assert saliency.names == CONCEPT_NAMES and saliency.is_video
    assert tuple(saliency.maps.shape) == (1, len(CONCEPT_NAMES), LATENT_FRAMES, HEIGHT // 16, WIDTH // 16)
    assert saliency.frames == frames and tuple(saliency.image_size) == (HEIGHT, WIDTH)
    assert saliency.metadata.get("model_family") == "CogVideoX", saliency.metadata
    assert torch.allclose(saliency.maps.sum(dim=1), torch.ones(1, *saliency.maps.shape[2:]), atol=1e-5)


def test_generated_clip_and_its_concept_mask_video(comfy_server, cogvideox_file):
    """Generation mode on a video through stock nodes: the clip saved as a video and the concept's masks saved as a
    video next to it, with one mask frame per clip frame; the patched model generates the unpatched model's clip."""
    prefix = unique_prefix("cogvideox_generation")
    prompt = {
        **_loaders(cogvideox_file),
        "latent": node("EmptyHunyuanLatentVideo", width=WIDTH, height=HEIGHT, length=LENGTH, batch_size=1),
        **prompt_nodes(),
        **patched_and_plain_samplers(prefix, seed=5),
        "decode": node("VAEDecode", samples=link("sampler"), vae=link("vae")),
        **_video_outputs("decode", prefix, "clip"),
        "maps": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler"),
                     image=link("decode")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("maps"), filename_prefix=prefix + "_maps"),
        "mask": to_mask_node(saliency="maps", concepts="dog", method="relative_mean"),
        **_mask_outputs("mask", prefix),
    }
    result = require_ok(comfy_server.run_prompt(prompt, timeout=300), comfy_server)

    check_patched_is_plain(comfy_server, result, (1, 16, LATENT_FRAMES, HEIGHT // 8, WIDTH // 8))

    [clip_mp4] = output_files(comfy_server, result, "save_clip")
    clip_frames = _mp4_frames(clip_mp4)
    assert len(clip_frames) == LENGTH and clip_frames[0].shape == (HEIGHT, WIDTH, 3)
    saliency = _load_saliency(saliency_file(comfy_server, result, "save_maps"))
    _check_video_maps(saliency, LENGTH)
    assert saliency.metadata["model_calls_used"] >= 3, saliency.metadata
    _check_mask_files(comfy_server, result, saliency, len(clip_frames))
    assert comfy_server.alive()


def test_concept_mask_video_of_an_existing_clip(comfy_server, cogvideox_file):
    """Encode mode on an existing clip: a video file in the input folder -> Load Video -> Get Video Components ->
    Concept Saliency (its frames + the VAE) -> Saliency to Mask -> a mask video with the clip's frame count and
    frame rate. Run twice with other concepts, the server keeps answering and the second run re-uses the clip."""
    import av

    clip_name = "concept_attention_clip.mp4"
    rng = np.random.default_rng(3)
    with av.open(str(comfy_server.input_dir / clip_name), mode="w") as container:  # a 9-frame clip, 12 fps
        stream = container.add_stream("h264", rate=12)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for k in range(LENGTH):
            picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
            picture[:, :] = (90, 150, 230)
            picture[HEIGHT // 2:, :] = (70, 150, 60)
            picture[8:20, 4 + 3 * k:16 + 3 * k] = (180, 60, 50) + rng.integers(0, 20, 3)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())

    def prompt(concepts: str, prefix: str) -> dict:
        graph = {
            **_loaders(cogvideox_file),
            "load": node("LoadVideo", file=clip_name),
            "components": node("GetVideoComponents", video=link("load")),
            "saliency": node("ConceptAttentionSaliency", model=link("unet"), concepts=link("concepts"),
                             image=link("components", 0), vae=link("vae"), layers="all", noise_level=0.5,
                             samples=1, seed=3, space="output", softmax=True, concept_self_attention=True,
                             concept_cross_attention=True),
            "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("saliency"),
                              filename_prefix=prefix + "_maps"),
            "mask": to_mask_node(concepts="dog", method="relative_mean"),
            **_mask_outputs("mask", prefix, fps=link("components", 2)),
        }
        graph["concepts"]["inputs"]["concepts"] = concepts
        return graph

    prefix = unique_prefix("cogvideox_encode")
    result = require_ok(comfy_server.run_prompt(prompt(CONCEPTS, prefix), timeout=300), comfy_server)
    saliency = _load_saliency(saliency_file(comfy_server, result, "save_maps"))
    _check_video_maps(saliency, LENGTH)
    assert saliency.metadata["mode"] == "encode", saliency.metadata
    _check_mask_files(comfy_server, result, saliency, LENGTH)
    [mask_mp4] = output_files(comfy_server, result, "save_mask")
    with av.open(str(mask_mp4)) as container:
        assert container.streams.video[0].average_rate == 12, "the mask video keeps the clip's frame rate"

    # the server stays usable: the same clip with other concepts runs again
    again = require_ok(comfy_server.run_prompt(prompt("dog, collar, sky", prefix + "_again"), timeout=300),
                       comfy_server)
    second = _load_saliency(saliency_file(comfy_server, again, "save_maps"))
    assert second.names == ["dog", "collar", "sky"] and second.frames == LENGTH
    assert comfy_server.alive()
