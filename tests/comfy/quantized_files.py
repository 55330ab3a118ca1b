"""Tiny checkpoints in ComfyUI's own per-layer quantized formats (`comfy_quant`), written and read by ComfyUI's code.

Writing: every Linear of a tiny model's blocks becomes a `comfy.ops.mixed_precision_ops` Linear holding a
`QuantizedTensor.from_float` weight (comfy/quant_ops.py's layouts, comfy_kitchen's quantizers), and that Linear's own
`state_dict` writes the checkpoint keys (the weight, its scales and the `comfy_quant` JSON), as ComfyUI saves a
quantized model. Layers outside the blocks (embedders, final layer) stay full precision, as in the released files.

Reading: a family whose tiny config ComfyUI detects from shapes (SD3) goes through the stock loader,
`comfy.sd.load_diffusion_model`, from a safetensors file. Families whose detection hard-codes full sizes go through
the same steps as `comfy.sd.load_diffusion_model_state_dict` after detection (quant config from
`comfy.utils.detect_layer_quantization`, the loader's dtype choice for quantized files, `get_model` and
`load_model_weights`), so ComfyUI's `pick_operations` builds them with its mixed-precision ops.
"""

from __future__ import annotations

import torch

# name: (comfy_quant format, layout class, quantizer arguments). The ConvRot Hadamard groups are 16 wide (the released
# files use 256; comfy_kitchen wants a power of 4 that divides the input width), and convrot_w4a4's 64-wide quant
# groups need input widths divisible by 64: the tiny models here are 64 wide (CogVideoX with 2 heads).
FORMATS = {
    "fp8_e4m3fn_scaled": ("float8_e4m3fn", "TensorCoreFP8E4M3Layout", {"scale": "recalculate"}),
    "fp8_e5m2_scaled": ("float8_e5m2", "TensorCoreFP8E5M2Layout", {"scale": "recalculate"}),
    "int8_tensorwise": ("int8_tensorwise", "TensorWiseINT8Layout", {"scale": "recalculate"}),
    "int8_convrot": ("int8_tensorwise", "TensorWiseINT8Layout",
                     {"scale": "recalculate", "per_channel": True, "convrot": True, "convrot_groupsize": 16}),
    "mxfp8": ("mxfp8", "TensorCoreMXFP8Layout", {}),
    "nvfp4": ("nvfp4", "TensorCoreNVFP4Layout", {}),
    "convrot_w4a4": ("convrot_w4a4", "TensorCoreConvRotW4A4Layout", {"convrot_groupsize": 16}),
    "asym_w4a8_int8": ("asym_w4a8_int8", "AsymW4A8Int8Layout", {"convrot_groupsize": 16}),
}


def _quantized_linear(linear: torch.nn.Linear, name: str, prefix: str) -> dict:
    """The checkpoint keys of `linear` quantized in format `name`, written by ComfyUI's mixed-precision Linear."""
    import comfy.ops
    from comfy.quant_ops import QuantizedTensor

    quant_format, layout, kwargs = FORMATS[name]
    ops = comfy.ops.mixed_precision_ops({}, compute_dtype=torch.float32)
    op = ops.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    weight = linear.weight.detach().float()
    op.quant_format = quant_format
    op.weight = torch.nn.Parameter(QuantizedTensor.from_float(weight, layout, **kwargs), requires_grad=False)
    if linear.bias is not None:
        op.bias = torch.nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
    return {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in op.state_dict(prefix=prefix).items()}


def quantized_state_dict(diffusion_model: torch.nn.Module, name: str, blocks: tuple[str, ...]) -> tuple[dict, int]:
    """(the diffusion model's state dict with every Linear under `blocks` quantized in format `name`, the number of
    layers quantized)."""
    sd = {k: v.detach().clone() for k, v in diffusion_model.state_dict().items()}
    count = 0
    for path, module in diffusion_model.named_modules():
        if isinstance(module, torch.nn.Linear) and path.startswith(blocks) and module.weight.ndim == 2:
            prefix = f"{path}."
            sd.pop(f"{prefix}weight")
            sd.pop(f"{prefix}bias", None)
            sd.update(_quantized_linear(module, name, prefix))
            count += 1
    return sd, count


def save(sd: dict, path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))


def load_file(path):
    """The stock loader (Load Diffusion Model's `comfy.sd.load_diffusion_model`), as a plain ModelPatcher."""
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(path), model_options={}, disable_dynamic=True)


def load_state_dict(config_cls, unet_config: dict, sd: dict):
    """A model of `config_cls` built from `sd` as comfy.sd.load_diffusion_model_state_dict builds a detected config:
    the quant config from the keys, the loader's dtypes for a quantized file, ComfyUI's ops, its weight loading."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.utils

    config = config_cls(dict(unet_config))
    config.quant_config = comfy.utils.detect_layer_quantization(sd, "")
    assert config.quant_config is not None, "no comfy_quant layer in the state dict"
    load_device = comfy.model_management.get_torch_device()
    supported = list(config.supported_inference_dtypes)
    unet_dtype = comfy.model_management.unet_dtype(model_params=comfy.utils.calculate_parameters(sd),
                                                   supported_dtypes=supported, weight_dtype=None)
    manual_cast_dtype = comfy.model_management.unet_manual_cast(None, load_device, config.supported_inference_dtypes)
    config.set_inference_dtype(unet_dtype, manual_cast_dtype, device=load_device)
    model = config.get_model(sd, "")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=torch.device("cpu"))
    model.load_model_weights(dict(sd), "")
    return patcher


def quantized_layers(model) -> list[str]:
    """The diffusion model's modules whose weight is a QuantizedTensor, after loading."""
    from comfy.quant_ops import QuantizedTensor

    dm = model.model.diffusion_model
    return [n for n, m in dm.named_modules() if isinstance(getattr(m, "weight", None), QuantizedTensor)]
