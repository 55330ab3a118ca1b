"""The soundtrack of a SALIENCY (MiniMax H3's audio shares): the preview's strip of concept colours under every panel,
Concept Soundtrack Curve (a MASK curve per audio frame, its rate and a CSV table) and Apply Soundtrack Curve to Audio
(the soundtrack's loudness following the curve); clear errors for maps without a soundtrack or with a malformed one.

Synthetic SALIENCY values with known shares check the drawing and the curves pixel by pixel and value by value (the
expected colours and numbers are written out here); a tiny MiniMax H3 run checks that what the model records goes
through: its curve is its recorded shares, also after Save/Load, and its preview carries the strip.
"""

from __future__ import annotations

import functools

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.maps.colors import concept_colors
from concept_attention.concept_patch.maps.panels import sheet_layout
from concept_attention.concept_patch.maps.preview import render_preview
from concept_attention.concept_patch.maps.saliency_maps import SaliencyMaps
from concept_attention_tests.comfy.module_caches import cached_clip_and_concepts, cleared_after_module
from concept_attention_tests.comfy.tiny import tiny_minimax

NAMES = ["dog", "rain", "music"]
FRAMES = 9  # pixel frames of 3 MiniMax latent frames
WHITE = torch.ones(3)


def _shares(frames: int = 8) -> list:
    """dog wins the first half of the soundtrack outright, rain the second; music never (a softmax's shares)."""
    half = frames // 2
    dog = [1.0] * half + [0.0] * (frames - half)
    rain = [0.0] * half + [1.0] * (frames - half)
    return [[dog, rain, [0.0] * frames]]


def _saliency(metadata=None, softmax=True, names=NAMES, clips=1, image_size=(64, 96)) -> SaliencyMaps:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(clips, len(names), 3, 4, 6, generator=g)
    maps = logits.softmax(dim=1) if softmax else logits
    meta = {"model_family": "MiniMax H3"} if metadata is None else metadata
    return SaliencyMaps(maps, list(names), image_size, softmax=softmax, metadata=meta, frames=FRAMES)


def _with_shares(shares, rate=40, **kw) -> SaliencyMaps:
    metadata = {"model_family": "MiniMax H3", "audio_shares": shares, "audio_frames": len(shares[0][0])}
    if rate is not None:
        metadata["audio_frame_rate"] = rate
    return _saliency(metadata, **kw)


def _curve(saliency, concept="dog", mode="share", threshold=0.5, invert=False):
    from concept_attention.nodes.soundtrack import SoundtrackCurve

    return SoundtrackCurve.execute(saliency=saliency, concept=concept, mode=mode, threshold=threshold,
                                   invert=invert).result


# ---------------------------------------------------------------------------------------------
# the preview: a band of concept colours under every panel, a playhead at the frame shown
# ---------------------------------------------------------------------------------------------


def _band(sheet, layout, k):
    y, x = layout.box(k)
    top = y + layout.panel[0] + layout.strip
    return sheet[top : top + layout.band, x : x + layout.panel[1]]


def test_preview_draws_the_soundtrack_under_every_panel():
    """dog's colour under the first half of the clip's time, rain's under the second, under the segmentation view
    and every map, with a white playhead at the middle of the frame each sheet shows; the panels above are the
    preview without a soundtrack."""
    saliency = _with_shares(_shares(8))
    plain = _saliency()
    room = {"max_side": 96, "budget": 2_000_000}  # panels of one size with and without the band
    layout, plain_layout = sheet_layout(saliency, **room), sheet_layout(plain, **room)
    assert plain_layout.band == 0 and layout.band > 0
    assert (layout.panel, layout.strip) == (plain_layout.panel, plain_layout.strip)
    assert layout.shape[0] == layout.rows * (layout.panel[0] + layout.strip + layout.band)
    sheets, plain_sheets = render_preview(saliency, **room), render_preview(plain, **room)
    assert sheets.shape == (FRAMES, *layout.shape, 3)
    colors = concept_colors(3)
    width = layout.panel[1]
    rule = 1 if layout.band >= 8 else 0
    for frame in range(FRAMES):
        head = (2 * frame + 1) * width // (2 * FRAMES)
        for k in range(layout.panels):
            (y, x), (plain_y, _) = layout.box(k), plain_layout.box(k)
            cell = layout.panel[0] + layout.strip
            torch.testing.assert_close(sheets[frame, y : y + cell, x : x + width],
                                       plain_sheets[frame, plain_y : plain_y + cell, x : x + width], rtol=0, atol=0)
            band = _band(sheets[frame], layout, k)[rule:]
            for column in range(width):
                expected = WHITE if column == head else colors[0] if column < width // 2 else colors[1]
                assert torch.equal(band[:, column], expected.expand(band.shape[0], 3)), (frame, k, column)


