"""Errors the user can act on. Their text says what was wrong and what is accepted."""


class ConceptAttentionError(ValueError):
    """Bad input or an unsupported model; the message tells the user what to change."""


class UnsupportedModelError(ConceptAttentionError):
    """The model is not a dual-stream DiT this pack can read."""
