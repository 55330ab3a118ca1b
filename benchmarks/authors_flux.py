#!/usr/bin/env python3
"""Step time of the authors' ConceptAttention Flux implementation vs their plain BFL Flux.

Reads a scratch copy of github.com/helblazer811/ConceptAttention (their ModifiedFluxDiT and the
BFL reference Flux it builds on) from benchmarks/.cache/authors (made by prepare_device.sh,
git-ignored: their code is never part of this repository). Builds Flux.1-dev at full size in
bf16 with random weights (same shapes and weight distribution as bench_concept_attention.py;
weights do not change speed) and times one denoising step (their `denoise` loop body: one model
call + the Euler update) at the given resolutions.

  python benchmarks/authors_flux.py --tiny          # CPU smoke test
  python benchmarks/authors_flux.py --out $OUT      # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUTHORS = os.path.join(REPO, "benchmarks", ".cache", "authors")

p = argparse.ArgumentParser()
p.add_argument("--tiny", action="store_true")
p.add_argument("--out", default=os.environ.get("OUT") or os.path.join(REPO, "benchmarks", ".cache", "out"))
p.add_argument("--resolutions", default="1024x1024,1536x1024")
p.add_argument("--concepts", default="4,8,32")
p.add_argument("--iters", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
ARGS = p.parse_args()

import torch  # noqa: E402

if not os.path.isdir(os.path.join(AUTHORS, "concept_attention")):
    sys.exit(f"no scratch copy of the authors' code at {AUTHORS}: run benchmarks/prepare_device.sh")
sys.path.insert(0, AUTHORS)
# Their concept_attention/utils.py pulls in sklearn for evaluation helpers; the Flux block only
# imports linear_normalization from it (unused in forward). Stub it instead of installing sklearn.
_utils = types.ModuleType("concept_attention.utils")
_utils.linear_normalization = lambda x, dim: (x - x.min(dim=dim, keepdim=True)[0]) / (
    x.max(dim=dim, keepdim=True)[0] - x.min(dim=dim, keepdim=True)[0])
sys.modules["concept_attention.utils"] = _utils

from concept_attention.flux.dit import FluxParams, ModifiedFluxDiT  # noqa: E402
from concept_attention.flux.flux.src.flux.model import Flux  # noqa: E402

CUDA = torch.cuda.is_available() and not ARGS.tiny
DEV = torch.device("cuda" if CUDA else "cpu")
DT = torch.bfloat16 if CUDA else torch.float32


def sync():
    if CUDA:
        torch.cuda.synchronize()


def params(tiny):
    if tiny:
        return FluxParams(in_channels=64, vec_in_dim=32, context_in_dim=64, hidden_size=64, mlp_ratio=4.0,
                          num_heads=2, depth=3, depth_single_blocks=2, axes_dim=[8, 12, 12], theta=10000,
                          qkv_bias=True, guidance_embed=True)
    # flux-dev in their flux/util.py configs
    return FluxParams(in_channels=64, vec_in_dim=768, context_in_dim=4096, hidden_size=3072, mlp_ratio=4.0,
                      num_heads=24, depth=19, depth_single_blocks=38, axes_dim=[16, 56, 56], theta=10000,
                      qkv_bias=True, guidance_embed=True)


@torch.no_grad()
def build(cls):
    old = torch.get_default_dtype()
    torch.set_default_dtype(DT)  # create the weights in bf16 directly (12B params)
    try:
        with torch.device(DEV):
            model = cls(params(ARGS.tiny)).eval()
    finally:
        torch.set_default_dtype(old)
    gen = torch.Generator(device=DEV).manual_seed(0)
    for name, t in model.named_parameters():
        t.normal_(1.0 if name.endswith("scale") else 0.0, 0.02, generator=gen)
    return model


def inputs(res, r):
    w, h = (int(v) for v in res.split("x"))
    if ARGS.tiny:
        w, h = w // 8, h // 8
    hh, ww = h // 16, w // 16  # 2x2-packed latent tokens
    pr = params(ARGS.tiny)
    txt_len = 16 if ARGS.tiny else 512
    g = torch.Generator(device=DEV).manual_seed(1)
    img_ids = torch.zeros(hh, ww, 3, device=DEV)
    img_ids[..., 1] += torch.arange(hh, device=DEV)[:, None]
    img_ids[..., 2] += torch.arange(ww, device=DEV)[None, :]
    d = {
        "img": torch.randn(1, hh * ww, pr.in_channels, device=DEV, dtype=DT, generator=g),
        "img_ids": img_ids.reshape(1, hh * ww, 3),
        "txt": torch.randn(1, txt_len, pr.context_in_dim, device=DEV, dtype=DT, generator=g),
        "txt_ids": torch.zeros(1, txt_len, 3, device=DEV),
        "y": torch.randn(1, pr.vec_in_dim, device=DEV, dtype=DT, generator=g),
        "timesteps": torch.full((1,), 0.7, device=DEV, dtype=DT),
        "guidance": torch.full((1,), 3.5, device=DEV, dtype=DT),
    }
    if r:
        d["concepts"] = torch.randn(1, r, pr.context_in_dim, device=DEV, dtype=DT, generator=g)
        d["concept_ids"] = torch.zeros(1, r, 3, device=DEV)
        d["concept_vec"] = torch.randn(1, pr.vec_in_dim, device=DEV, dtype=DT, generator=g)
    return d


@torch.inference_mode()
def time_steps(model, inp, **kw):
    """Their denoise loop body: pred = model(...); img = img + (t_prev - t_curr) * pred."""
    img = inp["img"]
    times = []
    for i in range(ARGS.warmup + ARGS.iters):
        sync()
        t0 = time.perf_counter()
        out = model(**{**inp, "img": img}, **kw)
        pred = out[0] if isinstance(out, tuple) else out
        img = img + (-0.02) * pred
        sync()
        if i >= ARGS.warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), [round(1e3 * t, 2) for t in times]


def peak_reset():
    if CUDA:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak():
    return round(torch.cuda.max_memory_allocated() / 2**20, 1) if CUDA else 0


def main():
    os.makedirs(ARGS.out, exist_ok=True)
    res_out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name() if CUDA else "cpu",
               "source": open(os.path.join(AUTHORS, "SOURCE_COMMIT")).read().strip()
               if os.path.exists(os.path.join(AUTHORS, "SOURCE_COMMIT")) else None, "results": {}}
    path = os.path.join(ARGS.out, "authors_tiny.json" if ARGS.tiny else "authors.json")
    rs = [int(r) for r in ARGS.concepts.split(",") if r]
    resolutions = ARGS.resolutions.split(",")

    # Their plain BFL Flux first.
    model = build(Flux)
    for res in resolutions:
        peak_reset()
        ms, all_ms = time_steps(model, inputs(res, 0))
        res_out["results"][f"{res} bfl_plain"] = {"step_ms": round(ms, 2), "all": all_ms, "peak_mib": peak()}
        print("authors", res, "bfl_plain", round(ms, 2), flush=True)
    del model
    if CUDA:
        torch.cuda.empty_cache()

    model = build(ModifiedFluxDiT)
    for res in resolutions:
        variants = [(r, True) for r in rs] + [(8, False)]
        if res != resolutions[0]:
            variants = [(8, True), (8, False)]
        for r, cache in variants:
            peak_reset()
            # Their defaults: layer_indices=None (every double block), cache_vectors=True (copies
            # the concept and image vectors of every layer to the CPU); concept_scores always go to the CPU.
            ms, all_ms = time_steps(model, inputs(res, r), cache_vectors=cache, layer_indices=None)
            key = f"{res} authors_r{r}" + ("" if cache else "_nocache")
            res_out["results"][key] = {"step_ms": round(ms, 2), "all": all_ms, "peak_mib": peak(),
                                       "cache_vectors": cache}
            print("authors", key, round(ms, 2), flush=True)
        with open(path, "w") as f:
            json.dump(res_out, f, indent=1)
    for key, v in res_out["results"].items():
        res = key.split()[0]
        base = res_out["results"].get(f"{res} bfl_plain")
        if base and key != f"{res} bfl_plain":
            v["overhead_vs_bfl_plain_pct"] = round(100 * (v["step_ms"] / base["step_ms"] - 1), 1)
    with open(path, "w") as f:
        json.dump(res_out, f, indent=1)
    print(json.dumps(res_out, indent=1))


if __name__ == "__main__":
    main()
