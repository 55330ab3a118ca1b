"""ComfyUI's lowvram path on the CPU: a partial load of a tiny model, and the casts each stored weight makes.

The check every family's partial-loading test makes: with half the model offloaded, the concept stream reuses the
casts the model makes (stream/shared_casts.py), so no stored weight is cast more often per sampling run than in plain
sampling, the picture is bit-identical and the maps are those of the fully loaded model.
"""

from __future__ import annotations

import collections

import pytest
import torch


class PartialLoads:
    """ComfyUI's own lowvram load with a budget of `fraction` of the diffusion model (CPU runs load models whole
    otherwise), and a count of the casts each module makes from its stored weights."""

    def __init__(self, monkeypatch):
        import comfy.model_management
        import comfy.ops

        self.fraction = None
        self.casts = collections.Counter()
        load = comfy.model_management.LoadedModel.model_load
        cast = comfy.ops.cast_bias_weight
        loads = self

        def partial_load(loaded, lowvram_model_memory=0, force_patch_weights=False):
            if loads.fraction is not None and hasattr(loaded.model.model, "diffusion_model"):
                budget = loads.fraction * loaded.model.model_size()
                lowvram_model_memory = max(budget - loaded.model.loaded_size(), 1)
            return load(loaded, lowvram_model_memory, force_patch_weights)

        def counted_cast(module, *args, **kwargs):
            # A cast from the stored weight (a shared cast serves a kept copy, which is no Parameter).
            if isinstance(module._parameters.get("weight"), torch.nn.Parameter):
                loads.casts[module] += 1
            return cast(module, *args, **kwargs)

        monkeypatch.setattr(comfy.model_management.LoadedModel, "model_load", partial_load)
        monkeypatch.setattr(comfy.ops, "cast_bias_weight", counted_cast)

    def start(self, fraction: float):
        """Unload every model, so the next run loads the diffusion model with this budget."""
        import comfy.model_management

        comfy.model_management.unload_all_models()
        self.fraction = fraction

    def count(self, model, run) -> tuple:
        """(run's result, casts per module of model's diffusion model during it, by module name)."""
        self.casts.clear()
        out = run()
        names = {module: name for name, module in model.get_model_object("diffusion_model").named_modules()}
        return out, {names[module]: n for module, n in self.casts.items() if module in names}


@pytest.fixture
def partial_loads(monkeypatch):
    import comfy.model_management

    comfy.model_management.unload_all_models()
    try:
        yield PartialLoads(monkeypatch)
    finally:
        # Later tests load their models whole again.
        comfy.model_management.unload_all_models()


def weight_bytes(model, name):
    module = model.get_model_object(f"diffusion_model.{name}")
    return sum(p.nbytes for p in module.parameters(recurse=False))


def check_shared_casts(partial_loads, model, patched, session, run, direct=()):
    """run(m) samples with m. Fully loaded first (the reference picture and maps), then half offloaded: twice
    with concepts (the first run learns which casts a block shares, the second keeps only those) against plain.
    direct: names ending so are cast by the model's own code outside the module's forward (tiny, allowed more)."""
    full_picture = run(model)
    run(patched)
    full_maps = session.records[-1].saliency.maps
    partial_loads.start(0.5)
    plain, plain_casts = partial_loads.count(model, lambda: run(model))
    assert plain_casts, "the model was not partially loaded: nothing cast its weights"
    for repeat in range(2):
        out, concept_casts = partial_loads.count(model, lambda: run(patched))
        # Never more casts of a stored weight than plain sampling makes (fewer where a block calls a module twice
        # itself, e.g. CogVideoX's norms over text and video: the shared cast serves the second call too).
        assert concept_casts.keys() == plain_casts.keys()
        more = {n: (plain_casts[n], c) for n, c in concept_casts.items()
                if c > plain_casts[n] and not n.endswith(tuple(direct))}
        assert not more, f"run {repeat}: (plain, with concepts) casts {more}"
        extra = sum((c - plain_casts[n]) * weight_bytes(model, n) for n, c in concept_casts.items())
        assert extra <= 1e-3 * sum(c * weight_bytes(model, n) for n, c in plain_casts.items())
        assert torch.equal(out, plain) and torch.equal(plain, full_picture)
        torch.testing.assert_close(session.records[-1].saliency.maps, full_maps, rtol=0, atol=0)
