"""A concept's own tokens: the tokens its text produced, not the ones its encoder wrapped it in.

Every encoder wraps the text: start, end and padding tokens (CLIP, T5), and for LLM encoders a
chat template around it, which ComfyUI tokenizes as one word, so word ids cannot tell the
template from the text. The wrapping is found by comparing with the empty prompt, tokenized by
the same CLIP and key: after dropping the tokens ComfyUI inserted itself (word id 0: start, end,
padding, wherever they sit), both lists share a prefix and a suffix (the wrapping); what lies
between is the concept's. The same rule serves every encoder, with no template or model known
here.

BPE merges at the insertion point: a template character may merge into the concept's first token
(Ovis "…background: {}" gives ":", " dog"), so the empty prompt keeps a token of its own between
the shared ends (" "). Such leftovers must be whitespace; then whitespace-only tokens at the
edges of the concept's span are template whitespace and are dropped. Any other leftover means
the template tokenizes differently around different texts, and the concept is refused rather
than given a guessed span.

Special tokens (template markup such as <|im_start|> or [INST] typed into a concept) are refused.
They are recognised through the tokenizer object: its special and added tokens, or the tokens its
decode drops when asked to skip special tokens.
"""

from __future__ import annotations

from collections import Counter
from numbers import Integral

from ..checks.errors import ConceptAttentionError

PLAIN_TEXT_HINT = "use a plain word or short phrase, e.g. 'dog' or 'green grass'"


def key_tokenizer(tokenizer, key: str):
    """The SDTokenizer behind one key of a CLIP's tokenizer (attribute `key` or `clip_<key>`)."""
    for attr in (key, f"clip_{key}"):
        sub = getattr(tokenizer, attr, None)
        if sub is not None and hasattr(sub, "tokenizer"):
            return sub
    raise ConceptAttentionError(f"the text encoder's tokenizer has no {key!r} tokenizer to read concepts with")


class TokenKinds:
    """What one tokenizer says about a token id: special (markup) or whitespace-only text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        ids = set(getattr(tokenizer, "all_special_ids", None) or ())
        ids |= set(getattr(tokenizer, "added_tokens_decoder", None) or ())  # e.g. Qwen's <think>
        named = getattr(tokenizer, "special_tokens", None)  # ComfyUI's SentencePiece wrapper
        if isinstance(named, dict):
            ids |= {v for v in named.values() if isinstance(v, Integral)}
        # an unknown-character token stands for text the vocabulary lacks (T5), unless it doubles as
        # a structural token (CLIP's <|endoftext|>)
        unk = getattr(tokenizer, "unk_token_id", None)
        roles = {getattr(tokenizer, f"{r}_token_id", None) for r in ("bos", "eos", "pad")}
        if unk is not None and unk not in roles:
            ids.discard(unk)
            self._unknown = unk
        else:
            self._unknown = None
        self._special = ids

    def text(self, token: int) -> str:
        return self._decode([token], False)

    def is_special(self, token) -> bool:
        if not isinstance(token, Integral) or token == self._unknown:
            return False
        if token in self._special:
            return True
        # ComfyUI's own BPE tokenizer (tekken) exposes its special tokens only through decode
        return self._decode([token], True) == "" and self._decode([token], False) != ""

    def is_unknown(self, token) -> bool:
        """The token for text the vocabulary lacks (T5's <unk>: emoji, Hebrew, braces)."""
        return self._unknown is not None and isinstance(token, Integral) and int(token) == self._unknown

    def is_blank(self, token) -> bool:
        return isinstance(token, Integral) and not self.is_special(token) and self.text(token).strip() == ""

    def markup_in(self, text: str) -> list[int]:
        """Special tokens the tokenizer makes of `text`, beyond those it adds to any text."""
        made = Counter(t for t in self._ids(text) if self.is_special(t))
        always = Counter(t for t in self._ids("") if self.is_special(t))
        return sorted((made - always).elements())

    def _ids(self, text: str) -> list:
        return list(self.tokenizer(text)["input_ids"])

    def _decode(self, ids, skip: bool) -> str | None:
        try:
            return self.tokenizer.decode(ids, skip_special_tokens=skip)
        except TypeError:  # a decode without the option cannot tell what it would skip
            return None if skip else self.tokenizer.decode(ids)


def _inserted_by_comfyui(tok) -> bool:
    return len(tok) > 2 and tok[2] == 0


def _same(a, b) -> bool:
    if isinstance(a, Integral) and isinstance(b, Integral):
        return int(a) == int(b)
    return a is b  # embeddings (tensors) only ever match themselves


def _flat(chunks) -> list:
    return [tok for chunk in chunks for tok in chunk]


def own_token_indices(name: str, chunks, empty_chunks, kinds: TokenKinds, encoder: str) -> list[int]:
    """Indices, in the flattened token list `chunks` (ComfyUI's tokenization of `name` with word
    ids, one key), of the tokens `name` produced; `empty_chunks` is the empty prompt's."""
    markup = kinds.markup_in(name)
    if markup:
        raise _markup_error(name, markup, kinds, encoder)
    flat = _flat(chunks)
    if flat and all(_inserted_by_comfyui(tok) for tok in flat):
        # A tokenizer that numbers no word (every word id 0: MiniMax H3's raw-text presentation, no template and
        # nothing inserted) says nothing through word ids; its tokens are the text's own, and its empty prompt (a
        # lone pad token standing in for nothing) is no template to strip.
        concept = [(i, tok[0]) for i, tok in enumerate(flat)]
        empty = []
    else:
        concept = [(i, tok[0]) for i, tok in enumerate(flat) if not _inserted_by_comfyui(tok)]
        empty = [tok[0] for tok in _flat(empty_chunks) if not _inserted_by_comfyui(tok)]
    start = 0
    while start < min(len(concept), len(empty)) and _same(concept[start][1], empty[start]):
        start += 1
    end = 0
    while end < min(len(concept), len(empty)) - start and _same(concept[-1 - end][1], empty[-1 - end]):
        end += 1
    own = concept[start:len(concept) - end]
    leftover = empty[start:len(empty) - end]
    if leftover:
        if not all(kinds.is_blank(tok) for tok in leftover):
            raise ConceptAttentionError(
                f"concept {name!r}: its tokens cannot be told apart from the prompt template of the text encoder "
                f"({encoder}), which tokenizes differently around it; {PLAIN_TEXT_HINT}"
            )
        while own and kinds.is_blank(own[0][1]):
            own = own[1:]
        while own and kinds.is_blank(own[-1][1]):
            own = own[:-1]
    markup = [tok for _, tok in own if kinds.is_special(tok)]
    if markup:
        raise _markup_error(name, markup, kinds, encoder)
    if not own or all(kinds.is_blank(tok) for _, tok in own):
        raise ConceptAttentionError(
            f"concept {name!r} produced no tokens of its own with {encoder} (nothing but whitespace or "
            f"characters the tokenizer drops); {PLAIN_TEXT_HINT}"
        )
    return [i for i, _ in own]


def _markup_error(name, tokens, kinds: TokenKinds, encoder: str) -> ConceptAttentionError:
    shown = ", ".join(dict.fromkeys(repr(kinds.text(t)) for t in tokens))
    return ConceptAttentionError(
        f"concept {name!r} contains template markup or special tokens of the text encoder ({encoder}): {shown}; "
        f"{PLAIN_TEXT_HINT}"
    )
