"""Concept encoding with chat-template LLM text encoders (and that CLIP / T5 stay as they were).

Encoders: Flux.2 dev, Klein 4B/8B, LongCat-Image, Ovis-Image, and Qwen-Image and Kandinsky 5 (the
latter two have no family here yet; they check that the same mechanism serves them untouched).
The concept's own tokens are found here without product code: from the tokenizer's own
character offsets on the templated text (Hugging Face offsets for the Qwen tokenizers; for the
tiny tekken vocabulary, the bytes each token id stands for, read from its JSON). Where the
encoder cuts its template off the output (LongCat-Image, Ovis-Image), the cut is found by running
the encoder's untrimmed inner model on the same tokens and locating the conditioning inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch

from concept_attention.concept_patch.checks.errors import ConceptAttentionError
from concept_attention.concept_patch.text.encoding import encode_concepts
from concept_attention_tests.comfy.tiny import tiny_text_encoders as tte
from concept_attention_tests.comfy.tiny.tiny_joyimage import JOYIMAGE_CONTEXT_DIM


@dataclass(frozen=True)
class Encoder:
    fixture: str
    key: str
    dim: int
    trims: bool  # cuts part of its template off the output
    markup: str  # template markup of its own, typed as a concept
    multi_token_word: str  # one word, several tokens


ENCODERS = {
    "flux2_dev": Encoder("flux2_dev_clip", "mistral3_24b", tte.FLUX2_DEV_CONTEXT_DIM, False, "[INST]", "zebra"),
    "klein_4b": Encoder("klein_4b_clip", "qwen3_4b", tte.KLEIN_4B_CONTEXT_DIM, False, "<|im_start|>", "xylophone"),
    "klein_8b": Encoder("klein_8b_clip", "qwen3_8b", tte.KLEIN_8B_CONTEXT_DIM, False, "<|im_start|>", "xylophone"),
    "longcat": Encoder("longcat_clip", "qwen25_7b", tte.LONGCAT_CONTEXT_DIM, True, "<|im_start|>", "xylophone"),
    "ovis": Encoder("ovis_clip", "qwen3_2b", tte.OVIS_CONTEXT_DIM, True, "<|im_start|>", "xylophone"),
    "qwen_image": Encoder("qwen_image_clip", "qwen25_7b", tte.QWEN_IMAGE_CONTEXT_DIM, True, "<|im_start|>", "xylophone"),
    "mage_flow": Encoder("mage_flow_clip", "qwen3vl_4b", tte.MAGE_FLOW_CONTEXT_DIM, True, "<|im_start|>", "xylophone"),
    "joyimage": Encoder("joyimage_clip", "qwen3vl_8b", JOYIMAGE_CONTEXT_DIM, True, "<|im_start|>", "xylophone"),
    # two token lists (Qwen2.5-VL, CLIP-L) and named nowhere in the product: the key is asked of the encoder
    "kandinsky5": Encoder("kandinsky5_image_clip", "qwen25_7b", tte.KANDINSKY5_CONTEXT_DIM, True, "<|im_start|>",
                          "xylophone"),
}


def _names(enc: Encoder) -> list[str]:
    # one token, one word of several tokens, several words, a leading digit (its own pre-token)
    return ["dog", enc.multi_token_word, "green grass", "red fox jumping", "3 dogs"]


def _overlapping(offsets, start, end) -> list[int]:
    return [i for i, (s, e) in enumerate(offsets) if s < end and e > start]


def _template_parts(template: str) -> tuple[str, str]:
    before, after = template.split("{}")
    return before, after


def _expected_token_indices(clip, enc: Encoder, name: str) -> list[int]:
    """Indices in ComfyUI's token list of the tokens that cover the concept's characters."""
    ids = [tok for tok, *_ in clip.tokenize(name)[enc.key][0]]
    sub = getattr(clip.tokenizer, enc.key)
    if enc.key == "mistral3_24b":
        before, after = _template_parts(clip.tokenizer.llama_template)
        token_bytes = tte.tekken_token_bytes(sub.tekken_data)
        assert ids[0] == sub.start_token  # Mistral's <s>, then the templated text
        pieces = [token_bytes[t] for t in ids[1:]]
        assert b"".join(pieces) == (before + name + after).encode("utf-8")
        ends = torch.tensor([len(p) for p in pieces]).cumsum(0).tolist()
        offsets = list(zip([0] + ends[:-1], ends))
        start = len(before.encode("utf-8"))
        return [1 + i for i in _overlapping(offsets, start, start + len(name.encode("utf-8")))]
    hf = sub.tokenizer
    if enc.fixture == "longcat_clip":  # LongCat tokenizes its prefix, the prompt and its suffix apart
        prefix = hf(type(clip.tokenizer).T2I_PREFIX, add_special_tokens=False)["input_ids"]
        prompt = hf(name, add_special_tokens=False, return_offsets_mapping=True)
        assert ids[:len(prefix)] == prefix
        assert ids[len(prefix):len(prefix) + len(prompt["input_ids"])] == prompt["input_ids"]
        return [len(prefix) + i for i in _overlapping(prompt["offset_mapping"], 0, len(name))]
    before, after = _template_parts(clip.tokenizer.llama_template)
    templated = hf(before + name + after, add_special_tokens=False, return_offsets_mapping=True)
    n = len(templated["input_ids"])
    assert ids[:n] == templated["input_ids"] and set(ids[n:]) <= {sub.pad_token}  # right padding only
    return _overlapping(templated["offset_mapping"], len(before), len(before) + len(name))


def _expected_rows(clip, enc: Encoder, name: str, token_indices: list[int], cond: torch.Tensor) -> list[int]:
    tokens = clip.tokenize(name)
    count = len(tokens[enc.key][0])
    if not enc.trims:
        assert cond.shape[1] == count
        return token_indices
    assert cond.shape[1] < count  # the template cut really happens
    clip.load_model()
    inner = getattr(clip.cond_stage_model, clip.cond_stage_model.clip)
    full = inner.encode_token_weights(tokens[enc.key])[0]
    m = cond.shape[1]
    cuts = [p for p in range(count - m + 1) if torch.equal(full[:, p:p + m], cond)]
    assert len(cuts) == 1, cuts
    return [i - cuts[0] for i in token_indices]


@pytest.mark.parametrize("which", list(ENCODERS))
def test_pooled_tokens_are_the_concepts_own(request, which):
    enc = ENCODERS[which]
    clip = request.getfixturevalue(enc.fixture)
    names = _names(enc)
    by_mode = {mode: encode_concepts(clip, names, pooling=mode) for mode in ("first", "mean")}
    counts = []
    for i, name in enumerate(names):
        token_indices = _expected_token_indices(clip, enc, name)
        cond = clip.encode_from_tokens(clip.tokenize(name))
        rows = _expected_rows(clip, enc, name, token_indices, cond)
        counts.append(len(rows))
        states = cond[0].float()
        expected = {"first": (states[rows[0]], float(rows[0])),
                    "mean": (states[rows].mean(dim=0), sum(rows) / len(rows))}
        for mode, (vector, position) in expected.items():
            concepts = by_mode[mode]
            torch.testing.assert_close(concepts.embeddings[i], vector, rtol=1e-5, atol=1e-6,
                                       msg=f"{which}: {mode} pooling of {name!r} (rows {rows})")
            assert concepts.positions[i].item() == pytest.approx(position, abs=1e-6), (which, mode, name, rows)
            assert concepts.cond_lengths[i].item() == cond.shape[1]
        if len(rows) > 1:
            assert (by_mode["first"].embeddings[i] - by_mode["mean"].embeddings[i]).abs().max() > 1e-3
    assert counts[0] == 1 and counts[1] > 1 and counts[2] > 1, counts  # one-token, multi-token, multi-word
    for concepts in by_mode.values():
        assert concepts.text_space == enc.key
        assert concepts.encoder and concepts.context_dim == enc.dim
        assert concepts.positions.dtype == torch.float32 and concepts.cond_lengths.dtype == torch.int64


def test_a_template_character_merged_into_the_concept_stays_and_a_lone_one_goes(ovis_clip):
    """Ovis' template ends in ': ' before the concept: ' dog' takes the space into the concept's
    token; before a digit the space stays a token of its own, which is the template's."""
    enc = ENCODERS["ovis"]
    hf = ovis_clip.tokenizer.qwen3_2b.tokenizer
    ids = [tok for tok, *_ in ovis_clip.tokenize("3 dogs")[enc.key][0]]
    own = _expected_token_indices(ovis_clip, enc, "3 dogs")
    assert hf.decode([ids[own[0] - 1]]) == " " and hf.decode([ids[own[0]]]) == "3"
    ids = [tok for tok, *_ in ovis_clip.tokenize("dog")[enc.key][0]]
    assert [hf.decode([ids[i]]) for i in _expected_token_indices(ovis_clip, enc, "dog")] == [" dog"]
    concepts = encode_concepts(ovis_clip, ["3 dogs", "dog"], pooling="first")
    assert concepts.positions.tolist() == [2.0, 1.0]  # the cut keeps ':' (row 0), then ' ' / ' dog'