def test_band_columns_stack_shares_in_concept_order():
    """Shares of 0.5, 0.25, 0.25 in every audio frame: the top half of each column in dog's colour, then a quarter
    each of rain's and music's."""
    from concept_attention.concept_patch.maps.soundtrack import soundtrack_of
    from concept_attention.concept_patch.maps.soundtrack_band import soundtrack_band

    saliency = _with_shares([[[0.5] * 5, [0.25] * 5, [0.25] * 5]])
    band = soundtrack_band(soundtrack_of(saliency), 0, (17, 10))  # a rule, then 16 rows
    colors = concept_colors(3)
    assert torch.equal(band[1:9], colors[0].expand(8, 10, 3))
    assert torch.equal(band[9:13], colors[1].expand(4, 10, 3))
    assert torch.equal(band[13:17], colors[2].expand(4, 10, 3))


def test_band_without_softmax_shows_the_highest_scoring_concept():
    from concept_attention.concept_patch.maps.soundtrack import soundtrack_of
    from concept_attention.concept_patch.maps.soundtrack_band import soundtrack_band

    scores = [[[5.0, -1.0], [2.0, 3.0], [-4.0, 2.5]]]
    saliency = _with_shares(scores, softmax=False)
    band = soundtrack_band(soundtrack_of(saliency), 0, (6, 4))
    colors = concept_colors(3)
    assert torch.equal(band[:, :2], colors[0].expand(6, 2, 3)) and torch.equal(band[:, 2:], colors[1].expand(6, 2, 3))


def test_node_display_panels_carry_the_band():
    """The node's animated panels are cut from the preview with their band (one WebP per panel)."""
    from concept_attention.nodes.preview import _panel_frames

    saliency = _with_shares(_shares(8))
    layout = sheet_layout(saliency)
    sheets = render_preview(saliency)
    frames = _panel_frames(sheets, layout, 0, 2)
    assert frames.shape == (FRAMES, layout.panel[0] + layout.strip + layout.band, layout.panel[1], 3)
    torch.testing.assert_close(frames[:, -layout.band:], torch.stack([_band(s, layout, 2) for s in sheets]))


def test_pictures_and_silent_videos_have_no_band():
    picture = SaliencyMaps(torch.rand(1, 2, 4, 4).softmax(1), ["a", "b"], (64, 64))
    assert sheet_layout(picture).band == 0
    assert sheet_layout(_saliency({"model_family": "CogVideoX"})).band == 0


# ---------------------------------------------------------------------------------------------
# Concept Soundtrack Curve
# ---------------------------------------------------------------------------------------------


