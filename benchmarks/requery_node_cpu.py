"""End-to-end time of the Concept Saliency node on the CPU with tiny random-weight models: a first run (VAE
encode + model) against re-queries of the same picture with other concepts (issue 25, item 3).

    $PY benchmarks/requery_node_cpu.py [picture size, default 256] [repeats, default 5]

Uses the test tier's tiny Flux.1 (tests/comfy/tiny) and ComfyUI in CPU mode, as tests/conftest.py sets them up.
Times are node.execute() wall clock (what the node shows), preview rendering included; medians of the repeats.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import conftest  # noqa: E402,F401  (registers concept_attention and concept_attention_tests; ComfyUI on the CPU)


def main(size: int = 256, repeats: int = 5) -> None:
    import torch

    from concept_attention.concept_patch.requery import cache as requery_cache
    from concept_attention.nodes.concept_list import ConceptList
    from concept_attention.nodes.concept_saliency import ConceptSaliency
    from concept_attention_tests.comfy.tiny import tiny_models

    torch.set_num_threads(2)
    model, clip, vae = tiny_models.flux_model(seed=0), tiny_models.flux_clip(seed=1), tiny_models.vae(seed=3)
    lists = [ConceptList.execute(clip=clip, concepts=text, pooling="mean").result[0]
             for text in ("cat, dog, sky", "cat, tree", "house, hill, sun, sky")]

    def run(concepts, image, cache_mb=-1):
        started = time.perf_counter()
        out = ConceptSaliency.execute(model=model, concepts=concepts, layers="all", noise_level=0.5, samples=1,
                                      seed=0, space="output", softmax=True, image=image, vae=vae,
                                      requery_cache_mb=cache_mb)
        return time.perf_counter() - started, out.result[0].metadata["requery"]

    run(lists[0], torch.rand(1, size, size, 3))  # warm-up (first calls allocate)
    first, requery, uncached = [], [], []
    for k in range(repeats):
        requery_cache.CACHE.clear()
        image = torch.rand(1, size, size, 3, generator=torch.Generator().manual_seed(k))
        t, was = run(lists[0], image)
        assert not was
        first.append(t)
        for concepts in lists[1:]:
            t, was = run(concepts, image)
            assert was
            requery.append(t)
        uncached.append(run(lists[1], image, cache_mb=0)[0])
    med = statistics.median
    print(f"picture {size}x{size}, tiny Flux.1 ({sum(p.numel() for p in model.model.parameters()) / 1e6:.1f} M "
          f"parameters), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"first run (VAE + model):        {med(first) * 1000:8.1f} ms")
    print(f"re-query (concepts only):       {med(requery) * 1000:8.1f} ms")
    print(f"same concepts, cache off:       {med(uncached) * 1000:8.1f} ms")
    print(f"re-query / first run:           {med(requery) / med(first):8.2f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