@pytest.mark.parametrize("which", list(ENCODERS))
def test_whitespace_and_template_markup_are_refused(request, which):
    enc = ENCODERS[which]
    clip = request.getfixturevalue(enc.fixture)
    for name in (" ", "\t \n"):
        with pytest.raises(ConceptAttentionError, match="produced no tokens of its own.*plain word"):
            encode_concepts(clip, [name])
    for name in (enc.markup, f"dog{enc.markup}", f"{enc.markup} dog"):
        with pytest.raises(ConceptAttentionError, match="contains template markup.*" + re.escape(repr(enc.markup))):
            encode_concepts(clip, [name])
    encode_concepts(clip, ["dog"])  # the same CLIP still encodes a plain concept


def test_added_tokens_that_are_not_flagged_special_are_still_markup(klein_4b_clip):
    hf = klein_4b_clip.tokenizer.qwen3_4b.tokenizer
    think = hf.convert_tokens_to_ids("<think>")
    assert think not in hf.all_special_ids  # only the tokenizer's added tokens know it
    with pytest.raises(ConceptAttentionError, match="template markup.*<think>"):
        encode_concepts(klein_4b_clip, ["<think>"])


def test_a_template_that_merges_across_the_concept_is_refused_not_guessed(klein_4b_clip, monkeypatch):
    # "the" + "" + "re" is one token, "the" + "dog" + "re" three that straddle the concept: no span is right
    monkeypatch.setattr(klein_4b_clip.tokenizer, "llama_template", "<|im_start|>user\nthe{}re<|im_end|>\n")
    with pytest.raises(ConceptAttentionError, match="cannot be told apart from the prompt template"):
        encode_concepts(klein_4b_clip, ["dog"])


