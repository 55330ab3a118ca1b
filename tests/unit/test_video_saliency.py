"""Video saliency downstream of the model: masks per pixel frame, time interpolation, per-clip
thresholds, per-frame guided edges, previews per frame on one scale, legend shares over the clip,
and saliency files that keep the time axis.

The maps are synthetic SaliencyMaps [B, r, T, h, w]; `frames` is what a causal video VAE decodes T
latent frames to, (T - 1)·ratio + 1, written out here rather than taken from product code.
"""


import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.files.load import load_saliency
from concept_attention.concept_patch.files.save import save_saliency
from concept_attention.concept_patch.maps.colors import colorize, concept_colors
from concept_attention.concept_patch.maps.legend import concept_legend
from concept_attention.concept_patch.maps.masks import MASK_METHODS, saliency_to_mask
from concept_attention.concept_patch.maps.panels import PREVIEW_PIXEL_BUDGET, sheet_layout
from concept_attention.concept_patch.maps.preview import render_preview
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention_tests.unit.allocations import torch_cpu_peak_bytes
from concept_attention_tests.unit.preview_helpers import segmentation_preview
from concept_attention_tests.unit.saliency_files import write_saliency_file as _write

NAMES = ["ball", "grass", "sky"]
RATIO = 4  # pixel frames per latent frame of the causal video VAEs (CogVideoX, HunyuanVideo)


def decoded_frames(latent_frames: int, ratio: int = RATIO) -> int:
    """Pixel frames a causal video VAE decodes latent_frames to: the first latent frame is one picture."""
    return (latent_frames - 1) * ratio + 1


def _video(clips=2, tokens=3, frames=None, grid=(4, 6), image_size=(64, 96), seed=0, softmax=True, names=NAMES):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(clips, len(names), tokens, *grid, generator=g) * 3
    maps = logits.softmax(dim=1) if softmax else logits
    frames = decoded_frames(tokens) if frames is None else frames
    return SaliencyMaps(maps=maps, names=list(names), image_size=image_size, softmax=softmax, frames=frames)


def _two_concepts(ball: torch.Tensor, image_size=None, frames=None) -> SaliencyMaps:
    """Softmax-like maps of one clip from the ball's probabilities [T, h, w] (grass gets the rest)."""
    maps = torch.stack([ball, 1.0 - ball]).unsqueeze(0)
    size = image_size or tuple(ball.shape[-2:])
    return SaliencyMaps(maps, ["ball", "grass"], size, frames=frames or decoded_frames(ball.shape[0]))


# ---------------------------------------------------------------- one mask per decoded frame


@pytest.mark.parametrize("tokens", [1, 2, 5, 13])
@pytest.mark.parametrize("method", MASK_METHODS)
def test_mask_frame_count_is_the_decoded_frame_count(tokens, method):
    s = _video(clips=2, tokens=tokens)
    frames = decoded_frames(tokens)
    mask = saliency_to_mask(s, ["ball"], method, threshold=30 if method == "top_percent" else 0.4)
    assert mask.shape == (2 * frames, 64, 96) and mask.dtype == torch.float32
    assert mask.min() >= 0 and mask.max() <= 1


