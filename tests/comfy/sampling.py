"""Small helpers to run ComfyUI's stock sampling on the tiny models."""

from __future__ import annotations

import torch


def conditioning(clip, text: str, **extra):
    cond = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    if extra:
        cond = [[c, {**d, **extra}] for c, d in cond]
    return cond


def sample(model, clip, latent_shape=(2, 16, 6, 10), seed=7, steps=3, cfg=4.0, prompt="a dog on grass",
           negative="", sampler="euler", positive=None, callback=None, **cond_extra):
    """comfy.sample.sample (what KSampler runs) with seeded noise; returns the output latent."""
    import comfy.sample

    latent = torch.zeros(latent_shape)
    noise = comfy.sample.prepare_noise(latent, seed)
    pos = positive if positive is not None else conditioning(clip, prompt, **cond_extra)
    neg = conditioning(clip, negative, **cond_extra)
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "simple", pos, neg, latent, seed=seed,
                               callback=callback, disable_pbar=True)


class ModelInputs:
    """The diffusion model's own inputs on its (single) call, recorded with a forward pre-hook."""

    def __init__(self, dm):
        self.dm = dm
        self.args, self.kwargs = (), {}

    def __enter__(self):
        def hook(module, args, kwargs):
            self.args, self.kwargs = args, dict(kwargs)
        self.handle = self.dm.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def get(self, index, name):
        return self.kwargs[name] if name in self.kwargs else (self.args[index] if len(self.args) > index else None)
