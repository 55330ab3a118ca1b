"""Keeps what the concept stream read from the image stream, so new concepts on the same picture need no model run.

Image tokens never attend to the concepts, so everything the concept stream reads from a block (the picture's
keys and values as the block's attention got them, and its attention output) is the same for any concept list.
An encode run records those per block, up to its last selected block; a later run on the same picture, with the
same model, noise and prompt, runs only the concept stream over the recorded blocks (a re-query).

The key is everything that changes the image stream: the model (its weights, LoRA patches, object patches and
patches in its options), the latent, noise level, seed, number of samples, the prompt conditioning and the
inference dtype. Concepts, pooling, space, softmax, the Table-4 switches and the layers (within the recorded
blocks) are not in it.

Memory: entries are counted in bytes against a budget the user sets on Concept Saliency (least recently used
entries go first; an entry larger than the whole budget is not kept). They stay on the model's device only where
that leaves the device a comfortable margin of free memory, else they move to system RAM. Entries of a model
ComfyUI has unloaded (or freed) are dropped.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..stream.recording import RecordedForward

logger = logging.getLogger("concept_attention")

# Default budget: a quarter of the device's memory, at most 8 GiB (one 1024² Flux.1 picture over 19 blocks
# takes about 1.4 GiB in bf16, SD3.5-large over 38 blocks about 2.3 GiB).
DEFAULT_BUDGET_FRACTION = 0.25
DEFAULT_BUDGET_CAP = 8 << 30
# Entries stay on the GPU only while it keeps this much free memory besides (else they go to system RAM).
GPU_MARGIN_FRACTION = 0.2
# Pictures' VAE latents kept besides (small next to an image stream): a re-query of a picture given as an IMAGE
# would otherwise pay the VAE again, which on a full-size model costs as much as the concept stream or more.
MAX_ENCODED = 4


@dataclass
class CacheEntry:
    forwards: list           # RecordedForward per noise sample
    last_layer: tuple        # options.block_order of the last block recorded
    nbytes: int
    model_ref: weakref.ref


class ImageStreamCache:
    """Recorded image streams by key, least recently used first, within a byte budget."""

    def __init__(self):
        self.entries: OrderedDict = OrderedDict()
        self.budget = 0
        self.latents: OrderedDict = OrderedDict()  # (picture digest, id(vae)) -> (weakref to the VAE, latent)

    def encoded(self, image: torch.Tensor, vae, encode):
        """The latent of `image` by this very VAE object: kept from an earlier run, or encode() now (and kept)."""
        key = (tensor_digest(image), id(vae))
        kept = self.latents.get(key)
        if kept is not None and kept[0]() is vae:
            self.latents.move_to_end(key)
            return kept[1]
        latent = encode()
        try:
            ref = weakref.ref(vae)
        except TypeError:
            return latent
        self.latents[key] = (ref, latent)
        while len(self.latents) > MAX_ENCODED:
            self.latents.popitem(last=False)
        return latent

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    def set_budget(self, budget_bytes: int):
        self.budget = max(0, int(budget_bytes))
        self._evict_to(self.budget)

    def lookup(self, key, last_layer: tuple) -> list | None:
        self.drop_unloaded()
        entry = self.entries.get(key)
        if entry is None or entry.last_layer < last_layer:
            return None
        self.entries.move_to_end(key)
        return entry.forwards

    def store(self, key, forwards: list, last_layer: tuple, model) -> bool:
        """Keep these recorded forwards under `key`; False when they do not fit the budget at all."""
        size = sum(f.nbytes for f in forwards)
        self.entries.pop(key, None)
        if size == 0 or size > self.budget:
            if size:
                logger.info("ConceptAttention: a re-query cache entry of %.0f MB exceeds the cache budget of %.0f MB; "
                             "not kept", size / 2**20, self.budget / 2**20)
            return False
        self._evict_to(self.budget - size)
        forwards = [_placed(f) for f in forwards]
        self.entries[key] = CacheEntry(forwards, last_layer, size, weakref.ref(model.model))
        return True

    def drop_model(self, base_model):
        """Forget every entry of this model (ComfyUI is unloading it)."""
        for key in [k for k, e in self.entries.items() if e.model_ref() is base_model]:
            del self.entries[key]

    def drop_unloaded(self):
        """Forget entries whose model ComfyUI no longer holds loaded (it unloaded or freed it)."""
        loaded = _loaded_models()
        for key in [k for k, e in self.entries.items() if e.model_ref() is None or
                    (loaded is not None and e.model_ref() not in loaded)]:
            del self.entries[key]

    def clear(self):
        self.entries.clear()
        self.latents.clear()

    def _evict_to(self, allowed: int):
        while self.entries and self.nbytes > allowed:
            self.entries.popitem(last=False)


CACHE = ImageStreamCache()
DETACH_CALLBACK_KEY = "concept_attention.requery_cache"


def _drop_on_detach(patcher, unpatch_all):
    # unpatch_all: ComfyUI unloads the model (a clone that is merely garbage-collected detaches without it).
    if unpatch_all:
        CACHE.drop_model(patcher.model)


def drop_with_model(patcher):
    """When ComfyUI unloads this model (to free memory, or for good), its entries go at once: an ON_DETACH
    callback on the ModelPatcher that encode mode loads (it only forgets cache entries)."""
    from comfy.patcher_extension import CallbacksMP

    if not patcher.get_callbacks(CallbacksMP.ON_DETACH, DETACH_CALLBACK_KEY):
        patcher.add_callback_with_key(CallbacksMP.ON_DETACH, DETACH_CALLBACK_KEY, _drop_on_detach)


def default_budget(device) -> int:
    """A quarter of the device's memory (system RAM on the CPU), at most 8 GiB."""
    import comfy.model_management

    total = comfy.model_management.get_total_memory(device)
    return int(min(DEFAULT_BUDGET_CAP, DEFAULT_BUDGET_FRACTION * total))