def test_temporal_patch_token_frames_fewer_than_latent_frames():
    """A temporal patch of 2 over 9 latent frames gives 5 token frames; the clip still decodes to 33
    pixel frames, and every one gets its mask."""
    latent, patch = 9, 2
    tokens = -(-latent // patch)
    s = _video(clips=1, tokens=tokens, frames=decoded_frames(latent))
    for method in ("mean", "argmax"):
        assert saliency_to_mask(s, ["sky"], method).shape == (33, 64, 96)


def test_clips_follow_one_another_in_the_batch():
    """ComfyUI stores clip 0's frames, then clip 1's: the mask batch does the same."""
    s = _video(clips=2, tokens=3)
    frames = s.frames
    both = saliency_to_mask(s, ["ball", "sky"], "otsu")
    for clip in range(2):
        alone = SaliencyMaps(s.maps[clip : clip + 1], s.names, s.image_size, frames=frames)
        assert torch.equal(both[clip * frames : (clip + 1) * frames], saliency_to_mask(alone, ["ball", "sky"], "otsu"))


# ---------------------------------------------------------------- time interpolation


def test_time_interpolation_is_linear_with_the_ends_on_the_first_and_last_token_frames():
    """The ball fills a corner in token frame 0 only. With 3 token frames and 9 pixel frames, token
    frame t sits on pixel frame 4t: the ball fades over frames 0-4 and is gone from frame 4 on."""
    ball = torch.zeros(3, 4, 4)
    ball[0, :2, :2] = 1.0
    s = _two_concepts(ball)  # picture size = grid: no spatial upsampling
    soft = saliency_to_mask(s, ["ball"], "soft")
    assert soft.shape == (9, 4, 4)
    for f in range(9):
        expected = torch.zeros(4, 4)
        expected[:2, :2] = max(0.0, 1.0 - f / 4)
        torch.testing.assert_close(soft[f], expected, rtol=0, atol=1e-6)
    # the token frames themselves come out exactly
    assert torch.equal(soft[0], ball[0]) and torch.equal(soft[4], ball[1]) and torch.equal(soft[8], ball[2])


def test_time_interpolation_between_uneven_frame_counts():
    """4 token frames over 11 pixel frames: token frame t at pixel frame 10t/3."""
    g = torch.Generator().manual_seed(1)
    ball = torch.rand(4, 3, 5, generator=g)
    soft = saliency_to_mask(_two_concepts(ball, frames=11), ["ball"], "soft")
    lo, hi = ball.min(), ball.max()
    clip = (ball - lo) / (hi - lo)  # soft normalises over the whole clip
    for f in range(11):
        position = f * 3 / 10
        t0 = min(int(position), 2)
        w = position - t0
        expected = clip[t0] * (1 - w) + clip[t0 + 1] * w
        torch.testing.assert_close(soft[f], expected, rtol=0, atol=1e-5)


def test_one_token_frame_holds_for_every_pixel_frame():
    ball = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(2))
    mask = saliency_to_mask(_two_concepts(ball, frames=5), ["ball"], "mean")
    assert mask.shape == (5, 4, 4)
    assert all(torch.equal(mask[f], mask[0]) for f in range(5))
    assert torch.equal(mask[0], (ball[0] > ball.mean()).float())


def test_argmax_is_taken_per_pixel_frame_after_interpolating_every_concept():
    """Three concepts; "ball" never wins a token frame, but halfway between frames where grass and
    sky trade places it does (each of those two is at 0.3 there): the winner is the interpolated one."""
    maps = torch.zeros(1, 3, 2, 1, 1)
    maps[0, :, 0, 0, 0] = torch.tensor([0.4, 0.6, 0.0])  # grass wins
    maps[0, :, 1, 0, 0] = torch.tensor([0.4, 0.0, 0.6])  # sky wins
    s = SaliencyMaps(maps, NAMES, (1, 1), frames=5)
    ball = saliency_to_mask(s, ["ball"], "argmax")[:, 0, 0]
    grass = saliency_to_mask(s, ["grass"], "argmax")[:, 0, 0]
    # frame f: grass 0.6(1 - f/4), sky 0.6 f/4, ball 0.4
    assert grass.tolist() == [1, 1, 0, 0, 0]
    assert ball.tolist() == [0, 0, 1, 0, 0]


# ---------------------------------------------------------------- thresholds per clip


def _fading_ball():
    """The ball is clearly in 4 tokens of token frame 0; afterwards nothing but faint noise (0.05-0.1)."""
    g = torch.Generator().manual_seed(3)
    ball = 0.05 + 0.05 * torch.rand(3, 4, 4, generator=g)
    ball[0] = 0.1
    ball[0, 1:3, 1:3] = 0.9
    return ball


