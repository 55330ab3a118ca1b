"""Regenerates example_workflows/*.json + their .jpg thumbnails and the README images in
docs/images/, all from the real ComfyUI UI in headless Chromium.

    ~/.cache/comfyui-concept-attention/venv/bin/python tests/browser/make_examples.py [--only-examples]
        [--example NAME ...] [--docs nodes|run|templates ...]
                                    (only these examples / docs pictures, e.g. a new example and the
                                    template browser, leaving the other files as they are)

Starts its own ComfyUI server (this pack + the tiny-model fixture nodes), builds each example
graph of example_specs.py with the UI's node classes, saves what `app.graph.serialize()` gives
(the format ComfyUI saves) and screenshots it. The result images come from a run on the tiny
random-weight test models, so their maps are noise: they show the UI, not map quality.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import conftest  # noqa: E402,F401  (registers concept_attention_tests.* and finds ComfyUI)

from concept_attention_tests.browser import tiny_graphs  # noqa: E402
from concept_attention_tests.browser.browser_session import (  # noqa: E402
    EXAMPLE_WORKFLOWS_DIR,
    FIXTURE_NODES_DIR,
    REPO_ROOT,
    build_graph,
    fit_view,
    launch_chromium,
    open_comfy,
)
from concept_attention_tests.browser.example_specs import EXAMPLES  # noqa: E402
from concept_attention_tests.server.comfy_server import start_comfy_server  # noqa: E402

DOCS_IMAGES = REPO_ROOT / "docs" / "images"
THUMBNAIL_SIZE = (640, 480)
DEMO_IMAGE = "concept_demo.png"


def _jpeg(png_bytes: bytes, path: Path, size=None, quality: int = 85) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    if size:
        # Cover the target box, then centre-crop (the template cards are 4:3).
        scale = max(size[0] / image.width, size[1] / image.height)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        left = (image.width - size[0]) // 2
        top = (image.height - size[1]) // 2
        image = image.crop((left, top, left + size[0], top + size[1]))
    image.save(path, "JPEG", quality=quality, optimize=True)


def _png(png_bytes: bytes, path: Path, max_width: int = 1400) -> None:
    from PIL import Image

    image = Image.open(io.BytesIO(png_bytes)).convert("RGB")
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    image = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    image.save(path, "PNG", optimize=True)


def _demo_picture(path: Path, size: int = 256) -> None:
    """A simple synthetic picture (sky, sun, hill, a house) to run the tiny models on."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / size
        draw.line([(0, y), (size, y)], fill=(int(90 + 80 * t), int(150 + 60 * t), int(230 - 20 * t)))
    draw.ellipse([size * 0.65, size * 0.1, size * 0.85, size * 0.3], fill=(255, 214, 64))
    draw.ellipse([-size * 0.3, size * 0.55, size * 1.3, size * 1.6], fill=(70, 150, 60))
    draw.rectangle([size * 0.2, size * 0.45, size * 0.45, size * 0.7], fill=(180, 60, 50))
    draw.polygon([(size * 0.17, size * 0.46), (size * 0.325, size * 0.32), (size * 0.48, size * 0.46)],
                 fill=(110, 40, 40))
    image.save(path)


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


def make_examples(comfy, only=None) -> None:
    EXAMPLE_WORKFLOWS_DIR.mkdir(exist_ok=True)
    unknown = set(only or ()) - {spec["name"] for spec in EXAMPLES}
    if unknown:
        raise SystemExit(f"no example named {sorted(unknown)}; there are {[s['name'] for s in EXAMPLES]}")
    for spec in EXAMPLES:
        if only and spec["name"] not in only:
            continue
        ids = build_graph(comfy, spec)
        prompt = comfy.evaluate("async () => (await app.graphToPrompt()).output")
        assert any(n["class_type"].startswith("ConceptAttention") for n in prompt.values()), spec["name"]
        workflow = comfy.evaluate("() => app.graph.serialize()")
        workflow.setdefault("extra", {})["info"] = {"title": spec["title"]}
        workflow["extra"].pop("ds", None)
        path = EXAMPLE_WORKFLOWS_DIR / f"{spec['name']}.json"
        path.write_text(json.dumps(workflow, indent=2) + "\n", encoding="utf-8")
        keys = spec.get("thumbnail_nodes") or [
            n["key"] for n in spec["nodes"] if n["type"].startswith("ConceptAttention")]
        frame(comfy, [ids[k] for k in keys])
        _jpeg(_screenshot(comfy), EXAMPLE_WORKFLOWS_DIR / f"{spec['name']}.jpg", THUMBNAIL_SIZE)
        comfy.page.set_viewport_size({"width": 1600, "height": 1000})
        print(f"wrote {path.relative_to(REPO_ROOT)} and its thumbnail")


