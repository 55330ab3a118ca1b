"""The paper's ablations in miniature, on the shapes model and held-out pictures of the synthetic world.

Each row changes one thing from the default (output space, softmax, every block, noise 0.5, encode mode): the space
(Table 3's output / cross-attention / value), softmax off, which blocks (early, late, one block, the
single-stream blocks), the noise
level (Figure 8), and generation mode (maps recorded while the sampler denoises the noised picture). The mask
oracle's row (maps made from the true masks on the model's token grid) is the best any method can score there.

    python -m quality.ablations --model quality/weights/shapes_radiance.safetensors --count 200 --out results.json

Prints a Markdown table (benchmarks/RESULTS.md records it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HELD_OUT_SEED = 3  # the training set is seed 1, the sample sheet's captions seed 2


def rows(depth: int, single_depth: int) -> list[tuple[str, dict]]:
    """(label, Setting fields) per row: the default, then one change each."""
    last_double = depth - 1
    return [
        ("default: output space, softmax, every double block, t = 0.5", {}),
        ("cross-attention space", {"space": "cross_attention"}),
        ("value space", {"space": "value"}),
        ("softmax off", {"softmax": False}),
        (f"first half of the double blocks (0-{max(0, depth // 2 - 1)})", {"layers": f"0-{max(0, depth // 2 - 1)}"}),
        (f"last double block only ({last_double})", {"layers": f"{last_double}"}),
        (f"double and single blocks ({depth} + {single_depth})", {"layers": f"all, single last {single_depth}"}),
        (f"single blocks only ({single_depth})", {"layers": f"single last {single_depth}"}),
        ("noise t = 0.25", {"noise_level": 0.25}),
        ("noise t = 0.75", {"noise_level": 0.75}),
        ("noise t = 0.9", {"noise_level": 0.9}),
        ("generation mode (8 steps from t = 0.5)", {"mode": "generation"}),
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m quality.ablations", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="the shapes model file")
    p.add_argument("--count", type=int, default=200, help="held-out pictures (seed 3)")
    p.add_argument("--only", nargs="*", help="row numbers to run (0 = default)")
    p.add_argument("--out", help="write the report (per-picture records included) here as JSON")
    args = p.parse_args(argv)

    from .comfy_setup import setup_comfyui

    setup_comfyui(cpu=True)
    from . import evaluate, shapes_model, synthetic_world

    model, clip, metadata = shapes_model.load_shapes_model(args.model)
    config = json.loads(metadata["dit_config"])
    size = int(metadata.get("size", 32))
    dataset = synthetic_world.make_dataset(HELD_OUT_SEED, args.count, size=size)
    table = rows(config["depth"], config["depth_single_blocks"])
    chosen = [table[int(i)] for i in args.only] if args.only else table
    settings = [evaluate.Setting(**fields) for _, fields in chosen]
    start = time.time()
    report = evaluate.evaluate(model, clip, None, dataset, settings, cache_budget=None)
    grid = (size // config["patch_size"],) * 2
    oracle = evaluate.evaluate(None, None, None, dataset, map_source=evaluate.mask_oracle(grid))
    report["results"].append({**oracle["results"][0], "label": f"mask oracle on the {grid[0]}x{grid[1]} grid"})
    for (label, _), result in zip(chosen, report["results"]):
        result["label"] = label
    report["model"] = {"file": args.model, "training": json.loads(metadata.get("training", "{}"))}
    report["pictures"] = {"seed": HELD_OUT_SEED, "count": args.count, "size": size}
    report["seconds"] = round(time.time() - start, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(evaluate.summary_table(report))


if __name__ == "__main__":
    main()
