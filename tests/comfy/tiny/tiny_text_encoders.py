"""Tiny random-weight LLM text encoders, as the real comfy.sd.CLIP objects ComfyUI's loaders build.

Each CLIP pairs the family's own ComfyUI tokenizer (with its real chat template) with the
family's own TE class (flux2_te, klein_te, and the te() of LongCat-Image, Ovis, Qwen-Image and
Kandinsky 5). Only the sizes shrink, through ComfyUI's "<key>_model_config" model option; where a
size cannot be set that way, the inner SDClipModel is subclassed and passed as ComfyUI's
"<key>_class" model option (Flux.2 and Klein pick hidden layers 10/20/30 and 9/18/27, which a
4-layer model lacks; Qwen2.5-VL builds a 600M-parameter vision tower).

Output widths (the DiTs built against these encoders read exactly these):
three hidden layers concatenated for Flux.2 dev and Klein, the last layer for LongCat, Ovis and
Qwen-Image, the last hidden layer for Kandinsky 5.
"""

from __future__ import annotations

import base64
import json

import torch

from concept_attention_tests.comfy.tiny.tiny_models import randomize

FLUX2_DEV_CONTEXT_DIM = 96  # 3 layers x 32 hidden
KLEIN_4B_CONTEXT_DIM = 48  # 3 layers x 16 hidden
KLEIN_8B_CONTEXT_DIM = 72  # 3 layers x 24 hidden
LONGCAT_CONTEXT_DIM = 64
OVIS_CONTEXT_DIM = 32
QWEN_IMAGE_CONTEXT_DIM = 64
KANDINSKY5_CONTEXT_DIM = 32

# Words the tiny tekken vocabulary is trained on: each is one or a few tokens there; other words
# fall back to shorter pieces (bytes at worst).
FLUX2_DEV_WORDS = ("dog", "cat", "sky", "tree", "green grass", "red fox jumping", "blue sky", "a dog on the grass")
# Mistral's first tekken special tokens, by rank (the tokenizer splits these strings out of text).
_TEKKEN_SPECIALS = (
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]",
    "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
)
_TEKKEN_NUM_SPECIAL = 32
_TEKKEN_VOCAB = 512


def _llm_config(hidden: int, layers: int, vocab_size: int | None = None) -> dict:
    config = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
              "num_attention_heads": 2, "num_key_value_heads": 1}
    if vocab_size is not None:
        config["vocab_size"] = vocab_size
    return config


def _clip(tokenizer_cls, te_cls, model_options: dict, seed: int, tokenizer_data=None):
    import comfy.sd
    import comfy.supported_models_base

    target = comfy.supported_models_base.ClipTarget(tokenizer_cls, te_cls)
    clip = comfy.sd.CLIP(target=target, tokenizer_data=tokenizer_data or {},
                         model_options={"dtype": torch.float32, **model_options})
    randomize(clip.cond_stage_model, seed, std=0.2)
    return clip


def _byte_decoder() -> dict[str, int]:
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    # GPT-2's printable stand-ins for the 256 bytes, as ByteLevel uses them
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[chr(b)] = b
        else:
            mapping[chr(256 + extra)] = b
            extra += 1
    assert set(mapping) == set(alphabet)
    return mapping


