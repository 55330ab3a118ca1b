"""Parsing the user's choice of blocks and of the denoising window.

Users think in terms like "the last 10 blocks" (the paper's Flux default) or "blocks 9-18"; the
model wants sorted 0-based indices. Parsing lives here so every node reads the text the same way.

A number means a block of the model's first block list (its dual-stream blocks; a single-stream model's blocks).
Hybrid models also have single-stream blocks, selected by parts that start with "single": "single 30-37", "single last 4"
(an extension beyond the paper, which reads dual-stream blocks only). "double" may be written for clarity.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

ACCEPTED_BLOCK_FORMS = (
    "'all', 'last N', 'first N', a range 'A-B' (inclusive), a single index 'N', "
    "or a comma-separated mix such as '0-3, 7, last 2' (indices are 0-based)"
    "; these mean dual-stream blocks, and a part that starts with 'single' "
    "(e.g. 'single 30-37', 'single last 4') means single-stream blocks of a hybrid model (one with both kinds)"
)

_LAST = re.compile(r"last\s*(\d+)")
_FIRST = re.compile(r"first\s*(\d+)")
_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")
_INDEX = re.compile(r"\d+")
_KIND = re.compile(r"(single|double|dual)(?:\s+|(?=\d)|$)")


@dataclass(frozen=True)
class BlockChoice:
    """Sorted, unique 0-based indices of the chosen blocks: `layers` those plain numbers index (dual-stream
    blocks, or a single-stream model's blocks), `single_layers` the single-stream blocks of a hybrid model."""

    layers: list
    single_layers: list


def parse_block_spec(spec: str, num_double: int, num_single: int = 0, main_kind: str = "dual-stream") -> BlockChoice:
    """Turn a block spec such as "last 10" or "0-3, 7, single 30-37" into sorted, unique 0-based block indices, for
    a model with num_double blocks in its first list (dual-stream) and num_single single-stream blocks: parts that
    start with 'single' choose single-stream blocks. 'last N' / 'first N' with N above the count take every block.
    At least one block of either kind must be chosen. Raises ValueError naming the offending part, the kind of
    block it was out of range for and how many of each the model has, or the accepted forms.

    main_kind: what plain numbers index (ModelFamily.block_label). On a single-stream model ("single-stream"
    main blocks and no others) a 'single' part means those same blocks."""
    for name, value in (("num_double", num_double), ("num_single", num_single)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a block count, got {value!r}")
    if num_double < 1:
        raise ValueError(f"the model must have at least one {main_kind} block to choose from, got {num_double}")
    return _parse(spec, num_double, num_single, ACCEPTED_BLOCK_FORMS, main_kind)


def _parse(spec, num_double: int, num_single: int, accepted: str, main_kind: str) -> BlockChoice:
    if not isinstance(spec, str):
        raise ValueError(f"the layer choice must be text, got {type(spec).__name__}; accepted forms: {accepted}")
    tokens = [t.strip().lower() for t in re.split(r"[,;\n]", spec)]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise ValueError(f"the layer choice is empty; accepted forms: {accepted}")

    chosen = {"double": set(), "single": set()}
    for token in tokens:
        kind, body = "double", token
        m = _KIND.match(token)
        if m:
            kind = "single" if m.group(1) == "single" else "double"
            body = token[m.end():].strip()
            if not body:
                raise ValueError(f"'{token}' says which kind of block but not which blocks; write e.g. "
                                 f"'{m.group(1)} last 4' or '{m.group(1)} all'")
        if kind == "single" and num_single == 0 and main_kind == "single-stream":
            kind = "double"  # a single-stream model: its blocks are the single-stream blocks
        if kind == "single" and num_single == 0:
            raise ValueError(f"'{token}': this model has no single-stream blocks (only {_count(num_double, main_kind)})")
        count = num_single if kind == "single" else num_double
        where = _describe(kind, num_double, num_single, main_kind)  # the text after "is out of range"
        chosen[kind].update(_parse_token(token, body, count, where, accepted))
    return BlockChoice(layers=sorted(chosen["double"]), single_layers=sorted(chosen["single"]))


def _count(n: int, kind: str) -> str:
    return f"{n} {kind} blocks (0..{n - 1})" if n else f"no {kind} blocks"


def _describe(kind: str, num_double: int, num_single: int, main_kind: str) -> str:
    """How many blocks of each kind there are, for an error about a block of `kind`."""
    if not num_single:
        return f" for {main_kind} blocks: this model has {_count(num_double, main_kind)}"
    name = "single-stream" if kind == "single" else main_kind
    return (f" for {name} blocks: this model has {_count(num_double, main_kind)} "
            f"and {_count(num_single, 'single-stream')}")


def _parse_token(token: str, body: str, num_layers: int, valid: str, accepted: str) -> range:
    if body == "all":
        return range(num_layers)
    for pattern, from_end in ((_LAST, True), (_FIRST, False)):
        m = pattern.fullmatch(body)
        if m:
            n = int(m.group(1))
            if n < 1:
                word = "last" if from_end else "first"
                raise ValueError(f"'{token}': N must be 1 or more ({word} N of the model's {num_layers} blocks)")
            # More than the model has means all of them: the paper's 'last 10' also works on
            # models with fewer dual-stream blocks (Flux.2 has 5 or 8).
            n = min(n, num_layers)
            return range(num_layers - n, num_layers) if from_end else range(n)
    m = _RANGE.fullmatch(body)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a > b:
            raise ValueError(f"'{token}': a range must go from low to high, e.g. '{b}-{a}'")
        if b >= num_layers:
            raise ValueError(f"'{token}' is out of range{valid}")
        return range(a, b + 1)
    if _INDEX.fullmatch(body):
        i = int(body)
        if i >= num_layers:
            raise ValueError(f"block {i} is out of range{valid}")
        return range(i, i + 1)
    hint = " (negative indices are not accepted; use 'last N')" if body.startswith("-") else ""
    raise ValueError(f"cannot read {token!r} in the layer choice{hint}; accepted forms: {accepted}")


def parse_step_range(start: float, end: float) -> tuple[float, float]:
    """Validate a denoising window given as fractions of the schedule (0 = first step, 1 = last).

    Requires 0 <= start < end <= 1 so the window holds at least part of one step.
    """
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"step range {name} must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(
            f"step range must satisfy 0 <= start < end <= 1 (fractions of the sampling schedule), got start={start}, end={end}"
        )
    return float(start), float(end)
