"""The synthetic world's captions as ComfyUI's T5 tokenizer splits them, without the tokenizer.

Training on the GPU machine runs without ComfyUI's tokenizer files (and `transformers`), so the trainer turns
captions into T5 token ids from this table: every word the captions use, as the tokenizer splits it alone. The T5
tokenizer splits text at spaces before it splits words, so a caption's ids are its words' ids in order and the end
token; tests/comfy/test_shapes_model.py checks that against the tokenizer for every word and many captions.
"""

from __future__ import annotations

import json
import os

TABLE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "caption_tokens.json")
END_TOKEN = 1


def caption_words() -> list[str]:
    """Every space-separated word the synthetic world's captions can hold (commas stay on their word)."""
    import itertools

    from . import synthetic_world

    words = set()
    for concepts in itertools.product(synthetic_world.vocabulary(), repeat=3):
        for n in (1, 2, 3):
            words.update(synthetic_world.caption_for(list(concepts[:n])).split())
    for tone in ("light", "grey", "dark"):
        words.update(synthetic_world.caption_for(["red circle"], tone).split())
    return sorted(words)


def write_table(clip, path: str = TABLE_PATH) -> dict:
    """Each caption word's ids, from a ComfyUI CLIP with the T5 tokenizer (PixArt's, as Chroma's encoder has it)."""
    table = {}
    for word in caption_words():
        ids = [t[0] for t in clip.tokenize(word)["t5xxl"][0]]
        if ids[-1] != END_TOKEN:
            raise ValueError(f"{word!r} tokenizes without the end token: {ids}")
        table[word] = ids[:-1]
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(f"{json.dumps(w)}: {json.dumps(ids)}" for w, ids in table.items()) + "\n}\n")
    return table


def load_table(path: str = TABLE_PATH) -> dict:
    with open(path) as f:
        return json.load(f)


def caption_tokens(caption: str, table: dict) -> dict:
    """Tokens for `caption` in the form `clip.tokenize` returns them ({"t5xxl": [[(id, weight), ...]]})."""
    ids = [i for word in caption.split() for i in table[word]] + [END_TOKEN]
    return {"t5xxl": [[(i, 1.0) for i in ids]]}