def test_tiny_encoders_have_the_published_widths(request):
    for enc in ENCODERS.values():
        clip = request.getfixturevalue(enc.fixture)
        assert clip.encode_from_tokens(clip.tokenize("dog")).shape[-1] == enc.dim


# ---------------------------------------------------------------------------------------------
# CLIP and T5 encoders: positions and lengths filled, text spaces as before
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flux", "sd3"])
def test_t5_and_clip_positions_and_lengths(request, kind):
    clip = request.getfixturevalue(f"{kind}_clip")
    key, space, first = ("t5xxl", "t5xxl", 0) if kind == "flux" else ("l", "clip-lg", 1)  # CLIP has a start token
    sub = clip.tokenizer.t5xxl if kind == "flux" else clip.tokenizer.clip_l
    names = ["dog", "green grass", "red fox jumping"]
    for mode in ("first", "mean"):
        concepts = encode_concepts(clip, names, pooling=mode)
        assert concepts.text_space == space
        for i, name in enumerate(names):
            n = len(sub.tokenizer(name, add_special_tokens=False)["input_ids"])
            rows = list(range(first, first + n))
            cond = clip.encode_from_tokens(clip.tokenize(name))
            assert concepts.cond_lengths[i].item() == cond.shape[1] == sum(len(c) for c in clip.tokenize(name)[key])
            expected = rows[0] if mode == "first" else sum(rows) / n
            assert concepts.positions[i].item() == pytest.approx(expected)


