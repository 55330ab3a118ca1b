#!/usr/bin/env python3
"""Markdown tables from the JSON files the GPU runs write (results*.json, authors.json, micro.json).

  python benchmarks/report.py benchmarks/results/h200-2026-11-28/*.json
"""

from __future__ import annotations

import json
import sys

NAMES = {"flux": "Flux.1-dev", "sd3": "SD3.5-large", "flux2dev": "Flux.2-dev", "klein9b": "Flux.2-Klein-9B",
         "qwen": "Qwen-Image", "hidream": "HiDream-I1"}


def variant_label(name):
    if name == "plain":
        return "plain ComfyUI"
    if name.endswith("_cand"):
        return "8 concepts, all blocks, candidate rewrites"
    if name.endswith("_no_update"):
        return "diagnostic: 8 concepts, no concept update (no proj/MLP; wrong maps)"
    if name.endswith("_no_attention"):
        return "diagnostic: 8 concepts, no concept attention or map (wrong maps)"
    if name.endswith("_other"):
        return "8 concepts, all blocks, the --compare-with code"
    if name.endswith("_last10"):
        return "8 concepts, last 10 blocks"
    return f"{name.split('_r')[1]} concepts, all blocks"


def pc(v, fmt="{:+.2f}%"):
    return "-" if v is None else fmt.format(v)


def entries(results, prefix):
    """(family, key without the prefix, entry) of every result whose key starts with `prefix`."""
    for fam, m in results["models"].items():
        for key, entry in m.items():
            if key.startswith(prefix):
                yield fam, key[len(prefix):], entry


def table(title, header, align, rows):
    return "\n".join([f"#### {title}", "", header, align, *rows])


GEN_HEADER = ("| model | image (latent) | mode | ms/step (median) | per-repeat ms/step | step overhead | peak VRAM MiB | "
              "peak overhead | activation peak MiB | activation overhead |", "|---|---|---|---:|---|---:|---:|---:|---:|---:|")
ENCODE_HEADER = ("| model | layers (stop after) | encode ms (median) | all | plain forward stopped after same block ms | "
                 "encode vs stopped | full forward ms | encode vs full |", "|---|---|---:|---|---:|---:|---:|---:|")


def gen_row(results, fam, res, g, name, v):
    lat = "x".join(str(x) for x in g["latent"][-2:])
    return (f"| {NAMES.get(fam, fam)} (cfg {results['models'][fam]['cfg']}) | {res} ({lat}) | {variant_label(name)} | "
            f"{v['step_ms_median']:.1f} | {', '.join(f'{x:.1f}' for x in v['step_ms_all'])} | "
            f"{pc(v['step_overhead_pct'])} | {v['peak_mib']:.0f} | {pc(v['peak_overhead_pct'])} | "
            f"{v['activation_peak_mib']:.0f} | {pc(v['activation_peak_overhead_pct'], '{:+.1f}%')} |")


def encode_row(results, fam, res, e, label, c):
    return (f"| {NAMES.get(fam, fam)} | {label} | {c['encode_ms']:.1f} | "
            f"{', '.join(f'{x:.0f}' for x in c['encode_ms_all'])} | {c['plain_stopped_ms']:.1f} | "
            f"{c['encode_vs_stopped_pct']:+.1f}% | {e['full_forward_ms']:.1f} | {c['encode_vs_full_pct']:+.1f}% |")


def result_table(results, title, prefix, part, header, row):
    """One row per (family, result with this key prefix, entry of its `part`)."""
    rows = [row(results, fam, res, entry, name, item) for fam, res, entry in entries(results, prefix)
            for name, item in entry[part].items()]
    return table(title, *header, rows)


def gen_table(results, title):
    return result_table(results, title, "gen_", "variants", GEN_HEADER, gen_row)


def encode_table(results, title):
    return result_table(results, title, "encode_", "choices", ENCODE_HEADER, encode_row)


def sync_table(results):
    lines = ["| model | run | syncs total | in our code | our locations |", "|---|---|---:|---:|---|"]
    for fam, m in results["models"].items():
        for run, s in m.get("syncs", {}).items():
            ours = {k: v for k, v in s["by_location"].items() if k.startswith(("concept_patch", "nodes"))}
            lines.append(f"| {NAMES.get(fam, fam)} | {run} | {s['total']} | {s['ours']} | "
                         f"{', '.join(f'{k} ×{v}' for k, v in ours.items()) or '-'} |")
    return "\n".join(lines)


def micro_table(micro):
    lines = ["| op (one dual-stream block, 8 concepts, 1024x1024) | Flux GPU ms | Flux eager ms | SD3.5 GPU ms "
             "| SD3.5 eager ms |",
             "|---|---:|---:|---:|---:|"]
    fl, sd = micro["micro"].get("flux", {}), micro["micro"].get("sd3", {})
    keys = list(fl.get("per_block_ms", {}))
    for k in sd.get("per_block_ms", {}):
        if k not in keys:
            keys.append(k)
    for k in keys:
        a, b = fl.get("per_block_ms", {}).get(k, {}), sd.get("per_block_ms", {}).get(k, {})
        f = lambda d, x: f"{d[x]:.4f}" if x in d else "-"  # noqa: E731
        lines.append(f"| {k.strip()} | {f(a, 'graph_ms')} | {f(a, 'eager_ms')} | {f(b, 'graph_ms')} | {f(b, 'eager_ms')} |")
    return "\n".join(lines)


def authors_table(a, comfy_plain=None):
    lines = ["| image | implementation | ms/step (median of 5) | vs their plain BFL Flux | peak VRAM MiB |",
             "|---|---|---:|---:|---:|"]
    for key, v in a["results"].items():
        res, impl = key.split(" ", 1)
        lines.append(f"| {res} | {impl} | {v['step_ms']:.1f} | "
                     f"{pc(v.get('overhead_vs_bfl_plain_pct'), '{:+.1f}%')} | "
                     f"{v['peak_mib']:.0f} |")
    return "\n".join(lines)


def main(paths):
    for p in paths:
        d = json.load(open(p))
        print(f"<!-- {p} -->")
        if "micro" in d:
            print(micro_table(d))
        elif "models" in d:
            env = d["env"]
            print(f"{env.get('gpu')} · torch {env['torch']} · CUDA {env.get('cuda')} · ComfyUI {env.get('comfyui_version')} · "
                  f"{env['date']} · allocator {env.get('PYTORCH_CUDA_ALLOC_CONF') or 'native'}\n")
            print(gen_table(d, "Generation: time per sampling step and peak VRAM"))
            if any(k.startswith("encode_") for m in d["models"].values() for k in m):
                print()
                print(encode_table(d, "Encode mode (8 concepts)"))
            if any("syncs" in m for m in d["models"].values()):
                print()
                print(sync_table(d))
        elif "results" in d:
            print(authors_table(d))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
