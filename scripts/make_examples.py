"""Regenerates example_workflows/*.json + their .jpg thumbnails and the README images in
docs/images/, all from the real ComfyUI UI in headless Chromium.

    ~/.cache/comfyui-concept-attention/venv/bin/python scripts/make_examples.py [--only-examples]
        [--example NAME ...] [--docs nodes|run|templates ...]
                                    (only these examples / docs pictures, e.g. a new example and the
                                    template browser, leaving the other files as they are)

Starts its own ComfyUI server (this pack + the tiny-model fixture nodes), builds each example
graph of scripts/examples/specs.py with the UI's node classes and saves what `app.graph.serialize()` gives
(the format ComfyUI saves) as example_workflows/<file>.json. Its thumbnail is a run's result: the
saved workflow runs on tiny random-weight stand-ins for its loaders (tests/browser/example_runs.py) and the
picture, the regions, a concept's map and the mask make the card, captioned as coming from a
random-weight model. The README's run pictures come from the stock loaders (Load Diffusion Model,
Load CLIP, Load VAE) reading random-weight files written here: the test suite's tiny SD3, a random
CLIP-L and a random SD3 VAE. Their maps are noise too: they show the UI, not map quality.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
import conftest  # noqa: E402,F401  (registers concept_attention_tests.* and finds ComfyUI)

# The browser session registers scripts/examples/ as concept_attention_examples: imported first.
importlib.import_module("concept_attention_tests.browser.browser_session")
from concept_attention_examples import thumbnails  # noqa: E402
from concept_attention_examples.parts import mask_links, node, opening_view, saliency_links  # noqa: E402  (registered by browser_session)
from concept_attention_examples.specs import EXAMPLES, file_stem  # noqa: E402

from concept_attention_tests.browser import example_runs  # noqa: E402
from concept_attention_tests.browser.browser_session import (  # noqa: E402
    EXAMPLE_WORKFLOWS_DIR,
    FIXTURE_NODES_DIR,
    REPO_ROOT,
    build_graph,
    launch_chromium,
    open_comfy,
)
from concept_attention_tests.server.comfy_server import start_comfy_server  # noqa: E402

DOCS_IMAGES = REPO_ROOT / "docs" / "images"
DEMO_IMAGE = "concept_demo.png"


def _png(png_bytes: bytes, path: Path, max_width: int = 1400) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, "PNG", optimize=True)


def _screenshot(comfy, clip=None) -> bytes:
    comfy.evaluate("(hide) => { const o = document.querySelector('#graph-canvas-container > div.pointer-events-none');"
                   " if (o) o.style.display = hide ? 'none' : ''; }", True)
    try:
        # No model files here, so the loaders carry "missing model" error outlines; not in pictures.
        comfy.evaluate("() => { app.canvas.show_info = false; for (const n of app.graph.nodes) n.has_errors = false;"
                       " app.canvas.setDirty(true, true); app.canvas.draw(true, true); }")
        comfy.page.wait_for_timeout(300)
        return comfy.page.screenshot(clip=clip)
    finally:
        comfy.evaluate("(hide) => { const o = document.querySelector('#graph-canvas-container > div.pointer-events-none');"
                       " if (o) o.style.display = hide ? 'none' : ''; }", False)


def _node_clip(comfy, ids, padding=16):
    from concept_attention_tests.browser.browser_session import NODE_BOUNDS_JS, _pad

    return _pad(comfy.evaluate(NODE_BOUNDS_JS, [str(i) for i in ids]), padding)


def make_examples(comfy, server, only=None) -> None:
    EXAMPLE_WORKFLOWS_DIR.mkdir(exist_ok=True)
    unknown = set(only or ()) - {spec["name"] for spec in EXAMPLES}
    if unknown:
        raise SystemExit(f"no example named {sorted(unknown)}; there are {[s['name'] for s in EXAMPLES]}")
    degenerate = {}
    for spec in EXAMPLES:
        if only and spec["name"] not in only:
            continue
        ids = build_graph(comfy, spec)
        prompt = comfy.evaluate("async () => (await app.graphToPrompt()).output")
        assert any(n["class_type"].startswith("ConceptAttention") for n in prompt.values()), spec["name"]
        workflow = comfy.evaluate("() => app.graph.serialize()")
        # The columns are laid out from the spec's sizes: a node the front end made larger would overlap the next.
        sizes = {str(n["id"]): n["size"] for n in workflow["nodes"]}
        grown = [(n["key"], n["size"], sizes[str(ids[n["key"]])]) for n in spec["nodes"]
                 if n.get("size") and list(sizes[str(ids[n["key"]])]) != list(n["size"])]
        if grown:
            raise SystemExit(f"{spec['name']}: nodes larger than their spec's size (key, spec, real): {grown}")
        workflow.setdefault("extra", {})["info"] = {"title": spec["title"]}
        # Opened as a file, the workflow shows all of it, readable (the template browser fits the view itself;
        # parts.columns keeps that readable too).
        workflow["extra"]["ds"] = opening_view(workflow["nodes"])
        stem = file_stem(spec)
        path = EXAMPLE_WORKFLOWS_DIR / f"{stem}.json"
        path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
        if stem != spec["name"]:  # the file's earlier name
            for old in (EXAMPLE_WORKFLOWS_DIR / f"{spec['name']}.json", EXAMPLE_WORKFLOWS_DIR / f"{spec['name']}.jpg"):
                old.unlink(missing_ok=True)
        thumbnail, problems = result_thumbnail(comfy, server, spec, ids, workflow)
        if problems:  # the old thumbnail stays; the run fails at the end
            degenerate[spec["name"]] = problems
            thumbnail.save(Path(tempfile.gettempdir()) / f"{stem} (degenerate).jpg", "JPEG", quality=88)
            print(f"wrote {path.relative_to(REPO_ROOT)}; its thumbnail is degenerate: {problems}")
            continue
        thumbnail.save(EXAMPLE_WORKFLOWS_DIR / f"{stem}.jpg", "JPEG", quality=88, optimize=True)
        print(f"wrote {path.relative_to(REPO_ROOT)} and its thumbnail")
    if degenerate:
        raise SystemExit("degenerate thumbnails (one concept's colour over the whole picture, an empty mask), not "
                         f"written: {degenerate}; choose other tiny-model seeds in the spec's `tiny`")


def _fetch(server, entry: dict) -> bytes:
    query = urllib.parse.urlencode({"filename": entry["filename"], "subfolder": entry.get("subfolder", ""),
                                    "type": entry.get("type", "output")})
    with urllib.request.urlopen(f"{server.base_url}/view?{query}", timeout=60) as response:
        return response.read()


def _open_picture(source):
    """A picture file (path or bytes) as an RGB PIL image."""
    from PIL import Image

    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source).convert("RGB")


def _first_frame(video):
    """The first frame of a video file (path or bytes) as an RGB PIL image."""
    import av

    with av.open(io.BytesIO(video) if isinstance(video, bytes) else str(video)) as container:
        for frame in container.decode(video=0):
            return frame.to_image().convert("RGB")
    raise AssertionError("a video without frames")


def _node_picture(server, spec: dict, ids: dict, outputs: dict, key: str):
    """What node `key` gives after the run, as one picture: a Load Image's file, a Load Video's first frame,
    a Save Image's or Preview Mask's first picture, a Save Video's first frame."""
    spec_node = next(n for n in spec["nodes"] if n["key"] == key)
    if spec_node["type"] == "LoadImage":
        return _open_picture(server.base_dir / "input" / spec_node["values"]["image"])
    if spec_node["type"] == "LoadVideo":
        return _first_frame(server.base_dir / "input" / spec_node["values"]["file"])
    entry = outputs[str(ids[key])]["images"][0]
    if spec_node["type"] == "SaveVideo":
        return _first_frame(_fetch(server, entry))
    return _open_picture(_fetch(server, entry))