@pytest.mark.parametrize("method", ["mean", "otsu"])
def test_one_cut_for_the_clip_so_an_absent_object_is_not_half_masked(method):
    ball = _fading_ball()
    s = _two_concepts(ball)
    mask = saliency_to_mask(s, ["ball"], method)
    expected0 = torch.zeros(4, 4)
    expected0[1:3, 1:3] = 1
    assert torch.equal(mask[0], expected0)
    assert mask[4:].sum() == 0, "the ball is absent from token frames 1 and 2: no mask there"
    # a cut per frame (the mistake) would mask about half of every frame the ball is absent from
    last = ball[2]
    assert (last > last.mean()).float().mean() > 0.25


def test_top_percent_is_the_percent_of_the_whole_clip():
    s = _video(clips=1, tokens=3, grid=(4, 4), image_size=(16, 16), seed=4)
    mask = saliency_to_mask(s, ["ball"], "top_percent", threshold=20)
    frames = s.frames
    total = frames * 16 * 16
    assert mask.sum() == round(0.2 * total)  # random maps: no ties among the pixel scores
    per_frame = mask.sum(dim=(1, 2)) / (16 * 16)
    assert per_frame.max() - per_frame.min() > 0.05, "the area is the clip's, not 20% of every frame"
    # the kept pixels are the clip's strongest
    scores = saliency_to_mask(s, ["ball"], "soft")
    assert scores[mask.bool()].min() > scores[~mask.bool()].max()


def test_value_and_soft_are_consistent_across_the_clip():
    ball = _fading_ball()
    s = _two_concepts(ball)
    value = saliency_to_mask(s, ["ball"], "value", threshold=0.5)
    assert value[0].sum() == 4 and value[4:].sum() == 0
    soft = saliency_to_mask(s, ["ball"], "soft")
    assert soft[0].max() == 1 and soft[8].max() < 0.1  # normalised over the clip, not per frame


def test_grow_feather_invert_work_on_every_frame():
    ball = _fading_ball()
    s = _two_concepts(ball, image_size=(32, 32))
    plain = saliency_to_mask(s, ["ball"], "value", threshold=0.5)
    grown = saliency_to_mask(s, ["ball"], "value", threshold=0.5, grow=2, feather=1.5, invert=True)
    assert grown.shape == plain.shape
    assert (1 - grown[0]).sum() > plain[0].sum()  # grown, then inverted
    assert torch.equal(grown[8], torch.ones(32, 32))


# ---------------------------------------------------------------- edges per frame


