"""MiniMax H3 image to video with audio, queued over HTTP on a real ComfyUI server, laid out as the stock
`video_minimax_h3_i2v` template is: a tiny MiniMax H3 file read by the stock UNETLoader (written at test time into the
server's models/diffusion_models/: ComfyUI's detection reads its whole config from the shapes), its Qwen3-VL text
encoder and its video and audio VAEs from the fixture pack (tests/server/fixture_nodes/concept_attention_test_nodes:
ComfyUI builds those at full size whatever a file holds).

Load Image -> MiniMax H3 Image to Video (first frame) -> Concept Attention (Generation) -> Basic Guider ->
SamplerCustomAdvanced -> Separate AV Latent -> VAE Decode / VAE Decode Audio -> Create Video -> Save Video, and next to
the clip: Concept Saliency from Sampling -> Saliency to Mask -> Convert Mask to Image -> Create Video -> Save Video
(the mask video), Concept Soundtrack Curve -> its curve as a picture, and Apply Soundtrack Curve to Audio -> Save
Audio. The checks read the saved files: the mask video has exactly the clip's frames, the masks are the saved maps'
masks, the curve is the saved shares, the gated audio is the clip's length, and the preview carries the soundtrack
strip. Maps without a soundtrack (a picture's) or with a malformed one (a crafted file) get a clear error from the curve
node.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from concept_attention_tests.server.model_files import MINIMAX_FILE, write_tiny_minimax
from concept_attention_tests.server.workflows import (
    empty_latent,
    error_text,
    link,
    node,
    output_files,
    read_mask_png,
    require_ok,
    saliency_file,
    saliency_node,
    sd3_loaders,
    to_mask_node,
    unique_prefix,
)

# 96x64 px -> a 6x4 latent -> a 3x2 token grid (1x2x2 patches) per latent frame; length 5 is MiniMax's shortest clip:
# 2 latent frames that decode to 1 + 4 = 5 pictures, and round(5 / 24 * 40) = 8 audio latent frames.
WIDTH, HEIGHT, LENGTH, AUDIO_FRAMES, FPS = 96, 64, 5, 8, 24.0
NAMES = ["dog", "grass", "sky"]


@pytest.fixture(scope="module")
def minimax_file(comfy_server):
    path = write_tiny_minimax(comfy_server.models_dir / "diffusion_models" / MINIMAX_FILE)
    yield path.name
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def first_frame(comfy_server):
    from PIL import Image, ImageDraw

    name = "concept_attention_minimax_first_frame.png"
    picture = Image.new("RGB", (96, 72), (90, 150, 230))
    draw = ImageDraw.Draw(picture)
    draw.rectangle([0, 40, 96, 72], fill=(70, 150, 60))
    draw.ellipse([30, 30, 60, 55], fill=(150, 100, 60))
    picture.save(comfy_server.input_dir / name)
    return name


def _graph(unet_name: str, picture: str, prefix: str) -> dict:
    return {
        "unet": node("UNETLoader", unet_name=unet_name, weight_dtype="default"),
        "clip": node("ConceptAttentionTestTinyMiniMaxClip", seed=23),
        "vae": node("ConceptAttentionTestTinyMiniMaxVAE", seed=31),
        "audio_vae": node("ConceptAttentionTestTinyMiniMaxAudioVAE", seed=32),
        "image": node("LoadImage", image=picture),
        "concepts": node("ConceptAttentionConceptList", clip=link("clip"), concepts=", ".join(NAMES), pooling="mean"),
        "i2v": node("MiniMaxH3ImageToVideo", clip=link("clip"), vae=link("vae"), first_frame=link("image"),
                    prompt="a dog barking on the grass under a blue sky", width=WIDTH, height=HEIGHT, length=LENGTH),
        "patch": node("ConceptAttentionPatchModel", model=link("unet"), concepts=link("concepts"), layers="all",
                      start_percent=0.0, end_percent=1.0, space="output", softmax=True,
                      concept_self_attention=True, concept_cross_attention=True),
        "guider": node("BasicGuider", model=link("patch"), conditioning=link("i2v", 0)),
        "noise": node("RandomNoise", noise_seed=7),
        "sampler_select": node("KSamplerSelect", sampler_name="euler"),
        "scheduler": node("BasicScheduler", model=link("unet"), scheduler="simple", steps=2, denoise=1.0),
        "sampler": node("SamplerCustomAdvanced", noise=link("noise"), guider=link("guider"),
                        sampler=link("sampler_select"), sigmas=link("scheduler"), latent_image=link("i2v", 1)),
        "separate": node("LTXVSeparateAVLatent", av_latent=link("sampler")),
        "decode": node("VAEDecode", samples=link("separate", 0), vae=link("vae")),
        "decode_audio": node("VAEDecodeAudio", samples=link("separate", 1), vae=link("audio_vae")),
        "clip_video": node("CreateVideo", images=link("decode"), audio=link("decode_audio"), fps=FPS),
        "save_clip": node("SaveVideo", video=link("clip_video"), filename_prefix=prefix + "_clip", format="mp4",
                          **{"format.codec": "h264"}),
        "maps": node("ConceptAttentionSamplingSaliency", model=link("patch"), latent=link("sampler"),
                     image=link("decode")),
        "save_maps": node("ConceptAttentionSaveSaliency", saliency=link("maps"), filename_prefix=prefix + "_maps"),
        "save_preview": node("SaveImage", images=link("maps", 1), filename_prefix=prefix + "_preview"),
        "mask": to_mask_node(saliency="maps", concepts="dog", method="relative_mean"),
        "mask_image": node("MaskToImage", mask=link("mask")),
        "mask_video": node("CreateVideo", images=link("mask_image"), fps=FPS),
        "save_mask": node("SaveVideo", video=link("mask_video"), filename_prefix=prefix + "_mask", format="mp4",
                          **{"format.codec": "h264"}),
        "save_mask_frames": node("SaveImage", images=link("mask_image"), filename_prefix=prefix + "_mask_frames"),
        "curve": node("ConceptAttentionSoundtrackCurve", saliency=link("maps"), concept="dog", mode="share",
                      threshold=0.5, invert=False),
        "curve_image": node("MaskToImage", mask=link("curve")),
        "save_curve": node("SaveImage", images=link("curve_image"), filename_prefix=prefix + "_curve"),
        "gated": node("ConceptAttentionApplySoundtrackCurve", audio=link("decode_audio"), curve=link("curve"),
                      floor=0.0),
        "save_gated": node("SaveAudio", audio=link("gated"), filename_prefix=prefix + "_dog_audio"),
    }


def _mp4(path):
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        audio = [s for s in container.streams if s.type == "audio"]
    return frames, audio


def test_generated_clip_with_its_mask_video_and_soundtrack_curve(comfy_server, minimax_file, first_frame):
    from PIL import Image

    from concept_attention.concept_patch.files.load import load_saliency
    from concept_attention.concept_patch.maps.masks import saliency_to_mask
    from concept_attention.concept_patch.maps.panels import sheet_layout
    from concept_attention.concept_patch.maps.preview import render_preview

    prefix = unique_prefix("minimax_i2v")
    result = require_ok(comfy_server.run_prompt(_graph(minimax_file, first_frame, prefix), timeout=600), comfy_server)

    # the clip: 5 frames of 64x48 with its soundtrack
    [clip_mp4] = output_files(comfy_server, result, "save_clip")
    clip_frames, clip_audio = _mp4(clip_mp4)
    assert len(clip_frames) == LENGTH and clip_frames[0].shape == (HEIGHT, WIDTH, 3)
    assert clip_audio, "the clip carries the decoded soundtrack"

    # the maps: per latent frame over the target video, with the soundtrack shares
    saliency = load_saliency(str(saliency_file(comfy_server, result, "save_maps")))
    assert saliency.names == NAMES and saliency.metadata["model_family"] == "MiniMax H3"
    assert tuple(saliency.maps.shape) == (1, 3, 2, HEIGHT // 32, WIDTH // 32)
    assert saliency.frames == LENGTH and tuple(saliency.image_size) == (HEIGHT, WIDTH)
    shares = torch.tensor(saliency.metadata["audio_shares"])
    assert shares.shape == (1, 3, AUDIO_FRAMES) and saliency.metadata["audio_frame_rate"] == 40
    torch.testing.assert_close(shares.sum(dim=1), torch.ones(1, AUDIO_FRAMES), atol=1e-5, rtol=0)

    # the mask video: one mask per clip frame, the saved maps' masks (exact in the PNG frames, shown in the mp4)
    [mask_mp4] = output_files(comfy_server, result, "save_mask")
    mask_frames, _ = _mp4(mask_mp4)
    assert len(mask_frames) == len(clip_frames) == LENGTH
    assert all(f.shape == (HEIGHT, WIDTH, 3) for f in mask_frames)
    expected = np.clip(255.0 * saliency_to_mask(saliency, "dog", method="relative_mean").numpy(), 0, 255)
    expected = expected.astype(np.uint8)
    pngs = output_files(comfy_server, result, "save_mask_frames")
    assert len(pngs) == LENGTH
    np.testing.assert_array_equal(np.stack([read_mask_png(p) for p in sorted(pngs)]), expected)
    agree = ((np.stack(mask_frames)[..., 0] > 127) == (expected > 127)).mean()
    assert agree > 0.9, f"the mp4 mask frames should show the masks, {agree:.2%} of pixels agree"

    # the soundtrack curve: dog's shares, one column per audio frame
    [curve_png] = output_files(comfy_server, result, "save_curve")
    curve = read_mask_png(curve_png)
    assert curve.shape == (1, AUDIO_FRAMES)
    np.testing.assert_array_equal(curve[0], np.clip(255.0 * shares[0, 0].numpy(), 0, 255).astype(np.uint8))

    # the dog's stretches of the soundtrack: as long as the clip's audio (800 samples an audio frame, 32 kHz)
    [gated] = output_files(comfy_server, result, "save_gated", "audio")
    import av

    with av.open(str(gated)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(audio=0))
        assert stream.rate == 32000 and stream.channels == 2
    assert samples == AUDIO_FRAMES * 800

    # the preview: one sheet per frame, a soundtrack band under every panel (exact concept colours)
    layout = sheet_layout(saliency)
    assert layout.band > 0
    sheets = output_files(comfy_server, result, "save_preview")
    assert len(sheets) == LENGTH
    rendered = render_preview(saliency)
    for index, path in enumerate(sorted(sheets)):
        with Image.open(path) as im:
            saved = np.asarray(im.convert("RGB"))
        assert saved.shape == (*layout.shape, 3)
        for k in range(layout.panels):
            y, x = layout.box(k)
            top = y + layout.panel[0] + layout.strip
            band = (slice(top, top + layout.band), slice(x, x + layout.panel[1]))
            want = np.clip(255.0 * rendered[index][band].numpy(), 0, 255).astype(np.uint8)
            np.testing.assert_array_equal(saved[band], want)
    assert comfy_server.alive()


def _curve_to_preview(saliency: str) -> dict:
    return {
        "curve": node("ConceptAttentionSoundtrackCurve", saliency=link(saliency), concept="dog", mode="share",
                      threshold=0.5, invert=False),
        "curve_image": node("MaskToImage", mask=link("curve")),
        "preview": node("PreviewImage", images=link("curve_image")),
    }


def _assert_refused(server, result, *phrases: str) -> None:
    assert result.status == "error", result.describe()
    assert result.error.get("node_type") == "ConceptAttentionSoundtrackCurve", result.describe()
    assert result.error.get("exception_type") == "concept_attention.errors.ConceptAttentionError", result.describe()
    message = error_text(result)
    for phrase in phrases:
        assert phrase in message, f"the error should mention {phrase!r}; it says: {message!r}"
    assert str(server.base_dir) not in message and "Traceback" not in message, message
    assert server.alive()


def test_soundtrack_curve_of_maps_without_a_soundtrack_is_refused_clearly(comfy_server):
    """A picture's SALIENCY (the tiny SD3) has no soundtrack: the curve node says so, naming the family that made the
    maps and the one that makes a soundtrack; a crafted file whose soundtrack is malformed is refused by name."""
    from safetensors.torch import save_file

    prompt = {**sd3_loaders(), "latent": empty_latent(), "saliency": saliency_node(seed=4),
              **_curve_to_preview("saliency")}
    _assert_refused(comfy_server, comfy_server.run_prompt(prompt, timeout=180), "this SALIENCY has no soundtrack",
                    "(these maps come from SD3", "MiniMax H3")

    name = f"crafted_soundtrack_{unique_prefix('x').split('/')[0]}.safetensors"
    metadata = {"format": "concept_attention.saliency", "format_version": "1", "names": '["dog", "sky"]',
                "image_size": "[32, 32]", "softmax": "true", "frames": "5",
                "metadata": '{"audio_shares": [[[0.5, 0.5], [0.5]]]}'}
    save_file({"maps": torch.full((1, 2, 2, 2, 2), 0.5)}, str(comfy_server.input_dir / name), metadata=metadata)
    prompt = {"load": node("ConceptAttentionLoadSaliency", file=name), **_curve_to_preview("load")}
    _assert_refused(comfy_server, comfy_server.run_prompt(prompt, timeout=180),
                    "soundtrack ('audio_shares' in its metadata)", "same number of audio frames")