PICTURE_LABELS = {"LoadImage": "picture", "LoadVideo": "the clip, first frame", "SaveImage": "generated picture",
                  "SaveVideo": "generated clip, first frame"}


def result_thumbnail(comfy, server, spec: dict, ids: dict, workflow: dict):
    """The template card's picture: what a run of the example gives (its picture, the regions in the
    legend's colours, the map of the concept it works on, its mask), from the tiny random-weight
    models, and saying so (scripts/examples/thumbnails.py); with what is degenerate on it (one concept's colour
    over the whole picture, an empty mask): such a card is not written (choose other seeds in the spec's `tiny`)."""
    swapped = example_runs.load_with_tiny_models(comfy, workflow, spec.get("tiny"))
    assert swapped, spec["name"]
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", (spec["name"], result)
    example_runs.wait_for_previews(comfy, result)
    outputs = comfy.evaluate("() => app.nodeOutputs")
    parts = thumbnails.thumbnail_parts(spec)
    types = {n["key"]: n["type"] for n in spec["nodes"]}
    tiles = [(PICTURE_LABELS[types[parts["picture"]]], _node_picture(server, spec, ids, outputs, parts["picture"]))]
    saliency = outputs[str(ids[parts["saliency"]])]
    names = [e["name"] for e in saliency["concept_legend"]]
    panels = saliency["images"]
    tiles.append(("regions", _open_picture(_fetch(server, panels[0]))))  # in the legend's colours
    concept = parts.get("concept") or names[0]
    tiles.append((f"map: {concept}", _open_picture(_fetch(server, panels[1 + names.index(concept)]))))
    if parts.get("mask"):
        label = "mask video, first frame" if types[parts["mask"]] == "SaveVideo" else f"mask: {concept}"
        tiles.append((label, _node_picture(server, spec, ids, outputs, parts["mask"])))
    else:
        other = next(n for n in names if n != concept)
        tiles.append((f"map: {other}", _open_picture(_fetch(server, panels[1 + names.index(other)]))))
    card = thumbnails.compose(tiles)
    return card, thumbnails.card_problems(card, thumbnails.tile_kinds(parts, spec.get("flat_tiny_maps")))