def _moving_disc(frames, size=128, radius=22):
    """Per pixel frame: the disc's mask [F, H, W] (its centre moves right) and a grey picture of it."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    truth = torch.stack([((xx - (36 + 7 * f)) ** 2 + (yy - 61) ** 2 < radius**2).float() for f in range(frames)])
    g = torch.Generator().manual_seed(5)
    pictures = (0.25 + 0.5 * truth)[..., None].expand(-1, -1, -1, 3)
    return truth, (pictures + 0.02 * torch.randn(*pictures.shape, generator=g)).clamp(0, 1)


def test_guided_masks_follow_each_frames_own_edges():
    tokens, cell = 3, 16
    frames = decoded_frames(tokens)
    truth, pictures = _moving_disc(frames)
    ball = F.avg_pool2d(truth[::RATIO, None], cell)[:, 0]  # ideal maps of the token frames' pixel frames
    s = _two_concepts(ball, image_size=(128, 128))
    guided = saliency_to_mask(s, ["ball"], "value", threshold=0.5, guide_image=pictures)
    bilinear = saliency_to_mask(s, ["ball"], "value", threshold=0.5)
    wrong = saliency_to_mask(s, ["ball"], "value", threshold=0.5, guide_image=pictures.flip(0))
    for f in range(0, frames, RATIO):  # the frames the token frames sit on
        err = lambda m: (m[f].bool() != truth[f].bool()).float().mean().item()
        assert err(guided) < 0.5 * err(bilinear) and err(guided) < 0.01, (f, err(guided), err(bilinear))
        if f != frames // 2:
            assert err(wrong) > err(guided) + 0.01, "each frame is guided by its own picture"


def test_guided_video_frame_equals_the_picture_pipeline_on_that_frame():
    s = _video(clips=2, tokens=2, grid=(4, 4), image_size=(64, 64), seed=6)
    frames = s.frames
    pictures = torch.rand(2 * frames, 64, 64, 3, generator=torch.Generator().manual_seed(7))
    video = saliency_to_mask(s, ["sky"], "value", threshold=0.4, guide_image=pictures)
    for clip, f, t in [(0, 0, 0), (1, 0, 0), (1, frames - 1, 1)]:
        picture = SaliencyMaps(s.maps[clip : clip + 1, :, t], s.names, s.image_size)
        alone = saliency_to_mask(picture, ["sky"], "value", threshold=0.4, guide_image=pictures[clip * frames + f])
        assert torch.equal(video[clip * frames + f], alone[0])


def test_frame_count_mismatch_names_both_counts():
    s = _video(clips=2, tokens=2)  # 2 clips of 5 frames
    with pytest.raises(ConceptAttentionError, match=r"has 9 frames but the saliency maps are a video of 2 clips of 5 "
                                                     r"frames \(10 frames\)"):
        saliency_to_mask(s, ["ball"], guide_image=torch.rand(9, 64, 96, 3))
    with pytest.raises(ConceptAttentionError, match=r"has 1 frames .* \(10 frames\); pass the decoded frames"):
        saliency_to_mask(s, ["ball"], guide_image=torch.rand(1, 64, 96, 3))
    with pytest.raises(ConceptAttentionError, match=r"guide image is 32x32 .* made for 96x64"):
        saliency_to_mask(s, ["ball"], guide_image=torch.rand(10, 32, 32, 3))


def test_long_clip_masks_are_made_a_few_frames_at_a_time():
    """97 frames of 8 concepts at 256x256: argmax upsampled at once would hold 97x8 full-size maps
    (200 MiB); frame chunks keep memory near the mask itself (25 MiB)."""
    mib = 2**20
    g = torch.Generator().manual_seed(8)
    maps = torch.rand(1, 8, 25, 16, 16, generator=g).softmax(1)
    s = SaliencyMaps(maps, [f"c{i}" for i in range(8)], (256, 256), frames=decoded_frames(25))
    peak, mask = torch_cpu_peak_bytes(saliency_to_mask, s, ["c0", "c3"], "argmax")
    assert mask.shape == (97, 256, 256)
    assert peak < 100 * mib, peak / mib


# ---------------------------------------------------------------- previews per frame


def _panel(sheet, layout, k):
    y, x = layout.box(k)
    return sheet[y : y + layout.panel[0], x : x + layout.panel[1]]


@pytest.mark.parametrize("tokens", [1, 2, 5])
def test_preview_has_one_sheet_per_pixel_frame(tokens):
    s = _video(clips=2, tokens=tokens)
    sheets = render_preview(s, torch.rand(2 * s.frames, 64, 96, 3))
    layout = sheet_layout(s)
    assert sheets.shape == (2 * s.frames, *layout.shape, 3) and sheets.dtype == torch.float32
    assert sheets.min() >= 0 and sheets.max() <= 1
    assert layout.panels == len(NAMES) + 1 and layout.rows * layout.cols >= layout.panels


def test_preview_colors_share_one_scale_across_the_clip():
    """Softmax maps: 0.8 in the first frame and 0.2 in the last look like 0.8 and 0.2, not both like
    the top of their own frame. Softmax off: the scale spans the whole clip's range."""
    ball = torch.stack([torch.full((4, 4), 0.8), torch.full((4, 4), 0.2)])
    s = _two_concepts(ball, image_size=(64, 64))
    sheets = render_preview(s, labels=False)
    layout = sheet_layout(s, labels=False)
    assert sheets.shape[0] == 5
    torch.testing.assert_close(_panel(sheets[0], layout, 1)[10, 10], colorize(torch.tensor(0.8)))
    torch.testing.assert_close(_panel(sheets[4], layout, 1)[10, 10], colorize(torch.tensor(0.2)))
    torch.testing.assert_close(_panel(sheets[2], layout, 1)[10, 10], colorize(torch.tensor(0.5)))

    raw = torch.stack([torch.full((4, 4), 2.0), torch.full((4, 4), 6.0)]).view(1, 1, 2, 4, 4)
    s = SaliencyMaps(raw, ["a"], (64, 64), softmax=False, frames=5)
    sheets = render_preview(s, labels=False)
    layout = sheet_layout(s, labels=False)
    torch.testing.assert_close(_panel(sheets[0], layout, 1)[10, 10], colorize(torch.tensor(0.0)))
    torch.testing.assert_close(_panel(sheets[4], layout, 1)[10, 10], colorize(torch.tensor(1.0)))


