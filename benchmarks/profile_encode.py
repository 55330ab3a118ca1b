"""Where encode mode's time goes on the GPU (full-size Flux.1-dev, bf16, 1024²).

Separates the fixed cost of one encode call (installing the patch on a clone, the sampler
machinery, copying the maps back) from the per-block cost, and prints a profiler table.
Both baselines are timed with the same setup encode_saliency does (a guider, seeded noise).
Usage (device): python3 benchmarks/profile_encode.py --out $OUT [--models flux,sd3]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:]]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_concept_attention as bench  # noqa: E402  (sets up ComfyUI and the pack)
import torch  # noqa: E402


def time_other_encode(model, concepts, latent, layers, pos):
    """encode_saliency of the pack at --compare-with, timed like bench.time_encode."""
    other = bench.import_pack("concept_attention_other", str(Path(bench.ARGS.compare_with).resolve()))
    from concept_attention_other.concept_patch.encode import encode_saliency
    from concept_attention_other.concept_patch.stream.options import SaliencyOptions
    from concept_attention_other.concept_patch.text.concepts import ConceptSet

    del other
    theirs = ConceptSet(names=concepts.names, embeddings=concepts.embeddings, pooling="mean", encoder="random",
                        empty_prompt=None)
    bench.sync()
    t0 = time.perf_counter()
    encode_saliency(model, theirs, latent, SaliencyOptions(layers=tuple(layers)), conditioning=pos)
    bench.sync()
    return time.perf_counter() - t0


def main():
    out_dir = Path(bench.ARGS.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    from concept_attention.concept_patch.generation import install_concept_attention
    from concept_attention.concept_patch.stream.options import SaliencyOptions

    lines, table = [], ""
    for family in bench.ARGS.models.split(","):
        model, n_blocks, _ = bench.build_model(family, bench.ARGS.tiny)
        dm = model.model.diffusion_model
        ctx = dm.params.context_in_dim if family == "flux" else dm.context_embedder.in_features
        pos = bench.conditioning(family, bench.ARGS.tiny, 0)
        latent = torch.randn(1, 16, *bench.latent_for("1024x1024", bench.ARGS.tiny).shape[-2:])
        concepts = bench.concept_set(8, ctx)
        last = n_blocks - 1
        for layers in ([0], list(range(0, min(5, n_blocks))), list(range(max(0, last - 9), last + 1))):
            stop = bench.plain_forward_model(model, family, n_blocks, layers[-1])
            for _ in range(2):
                bench.time_encode(model, concepts, latent, layers, pos)
                bench.time_one_forward(stop, latent, pos)
            enc, st, other = [], [], []
            for _ in range(5):  # interleaved, medians
                enc.append(bench.time_encode(model, concepts, latent, layers, pos)[0])
                st.append(bench.time_one_forward(stop, latent, pos))
                if bench.ARGS.compare_with:
                    other.append(time_other_encode(model, concepts, latent, layers, pos))
            enc, st = sorted(enc)[2], sorted(st)[2]
            line = (f"{family} layers {layers[0]}-{layers[-1]}: encode {enc*1e3:.1f} ms, stopped plain {st*1e3:.1f} ms, "
                    f"extra {(enc-st)*1e3:.1f} ms ({100 * (enc - st) / st:+.1f} %)")
            if other:
                o = sorted(other)[2]
                line += f"; --compare-with code: encode {o*1e3:.1f} ms ({100 * (o - st) / st:+.1f} %)"
            lines.append(line)
            print(line, flush=True)
        t0 = time.perf_counter()
        for _ in range(20):
            install_concept_attention(model, concepts, SaliencyOptions(layers=(last,)), stop_early=True)
        lines.append(f"{family} install_concept_attention: {(time.perf_counter()-t0)/20*1e3:.2f} ms")
        with bench.count_syncs() as found:
            bench.time_encode(model, concepts, latent, list(range(max(0, last - 9), last + 1)), pos)
        lines.append(f"{family} syncs in one encode: {bench.summarize_syncs(found)}")
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as prof:
            bench.time_encode(model, concepts, latent, list(range(max(0, last - 9), last + 1)), pos)
        table += f"\n===== {family}: one encode, layers {max(0, last - 9)}-{last} =====\n"
        table += prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        del model, stop
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    text = "\n".join(lines) + "\n\n" + table
    (out_dir / "profile_encode.txt").write_text(text)
    print(text[:6000])


if __name__ == "__main__":
    main()
