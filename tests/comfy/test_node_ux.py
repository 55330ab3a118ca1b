"""What the nodes show while and before they run: an encode's progress in blocks, and which inputs are advanced."""

from __future__ import annotations

import pytest
import torch

from concept_attention.nodes.concept_list import ConceptList
from concept_attention.nodes.concept_saliency import ConceptSaliency
from concept_attention.nodes.generation import ConceptAttentionPatch
from concept_attention.nodes.saliency_to_mask import SaliencyToMask
from concept_attention.nodes.types import advanced, extra_options
from concept_attention_tests.comfy.tiny import tiny_models

ADVANCED = {"concept_self_attention", "concept_cross_attention", "requery_cache_mb", "softmax", "softmax_temperature",
            "softmax_after_mean"}
DEPTH = 3  # the tiny Flux.1's double blocks: layers="all" runs the concept stream through each


@pytest.fixture(scope="module")
def flux(comfyui_path):
    return tiny_models.flux_model(depth=DEPTH)


@pytest.fixture(scope="module")
def concepts(flux_clip):
    return ConceptList.execute(clip=flux_clip, concepts="dog, grass, sky", pooling="mean").result[0]


class _RecordingBar:
    """comfy.utils.ProgressBar's interface, recording every update the node makes."""

    made: list = []

    def __init__(self, total, node_id=None):
        self.total, self.updates = total, []
        _RecordingBar.made.append(self)

    def update_absolute(self, value, total=None, preview=None):
        self.total = total if total is not None else self.total
        self.updates.append((value, self.total))

    def update(self, value):
        self.update_absolute((self.updates[-1][0] if self.updates else 0) + value)


def _encode(flux, concepts, samples, **kw):
    latent = {"samples": torch.randn(1, 16, 6, 6, generator=torch.Generator().manual_seed(1))}
    return ConceptSaliency.execute(model=flux, concepts=concepts, layers="all", noise_level=0.5, samples=samples,
                                   seed=0, space="output", softmax=True, latent=latent, **kw)


@pytest.mark.parametrize("samples", [1, 3])
def test_an_encode_reports_progress_in_samples_times_blocks(flux, concepts, samples, monkeypatch):
    """Not 0 % until the end: one step per block the concept stream passes, for every noise sample."""
    import comfy.utils

    _RecordingBar.made = []
    monkeypatch.setattr(comfy.utils, "ProgressBar", _RecordingBar)
    _encode(flux, concepts, samples, requery_cache_mb=0)
    [bar] = _RecordingBar.made
    total = samples * DEPTH
    assert bar.updates == [(k, total) for k in range(1, total + 1)]


def test_an_encode_sends_a_first_progress_step_before_it_ends(flux, concepts):
    """Through ComfyUI's own progress hook (what the front end's progress bar reads): the first step is sent at once,
    out of samples x blocks."""
    import comfy.utils

    sent = []
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: sent.append((value, total)))
    try:
        _encode(flux, concepts, 2, requery_cache_mb=0)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
    assert sent[0] == (1, 2 * DEPTH) and sent[-1] == (2 * DEPTH, 2 * DEPTH)


def test_a_requery_reports_its_progress_per_sample(flux, concepts, monkeypatch):
    import comfy.utils

    from concept_attention.concept_patch.requery import cache as requery_cache

    requery_cache.CACHE.clear()
    try:
        _encode(flux, concepts, 2, requery_cache_mb=64)
        _RecordingBar.made = []
        monkeypatch.setattr(comfy.utils, "ProgressBar", _RecordingBar)
        result = _encode(flux, concepts, 2, requery_cache_mb=64)
    finally:
        requery_cache.CACHE.clear()
    assert result.result[0].metadata["requery"] is True
    assert _RecordingBar.made[0].updates == [(DEPTH, 2 * DEPTH), (2 * DEPTH, 2 * DEPTH)]


def _inputs(node) -> dict:
    return {i.id: i for i in node.define_schema().inputs}


@pytest.mark.parametrize("node", [ConceptSaliency, ConceptAttentionPatch])
def test_the_papers_switches_and_the_cache_size_are_advanced_inputs(node):
    """Hidden until the user asks (the front end's "Show advanced"): the Table-4 switches, softmax, the cache size."""
    from comfy_api.latest import io

    inputs = _inputs(node)
    flagged = {name for name, i in inputs.items() if getattr(i, "advanced", None)}
    # ComfyUI 0.3.x's inputs have no advanced flag: there every input stays up front, and the schema still builds
    assert flagged == (ADVANCED & set(inputs) if advanced(io.Boolean.Input) else set())
    for name in flagged:
        assert inputs[name].as_dict().get("advanced") is True
    everyday = {"layers", "space"} & set(inputs)
    assert everyday and not (everyday & flagged)


def test_advanced_is_left_out_where_comfyui_inputs_lack_it():
    """ComfyUI 0.3.x's inputs take no `advanced`: the flag is then left out rather than failing the schema."""

    class OldInput:
        def __init__(self, id, default=None, tooltip=None):
            pass

    class NewInput:
        def __init__(self, id, default=None, tooltip=None, advanced=None):
            pass

    assert advanced(OldInput) == {}
    assert advanced(NewInput) == {"advanced": True}


def test_the_preview_says_how_large_a_panel_must_be_shown_for_readable_captions(flux, concepts):
    """ui.concept_panel: the on-screen [width, height] at which a panel's captions are at least 12 px tall (the web
    extension makes the node that large), in the panel's own aspect ratio, strip included."""
    from concept_attention.concept_patch.maps.captions import font_size_for

    out = _encode(flux, concepts, 1, requery_cache_mb=0)
    [[width, height]] = out.ui["concept_panel"]
    panels = out.result[1]
    natural_height, natural_width = panels.shape[1], panels.shape[2]
    assert width * font_size_for(natural_width) / natural_width >= 12
    assert width < natural_width  # a preview-sized panel need not be shown full size to be read
    assert abs(height / width - natural_height / natural_width) < 0.02


def test_saliency_to_mask_names_the_methods_that_read_its_threshold():
    """The web extension shows `threshold` for these methods only; where a ComfyUI's number inputs take no extra
    options (0.3.x), the definition leaves them out and the extension keeps its own list (value, top_percent)."""
    from comfy_api.latest import io

    from concept_attention.concept_patch.maps.thresholds import MASK_METHODS, METHODS_READING_THRESHOLD

    threshold = _inputs(SaliencyToMask)["threshold"].as_dict()
    if extra_options(io.Float.Input):
        assert threshold["read_by_methods"] == ["value", "top_percent"]
    else:
        assert "read_by_methods" not in threshold
    assert set(METHODS_READING_THRESHOLD) <= set(MASK_METHODS)

    class OldFloat:
        def __init__(self, id, default=None, tooltip=None):
            pass

    assert extra_options(OldFloat, read_by_methods=["value"]) == {}
