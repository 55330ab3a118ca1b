"""The nodes on video: a tiny CogVideoX (ComfyUI's own model, text encoder and VAE classes at tiny widths) through
Concept List -> Concept Saliency / Concept Attention (Generation) + KSampler + Concept Saliency from Sampling ->
Saliency to Mask, with the stock nodes around them (VAE Decode / Encode, Empty HunyuanVideo Latent, Mask To Image,
Save Animated WEBP, Create Video). The frame counts are checked against what the tiny VAE really decodes."""

from __future__ import annotations

import functools
import os

import pytest
import torch

from concept_attention.concept_patch.maps.masks import saliency_to_mask
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention.nodes.concept_list import ConceptList
from concept_attention.nodes.concept_saliency import ConceptSaliency
from concept_attention.nodes.generation import ConceptAttentionPatch, SamplingSaliency
from concept_attention.nodes.saliency_files import LoadSaliency, SaveSaliency
from concept_attention.nodes.saliency_to_mask import SaliencyToMask
from concept_attention_tests.comfy.module_caches import cleared_after_module
from concept_attention_tests.comfy.tiny import tiny_cogvideox

CONCEPTS = "dog, grass, sky"
NAMES = ["dog", "grass", "sky"]
# latent 4x6 cells -> 32x48 px frames, a 2x3 token grid per token frame (2x2 patches)
LATENT_H, LATENT_W = 4, 6
HEIGHT, WIDTH = 8 * LATENT_H, 8 * LATENT_W
LATENT_FRAMES = [1, 2, 3, 4]


@functools.cache
def _model():
    return tiny_cogvideox.cogvideox_model("5b", depth=2, seed=3)


@functools.cache
def _clip():
    return tiny_cogvideox.cogvideox_clip()


@functools.cache
def _vae():
    return tiny_cogvideox.cogvideox_vae()


@functools.cache
def _concepts():
    return ConceptList.execute(clip=_clip(), concepts=CONCEPTS, pooling="mean").result[0]


_module_scope = cleared_after_module(_model, _clip, _vae, _concepts)


@pytest.fixture(autouse=True)
def _own_folders(comfyui_path, tmp_path):
    """Output, temp and input folders of this test only."""
    import folder_paths

    before = (folder_paths.get_output_directory(), folder_paths.get_temp_directory(),
              folder_paths.get_input_directory())
    for name in ("output", "temp", "input"):
        (tmp_path / name).mkdir()
    folder_paths.set_output_directory(str(tmp_path / "output"))
    folder_paths.set_temp_directory(str(tmp_path / "temp"))
    folder_paths.set_input_directory(str(tmp_path / "input"))
    yield
    folder_paths.set_output_directory(before[0])
    folder_paths.set_temp_directory(before[1])
    folder_paths.set_input_directory(before[2])


@pytest.fixture(autouse=True)
def _as_the_executor_runs_nodes():
    """ComfyUI's executor runs every node under torch.inference_mode (execution.py)."""
    with torch.inference_mode():
        yield


def _latent(frames: int, seed: int = 5) -> torch.Tensor:
    return torch.randn(1, 16, frames, LATENT_H, LATENT_W, generator=torch.Generator().manual_seed(seed))


def _decode(latent: torch.Tensor) -> torch.Tensor:
    """The stock VAE Decode node: the clip's frames as an IMAGE batch [F, H, W, 3]."""
    import nodes

    return nodes.VAEDecode().decode(_vae(), {"samples": latent})[0]


def _encode_saliency(latent=None, image=None, vae=None, seed=0):
    return ConceptSaliency.execute(
        model=_model(), concepts=_concepts(), layers="all", noise_level=0.5, samples=1, seed=seed, space="output",
        softmax=True, latent=None if latent is None else {"samples": latent}, image=image, vae=vae)


def _mask(saliency, concepts="dog", method="relative_mean", image=None, threshold=0.5):
    # relative_mean: the paper's mean cut, which these tests were written for (the tiny model's dog may win no token)
    return SaliencyToMask.execute(saliency=saliency, concepts=concepts, method=method, threshold=threshold, grow=0,
                                  feather=0.0, invert=False, image=image).result[0]


def _webp_frames(entry: dict, folder: str, fps: float) -> int:
    """Frames an animated WebP plays, in frames of 1/fps s: the encoder merges identical neighbours into one longer
    frame, so its frames are counted by their durations."""
    from PIL import Image, ImageSequence

    with Image.open(os.path.join(folder, entry["subfolder"], entry["filename"])) as im:
        total_ms = 0
        for frame in ImageSequence.Iterator(im):
            frame.load()  # a frame's duration is known once it is decoded
            total_ms += frame.info["duration"]
    return round(total_ms * fps / 1000)