def test_curve_modes():
    shares = [[[0.7, 0.6, 0.2, 0.1], [0.2, 0.1, 0.5, 0.45], [0.1, 0.3, 0.3, 0.45]]]
    saliency = _with_shares(shares)
    curve, rate, table = _curve(saliency, "Dog ")
    assert curve.shape == (1, 1, 4) and curve.dtype == torch.float32 and rate == 40.0
    torch.testing.assert_close(curve[0, 0], torch.tensor([0.7, 0.6, 0.2, 0.1]))
    assert table.splitlines() == ["time_s,dog", "0.0000,0.7", "0.0250,0.6", "0.0500,0.2", "0.0750,0.1"]
    assert _curve(saliency, mode="threshold", threshold=0.6)[0][0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    # a tie (the last frame) goes to the first concept listed, so music never wins here
    assert _curve(saliency, "rain", mode="winner")[0][0, 0].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert _curve(saliency, "music", mode="winner")[0][0, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    inverted, _, table = _curve(saliency, mode="threshold", threshold=0.6, invert=True)
    assert inverted[0, 0].tolist() == [0.0, 0.0, 1.0, 1.0] and table.startswith("time_s,dog (inverted)")


def test_curve_without_softmax_and_without_a_rate():
    """Raw scores are placed between the smallest and largest of all concepts; without a rate the table counts
    audio frames, and the rate output is 0."""
    saliency = _with_shares([[[2.0, 6.0], [-2.0, 0.0], [1.0, 1.0]]], rate=None, softmax=False)
    curve, rate, table = _curve(saliency)
    torch.testing.assert_close(curve[0, 0], torch.tensor([0.5, 1.0]))
    assert rate == 0.0 and table.splitlines()[:2] == ["audio_frame,dog", "0,0.5"]


def test_curve_of_several_clips():
    shares = [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]]
    curve, _, table = _curve(_with_shares(shares, clips=2))
    assert curve.tolist() == [[[1.0, 0.0]], [[0.0, 1.0]]]
    assert table.splitlines() == ["clip,time_s,dog", "1,0.0000,1", "1,0.0250,0", "2,0.0000,0", "2,0.0250,1"]


def test_maps_without_a_soundtrack_are_refused_clearly():
    with pytest.raises(ConceptAttentionError, match=r"no soundtrack \(these maps come from CogVideoX\).*MiniMax H3"):
        _curve(_saliency({"model_family": "CogVideoX"}))
    picture = SaliencyMaps(torch.rand(1, 3, 4, 4).softmax(1), NAMES, (64, 64))
    with pytest.raises(ConceptAttentionError, match="no soundtrack"):
        _curve(picture)
    with pytest.raises(ConceptAttentionError, match="'cat' is not in these saliency maps; available: dog, rain, music"):
        _curve(_with_shares(_shares(4)), "cat")


@pytest.mark.parametrize("shares, phrase", [
    ("loud", "must be a list of 1 clip"),
    ([[[0.5], [0.5]]], "one list per concept \\(3\\)"),
    ([[[0.5, 0.5], [0.5], [0.0]]], "same number of audio frames"),
    ([[[0.5], [0.5], ["x"]]], "other than numbers"),
    ([[[0.5], [0.5], [True]]], "other than numbers"),
    ([[[1.5], [0.0], [0.0]]], "outside 0-1"),
    ([[[float("nan")], [0.0], [0.0]]], "NaN or infinite"),
    ([[[0.0] * 300_000] * 3], "at most 288000 frames"),
])
def test_malformed_soundtracks_are_refused_by_name(shares, phrase):
    """A crafted or edited file's soundtrack: refused naming the field, in the curve node and in the preview."""
    saliency = _saliency({"model_family": "MiniMax H3", "audio_shares": shares})
    for run in (lambda: _curve(saliency), lambda: render_preview(saliency)):
        with pytest.raises(ConceptAttentionError, match=f"soundtrack \\('audio_shares' in its metadata\\) .*{phrase}"):
            run()


# ---------------------------------------------------------------------------------------------
# Apply Soundtrack Curve to Audio
# ---------------------------------------------------------------------------------------------


def _apply(audio, curve, floor=0.0):
    from concept_attention.nodes.soundtrack import ApplySoundtrackCurve

    return ApplySoundtrackCurve.execute(audio=audio, curve=curve, floor=floor).result[0]


def test_audio_follows_the_curve():
    """4 audio frames over 800 samples: frame k's value at the middle of its 200 samples, linear in between, flat at
    the ends; floor 0.2 leaves a fifth where the curve is 0. Sample rate and shape are kept."""
    waveform = torch.ones(1, 2, 800)
    curve = torch.tensor([[[1.0, 0.0, 0.0, 1.0]]])
    out = _apply({"waveform": waveform, "sample_rate": 32000}, curve, floor=0.2)
    assert out["sample_rate"] == 32000 and out["waveform"].shape == (1, 2, 800)
    gain = out["waveform"][0, 0]
    assert torch.allclose(gain[:100], torch.ones(100))  # before the first middle
    torch.testing.assert_close(gain[300:500], torch.full((200,), 0.2))  # between the two zero frames' middles
    torch.testing.assert_close(gain[700:], torch.ones(100))
    assert torch.equal(out["waveform"][0, 0], out["waveform"][0, 1])
    assert 0.2 < float(gain[200]) < 1.0  # on the way down
    assert torch.equal(waveform, torch.ones(1, 2, 800)), "the input audio is left as it was"


def test_curve_from_the_curve_node_gates_a_decoded_soundtrack():
    saliency = _with_shares(_shares(8))
    curve = _curve(saliency, "rain")[0]
    waveform = torch.randn(1, 2, 1600, generator=torch.Generator().manual_seed(1))
    out = _apply({"waveform": waveform, "sample_rate": 32000}, curve)["waveform"]
    assert torch.equal(out[..., :700], torch.zeros(1, 2, 700))  # dog's half: silent
    torch.testing.assert_close(out[..., 900:], waveform[..., 900:])  # rain's half: kept


def test_bad_audio_or_curve_is_refused():
    audio = {"waveform": torch.ones(2, 1, 100), "sample_rate": 8000}
    with pytest.raises(ConceptAttentionError, match="the curve has 3 clips but the audio 2"):
        _apply(audio, torch.ones(3, 1, 4))
    assert _apply(audio, torch.ones(1, 1, 4))["waveform"].shape == (2, 1, 100)
    with pytest.raises(ConceptAttentionError, match="time on the last axis"):
        _apply(audio, torch.ones(1, 1, 1, 4))
    with pytest.raises(ConceptAttentionError, match="NaN or infinite"):
        _apply(audio, torch.tensor([[float("nan")]]))
    with pytest.raises(ConceptAttentionError, match=r"waveform \[batch, channels, samples\]"):
        _apply({"waveform": torch.ones(100), "sample_rate": 8000}, torch.ones(1, 1, 4))


# ---------------------------------------------------------------------------------------------
# a tiny MiniMax H3 run: what the model records goes through
# ---------------------------------------------------------------------------------------------

_clip, _concepts = cached_clip_and_concepts(tiny_minimax.minimax_clip, NAMES)


@functools.cache
def _model():
    return tiny_minimax.minimax_model(depth=2, seed=5)


_module_scope = cleared_after_module(_clip, _concepts, _model)


def _generated():
    import comfy.sample

    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    clip = _clip()
    latent = tiny_minimax.empty_av_latent(frames=3, height=6, width=8)
    patched, session = install_concept_attention(_model(), _concepts(), SaliencyOptions(layers=(0, 1)))
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("a dog barking in the rain, soft music"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize("blurry"))
    noise = comfy.sample.prepare_noise(latent, 3)
    comfy.sample.sample(patched, noise, 1, 2.0, "euler", "simple", pos, neg, latent, seed=3, disable_pbar=True)
    return session.records[-1].saliency


def test_minimax_run_gives_its_shares_as_curves_and_a_band(tmp_path):
    """The curve of each concept is the shares the run recorded (15 audio frames of 3 latent frames, 40 a second),
    the same after Save/Load; the preview's band shows them."""
    from concept_attention.concept_patch.files.load import load_saliency
    from concept_attention.concept_patch.files.save import save_saliency
    from concept_attention.concept_patch.maps.soundtrack import soundtrack_of
    from concept_attention.concept_patch.maps.soundtrack_band import column_weights

    saliency = _generated()
    assert saliency.metadata["audio_frame_rate"] == 40
    recorded = torch.tensor(saliency.metadata["audio_shares"])
    assert recorded.shape == (1, 3, 15)
    path = save_saliency(saliency, str(tmp_path), "av", heatmaps=False)[0]
    loaded = load_saliency(path)
    for name, row in zip(NAMES, recorded[0]):
        for source in (saliency, loaded):
            curve, rate, _ = _curve(source, name)
            assert rate == 40.0
            torch.testing.assert_close(curve[0, 0], row, rtol=0, atol=0)
    layout = sheet_layout(loaded)
    assert layout.band > 0
    sheets = render_preview(loaded)
    band = _band(sheets[0], layout, 0)
    weights = column_weights(soundtrack_of(loaded), 0, layout.panel[1])
    top = weights[:, 0] > 0.5 / (layout.band - 1)  # dog's part reaches the first row under the rule
    colors = concept_colors(3)
    rule = 1 if layout.band >= 8 else 0
    head = layout.panel[1] // (2 * FRAMES)
    for column in range(layout.panel[1]):
        if column != head and top[column]:
            assert torch.equal(band[rule, column], colors[0])
