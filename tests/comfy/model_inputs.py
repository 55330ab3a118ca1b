"""What a tiny model is run with, and what its diffusion model receives: the setups the reference tests build
once per module, and the inputs recorded by a forward pre-hook (the model's own inputs, not product internals)
that the fp64 references are fed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch


@dataclass
class Setup:
    """A tiny model with its text encoder, encoded concepts, conditioning, layers and latent."""

    name: str
    model: object
    clip: object
    concepts: object
    cond: list
    layers: tuple
    latent: torch.Tensor
    kind: str = "flux"  # "flux" | "chroma" | "sd3": which reference reads it

    @property
    def dm(self):
        return self.model.model.diffusion_model


@dataclass
class ModelCall:
    x: torch.Tensor
    timestep: torch.Tensor
    context: torch.Tensor
    y: torch.Tensor | None
    guidance: torch.Tensor | None
    cond_or_uncond: list = field(default_factory=lambda: [0])

    def rows(self, a, b):
        pick = lambda t: None if t is None else t[a:b]  # noqa: E731
        return ModelCall(self.x[a:b], self.timestep[a:b], self.context[a:b], pick(self.y), pick(self.guidance), [0])


def clone(v):
    return v.detach().clone() if torch.is_tensor(v) else v


@contextlib.contextmanager
def recorded_inputs(dm):
    """Every call of the diffusion model: the inputs the network itself receives."""
    calls: list[ModelCall] = []

    def hook(module, args, kwargs):
        names = ("x", "timestep", "context", "y")
        got = dict(zip(names, args))
        got.update({k: v for k, v in kwargs.items() if k in names + ("guidance",)})
        options = kwargs.get("transformer_options") or {}
        calls.append(ModelCall(
            x=clone(got["x"]), timestep=clone(got["timestep"]), context=clone(got["context"]),
            y=clone(got.get("y")), guidance=clone(got.get("guidance")),
            cond_or_uncond=list(options.get("cond_or_uncond") or [0]),
        ))

    handle = dm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


class Calls:
    """The diffusion model's own inputs on each call, as given (not copied): the positional `names` in order and
    those names, `transformer_options` and `extra` by keyword; recorded with a forward pre-hook while entered."""

    def __init__(self, dm, names=("x", "timestep", "context"), extra=()):
        self.dm, self.names, self.keywords = dm, tuple(names), (*names, "transformer_options", *extra)
        self.calls = []

    def __enter__(self):
        def hook(module, args, kwargs):
            call = dict(zip(self.names, args))
            call.update({k: v for k, v in kwargs.items() if k in self.keywords})
            self.calls.append(call)

        self.handle = self.dm.register_forward_pre_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