def _placed(recorded: RecordedForward) -> RecordedForward:
    """On the GPU where it leaves a comfortable margin of free memory (fast re-queries), else in system RAM."""
    tensors = list(recorded.tensors())
    if not tensors or tensors[0].device.type == "cpu":
        return recorded
    import comfy.model_management

    device = tensors[0].device
    free = comfy.model_management.get_free_memory(device)
    total = comfy.model_management.get_total_memory(device)
    if free > GPU_MARGIN_FRACTION * total:
        return recorded
    return recorded.to("cpu")


def _loaded_models():
    """The BaseModels ComfyUI holds loaded now, or None when that cannot be told."""
    try:
        import comfy.model_management

        return {m.model.model for m in comfy.model_management.current_loaded_models if m.model is not None}
    except (ImportError, AttributeError):
        return None


# ---------------------------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------------------------


# Digests of tensors already hashed, by identity: a prompt's conditioning (megabytes of T5 states) is the same
# object from run to run, and hashing it again would cost more than a whole re-query.
_digests: dict = {}


def tensor_digest(t: torch.Tensor) -> str:
    identity = _identity(t)
    known = _digests.get(id(t))
    if known is not None and known[0]() is t and known[1] == identity:
        return known[2]
    data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
    digest = f"{tuple(t.shape)}:{t.dtype}:{hashlib.sha1(data).hexdigest()}"
    try:
        key = id(t)
        ref = weakref.ref(t, lambda _, key=key: _digests.pop(key, None))
    except TypeError:
        return digest
    _digests[id(t)] = (ref, identity, digest)
    return digest


def _identity(t: torch.Tensor) -> tuple:
    """What tells an unchanged tensor: its storage and layout, and its version counter, which every in-place
    change bumps (inference-mode tensors have none; ComfyUI nodes do not change their inputs in place)."""
    try:
        version = t._version
    except RuntimeError:
        version = None
    return (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device), version)


def fingerprint(value, depth: int = 0):
    """A hashable description of a value: tensors by content, plain values as they are, other objects by identity."""
    if depth > 8:
        return "…"
    if torch.is_tensor(value):
        return tensor_digest(value)
    if isinstance(value, (str, int, float, bool, type(None), torch.dtype, torch.device)):
        return value
    if isinstance(value, dict):
        return tuple(sorted(((str(k), fingerprint(v, depth + 1)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, (list, tuple)):
        return tuple(fingerprint(v, depth + 1) for v in value)
    return (type(value).__qualname__, id(value))


def model_fingerprint(model) -> tuple:
    """The model as the image stream depends on it: weights object, weight patches, object patches, options."""
    return (id(model.model), getattr(model, "patches_uuid", None), fingerprint(model.object_patches),
            fingerprint(model.model_options))


def requery_key(model, latent, conditioning, noise_level: float, samples: int, seed: int,
                dtype) -> tuple:
    """The key of an encode's recording: everything that changes the image stream (module docstring)."""
    # A multi-stream latent (ComfyUI's NestedTensor, e.g. MiniMax H3's [video, audio]) is keyed by every stream.
    digest = tensor_digest(latent) if torch.is_tensor(latent) else tuple(tensor_digest(t) for t in latent.unbind())
    return (model_fingerprint(model), digest, fingerprint(conditioning), float(noise_level),
            int(samples), int(seed), str(dtype))