def set_zoom(comfy, scale: float, offset=(40, 60)) -> None:
    comfy.evaluate("([s, x, y]) => { app.canvas.ds.scale = s; app.canvas.ds.offset = [x, y];"
                   " app.canvas.setDirty(true, true); }", [scale, offset[0], offset[1]])
    comfy.page.wait_for_timeout(200)


DOCS_PARTS = ("nodes", "run", "templates")


def make_docs_images(comfy, parts=DOCS_PARTS) -> None:
    """parts: "nodes" (nodes.png), "run" (the legend, mask and encode-run pictures), "templates"."""
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    written = []
    if "nodes" in parts:
        written += _docs_nodes(comfy)
    if "run" in parts:
        written += _docs_run(comfy)
    if "templates" in parts:
        written += _docs_templates(comfy)
    for path in written:
        print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size // 1024} KB)")


def _docs_nodes(comfy) -> list[Path]:
    """The pack's nodes."""
    node_types = ["ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionPatchModel",
                  "ConceptAttentionSamplingSaliency", "ConceptAttentionSaliencyToMask",
                  "ConceptAttentionSaveSaliency", "ConceptAttentionLoadSaliency"]
    positions = [[0, 0], [330, 0], [700, 0], [1060, 0], [1060, 330], [0, 260], [0, 420]]
    ids = build_graph(comfy, {"nodes": [{"key": t, "type": t, "pos": p} for t, p in zip(node_types, positions)],
                              "links": []})
    set_zoom(comfy, 1.0, (30, 60))
    _png(_screenshot(comfy, _node_clip(comfy, ids.values())), DOCS_IMAGES / "nodes.png")
    return [DOCS_IMAGES / "nodes.png"]


RANDOM_VAE_FILE = "random_sd3_vae_concept_attention.safetensors"