FRAME_JS = """([ids, scale, margin]) => {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const id of ids) {
    const n = app.graph.getNodeById(id);
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  return [x0, y0, x1, y1];
}"""


def frame(comfy, ids, scale: float = 0.8, margin: int = 40, aspect: float = 4 / 3) -> None:
    """Sizes the viewport to show these nodes at a readable zoom, in the thumbnail's aspect."""
    x0, y0, x1, y1 = comfy.evaluate(FRAME_JS, [list(ids), scale, margin])
    w, h = (x1 - x0) * scale + 2 * margin, (y1 - y0) * scale + 2 * margin
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    width, height = int(min(w, 2400)), int(min(h, 1800))
    comfy.page.set_viewport_size({"width": width, "height": height})
    comfy.page.wait_for_timeout(200)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    comfy.evaluate("([s, x, y]) => { app.canvas.ds.scale = s; app.canvas.ds.offset = [x, y];"
                   " app.canvas.setDirty(true, true); }",
                   [scale, width / 2 / scale - cx, height / 2 / scale - cy])
    comfy.page.wait_for_timeout(300)


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


def _docs_run(comfy) -> list[Path]:
    """A run: the legend with one concept clicked, and the concept buttons of Saliency to Mask."""
    picture = {"key": "image", "type": "LoadImage", "pos": [0, 320], "size": [300, 360],
               "values": {"image": DEMO_IMAGE}}
    graph = tiny_graphs.encode_graph(size=256, concepts=["house", "sun", "hill", "sky"], image_node=picture)
    ids = build_graph(comfy, graph)
    set_zoom(comfy, 1.0, (30, 60))
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    comfy.page.wait_for_function(
        "(id) => (app.graph.getNodeById(id)?.__conceptAttention?.legend.length ?? 0) > 0",
        arg=ids["saliency"], timeout=120_000)
    comfy.page.wait_for_function(
        "(id) => { const n = app.graph.getNodeById(id); return n.imgs?.length === 4 && n.imgs.every(i => i.complete); }",
        arg=ids["saliency"], timeout=60_000)
    _png(_screenshot(comfy, _node_clip(comfy, [ids["saliency"]])), DOCS_IMAGES / "legend_all_maps.png")
    comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='0']")
    comfy.page.wait_for_timeout(300)
    _png(_screenshot(comfy, _node_clip(comfy, [ids["saliency"]])), DOCS_IMAGES / "legend_one_concept.png")
    comfy.page.click("[data-ca-picker] .ca-chip[data-concept='sun']")
    comfy.page.wait_for_timeout(300)
    _png(_screenshot(comfy, _node_clip(comfy, [ids["mask"], ids["mask_preview"]])), DOCS_IMAGES / "mask_concepts.png")
    _png(_screenshot(comfy, _node_clip(comfy, ids.values())), DOCS_IMAGES / "encode_run.png")
    return [DOCS_IMAGES / n for n in ("legend_all_maps.png", "legend_one_concept.png", "mask_concepts.png",
                                      "encode_run.png")]


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
    from playwright.sync_api import sync_playwright

    from conftest import COMFYUI_PATH

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "server"
        extra = sorted(p for p in FIXTURE_NODES_DIR.iterdir() if p.is_dir() and p.name != "__pycache__")

        def prepare(base_dir: Path) -> None:
            _demo_picture(base_dir / "input" / DEMO_IMAGE)

        with start_comfy_server(base, comfyui_path=COMFYUI_PATH, extra_custom_nodes=extra, prepare=prepare) as server, \
                sync_playwright() as playwright:
            context = launch_chromium(playwright, Path(tmp) / "profile")
            comfy = open_comfy(context, server)
            if write_examples:
                make_examples(comfy, args.example)
            if write_docs:
                make_docs_images(comfy, args.docs or DOCS_PARTS)
            problems = comfy.extension_problems()
            context.close()
            if problems:
                raise SystemExit("extension errors in the console:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
