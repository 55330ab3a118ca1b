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
