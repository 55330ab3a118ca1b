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

from concept_attention_tests.comfy.tiny_models import _randomize

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
    _randomize(clip.cond_stage_model, seed, std=0.2)
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
    allocated; every value then comes from _randomize."""
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

    from concept_attention_tests.comfy.tiny_models import _tiny_clip_l_config

    options = {"qwen25_7b_class": _tiny_vision(kandinsky5.Qwen25_7BVLIModel),
               "qwen25_7b_model_config": _llm_config(KANDINSKY5_CONTEXT_DIM, 2),
               "clip_l_model_config": _tiny_clip_l_config()}
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
    DeepStack merger before any memory is allocated; every value then comes from _randomize."""
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