def write_random_sd3_vae(path: Path, seed: int = 4) -> Path:
    """A random-weight VAE file the stock VAELoader reads as an SD3 VAE (16 latent channels). ComfyUI
    builds the encoder at full width whatever the file holds; the decoder takes its width from the file,
    so it is made small."""
    import torch
    from comfy.ldm.models.autoencoder import AutoencodingEngine
    from safetensors.torch import save_file

    encoder = {"double_z": True, "z_channels": 16, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    decoder = {**encoder, "ch": 32}
    model = AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": encoder},
        decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": decoder})
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in sorted(model.state_dict().items()):
        values = torch.randn(tensor.shape, generator=gen) * 0.05
        if name.endswith("norm.weight") or ".norm" in name and name.endswith(".weight"):
            values = 1.0 + values
        state[name] = values.to(torch.float16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def install_stock_loader_models(base_dir: Path) -> None:
    """Random-weight model files for the stock loaders of the README's run pictures: the test suite's
    tiny SD3 (Load Diffusion Model), a random CLIP-L (Load CLIP, type sd3) and a random SD3 VAE (Load VAE)."""
    from concept_attention_tests.server import model_files

    models = base_dir / "models"
    model_files.write_tiny_sd3(models / "diffusion_models" / model_files.SD3_FILE)
    model_files.write_random_clip_l(models / "text_encoders" / model_files.CLIP_L_FILE)
    write_random_sd3_vae(models / "vae" / RANDOM_VAE_FILE)


def stock_encode_graph(concepts=("house", "sun", "hill", "sky")) -> dict:
    """Load Diffusion Model + Load CLIP + Load VAE (the stock loaders, on random-weight files) -> Concept
    List -> Concept Saliency -> Saliency to Mask -> Preview Mask, on the demo picture."""
    from concept_attention_tests.server import model_files

    return {
        "nodes": [
            node("unet", "UNETLoader", [0, 0], [330, 82], unet_name=model_files.SD3_FILE, weight_dtype="default"),
            node("clip", "CLIPLoader", [0, 130], [330, 106], clip_name=model_files.CLIP_L_FILE, type="sd3"),
            node("vae", "VAELoader", [0, 290], [330, 58], vae_name=RANDOM_VAE_FILE),
            node("image", "LoadImage", [0, 400], [330, 380], image=DEMO_IMAGE),
            node("concepts", "ConceptAttentionConceptList", [380, 0], [300, 150], concepts=", ".join(concepts)),
            node("saliency", "ConceptAttentionSaliency", [730, 0], [360, 780], layers="all", noise_level=0.5, seed=0),
            node("mask", "ConceptAttentionSaliencyToMask", [1140, 0], [330, 330], concepts=concepts[0], method="mean"),
            node("mask_preview", "MaskPreview", [1140, 390], [330, 390]),
        ],
        "links": [("clip", "CLIP", "concepts", "clip"), *saliency_links(), *mask_links()],
    }


def _docs_run(comfy) -> list[Path]:
    """A run with the stock loaders: the whole graph (the README's first picture), the legend with all
    panels and with one concept clicked, and the concept buttons of Saliency to Mask."""
    ids = build_graph(comfy, stock_encode_graph())
    set_zoom(comfy, 1.0, (30, 60))
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    comfy.page.wait_for_function(
        "(id) => (app.graph.getNodeById(id)?.__conceptAttention?.legend.length ?? 0) > 0",
        arg=ids["saliency"], timeout=120_000)
    comfy.page.wait_for_function(
        "(id) => { const n = app.graph.getNodeById(id); return n.imgs?.length === 5 && n.imgs.every(i => i.complete); }",
        arg=ids["saliency"], timeout=60_000)
    _png(_screenshot(comfy, _node_clip(comfy, ids.values())), DOCS_IMAGES / "encode_run.png")
    _png(_screenshot(comfy, _node_clip(comfy, [ids["saliency"]])), DOCS_IMAGES / "legend_all_maps.png")
    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='regions']")
    comfy.page.wait_for_timeout(300)
    _png(_screenshot(comfy, _node_clip(comfy, [ids["saliency"]])), DOCS_IMAGES / "legend_regions.png")
    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='1']")
    comfy.page.wait_for_timeout(300)
    _png(_screenshot(comfy, _node_clip(comfy, [ids["saliency"]])), DOCS_IMAGES / "legend_one_concept.png")
    comfy.page.click("[data-ca-picker] .ca-chip[data-concept='sun']")
    comfy.page.wait_for_timeout(300)
    _png(_screenshot(comfy, _node_clip(comfy, [ids["mask"], ids["mask_preview"]])), DOCS_IMAGES / "mask_concepts.png")
    return [DOCS_IMAGES / n for n in ("encode_run.png", "legend_all_maps.png", "legend_regions.png",
                                      "legend_one_concept.png", "mask_concepts.png")]


def _docs_templates(comfy) -> list[Path]:
    """The template browser listing the example workflows."""
    comfy.page.get_by_text("Templates", exact=True).first.click()
    comfy.page.get_by_text("ComfyUI-ConceptAttention").first.click()
    comfy.page.wait_for_timeout(2500)
    # Two rows of cards: four to a row at this width.
    _png(comfy.page.screenshot(clip={"x": 100, "y": 100, "width": 1400, "height": 805}), DOCS_IMAGES / "templates.png")
    comfy.page.keyboard.press("Escape")
    return [DOCS_IMAGES / "templates.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only-examples", action="store_true", help="write the examples, not docs/images/")
    parser.add_argument("--example", action="append", metavar="NAME",
                        help="write only this example (repeatable); no docs pictures unless --docs names some")
    parser.add_argument("--docs", action="append", choices=DOCS_PARTS,
                        help="write only this part of docs/images/ (repeatable); no examples unless --example "
                             "names some")
    args = parser.parse_args()
    write_examples = bool(args.example) or not args.docs
    write_docs = not args.only_examples and (bool(args.docs) or not args.example)
    from conftest import COMFYUI_PATH
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "server"
        extra = sorted(p for p in FIXTURE_NODES_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")

        def prepare(base_dir: Path) -> None:
            (base_dir / "input").mkdir(parents=True, exist_ok=True)
            example_runs.draw_example_picture(256).save(base_dir / "input" / DEMO_IMAGE)
            example_runs.write_example_picture(base_dir / "input" / example_runs.EXAMPLE_PICTURE)
            if write_docs and "run" in (args.docs or DOCS_PARTS):
                install_stock_loader_models(base_dir)

        with start_comfy_server(base, comfyui_path=COMFYUI_PATH, extra_custom_nodes=extra, prepare=prepare) as server, \
                sync_playwright() as playwright:
            context = launch_chromium(playwright, Path(tmp) / "profile")
            comfy = open_comfy(context, server)
            if write_examples:
                make_examples(comfy, server, args.example)
            if write_docs:
                make_docs_images(comfy, args.docs or DOCS_PARTS)
            problems = comfy.extension_problems()
            context.close()
            if problems:
                raise SystemExit("extension errors in the console:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