def tekken_json(template: str, words=FLUX2_DEV_WORDS) -> bytes:
    """A small Mistral tekken vocabulary: byte-level BPE trained (tokenizers) on the template and words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=_TEKKEN_VOCAB, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    plain = template.replace("{}", " ")
    for special in _TEKKEN_SPECIALS:
        plain = plain.replace(special, " ")
    bpe.train_from_iterator([plain, *words, *words], trainer)
    decoder = _byte_decoder()
    by_id = sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])
    # single bytes first (ranks 0-255, in byte order), then merges in the order they were learned
    singles = sorted((decoder[s] for s, _ in by_id if len(s) == 1))
    merged = [bytes(decoder[c] for c in s) for s, _ in by_id if len(s) > 1]
    vocab = [bytes([b]) for b in singles] + merged
    assert len(singles) == 256
    fillers = [f"<SPECIAL_{i}>" for i in range(len(_TEKKEN_SPECIALS), _TEKKEN_NUM_SPECIAL)]
    specials = [*_TEKKEN_SPECIALS, *fillers]
    data = {
        "config": {"pattern": "", "num_vocab_tokens": len(vocab), "version": "v7",
                   "default_vocab_size": _TEKKEN_NUM_SPECIAL + len(vocab),
                   "default_num_special_tokens": _TEKKEN_NUM_SPECIAL},
        "vocab": [{"rank": r, "token_bytes": base64.b64encode(t).decode("ascii"), "token_str": None}
                  for r, t in enumerate(vocab)],
        "special_tokens": [{"rank": r, "token_str": s, "is_control": True} for r, s in enumerate(specials)],
    }
    return json.dumps(data).encode("utf-8")


def tekken_token_bytes(tekken) -> dict[int, bytes]:
    """Token id -> the bytes it stands for, read straight from a tekken JSON (special tokens as their text)."""
    if torch.is_tensor(tekken):
        tekken = tekken.numpy().tobytes()
    data = json.loads(tekken)
    offset = data["config"]["default_num_special_tokens"]
    out = {w["rank"]: w["token_str"].encode("utf-8") for w in data["special_tokens"]}
    out.update({offset + w["rank"]: base64.b64decode(w["token_bytes"]) for w in data["vocab"]})
    return out


def flux2_dev_clip(seed=11):
    """Flux.2 dev: ComfyUI's Flux2Tokenizer (Mistral template, tiny tekken vocabulary) + Flux2TEModel."""
    import comfy.text_encoders.flux as flux

    class TinyMistral3(flux.Mistral3_24BModel):
        def __init__(self, layer=[1, 2, 3], **kwargs):  # hidden layers a 4-layer model has
            super().__init__(layer=layer, **kwargs)

    tekken = tekken_json(_flux2_template())
    data = torch.frombuffer(bytearray(tekken), dtype=torch.uint8)  # as a checkpoint stores it
    config = _llm_config(FLUX2_DEV_CONTEXT_DIM // 3, 4, vocab_size=_TEKKEN_NUM_SPECIAL + _TEKKEN_VOCAB)
    options = {"mistral3_24b_class": TinyMistral3, "mistral3_24b_model_config": config}
    return _clip(flux.Flux2Tokenizer, flux.flux2_te(), options, seed, tokenizer_data={"tekken_model": data})


def _flux2_template() -> str:
    """Flux2Tokenizer's chat template, read from ComfyUI (it needs a tekken vocabulary to construct)."""
    import comfy.text_encoders.flux as flux

    seed_vocab = tekken_json("", words=("a",))
    tokenizer = flux.Flux2Tokenizer(tokenizer_data={"tekken_model": seed_vocab})
    return tokenizer.llama_template


def klein_clip(size="4b", seed=12):
    """Flux.2 Klein: ComfyUI's KleinTokenizer / KleinTokenizer8B (Qwen3 template) + klein_te(model_type)."""
    import comfy.text_encoders.flux as flux

    key = {"4b": "qwen3_4b", "8b": "qwen3_8b"}[size]
    base = {"4b": flux.Qwen3_4BModel, "8b": flux.Qwen3_8BModel}[size]
    hidden = {"4b": KLEIN_4B_CONTEXT_DIM, "8b": KLEIN_8B_CONTEXT_DIM}[size] // 3

    class TinyQwen3(base):
        def __init__(self, layer=[1, 2, 3], **kwargs):  # hidden layers a 4-layer model has
            super().__init__(layer=layer, **kwargs)

    tokenizer = {"4b": flux.KleinTokenizer, "8b": flux.KleinTokenizer8B}[size]
    options = {f"{key}_class": TinyQwen3, f"{key}_model_config": _llm_config(hidden, 4)}
    return _clip(tokenizer, flux.klein_te(model_type=key), options, seed)


def _tiny_vision(base):
    """`base` (an SDClipModel over ComfyUI's Qwen2.5-VL) laid out on the meta device first: its vision
    tower (600M parameters, never run for text) is swapped for one small block before any memory is
    allocated; every value then comes from randomize."""
    import comfy.text_encoders.qwen_vl as qwen_vl

    class TinyVision(base):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            super().__init__(device="meta", dtype=dtype, model_options=model_options, **kwargs)
            hidden = self.transformer.model.config.hidden_size
            self.transformer.visual = qwen_vl.Qwen2VLVisionTransformer(
                hidden_size=32, output_hidden_size=hidden, intermediate_size=32, num_heads=2, num_layers=1,
                device="meta", dtype=dtype, ops=self.operations)
            self.to_empty(device=device or "cpu")

    return TinyVision


def longcat_clip(seed=13):
    """LongCat-Image: ComfyUI's LongCatImageTokenizer + its TE (which cuts the template off both ends)."""
    import comfy.text_encoders.longcat_image as longcat
    import comfy.text_encoders.qwen_image as qwen_image

    options = {"qwen25_7b_class": _tiny_vision(qwen_image.Qwen25_7BVLIModel),
               "qwen25_7b_model_config": _llm_config(LONGCAT_CONTEXT_DIM, 2)}
    return _clip(longcat.LongCatImageTokenizer, longcat.te(), options, seed)


def qwen_image_clip(seed=15):
    """Qwen-Image: ComfyUI's QwenImageTokenizer + its TE (which cuts the system prompt off its output)."""
    import comfy.text_encoders.qwen_image as qwen_image

    options = {"qwen25_7b_class": _tiny_vision(qwen_image.Qwen25_7BVLIModel),
               "qwen25_7b_model_config": _llm_config(QWEN_IMAGE_CONTEXT_DIM, 2)}
    return _clip(qwen_image.QwenImageTokenizer, qwen_image.te(), options, seed)


def kandinsky5_image_clip(seed=16):
    """Kandinsky 5 (image): two token lists, Qwen2.5-VL (the conditioning, template prefix cut off) and
    CLIP-L (only its pooled vector is used): a multi-key encoder this pack names nowhere."""
    import comfy.text_encoders.kandinsky5 as kandinsky5

    from concept_attention_tests.comfy.tiny.tiny_models import tiny_clip_l_config

    options = {"qwen25_7b_class": _tiny_vision(kandinsky5.Qwen25_7BVLIModel),
               "qwen25_7b_model_config": _llm_config(KANDINSKY5_CONTEXT_DIM, 2),
               "clip_l_model_config": tiny_clip_l_config()}
    return _clip(kandinsky5.Kandinsky5TokenizerImage, kandinsky5.te(), options, seed)


def ovis_clip(seed=14):
    """Ovis-Image: ComfyUI's OvisTokenizer + its TE (which cuts a template prefix off its output)."""
    import comfy.text_encoders.ovis as ovis

    options = {"qwen3_2b_model_config": _llm_config(OVIS_CONTEXT_DIM, 2)}
    return _clip(ovis.OvisTokenizer, ovis.te(), options, seed)


MAGE_FLOW_CONTEXT_DIM = 64


def _tiny_qwen3vl_vision(base):
    """`base` (an SDClipModel over ComfyUI's Qwen3-VL) laid out on the meta device first: its vision tower
    (24 blocks of width 1024 for the 4B, never run for text) is swapped for one small block with one
    DeepStack merger before any memory is allocated; every value then comes from randomize."""
    import comfy.text_encoders.qwen3vl as qwen3vl

    class TinyVision(base):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            super().__init__(device="meta", dtype=dtype, model_options=model_options, **kwargs)
            config = {**qwen3vl.QWEN3VL_VISION_COMMON, "hidden_size": 32, "intermediate_size": 32, "depth": 1,
                      "num_heads": 2, "deepstack_visual_indexes": [0], "num_position_embeddings": 64,
                      "out_hidden_size": self.transformer.model.config.hidden_size}
            self.transformer.visual = qwen3vl.Qwen3VLVisionModel(config, device="meta", dtype=dtype,
                                                                 ops=self.operations)
            self.to_empty(device=device or "cpu")

    return TinyVision


def mage_flow_clip(seed=17):
    """Mage-Flow: ComfyUI's MageFlowTokenizer (Qwen-Image's t2i template, Qwen2.5 vocabulary) + MageFlowTEModel
    over Qwen3-VL-4B (last hidden state after the final norm; the TE cuts the system prompt and the
    "<|im_start|>user\\n" opening off its output)."""
    import comfy.text_encoders.mage_flow as mage_flow

    options = {"qwen3vl_4b_class": _tiny_qwen3vl_vision(mage_flow.MageFlowQwen3VLClipModel),
               "qwen3vl_4b_model_config": _llm_config(MAGE_FLOW_CONTEXT_DIM, 2)}
    return _clip(mage_flow.MageFlowTokenizer, mage_flow.te(), options, seed)


HUNYUAN_VIDEO_CONTEXT_DIM = 32  # the tiny Llava-Llama-3's width (hunyuan_video_clip)
HUNYUAN_VIDEO_POOLED_DIM = 32  # the tiny CLIP-L's width: HunyuanVideo 1's vector_in reads its pooled vector
HUNYUAN_QWEN_CONTEXT_DIM = 48  # the tiny Qwen2.5-VL's width (hunyuan_video15_clip, hunyuan_image21_clip)

# Llama-3 ids ComfyUI's HunyuanVideo encoder reads to cut its template (hunyuan_video.py): the header
# markers, "user" and "\n\n"; and the begin-of-text and pad ids its tokenizer uses.
_LLAMA3_SPECIALS = {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|start_header_id|>": 128006,
                    "<|end_header_id|>": 128007, "<|eot_id|>": 128009, "<image>": 128257, "<pad>": 128258}
_LLAMA3_FIXED = {"user": 882, "ĊĊ": 271}
HUNYUAN_VIDEO_WORDS = ("dog", "cat", "sky", "tree", "green grass", "red fox jumping", "blue sky", "a dog on the grass",
                       "a dog running on the grass under the sky")


def llama3_tokenizer_folder(template: str, words=HUNYUAN_VIDEO_WORDS) -> str:
    """A folder with a small Llama-3 tokenizer.json (byte-level BPE trained with `tokenizers` on the template and
    words) that ComfyUI's own LlamaTokenizerFast reads: Llama-3's split pattern, special-token ids and begin-of-text
    post-processor, and the real ids of the tokens HunyuanVideo's encoder looks for."""
    import tempfile
    from pathlib import Path

    from comfy.text_encoders.bpe_tokenizer import _LLAMA_PATTERN
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    plain = template.replace("{}", " ")
    for special in _LLAMA3_SPECIALS:
        plain = plain.replace(special, "\n")
    bpe.train_from_iterator([plain, *words, *words, "user", "user", "\n\n", "\n\n"], trainer)
    trained = json.loads(bpe.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in trained["merges"]]
    ordered = [tok for tok, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1])]
    assert all(tok in ordered for tok in _LLAMA3_FIXED), "the tiny vocabulary lacks a token HunyuanVideo reads"
    free = (i for i in range(len(ordered) + len(_LLAMA3_FIXED)) if i not in _LLAMA3_FIXED.values())
    vocab = {tok: _LLAMA3_FIXED[tok] if tok in _LLAMA3_FIXED else next(free) for tok in ordered}
    data = {
        "model": {"type": "BPE", "vocab": vocab, "merges": merges},
        "added_tokens": [{"id": i, "content": s, "special": True} for s, i in _LLAMA3_SPECIALS.items()],
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _LLAMA_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}]},
    }
    folder = Path(tempfile.mkdtemp(prefix="tiny_llama3_tokenizer_"))
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return str(folder)


