"""Parsing the user's choice of blocks and of the denoising window.

Users think in terms like "the last 10 blocks" (the paper's Flux default) or "blocks 9-18"; the
model wants sorted 0-based indices. Parsing lives here so every node reads the text the same way.
"""

from __future__ import annotations

import math
import re

ACCEPTED_LAYER_FORMS = (
    "'all', 'last N', 'first N', a range 'A-B' (inclusive), a single index 'N', "
    "or a comma-separated mix such as '0-3, 7, last 2' (indices are 0-based)"
)

_LAST = re.compile(r"last\s*(\d+)")
_FIRST = re.compile(r"first\s*(\d+)")
_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")
_INDEX = re.compile(r"\d+")


def parse_layer_spec(spec: str, num_layers: int) -> list[int]:
    """Turn a block spec such as "last 10" or "0-3, 7" into sorted, unique 0-based block indices.

    num_layers is the number of dual-stream blocks the model has; every index must be in
    0..num_layers-1, while 'last N' / 'first N' with N above num_layers take every block. Raises ValueError naming the offending part and the accepted forms.
    """
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"the model must have at least one block to choose from, got num_layers={num_layers!r}")
    if not isinstance(spec, str):
        raise ValueError(f"the layer choice must be text, got {type(spec).__name__}; accepted forms: {ACCEPTED_LAYER_FORMS}")
    tokens = [t.strip().lower() for t in re.split(r"[,;\n]", spec)]
    tokens = [t for t in tokens if t]
    if not tokens:
        raise ValueError(f"the layer choice is empty; accepted forms: {ACCEPTED_LAYER_FORMS}")

    chosen: set[int] = set()
    for token in tokens:
        chosen.update(_parse_token(token, num_layers))
    return sorted(chosen)


def _parse_token(token: str, num_layers: int) -> range:
    valid = f"this model has {num_layers} blocks, valid indices are 0..{num_layers - 1}"
    if token == "all":
        return range(num_layers)
    for pattern, from_end in ((_LAST, True), (_FIRST, False)):
        m = pattern.fullmatch(token)
        if m:
            n = int(m.group(1))
            if n < 1:
                word = "last" if from_end else "first"
                raise ValueError(f"'{token}': N must be 1 or more ({word} N of the model's {num_layers} blocks)")
            # More than the model has means all of them: the paper's 'last 10' also works on
            # models with fewer dual-stream blocks (Flux.2 has 5 or 8).
            n = min(n, num_layers)
            return range(num_layers - n, num_layers) if from_end else range(n)
    m = _RANGE.fullmatch(token)
    if m:
        a, b = int(m.group(1)), int(m.group(2))
        if a > b:
            raise ValueError(f"'{token}': a range must go from low to high, e.g. '{b}-{a}'")
        if b >= num_layers:
            raise ValueError(f"'{token}' is out of range: {valid}")
        return range(a, b + 1)
    if _INDEX.fullmatch(token):
        i = int(token)
        if i >= num_layers:
            raise ValueError(f"block {i} is out of range: {valid}")
        return range(i, i + 1)
    hint = " (negative indices are not accepted; use 'last N')" if token.startswith("-") else ""
    raise ValueError(f"cannot read {token!r} in the layer choice{hint}; accepted forms: {ACCEPTED_LAYER_FORMS}")


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
