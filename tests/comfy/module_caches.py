"""Module-scoped caches of tiny models and encoders, emptied when their test module ends."""

from __future__ import annotations

import gc

import pytest


def cleared_after_module(*caches):
    """An autouse module fixture that empties these functools caches after the module's tests, then collects
    garbage while ComfyUI is still importable (ModelPatchers detach on deletion). Assign it to a module name."""

    @pytest.fixture(autouse=True, scope="module")
    def _clear(comfyui_path):
        yield
        for cached in caches:
            cached.cache_clear()
        gc.collect()

    return _clear