# Prompt weights are refused (issue 24; they used to be applied, and nan, inf or 1e30 made NaN vectors): a
# concept's map is relative to the other concepts', so a weight has no meaning there.
WEIGHTED = ["(dog:nan)", "(dog:inf)", "(dog:1e30)", "(dog:100)", "(dog:1.5)", "(dog)", "green (grass:0.5)"]


def _video_clip(which: str):
    from concept_attention_tests.comfy.tiny import tiny_cogvideox

    return {"cogvideox": tiny_cogvideox.cogvideox_clip, "hunyuan_video": tte.hunyuan_video_clip}[which]()


@pytest.fixture(scope="module", params=["flux", "cogvideox", "hunyuan_video"])
def t5_and_llama_clip(request, flux_clip):
    return flux_clip if request.param == "flux" else _video_clip(request.param)


@pytest.mark.parametrize("name", WEIGHTED)
def test_prompt_weights_are_refused_naming_the_concept(t5_and_llama_clip, name):
    with pytest.raises(ConceptAttentionError, match=rf"concept {re.escape(repr(name))} carries a prompt weight"):
        encode_concepts(t5_and_llama_clip, ["sky", name])


def test_escaped_brackets_are_the_concepts_own_text(flux_clip):
    concepts = encode_concepts(flux_clip, [r"\(dog\)", "dog"], pooling="mean")
    assert torch.isfinite(concepts.embeddings).all()
    assert not torch.equal(concepts.embeddings[0], concepts.embeddings[1])  # the brackets are read as text


def test_a_non_finite_concept_vector_is_refused_naming_the_concept(flux_clip, monkeypatch):
    real = flux_clip.encode_from_tokens

    def overflowing(tokens, *args, **kwargs):
        out = real(tokens, *args, **kwargs)
        return out * float("inf") if any(tok[0] == 5956 for tok in tokens["t5xxl"][0]) else out  # '▁grass'

    monkeypatch.setattr(flux_clip, "encode_from_tokens", overflowing)
    with pytest.raises(ConceptAttentionError, match="gives concept 'grass' a vector with NaN or infinite values"):
        encode_concepts(flux_clip, ["dog", "grass"])


@pytest.mark.parametrize("clip_name", ["flux", "cogvideox"])
@pytest.mark.parametrize("names, first, second", [
    (["green grass", "green  grass"], "green grass", "green  grass"),
    (["sky", "green grass", "green\u00a0grass"], "green grass", "green\u00a0grass"),
    (["dog", "ｄｏｇ"], "dog", "ｄｏｇ"),  # full-width letters: T5 normalises them (NFKC) to the same tokens
])
def test_concepts_t5_reads_as_the_same_tokens_are_refused_naming_both(flux_clip, clip_name, names, first, second):
    clip = flux_clip if clip_name == "flux" else _video_clip(clip_name)
    with pytest.raises(ConceptAttentionError,
                       match=rf"concepts {re.escape(repr(first))} and {re.escape(repr(second))} are the same to "
                             r"the text encoder \(.*T5-XXL.*\)"):
        encode_concepts(clip, names)


def test_concepts_that_differ_in_spacing_are_one_concept_at_concept_list(t5_and_llama_clip):
    """Spacing never makes a second concept, whatever the encoder (a Llama tokenizer reads two spaces apart)."""
    from concept_attention.nodes.concept_list import ConceptList

    for text in ["green grass, green  grass", "green grass\ngreen\u00a0grass", "dog, Dog "]:
        with pytest.raises(ConceptAttentionError, match="listed twice"):
            ConceptList.execute(clip=t5_and_llama_clip, concepts=text, pooling="mean")


