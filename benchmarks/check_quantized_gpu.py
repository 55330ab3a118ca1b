"""On the GPU: full-size Flux.1-dev as ComfyUI's per-layer quantized checkpoints (`comfy_quant`), with the concept
stream on and off: the picture is bit-identical, and what the concept stream costs per sampling step.

The bf16 random-weight model of bench_concept_attention.py has its block Linears quantized with ComfyUI's own code
and is rebuilt from that state dict with ComfyUI's mixed-precision ops, as comfy.sd.load_diffusion_model_state_dict
builds a quantized file (tests/comfy/quantized_files.py, shared with the CPU tests). Which path a layer takes is
ComfyUI's choice for the card: on an H100/H200 fp8 runs its fp8 matmul, mxfp8 and nvfp4 (Blackwell kernels) are
emulated (dequantized), int8 is weight-only. `bf16` in QUANT_FORMATS: the unquantized model, as the baseline.

Usage (device, after benchmarks/prepare_device.sh's carry, wheels installed as run_device.sh does):
    QUANT_FORMATS=bf16,fp8_e4m3fn_scaled,int8_tensorwise,nvfp4 python3 benchmarks/check_quantized_gpu.py --out $OUT \
        --models flux --resolutions 1024x1024
CPU smoke test: python3 benchmarks/check_quantized_gpu.py --tiny --models flux
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_concept_attention as bench  # noqa: E402  (sets up ComfyUI and the pack)
import torch  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "quantized_files", Path(__file__).resolve().parent.parent / "tests" / "comfy" / "quantized_files.py")
quantized_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quantized_files)

BLOCKS = {"flux": ("double_blocks.", "single_blocks.")}


def quantized_model(family, fmt):
    """(the quantized ModelPatcher, its dual-stream block count, layers quantized)."""
    import comfy.model_management

    full, n_blocks, _ = bench.build_model(family, bench.ARGS.tiny)
    if fmt == "bf16":  # the unquantized baseline, on the same card
        return full, n_blocks, 0
    config = full.model.model_config
    unet_config = {k: v for k, v in config.unet_config.items() if k not in ("dtype", "device")}
    sd, count = quantized_files.quantized_state_dict(full.model.diffusion_model, fmt, BLOCKS[family])
    full.offload_device = bench.DEVICE
    comfy.model_management.unload_all_models()
    del full
    gc.collect()
    if bench.CUDA:
        torch.cuda.empty_cache()
    model = quantized_files.load_state_dict(type(config), unet_config, sd)
    del sd
    if bench.CUDA:
        comfy.model_management.load_models_gpu([model], force_full_load=True)
    assert len(quantized_files.quantized_layers(model)) == count
    return model, n_blocks, count


def main():
    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    out_dir = Path(bench.ARGS.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = os.environ.get("QUANT_FORMATS", "fp8_e4m3fn_scaled").split(",")
    family = bench.ARGS.models.split(",")[0]
    steps, short = (6, 2) if not bench.ARGS.tiny else (2, 1)
    report = {"device": torch.cuda.get_device_name() if bench.CUDA else "cpu", "torch": torch.__version__}
    for fmt in formats:
        model, n_blocks, count = quantized_model(family, fmt)
        cfg = bench.CFG.get(family, 1.0)
        pos, neg = bench.conditioning(family, bench.ARGS.tiny, 1), bench.conditioning(family, bench.ARGS.tiny, 2)
        latent = bench.latent_for(bench.ARGS.resolutions.split(",")[0], bench.ARGS.tiny, family)
        concepts = bench.concept_set(8, bench.context_dim(model), family=family)
        patched, session = install_concept_attention(model, concepts, SaliencyOptions(layers=tuple(range(n_blocks))))
        bench.run_sample(model, latent, pos, neg, cfg, short)  # warm-up: first-call kernel selection
        bench.run_sample(patched, latent, pos, neg, cfg, short)
        _, plain = bench.run_sample(model, latent, pos, neg, cfg, steps)
        _, ours = bench.run_sample(patched, latent, pos, neg, cfg, steps)
        maps = session.records[-1].saliency.maps
        step = {"plain": [], "concepts": []}
        for _ in range(3):  # interleaved: step time = (t(steps) - t(short)) / (steps - short)
            for name, m in (("plain", model), ("concepts", patched)):
                t_long, _ = bench.run_sample(m, latent, pos, neg, cfg, steps)
                t_short, _ = bench.run_sample(m, latent, pos, neg, cfg, short)
                step[name].append((t_long - t_short) / (steps - short))
        plain_s, ours_s = statistics.median(step["plain"]), statistics.median(step["concepts"])
        report[fmt] = {
            "family": family, "latent": list(latent.shape), "layers_quantized": count, "concepts": 8,
            "dual_stream_blocks": n_blocks, "bit_identical": bool(torch.equal(plain, ours)),
            "finite": bool(torch.isfinite(plain).all()), "maps_finite": bool(torch.isfinite(maps).all()),
            "step_s_plain": plain_s, "step_s_concepts": ours_s, "overhead_percent": 100 * (ours_s / plain_s - 1),
            "peak_vram_gb": torch.cuda.max_memory_allocated() / 1e9 if bench.CUDA else None,
        }
        print(fmt, json.dumps(report[fmt]), flush=True)
        import comfy.model_management

        for m in (model, patched):
            m.offload_device = bench.DEVICE  # unloading must not copy the weights to the CPU
        comfy.model_management.unload_all_models()
        del model, patched, session
        gc.collect()
        if bench.CUDA:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    (out_dir / "check_quantized_gpu.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