def test_preview_segmentation_shows_the_nearest_token_frame_in_legend_colors():
    maps = torch.zeros(1, 2, 2, 2, 2)
    maps[0, 0, 0] = 1  # token frame 0: all "ball"
    maps[0, 1, 1] = 1  # token frame 1: all "grass"
    s = SaliencyMaps(maps, ["ball", "grass"], (32, 32), frames=5)
    sheets = render_preview(s, labels=False)
    layout = sheet_layout(s, labels=False)
    colors = concept_colors(2)
    for f, winner in [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1)]:
        seg = _panel(sheets[f], layout, 0)
        assert torch.equal(seg, colors[winner].expand_as(seg)), f
    assert torch.equal(segmentation_preview(s)[3], colors[1].expand(32, 32, 3))


def test_preview_of_a_long_clip_stays_within_the_pixel_budget():
    s = _video(clips=1, tokens=33, grid=(30, 45), image_size=(480, 720), names=[f"c{i}" for i in range(8)])
    peak, sheets = torch_cpu_peak_bytes(render_preview, s)
    assert sheets.shape[0] == 129
    assert sheets.shape[0] * sheets.shape[1] * sheets.shape[2] <= PREVIEW_PIXEL_BUDGET
    # the sheets themselves and one frame's panels at a time
    assert peak < sheets.numel() * 4 + 32 * 2**20, peak / 2**20


def test_preview_too_large_for_the_budget_is_refused_with_a_reason():
    s = _video(clips=2, tokens=4, frames=64, grid=(2, 2), image_size=(32, 32), names=[f"c{i}" for i in range(63)])
    with pytest.raises(ConceptAttentionError, match=r"preview of 128 frames with 64 panels each needs more than 40000 "
                                                     r"pixels .* fewer concepts or a shorter clip"):
        render_preview(s, budget=40_000)


def test_preview_frames_must_match_the_clip():
    s = _video(clips=1, tokens=2)
    with pytest.raises(ConceptAttentionError, match=r"image has 4 frames but the saliency maps are a video of one "
                                                     r"clip of 5 frames"):
        render_preview(s, torch.rand(4, 64, 96, 3))