@pytest.mark.parametrize("name", ["🐶", "🌱", "☁️", "שלום", "{}"])
def test_a_concept_t5_cannot_read_is_refused_naming_the_encoder(flux_clip, name):
    tokenizer = flux_clip.tokenizer.t5xxl.tokenizer
    unknown = tokenizer.unk_token_id
    # the real T5 tokenizer reads each as nothing but its unknown token (after a blank '▁')
    assert unknown in tokenizer(name, add_special_tokens=False)["input_ids"]
    with pytest.raises(ConceptAttentionError, match=rf"concept {re.escape(repr(name))} is nothing but characters the "
                                                    r"text encoder \(.*T5-XXL.*\) cannot read"):
        encode_concepts(flux_clip, ["dog", name])


def test_a_concept_with_a_readable_word_and_an_unknown_character_is_kept(flux_clip):
    concepts = encode_concepts(flux_clip, ["dog", "dog 🐶"])
    assert not torch.equal(concepts.embeddings[0], concepts.embeddings[1])


def test_sd3_clip_with_t5_finds_clip_rows_in_the_longer_conditioning(sd3_clip):
    """SD3 conditioning = CLIP-L|G rows then T5 rows: longer than the CLIP token list, so the rows are
    found through the encoder's token weights; they must be the CLIP rows right after the start token."""
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base
    import comfy.text_encoders.sd3_clip
    import comfy.text_encoders.t5

    from concept_attention_tests.comfy.tiny import tiny_models

    class TinySD3WithT5(comfy.text_encoders.sd3_clip.SD3ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            torch.nn.Module.__init__(self)
            self.clip_l = comfy.sd1_clip.SDClipModel(
                layer="hidden", layer_idx=-1, device=device, dtype=dtype, layer_norm_hidden_state=False,
                return_projected_pooled=False, model_options=model_options,
                textmodel_json_config=tiny_models.tiny_clip_l_config())
            self.clip_g = None
            self.t5xxl = comfy.sd1_clip.SDClipModel(
                device=device, dtype=dtype, textmodel_json_config=tiny_models.tiny_t5_config(4096),
                special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                model_options={**model_options, "model_name": "t5xxl"})
            self.t5_attention_mask = False
            self.dtypes = {dtype}

    target = comfy.supported_models_base.ClipTarget(comfy.text_encoders.sd3_clip.SD3Tokenizer, TinySD3WithT5)
    clip = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32})
    tiny_models.randomize(clip.cond_stage_model, 5, std=0.2)
    names = ["dog", "green grass"]
    concepts = encode_concepts(clip, names, pooling="mean")
    assert concepts.text_space == "clip-lg"
    for i, name in enumerate(names):
        cond = clip.encode_from_tokens(clip.tokenize(name))
        n = len(clip.tokenizer.clip_l.tokenizer(name, add_special_tokens=False)["input_ids"])
        assert cond.shape[1] > 77
        torch.testing.assert_close(concepts.embeddings[i], cond[0, 1:1 + n].float().mean(dim=0), rtol=1e-5, atol=1e-6)
        assert concepts.positions[i].item() == pytest.approx((1 + n) / 2)


def test_llm_and_unknown_encoders_are_refused_by_name_by_a_flux1_model(klein_4b_clip, comfyui_path):
    import comfy.sd
    import comfy.sd1_clip
    import comfy.supported_models_base

    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.stream.options import SaliencyOptions
    from concept_attention_tests.comfy.tiny import tiny_models

    flux = tiny_models.flux_model(depth=2)
    klein = encode_concepts(klein_4b_clip, ["dog"])
    with pytest.raises(ConceptAttentionError, match="Qwen3 4B .qwen3_4b states.*reads t5xxl"):
        install_concept_attention(flux, klein, SaliencyOptions(layers=(1,)))
    # an encoder this pack does not know (SD1.5's CLIP-L) gets its tokenizer key, never "accepted everywhere"
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    sd1 = comfy.sd.CLIP(target=target, model_options={"dtype": torch.float32,
                                                      "clip_l_model_config": tiny_models.tiny_clip_l_config()})
    tiny_models.randomize(sd1.cond_stage_model, 6, std=0.2)
    concepts = encode_concepts(sd1, ["dog"])
    assert concepts.text_space == "l" and concepts.positions.tolist() == [1.0]
    with pytest.raises(ConceptAttentionError, match=r"\(l states\).*reads t5xxl"):
        install_concept_attention(flux, concepts, SaliencyOptions(layers=(1,)))


