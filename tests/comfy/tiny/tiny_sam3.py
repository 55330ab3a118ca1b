"""A tiny random-weight SAM 3.1 (the multiplex model of ComfyUI's stock `sam3.1_multiplex_fp16.safetensors`), built
from ComfyUI's own classes as its loader builds it: comfy.supported_models.SAM31 + comfy.model_base.SAM3 over
comfy.ldm.sam3.detector.SAM3Model, in a real ModelPatcher, so SAM3_Detect and SAM3_VideoTrack run on it unchanged.

Why a builder and not a small file for Load Checkpoint: ComfyUI's detection reads only which SAM 3 a file is (SAM3 or
SAM3.1) and builds every one at full width (a ViT of 32 blocks, 1024 wide: 850M parameters). Here the unet_config
that ComfyUI passes to SAM3Model carries smaller widths: a ViT trunk of 2 blocks, 64 wide (16 heads of 4, as the
full model's 16 heads; ComfyUI fixes the trunk's head count), one global-attention block, and a 64-wide detector
and tracker (d_model, mem_dim). The picture size stays SAM 3's 1008 x 1008 (the nodes resize to it).

SAM 3.1 and not SAM 3: in ComfyUI 0.33.0 SAM3_VideoTrack runs only on SAM 3.1 (on SAM 3 its tracker returns a tensor
where the node stores the clip size in a dict), and the stock templates ship SAM 3.1.
"""

from __future__ import annotations

import torch

from concept_attention_tests.comfy.tiny.tiny_models import patcher

WIDTH = 64
OBJECT_SCORE = 8.0


def unet_config(multiplex: bool = True) -> dict:
    return {"image_model": "SAM31" if multiplex else "SAM3", "embed_dim": WIDTH, "depth": 2, "mlp_ratio": 2.0,
            "global_att_blocks": (1,), "d_model": WIDTH, "mem_dim": WIDTH}


def sam3_model(seed: int = 0, multiplex: bool = True, std: float = 0.2):
    """A real ModelPatcher over ComfyUI's SAM 3.1 (or SAM 3), every stored weight drawn from `seed`: two builds with
    one seed are the same model, in any process."""
    import comfy.supported_models

    config_cls = comfy.supported_models.SAM31 if multiplex else comfy.supported_models.SAM3
    config = config_cls(unet_config(multiplex))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    gen = torch.Generator().manual_seed(seed)
    dm = model.diffusion_model
    # what a checkpoint holds: the parameters and the persistent buffers (the random-Fourier position tables are drawn
    # from torch's global generator at build time); the RoPE tables are not in it, the model computes them
    stored = set(dm.state_dict())
    tensors = [(n, t) for n, t in list(dm.named_parameters()) + list(dm.named_buffers())
               if n in stored and t.is_floating_point()]
    with torch.no_grad():
        for name, p in sorted(tensors, key=lambda kv: kv[0]):
            values = torch.randn(p.shape, generator=gen, dtype=torch.float32) * std
            parts = name.split(".")
            if len(parts) > 1 and "norm" in parts[-2] and parts[-1] == "weight":
                values = 1.0 + values
            p.copy_(values.to(p.dtype))
        # SAM's decoders score whether the prompt shows an object at all and blank the mask (-1024) where not; a
        # random score head says "no object" to nearly every prompt, so it says "object" here, always
        for name, module in dm.named_modules():
            if name.endswith("pred_obj_score_head"):
                module.layers[-1].bias.fill_(OBJECT_SCORE)
    return patcher(model)