def test_preview_picture_shows_through_each_frame():
    """A frame whose picture is white on the right shows it there, another frame's black picture does not."""
    ball = torch.full((2, 4, 4), 0.5)
    s = _two_concepts(ball, image_size=(64, 64))
    pictures = torch.zeros(5, 64, 64, 3)
    pictures[2, :, 32:] = 1.0
    sheets = render_preview(s, pictures, labels=False)
    layout = sheet_layout(s, labels=False)
    luma = lambda p: (p * torch.tensor([0.299, 0.587, 0.114])).sum(-1)
    w = layout.panel[1]
    shown = _panel(sheets[2], layout, 1)
    dark = _panel(sheets[1], layout, 1)
    assert (luma(shown[:, 3 * w // 4 :]) - luma(shown[:, : w // 4])).mean() > 0.05
    assert (luma(dark[:, 3 * w // 4 :]) - luma(dark[:, : w // 4])).abs().mean() < 1e-6


# ---------------------------------------------------------------- legend


def test_legend_shares_cover_the_clip():
    maps = torch.zeros(2, 2, 3, 2, 2)
    maps[0, 0, 0] = 1  # clip 0: "a" in token frame 0,
    maps[0, 1, 1:] = 1  # "b" in frames 1 and 2
    maps[1, 1] = 1  # clip 1: "b" throughout
    legend = concept_legend(SaliencyMaps(maps, ["a", "b"], (32, 32), frames=9))
    assert [e["shares"] for e in legend] == [[0.3333, 0.0], [0.6667, 1.0]]
    assert [e["share"] for e in legend] == [0.1667, 0.8333]


# ---------------------------------------------------------------- saliency files


def test_save_and_load_keep_the_time_axis(tmp_path):
    s = _video(clips=2, tokens=3, frames=decoded_frames(3))
    s.metadata["model"] = "cogvideox"
    paths = save_saliency(s, str(tmp_path), "clip")
    loaded = load_saliency(paths[0])
    assert torch.equal(loaded.maps, s.maps) and loaded.maps.shape == (2, 3, 3, 4, 6)
    assert loaded.frames == 9 and loaded.is_video and loaded.names == s.names and loaded.image_size == (64, 96)
    assert loaded.metadata == {"model": "cogvideox"}
    # one animated heatmap per (clip, concept), a frame per pixel frame
    heatmaps = paths[1:]
    assert len(heatmaps) == 2 * 3 and all(p.endswith(".webp") for p in heatmaps)
    assert "_b1_c2_sky" in heatmaps[-1]
    with Image.open(heatmaps[0]) as image:
        assert image.n_frames == 9 and image.is_animated
        assert max(image.size) <= 1024


def test_animated_heatmaps_of_a_long_clip_cost_little_memory(tmp_path):
    """129 frames of 360x240 heatmaps: coloured all at once they would hold about 550 MiB."""
    s = _video(clips=1, tokens=33, grid=(15, 23), image_size=(240, 360), names=["ball"], softmax=False)
    peak, paths = torch_cpu_peak_bytes(save_saliency, s, str(tmp_path), "long")
    with Image.open(paths[1]) as image:
        assert image.n_frames == 129 and image.size == (360, 240)
    assert peak < 64 * 2**20, peak / 2**20


def test_picture_files_are_written_as_before(tmp_path):
    from safetensors import safe_open

    s = SaliencyMaps(torch.rand(1, 2, 4, 4).softmax(1), ["a", "b"], (32, 32))
    paths = save_saliency(s, str(tmp_path), "still")
    with safe_open(paths[0], framework="pt") as f:
        assert "frames" not in f.metadata()
    assert all(p.endswith(".png") for p in paths[1:])
    loaded = load_saliency(paths[0])
    assert loaded.frames == 0 and not loaded.is_video


@pytest.mark.parametrize("shape, frames, message", [
    ((1, 2, 3, 2, 2), None, r"frame count \('frames'\) is missing; video maps \(1, 2, 3, 2, 2\) need"),
    ((1, 2, 3, 2, 2), "2", r"frame count \('frames'\) is 2 for 3 token frames; 3 to 48 are accepted"),
    ((1, 2, 1, 2, 2), "100000", r"is 100000 for 1 token frames; 1 to 16 are accepted"),
    ((1, 2, 3, 2, 2), "-9", r"must be a whole number of pixel frames, got '-9'"),
    ((1, 2, 3, 2, 2), "1e3", r"must be a whole number of pixel frames"),
    ((1, 2, 3, 2, 2), "9" * 40, r"must be a whole number of pixel frames"),
    ((1, 2, 2, 2), "9", r"frame count \('frames'\) is 9 but the 'maps' tensor \(1, 2, 2, 2\) has no time axis"),
    ((1, 2, 0, 2, 2), "9", r"every size must be at least 1"),
    ((1, 2, 3, 2, 2, 2), "9", r"has shape \(1, 2, 3, 2, 2, 2\); \[batch, concepts, height, width\] is accepted"),
])
def test_crafted_video_files_are_refused_naming_the_field(tmp_path, shape, frames, message):
    path = tmp_path / "bad.safetensors"
    maps = torch.rand(*shape).softmax(dim=1) if min(shape) > 0 else torch.zeros(shape)
    _write(path, maps, frames=frames)
    with pytest.raises(ConceptAttentionError, match=message) as info:
        load_saliency(str(path), label="clips/bad.safetensors")
    assert "'clips/bad.safetensors' is not a usable saliency file" in str(info.value)


def test_video_file_softmax_is_checked_over_concepts(tmp_path):
    path = tmp_path / "bad.safetensors"
    _write(path, torch.full((1, 2, 3, 2, 2), 0.2), frames="9")
    with pytest.raises(ConceptAttentionError, match="does not sum to 1 over the concepts"):
        load_saliency(str(path))


def test_loaded_video_makes_masks_and_previews(tmp_path):
    s = _video(clips=1, tokens=2)
    loaded = load_saliency(save_saliency(s, str(tmp_path), "clip", heatmaps=False)[0])
    assert torch.equal(saliency_to_mask(loaded, ["ball"]), saliency_to_mask(s, ["ball"]))
    assert render_preview(loaded).shape[0] == 5


@pytest.mark.parametrize("method, threshold", [("mean", 0.5), ("otsu", 0.5), ("value", 0.4), ("top_percent", 30),
                                               ("soft", 0.5), ("argmax", 0.5)])
def test_a_picture_masks_as_a_clip_of_one_frame(method, threshold):
    """A picture's cut is per picture as a one-frame clip's is per clip: the same masks, bit for bit."""
    pictures = SaliencyMaps(torch.rand(3, 3, 4, 6).softmax(1), NAMES, (64, 96))
    clips = SaliencyMaps(pictures.maps.unsqueeze(2), NAMES, (64, 96), frames=1)
    guide = torch.rand(3, 64, 96, 3)
    for kwargs in ({}, {"guide_image": guide, "grow": 2, "feather": 1.5, "invert": True}):
        mask = saliency_to_mask(pictures, ["ball", "sky"], method, threshold, **kwargs)
        assert mask.shape == (3, 64, 96)
        assert torch.equal(mask, saliency_to_mask(clips, ["ball", "sky"], method, threshold, **kwargs))


def test_mean_mask_of_a_clip_is_empty_only_where_the_concept_wins_in_no_frame():
    from concept_attention.concept_patch.maps.masks import saliency_to_mask_and_note

    ball = torch.full((2, 3, 4, 4), 0.25)  # [clips, token frames, h, w]: grass wins everywhere ...
    ball[0, 2, 1:3, 1:3] = 0.75  # ... but in clip 0's last token frame, where the ball shows
    s = SaliencyMaps(torch.stack([ball, 1.0 - ball], dim=1), ["ball", "grass"], (4, 4), frames=5)
    mask, note = saliency_to_mask_and_note(s, ["ball"])
    assert mask[:5].sum() > 0 and mask[5:].sum() == 0
    assert note.startswith("Empty mask for 'ball' in clip 2 of 2") and "in any frame" in note