def _hunyuan_video_tokenizer_class():
    """ComfyUI's HunyuanVideoTokenizer (its Llava-Llama-3 template, its CLIP-L tokenizer), reading the tiny
    Llama-3 vocabulary above where it would read comfy/text_encoders/llama_tokenizer (whose tokenizer.json the
    ComfyUI snapshot the tests run on may lack)."""
    from unittest import mock

    import comfy.sd1_clip
    import comfy.text_encoders.hunyuan_video as hv

    original_init = comfy.sd1_clip.SDTokenizer.__init__
    holder = {}

    def redirected(self, tokenizer_path=None, *args, **kwargs):
        if tokenizer_path is not None and tokenizer_path.rstrip("/\\").endswith("llama_tokenizer"):
            tokenizer_path = holder["folder"]
        original_init(self, tokenizer_path, *args, **kwargs)

    class TinyHunyuanVideoTokenizer(hv.HunyuanVideoTokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            if "folder" not in holder:
                # the template is an attribute ComfyUI sets in __init__: read it off a tokenizer with a seed vocabulary
                holder["folder"] = llama3_tokenizer_folder("")
                with mock.patch.object(comfy.sd1_clip.SDTokenizer, "__init__", redirected):
                    template = hv.HunyuanVideoTokenizer().llama_template
                holder["folder"] = llama3_tokenizer_folder(template)
            with mock.patch.object(comfy.sd1_clip.SDTokenizer, "__init__", redirected):
                super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data)

    return TinyHunyuanVideoTokenizer


