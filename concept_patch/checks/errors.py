"""Errors the user can act on. Their text says what was wrong and what is accepted.

ComfyUI imports a custom node pack under its folder's absolute path, so a class's own __module__ would
put the server's path into every error a client sees (`exception_type`): the classes carry a fixed
module name instead.
"""

PUBLIC_MODULE = "concept_attention.errors"


class ConceptAttentionError(ValueError):
    """Bad input or an unsupported model; the message tells the user what to change."""


class UnsupportedModelError(ConceptAttentionError):
    """The model is not a dual-stream DiT this pack can read."""


for _error in (ConceptAttentionError, UnsupportedModelError):
    _error.__module__ = PUBLIC_MODULE