def _video_frames(images: torch.Tensor, path: str, fps: float = 8.0) -> int:
    """Frames of the video that stock Create Video makes of an IMAGE batch, saved with its save_to (as Save Video
    does) and read back."""
    import av
    from comfy_extras import nodes_video

    video = nodes_video.CreateVideo.execute(images=images, fps=fps).result[0]
    video.save_to(path)
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))


# ---------------------------------------------------------------------------------------------
# encode mode on video latents: one mask per decoded frame
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latent_frames", LATENT_FRAMES)
def test_encode_mode_masks_one_per_decoded_frame(latent_frames):
    """Concept Saliency on a CogVideoX latent of T frames: maps [1, r, T, h, w], and Saliency to Mask gives one mask
    per frame the VAE decodes that latent to (4T - 3 for odd T, 4T for even T), plain and guided by the decoded
    frames. The first and last frames' masks are the masks of the first and last token frames."""
    latent = _latent(latent_frames)
    frames = _decode(latent)
    decoded = frames.shape[0]
    assert decoded == (4 * latent_frames - 3 if latent_frames % 2 else 4 * latent_frames)
    assert tuple(frames.shape[1:]) == (HEIGHT, WIDTH, 3)

    saliency, preview = _encode_saliency(latent=latent, image=frames).result
    assert tuple(saliency.maps.shape) == (1, len(NAMES), latent_frames, LATENT_H // 2, LATENT_W // 2)
    assert saliency.frames == decoded and tuple(saliency.image_size) == (HEIGHT, WIDTH)

    plain = _mask(saliency)
    guided = _mask(saliency, image=frames)
    for mask in (plain, guided):
        assert tuple(mask.shape) == (decoded, HEIGHT, WIDTH)
        assert mask.dtype == torch.float32 and set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    assert not torch.equal(plain, guided), "the decoded frames should move the guided mask's edges"

    # At the clip's ends a pixel frame sits exactly on a token frame: its mask is that token frame's picture mask.
    cut = float(saliency.maps[:, 0].median())  # a value that splits "dog"'s maps
    by_frame = _mask(saliency, method="value", threshold=cut)
    for pixel_frame, token_frame in ((0, 0), (decoded - 1, latent_frames - 1)):
        picture = SaliencyMaps(saliency.maps[:, :, token_frame], list(saliency.names), saliency.image_size,
                               softmax=True)
        expected = saliency_to_mask(picture, "dog", method="value", threshold=cut)
        assert torch.equal(by_frame[pixel_frame:pixel_frame + 1], expected), (pixel_frame, token_frame)
    if latent_frames > 1:
        assert not torch.equal(by_frame[0], by_frame[-1]), "the maps should change over the clip"

    # the preview: one sheet per decoded frame
    assert preview.shape[0] == decoded and preview.shape[-1] == 3


def test_a_clips_frames_through_vae_encode_give_masks_for_every_frame():
    """An existing clip (its frames as an IMAGE batch) with its VAE: Concept Saliency encodes it as the stock VAE
    Encode does, and Saliency to Mask gives a mask for every frame of the clip."""
    import nodes

    frames = _decode(_latent(3, seed=9))  # 9 frames: a 4k+1 clip, as CogVideoX makes them
    assert frames.shape[0] == 9
    saliency, _ = _encode_saliency(image=frames, vae=_vae()).result
    encoded = nodes.VAEEncode().encode(_vae(), frames)[0]["samples"]
    assert tuple(encoded.shape) == (1, 16, 3, LATENT_H, LATENT_W)
    from_latent, _ = _encode_saliency(latent=encoded).result
    assert torch.equal(saliency.maps, from_latent.maps), "the IMAGE + VAE route must read the VAE Encode latent"
    assert saliency.frames == frames.shape[0]
    assert tuple(_mask(saliency, image=frames).shape) == (9, HEIGHT, WIDTH)


def test_masks_and_preview_play_as_videos_through_stock_nodes(tmp_path):
    """The per-frame masks (Mask To Image) and the preview sheets are IMAGE batches the stock video nodes play:
    Save Animated WEBP and Create Video (saved as an mp4) give one video frame per decoded frame."""
    import folder_paths
    from comfy_extras import nodes_images
    from comfy_extras.nodes_mask import MaskToImage

    latent = _latent(3)
    frames = _decode(latent)
    saliency, preview = _encode_saliency(latent=latent, image=frames).result
    decoded = frames.shape[0]
    mask_images = MaskToImage.execute(_mask(saliency, image=frames)).result[0]
    assert tuple(mask_images.shape) == (decoded, HEIGHT, WIDTH, 3)

    for name, images in (("mask", mask_images), ("preview", preview)):
        saved = nodes_images.SaveAnimatedWEBP.execute(images, 8.0, f"video_nodes/{name}", False, 90, "default")
        [entry] = saved.ui.as_dict()["images"]
        assert _webp_frames(entry, folder_paths.get_output_directory(), 8.0) == decoded, name
        assert _video_frames(images, str(tmp_path / f"{name}.mp4")) == decoded, name
    assert _video_frames(frames, str(tmp_path / "clip.mp4")) == decoded


def test_the_nodes_display_animates_each_panel_over_the_clip():
    """Concept Saliency's own display: per panel (segmentation view, then each concept) an animated image with one
    frame per decoded frame, and the legend's shares of the clip."""
    import folder_paths

    latent = _latent(2)
    frames = _decode(latent)
    out = _encode_saliency(latent=latent, image=frames)
    payload = out.ui if isinstance(out.ui, dict) else out.ui.as_dict()
    assert payload["animated"] == (True,)
    assert len(payload["images"]) == 1 + len(NAMES)
    from concept_attention.concept_patch.maps.preview import video_fps

    for entry in payload["images"]:
        assert _webp_frames(entry, folder_paths.get_temp_directory(), video_fps(out.result[0])) == frames.shape[0]
    assert [e["name"] for e in payload["concept_legend"]] == NAMES


def test_save_and_load_keep_the_time_axis():
    """Save Saliency + Load Saliency of a video SALIENCY: the same maps and frame count, so the loaded maps give the
    same per-frame masks."""
    import shutil

    import folder_paths

    latent = _latent(3)
    saliency, _ = _encode_saliency(latent=latent).result
    out = SaveSaliency.execute(saliency=saliency, filename_prefix="video_nodes/maps")
    [saved] = out.ui["saliency_files"]
    assert out.ui["animated"] == (True,)
    shutil.copyfile(os.path.join(folder_paths.get_output_directory(), saved),
                    os.path.join(folder_paths.get_input_directory(), "video_maps.safetensors"))
    loaded = LoadSaliency.execute(file="video_maps.safetensors").result[0]
    assert torch.equal(loaded.maps, saliency.maps)
    assert loaded.frames == saliency.frames == 9 and loaded.is_video
    assert loaded.names == saliency.names and tuple(loaded.image_size) == tuple(saliency.image_size)
    assert torch.equal(_mask(loaded), _mask(saliency))


# ---------------------------------------------------------------------------------------------
# generation mode: a generated clip and its masks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 5, 9])
def test_generation_mode_masks_one_per_decoded_frame(length):
    """Concept Attention (Generation) -> stock KSampler on Empty HunyuanVideo Latent (CogVideoX's latent: 16 channels,
    4x time, 8x space) -> VAE Decode and Concept Saliency from Sampling -> Saliency to Mask: the clip is exactly the
    unpatched model's, and there is one mask per frame the VAE decodes the sampled latent to."""
    from comfy_extras.nodes_hunyuan import EmptyHunyuanLatentVideo

    import nodes

    latent = EmptyHunyuanLatentVideo.execute(width=WIDTH, height=HEIGHT, length=length, batch_size=1).result[0]
    latent_frames = (length - 1) // 4 + 1
    assert tuple(latent["samples"].shape) == (1, 16, latent_frames, LATENT_H, LATENT_W)
    positive = nodes.CLIPTextEncode().encode(_clip(), "a dog running on the grass under the sky")[0]
    negative = nodes.CLIPTextEncode().encode(_clip(), "")[0]
    patched = ConceptAttentionPatch.execute(model=_model(), concepts=_concepts(), layers="all", start_percent=0.0,
                                            end_percent=1.0, space="output", softmax=True).result[0]

    def generate(model):
        return nodes.common_ksampler(model, 7, 2, 3.0, "euler", "simple", positive, negative, latent)[0]

    sampled = generate(patched)
    assert torch.equal(sampled["samples"], generate(_model())["samples"]), "the patch must not change the clip"
    frames = _decode(sampled["samples"])
    decoded = frames.shape[0]  # 4T - 3 for odd T, 4T for even T: 8 frames for length 5
    assert decoded == (4 * latent_frames - 3 if latent_frames % 2 else 4 * latent_frames)

    saliency, preview = SamplingSaliency.execute(model=patched, latent=sampled, image=frames).result
    assert tuple(saliency.maps.shape) == (1, len(NAMES), latent_frames, LATENT_H // 2, LATENT_W // 2)
    assert saliency.frames == decoded and preview.shape[0] == decoded
    assert tuple(_mask(saliency, image=frames).shape) == (decoded, HEIGHT, WIDTH)
    argmax = [_mask(saliency, concepts=name, method="argmax") for name in NAMES]
    assert torch.equal(sum(argmax), torch.ones(decoded, HEIGHT, WIDTH)), "argmax masks partition every frame"
