"""On the GPU: the picture is bit-identical with ConceptAttention on, for full-size Flux.1-dev and SD3.5-large
(bf16, 1024², cfg as in the benchmark; --models flux2dev,klein9b for Flux.2-dev / Flux.2-Klein-9B), and no
host-device sync happens inside the model calls.

Usage (device): python3 benchmarks/check_exact_gpu.py --out $OUT [--models flux,sd3]
Layers: every dual-stream block (on Flux.2 that is also the node's default, "last 10").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_concept_attention as bench  # noqa: E402  (sets up ComfyUI and the pack)
import torch  # noqa: E402


def sync_free_forward(patched, latent, pos):
    """Count syncs inside the model call of a 1-step sample (ComfyUI's own loop syncs are outside)."""
    import comfy.patcher_extension

    found = []

    def watch(executor, *args, **kwargs):
        with bench.count_syncs() as syncs:
            out = executor(*args, **kwargs)
        found.extend(syncs)
        return out

    m = patched.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, "sync_watch", watch)
    bench.run_sample(m, latent, pos, pos, 1.0, 2)
    return bench.summarize_syncs(found)


def main():
    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    out_dir = Path(bench.ARGS.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {}
    r = 8
    for family in bench.ARGS.models.split(","):
        cfg = bench.CFG.get(family, 1.0)
        model, n_blocks, params = bench.build_model(family, bench.ARGS.tiny)
        dm = model.model.diffusion_model
        ctx = bench.context_dim(model)
        pos, neg = bench.conditioning(family, bench.ARGS.tiny, 1), bench.conditioning(family, bench.ARGS.tiny, 2)
        latent = bench.latent_for(bench.ARGS.resolutions.split(",")[0], bench.ARGS.tiny, family)
        patched, session = install_concept_attention(model, bench.concept_set(r, ctx, family=family),
                                                     SaliencyOptions(layers=tuple(range(n_blocks))))
        # The very first sampling run of a process can differ from every later one (first-call kernel
        # selection): warm up once, then compare runs that follow each other.
        _, first = bench.run_sample(model, latent, pos, neg, cfg, 4)
        _, plain = bench.run_sample(model, latent, pos, neg, cfg, 4)
        _, ours = bench.run_sample(patched, latent, pos, neg, cfg, 4)
        _, plain_again = bench.run_sample(model, latent, pos, neg, cfg, 4)
        _, ours_again = bench.run_sample(patched, latent, pos, neg, cfg, 4)
        maps = session.records[-1].saliency.maps
        syncs = sync_free_forward(patched, latent, pos)
        report[family] = {
            "params": params, "dual_stream_blocks": n_blocks, "cfg": cfg, "concepts": r,
            "latent": list(latent.shape),
            "single_stream_blocks": len(getattr(dm, "single_blocks", getattr(dm, "single_stream_blocks", []))),
            "bit_identical": bool(torch.equal(plain, ours)),
            # Same bits also where a value is NaN (torch.equal treats NaN as unequal to itself).
            "bitwise_identical": bool(torch.equal(plain.contiguous().view(torch.int32),
                                                  ours.contiguous().view(torch.int32))) if plain.dtype == torch.float32 else None,
            "output_dtype": str(plain.dtype),
            "plain_repeatable": bool(torch.equal(plain, plain_again)),
            "patched_repeatable": bool(torch.equal(ours, ours_again)),
            "patched_vs_plain_max_abs_diff": float((plain - ours).abs().max()),
            "plain_vs_plain_max_abs_diff": float((plain - plain_again).abs().max()),
            "first_run_equals_later_plain": bool(torch.equal(first, plain)),
            "finite": bool(torch.isfinite(plain).all()),
            "maps_shape": list(maps.shape),
            "maps_sum_to_one": bool(torch.allclose(maps.sum(1), torch.ones_like(maps[:, 0]), atol=1e-4)),
            "syncs_inside_model_calls": syncs,
        }
        print(family, json.dumps(report[family]), flush=True)
        for m in (model, patched):
            m.offload_device = bench.DEVICE  # unloading must not copy the weights to the CPU
        import comfy.model_management
        comfy.model_management.unload_all_models()
        del model, patched, session, dm
        import gc
        gc.collect()
        if bench.CUDA:
            torch.cuda.empty_cache()
    (out_dir / "check_exact_gpu.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
