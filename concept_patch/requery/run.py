"""A re-query: new concepts over image streams an encode recorded, with no model call."""

from __future__ import annotations

import contextlib

import torch

from ..stream.sampling_run import SamplingRun
from . import graph


def requery_maps(model, session, recorded: list, on_sample=None) -> tuple[torch.Tensor, dict]:
    """Maps [B, r, h, w] (video: [B, r, frames, h, w]) of the session's concepts over recorded forwards (one per
    noise sample, averaged): the concept stream alone, on a side stream and from CUDA graphs where it can; and the
    side token groups' scores (StreamKind.side_tokens), averaged likewise."""
    import comfy.model_management

    comfy.model_management.load_models_gpu([model])  # the text-stream modules the concepts run through
    diffusion_model = model.get_model_object("diffusion_model")
    device = model.load_device
    total, side = None, {}
    stream = graph.side_stream(device)
    if stream is not None:
        stream.wait_stream(torch.cuda.current_stream(device))  # the recording and the weights are ready
    with torch.inference_mode(), (torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()):
        for k, forward_record in enumerate(recorded):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if not forward_record.on(device):
                forward_record = forward_record.to(device)
            run = SamplingRun(session, forward_record.latent_shape, None)
            forward = graph.concept_stream(run, session, diffusion_model, forward_record, device)
            run.commit(forward)
            maps = run.averaged_maps()  # on the CPU: waits for the stream
            total = maps if total is None else total + maps
            for name, scores in run.averaged_side_scores().items():
                side[name] = scores if name not in side else side[name] + scores
            if on_sample is not None:
                on_sample(k + 1, len(recorded))
    return total / len(recorded), {name: scores / len(recorded) for name, scores in side.items()}
