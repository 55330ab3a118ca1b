"""Module-scoped caches of tiny models and encoders, emptied when their test module ends."""

from __future__ import annotations

import functools
import gc

import pytest
import torch


def cleared_after_module(*caches, one_thread: bool = False):
    """An autouse module fixture that empties these functools caches after the module's tests, then collects
    garbage while ComfyUI is still importable (ModelPatchers detach on deletion). Assign it to a module name.

    one_thread: run the module with one intra-op thread (restored afterwards). On these tiny tensors several
    threads only spin against each other on a busy 2-core machine (30 s instead of 80 s for the maps module)."""

    @pytest.fixture(autouse=True, scope="module")
    def _clear(comfyui_path):
        threads = torch.get_num_threads()
        if one_thread:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            for cached in caches:
                cached.cache_clear()
            gc.collect()

    return _clear


def cached_clip_and_concepts(build_clip, concepts):
    """The text encoder, built once, and the concepts encoded with it, once: two functools caches for
    cleared_after_module."""
    clip = functools.lru_cache(maxsize=None)(build_clip)

    @functools.cache
    def encoded():
        from concept_attention.concept_patch.text.encoding import encode_concepts

        return encode_concepts(clip(), concepts)

    return clip, encoded