def hunyuan_video_clip(seed=18):
    """HunyuanVideo 1: ComfyUI's HunyuanVideoTokenizer + hunyuan_video_clip() (a Llava-Llama-3 whose states are
    cut to the template's user span, hidden layer -3; CLIP-L gives the pooled vector): two token lists, a
    multi-key encoder this pack names nowhere."""
    import comfy.text_encoders.hunyuan_video as hv

    from concept_attention_tests.comfy.tiny.tiny_models import tiny_clip_l_config

    options = {"llama_model_config": _llm_config(HUNYUAN_VIDEO_CONTEXT_DIM, 4),
               "clip_l_model_config": tiny_clip_l_config()}
    return _clip(_hunyuan_video_tokenizer_class(), hv.hunyuan_video_clip(), options, seed)


def _tiny_byt5_te(base_te):
    """HunyuanImage 2.1's TE class (Qwen2.5-VL + byT5) with a byT5 of one small layer at the real 1472 width."""
    import comfy.text_encoders.hunyuan_image as hunyuan_image

    class TinyByT5TE(base_te):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, model_options=model_options)
            if self.byt5_small is not None:
                tiny = {"num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16, "d_ff": 32}
                self.byt5_small = hunyuan_image.ByT5SmallModel(
                    device=device, dtype=dtype,
                    model_options={**model_options, "model_name": "byt5_small", "byt5_small_model_config": tiny})

    return TinyByT5TE


def _hunyuan_qwen_clip(tokenizer_cls, seed):
    import comfy.text_encoders.hunyuan_image as hunyuan_image

    options = {"qwen25_7b_class": _tiny_vision(hunyuan_image.Qwen25_7BVLIModel),
               "qwen25_7b_model_config": _llm_config(HUNYUAN_QWEN_CONTEXT_DIM, 4)}
    return _clip(tokenizer_cls, _tiny_byt5_te(hunyuan_image.te()), options, seed)


def hunyuan_video15_clip(seed=19):
    """HunyuanVideo 1.5: ComfyUI's HunyuanVideo15Tokenizer (its video template over Qwen2.5-VL; quoted text also
    goes to byT5) + hunyuan_image.te() (Qwen2.5-VL hidden layer -3, system prompt cut off; byT5 glyph states)."""
    import comfy.text_encoders.hunyuan_video as hv

    return _hunyuan_qwen_clip(hv.HunyuanVideo15Tokenizer, seed)


def hunyuan_image21_clip(seed=20):
    """HunyuanImage 2.1: ComfyUI's HunyuanImageTokenizer (its image template) + hunyuan_image.te()."""
    import comfy.text_encoders.hunyuan_image as hunyuan_image

    return _hunyuan_qwen_clip(hunyuan_image.HunyuanImageTokenizer, seed)


# ---------------------------------------------------------------------------------------------
# single-stream models: Z-Image (Qwen3-4B), Lumina 2 (Gemma-2-2B), Krea 2 (Qwen3-VL-4B, 12 layers)
# ---------------------------------------------------------------------------------------------

ZIMAGE_CONTEXT_DIM = 32  # Qwen3-4B's second-to-last hidden layer
LUMINA2_CONTEXT_DIM = 32  # Gemma-2-2B's second-to-last hidden layer
KREA2_TEXT_LAYERS = 12
KREA2_TEXT_DIM = 16  # each of the 12 tapped Qwen3-VL layers; the conditioning is 12 x 16 wide
LUMINA2_WORDS = ("dog", "cat", "sky", "tree", "green grass", "red fox jumping", "blue sky", "a dog on the grass",
                 "a dog on grass", "a photo", "under the", "collar", "leash")


def z_image_clip(seed=18):
    """Z-Image: ComfyUI's ZImageTokenizer (Qwen3 chat template, the shipped Qwen2.5 vocabulary) + its TE
    (Qwen3-4B, second-to-last hidden layer)."""
    import comfy.text_encoders.z_image as z_image

    options = {"qwen3_4b_model_config": _llm_config(ZIMAGE_CONTEXT_DIM, 3)}
    return _clip(z_image.ZImageTokenizer, z_image.te(), options, seed)


def gemma_spiece_model(words=LUMINA2_WORDS) -> bytes:
    """A small SentencePiece model with Gemma's special ids (pad 0, eos 1, bos 2, unk 3, "<end_of_turn>" 107, which
    ComfyUI's Gemma tokenizer names; unused pieces fill the ids between, as in Gemma's vocabulary), trained on the
    words."""
    import io

    import sentencepiece

    fillers = [f"<unused{i}>" for i in range(4, 107)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([*words, *words, " ".join(words)]), model_writer=model, vocab_size=200,
        model_type="bpe", pad_id=0, eos_id=1, bos_id=2, unk_id=3, hard_vocab_limit=False,
        user_defined_symbols=[*fillers, "<end_of_turn>"], character_coverage=1.0, minloglevel=2)
    return model.getvalue()


def lumina2_clip(seed=19):
    """Lumina 2 (and NetaYume): ComfyUI's LuminaTokenizer (Gemma SentencePiece, here a small trained one) + its
    TE (Gemma-2-2B, second-to-last hidden layer)."""
    import comfy.text_encoders.lumina2 as lumina2

    spiece = torch.frombuffer(bytearray(gemma_spiece_model()), dtype=torch.uint8)  # as a checkpoint stores it
    options = {"gemma2_2b_model_config": _llm_config(LUMINA2_CONTEXT_DIM, 3, vocab_size=256)}
    return _clip(lumina2.LuminaTokenizer, lumina2.te(), options, seed, tokenizer_data={"spiece_model": spiece})


def krea2_clip(seed=20):
    """Krea 2: ComfyUI's Krea2Tokenizer + Krea2TEModel (which cuts the template prefix off and flattens the
    12 tapped Qwen3-VL layers into the feature axis), over a 12-layer Qwen3-VL whose 12 taps are its layers 1-12."""
    import comfy.text_encoders.krea2 as krea2
    import comfy.text_encoders.qwen3vl as qwen3vl

    class TinyKrea2Taps(krea2.Krea2Qwen3VLClipModel):
        def __init__(self, device="cpu", dtype=None, attention_mask=True, model_options={}):
            qwen3vl.Qwen3VLClipModel.__init__(self, device=device, layer=list(range(1, KREA2_TEXT_LAYERS + 1)),
                                              layer_idx=None, dtype=dtype, attention_mask=attention_mask,
                                              model_options=model_options, model_type="qwen3vl_4b")

    options = {"qwen3vl_4b_class": _tiny_qwen3vl_vision(TinyKrea2Taps),
               "qwen3vl_4b_model_config": _llm_config(KREA2_TEXT_DIM, KREA2_TEXT_LAYERS)}
    return _clip(krea2.Krea2Tokenizer, krea2.te(), options, seed)
