"""Where encode mode's time goes on the GPU (full-size Flux.1-dev, bf16, 1024²).

Separates the fixed cost of one encode call (installing the patch on a clone, the sampler
machinery, copying the maps back) from the per-block cost, and prints a profiler table.
Usage (device): python3 benchmarks/profile_encode.py --out $OUT
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:]]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_concept_attention as bench  # noqa: E402  (sets up ComfyUI and the pack)

import torch  # noqa: E402


def main():
    out_dir = Path(bench.ARGS.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, n_blocks, _ = bench.build_model("flux", bench.ARGS.tiny)
    ctx = model.model.diffusion_model.params.context_in_dim
    pos = bench.conditioning("flux", bench.ARGS.tiny, 0)
    latent = torch.randn(1, 16, *bench.latent_for("1024x1024", bench.ARGS.tiny).shape[-2:])
    concepts = bench.concept_set(8, ctx)
    from concept_attention.concept_patch.options import SaliencyOptions
    from concept_attention.concept_patch.session import install_concept_attention

    lines = []
    last = n_blocks - 1
    for layers in ([0], list(range(0, min(5, n_blocks))), list(range(max(0, last - 9), last + 1))):
        stop = bench.plain_forward_model(model, "flux", n_blocks, layers[-1])
        for _ in range(2):
            bench.time_encode(model, concepts, latent, layers, pos)
            bench.time_one_forward(stop, latent, pos)
        enc = sorted(bench.time_encode(model, concepts, latent, layers, pos)[0] for _ in range(5))[2]
        st = sorted(bench.time_one_forward(stop, latent, pos) for _ in range(5))[2]
        lines.append(f"layers {layers[0]}-{layers[-1]}: encode {enc*1e3:.1f} ms, stopped plain {st*1e3:.1f} ms, "
                     f"extra {(enc-st)*1e3:.1f} ms")
    t0 = time.perf_counter()
    for _ in range(20):
        install_concept_attention(model, concepts, SaliencyOptions(layers=(last,)), stop_early=True)
    lines.append(f"install_concept_attention: {(time.perf_counter()-t0)/20*1e3:.2f} ms")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        bench.time_encode(model, concepts, latent, list(range(max(0, last - 9), last + 1)), pos)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
    text = "\n".join(lines) + "\n\n" + table
    (out_dir / "profile_encode.txt").write_text(text)
    print(text[:6000])


if __name__ == "__main__":
    main()