def test_template_whitespace_around_the_concept_is_not_the_concepts(klein_4b_clip, monkeypatch):
    # "x\n{}\ny": the empty prompt makes one "\n\n" token where a concept sits between two "\n" tokens
    monkeypatch.setattr(klein_4b_clip.tokenizer, "llama_template", "<|im_start|>user\nx\n{}\ny<|im_end|>\n")
    enc = ENCODERS["klein_4b"]
    hf = klein_4b_clip.tokenizer.qwen3_4b.tokenizer
    for name in ("dog", "green grass"):
        ids = [tok for tok, *_ in klein_4b_clip.tokenize(name)[enc.key][0]]
        own = _expected_token_indices(klein_4b_clip, enc, name)
        assert hf.decode([ids[own[0] - 1]]) == "\n" and hf.decode([ids[own[-1] + 1]]) == "\n"
        concepts = encode_concepts(klein_4b_clip, [name], pooling="mean")
        assert concepts.positions.tolist() == [sum(own) / len(own)]
    empty = [hf.decode([tok]) for tok, *_ in klein_4b_clip.tokenize("")[enc.key][0][:8]]
    assert "\n\n" in empty  # the case is really exercised


def test_left_padding_moves_the_rows_with_it(flux2_dev_clip):
    """The Mistral tokenizer pads on the left (here through ComfyUI's min-length tokenizer option)."""
    padded = flux2_dev_clip.clone()
    padded.set_tokenizer_option("mistral3_24b_min_length", 48)
    names = ["dog", "green grass"]
    plain = encode_concepts(flux2_dev_clip, names, pooling="mean")
    concepts = encode_concepts(padded, names, pooling="mean")
    pad = padded.tokenizer.mistral3_24b.pad_token
    for i, name in enumerate(names):
        ids = [tok for tok, *_ in padded.tokenize(name)["mistral3_24b"][0]]
        lead = next(k for k, t in enumerate(ids) if t != pad)
        assert lead > 0 and len(ids) == 48
        own = [lead + k for k in _expected_token_indices(flux2_dev_clip, ENCODERS["flux2_dev"], name)]
        cond = padded.encode_from_tokens(padded.tokenize(name))
        assert concepts.positions[i].item() == pytest.approx(sum(own) / len(own))
        assert concepts.positions[i].item() == pytest.approx(plain.positions[i].item() + lead)
        assert concepts.cond_lengths[i].item() == 48
        torch.testing.assert_close(concepts.embeddings[i], cond[0, own].float().mean(dim=0), rtol=1e-5, atol=1e-6)


def test_a_textual_inversion_embedding_counts_as_the_concepts_own(flux_clip, tmp_path, monkeypatch):
    import safetensors.torch

    vectors = torch.randn(2, 64, generator=torch.Generator().manual_seed(3))
    safetensors.torch.save_file({"t5xxl": vectors}, str(tmp_path / "spot.safetensors"))
    monkeypatch.setattr(flux_clip.tokenizer.t5xxl, "embedding_directory", [str(tmp_path)])
    name = "embedding:spot dog"
    tokens = flux_clip.tokenize(name)["t5xxl"][0]
    assert torch.is_tensor(tokens[0][0]) and torch.is_tensor(tokens[1][0])  # the embedding was loaded
    n = 2 + len(flux_clip.tokenizer.t5xxl.tokenizer("dog", add_special_tokens=False)["input_ids"])
    concepts = encode_concepts(flux_clip, [name], pooling="mean")
    cond = flux_clip.encode_from_tokens(flux_clip.tokenize(name))
    assert concepts.positions.tolist() == [(n - 1) / 2]
    torch.testing.assert_close(concepts.embeddings[0], cond[0, :n].float().mean(dim=0), rtol=1e-5, atol=1e-6)
