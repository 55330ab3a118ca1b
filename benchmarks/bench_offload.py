#!/usr/bin/env python3
"""Concepts on a model that does not fit in VRAM: step time and bytes moved host->device, under ComfyUI's own
memory management.

One process per memory mode, set up as ComfyUI's main.py sets it up: `--mode dynamic` (comfy-aimdo's dynamic VRAM,
the default of ComfyUI 0.33 on NVIDIA) or `--mode classic` (--disable-dynamic-vram: partial loading, offloaded
modules cast on every call). The model's weights are made on the CPU (random bf16 at full size) and loaded by
comfy.model_management.load_models_gpu at the first sampling call, as a checkpoint would be. The GPU's usable
memory is capped by holding the rest of the card in one allocation made before ComfyUI measures it, so ComfyUI (and
comfy-aimdo) see a card of `--caps` GiB.

For each cap, interleaved in one process: plain sampling, generation mode with 8 concepts over every dual-stream
block (shared casts on: the pack), and the same with shared casts switched off (what the concept stream cost before
it shared the block's casts). Per variant: step time ((t(N steps) - t(M steps)) / (N - M), median of repeats),
bytes copied host->device per step (every Tensor.copy_ from host to device memory, the way ComfyUI and comfy-aimdo
move weights, counted the same way), peak VRAM beyond the cap holder, and whether the picture equals plain's.

GPU:  python3 benchmarks/bench_offload.py --model flux --mode classic --caps 12,16,24,full
CPU smoke test: python3 benchmarks/bench_offload.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="flux", help="flux (Flux.1-dev), qwen (Qwen-Image), hv15 (HunyuanVideo 1.5)")
    p.add_argument("--mode", default="dynamic", choices=("dynamic", "classic"))
    p.add_argument("--caps", default="12,16,24,full", help="usable GiB per run; 'full' = the whole card")
    p.add_argument("--resolution", default="", help="WxH (WxHxF for video); default: the bench's first")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--short-steps", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--concepts", type=int, default=8)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, "benchmarks", ".cache", "out"))
    p.add_argument("--budget-s", type=float, default=1e9, help="start no new cap after this many seconds")
    return p.parse_args()


ARGS = parse_args()
T0 = time.monotonic()


def log(*a):
    print(f"[offload {time.monotonic() - T0:7.1f}s]", *a, flush=True)


# ComfyUI's start-up as main.py does it, before torch touches the GPU.
sys.path.insert(0, os.path.join(REPO, "benchmarks", ".cache", "ComfyUI") if os.path.isdir(
    os.path.join(REPO, "benchmarks", ".cache", "ComfyUI")) else os.path.expanduser("~/ComfyUI"))
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing(False)
from comfy.cli_args import args as comfy_args  # noqa: E402
from comfy.cli_args import enables_dynamic_vram  # noqa: E402

if ARGS.tiny:
    comfy_args.cpu = True
if ARGS.mode == "classic":
    comfy_args.disable_dynamic_vram = True
import comfy_aimdo.control  # noqa: E402

if enables_dynamic_vram():
    try:
        comfy_aimdo.control.init(simple_vram_headroom=None, nvml_pressure=not comfy_args.disable_nvml_pressure)
    except TypeError:
        comfy_aimdo.control.init()
if not ARGS.tiny:
    import cuda_malloc  # noqa: E402,F401
import torch  # noqa: E402

CUDA = torch.cuda.is_available() and not ARGS.tiny
CAP_HOLDER = []


def hold_all_but(gib):
    """Keep all but `gib` GiB of the card in one allocation (none for 'full')."""
    CAP_HOLDER.clear()
    torch.cuda.empty_cache()
    if gib is None or not CUDA:
        return 0
    free, _ = torch.cuda.mem_get_info()
    hold = max(0, free - int(gib * 2**30))
    if hold:
        CAP_HOLDER.append(torch.empty(hold, dtype=torch.uint8, device="cuda"))
    return hold


import comfy.model_management  # noqa: E402
import comfy.model_patcher  # noqa: E402

if CUDA and ARGS.mode == "dynamic":
    # main.py: comfy-aimdo on every device, then the dynamic ModelPatcher.
    devices = comfy.model_management.get_all_torch_devices()
    try:
        ok = comfy_aimdo.control.init_devices((d.index, int(comfy_args.vram_headroom * 1024 ** 3)) for d in devices)
    except TypeError:
        ok = comfy_aimdo.control.init_devices(d.index for d in devices)
    if not ok:
        sys.exit("comfy-aimdo did not initialise: dynamic VRAM unavailable")
    comfy.model_patcher.CoreModelPatcher = comfy.model_patcher.ModelPatcherDynamic
    import comfy.memory_management  # noqa: E402

    comfy.memory_management.aimdo_enabled = True
    log("dynamic VRAM enabled")

sys.argv = [sys.argv[0]] + (["--tiny"] if ARGS.tiny else [])
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import bench_concept_attention as bench  # noqa: E402  (model configs, conditioning, concept sets)

from concept_attention.concept_patch.generation import install_concept_attention  # noqa: E402
from concept_attention.concept_patch.stream import shared_casts  # noqa: E402
from concept_attention.concept_patch.stream.options import SaliencyOptions  # noqa: E402

DEVICE = comfy.model_management.get_torch_device()
H2D = [0]
_copy = torch.Tensor.copy_


def counted_copy(dest, src, *a, **k):
    if dest.device.type != "cpu" and src.device.type == "cpu":
        H2D[0] += src.numel() * src.element_size()
    return _copy(dest, src, *a, **k)


torch.Tensor.copy_ = counted_copy


def build_on_cpu(family):
    """The model as a loader leaves it: weights in host memory, a ComfyUI ModelPatcher of the current kind."""
    tiny = ARGS.tiny
    if family == "flux":
        config = comfy.supported_models.Flux(bench.flux_config(tiny))
    else:
        config = bench.OTHER_CONFIGS[family](tiny)
    config.set_inference_dtype(bench.DTYPE, None)
    model = config.get_model({}, device=torch.device("cpu"))
    t = time.monotonic()
    bench.randomize_(model.diffusion_model)
    log(f"random weights on the CPU in {time.monotonic() - t:.0f} s")
    patcher = comfy.model_patcher.CoreModelPatcher(model, load_device=DEVICE, offload_device=torch.device("cpu"))
    dm = model.diffusion_model
    n_blocks = bench.detect_family(dm).block_counts(dm)[0]
    return patcher, n_blocks, sum(p.numel() * p.element_size() for p in dm.parameters())


def run(model, latent, pos, neg, cfg, steps):
    H2D[0] = 0
    seconds, out = bench.run_sample(model, latent, pos, neg, cfg, steps)
    return seconds, H2D[0], out


def measure(variants, latent, pos, neg, cfg):
    """Interleaved repeats of every variant: step time, bytes per step, peak VRAM, output of the long run."""
    n, m = ARGS.steps, ARGS.short_steps
    rows = {name: {"step": [], "bytes": [], "peak": 0} for name in variants}
    outputs = {}
    for model, switch in variants.values():  # warm-up: loads, learns the shared casts
        switch()
        run(model, latent, pos, neg, cfg, m)
    for _ in range(ARGS.repeats):
        for name, (model, switch) in variants.items():
            switch()
            if CUDA:
                torch.cuda.reset_peak_memory_stats()
            t_long, b_long, out = run(model, latent, pos, neg, cfg, n)
            t_short, b_short, _ = run(model, latent, pos, neg, cfg, m)
            rows[name]["step"].append((t_long - t_short) / (n - m))
            rows[name]["bytes"].append((b_long - b_short) / (n - m))
            if CUDA:
                held = sum(t.numel() for t in CAP_HOLDER)
                rows[name]["peak"] = max(rows[name]["peak"], torch.cuda.max_memory_allocated() - held)
            outputs[name] = out.cpu()
    return {name: {"step_ms": 1000 * statistics.median(r["step"]), "steps_ms": [1000 * s for s in r["step"]],
                   "h2d_gib_per_step": statistics.median(r["bytes"]) / 2**30, "peak_vram_gib": r["peak"] / 2**30,
                   "bit_identical_to_plain": bool(torch.equal(outputs[name], outputs["plain"]))}
            for name, r in rows.items()}


def main():
    family = ARGS.model
    os.makedirs(ARGS.out, exist_ok=True)
    patcher, n_blocks, weight_bytes = build_on_cpu(family)
    dim = bench.context_dim(patcher)
    res = ARGS.resolution or (bench.VIDEO_RESOLUTIONS.get(family) or "1024x1024")
    latent = bench.latent_for(res, ARGS.tiny, family)
    pos, neg = bench.conditioning(family, ARGS.tiny, 1), bench.conditioning(family, ARGS.tiny, 2)
    cfg = bench.CFG.get(family, 1.0)
    concepts = bench.concept_set(ARGS.concepts, dim, family=family)
    patched, _ = install_concept_attention(patcher, concepts, SaliencyOptions(layers=tuple(range(n_blocks))))
    original = shared_casts.shares_casts

    def sharing(on):
        def switch():
            shared_casts.shares_casts = original if on else (lambda module: False)
        return switch

    variants = {"plain": (patcher, sharing(True)), "concepts": (patched, sharing(True)),
                "concepts_unshared": (patched, sharing(False))}
    results = {"model": bench.NAMES.get(family, family), "mode": ARGS.mode, "resolution": res,
               "weights_gib": weight_bytes / 2**30, "concepts": ARGS.concepts, "blocks": n_blocks,
               "steps": [ARGS.steps, ARGS.short_steps], "repeats": ARGS.repeats,
               "device": torch.cuda.get_device_name() if CUDA else "cpu", "torch": torch.__version__, "caps": {}}
    path = os.path.join(ARGS.out, f"offload_{family}_{ARGS.mode}.json")
    for cap in ARGS.caps.split(","):
        if time.monotonic() - T0 > ARGS.budget_s:
            log("budget reached: stopping before cap", cap)
            break
        comfy.model_management.unload_all_models()
        comfy.model_management.soft_empty_cache()
        held = hold_all_but(None if cap == "full" else float(cap))
        log(f"cap {cap}: holding {held / 2**30:.1f} GiB")
        try:
            results["caps"][cap] = measure(variants, latent, pos, neg, cfg)
            results["caps"][cap]["loaded_gib"] = patcher.loaded_size() / 2**30
        except Exception as e:  # an out-of-memory at one cap must not lose the others
            results["caps"][cap] = {"error": f"{type(e).__name__}: {e}"}
        shared_casts.shares_casts = original
        log(cap, json.dumps(results["caps"][cap], indent=1))
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
    log("wrote", path)


if __name__ == "__main__":
    main()
