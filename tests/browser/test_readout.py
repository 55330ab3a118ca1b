"""The per-pixel readout in the real front end: hovering a token of a preview panel shows every concept's value
there, ranked, in the legend's colours, and the values are those of the saved maps (Save Saliency's file).

Where the front end drew a panel is read from its own drawing (the canvas transform and rectangle of its
drawImage call for that panel), not computed here, so the test points the mouse where the user sees the token.
"""

from __future__ import annotations

import json
import re

import pytest
from concept_attention_examples.parts import node
from concept_attention_examples.specs import EXAMPLES as EXAMPLE_SPECS  # registered by browser_session
from concept_attention_examples.specs import file_stem
from safetensors.torch import load_file

from concept_attention_tests.browser import example_runs, tiny_graphs
from concept_attention_tests.browser.browser_session import EXAMPLE_WORKFLOWS_DIR, SCREENSHOT_DIR, build_graph


def _example_file(name):
    return EXAMPLE_WORKFLOWS_DIR / f"{file_stem(next(s for s in EXAMPLE_SPECS if s['name'] == name))}.json"

# Where the front end draws image `index` of node `id`: its drawImage call's rectangle, mapped by the context's
# transform to page (CSS) pixels. The images are drawn in a microtask after the frame (the front end defers them).
DRAWN_JS = """async ([id, index]) => {
  const node = app.graph.getNodeById(id);
  const img = node.imgs[index];
  const proto = CanvasRenderingContext2D.prototype;
  const original = proto.drawImage;
  let found = null;
  proto.drawImage = function (image, ...args) {
    if (image === img && args.length === 4) found = {t: this.getTransform(), r: args};
    return original.call(this, image, ...args);
  };
  try {
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
    await new Promise(r => setTimeout(r, 50));
  } finally { proto.drawImage = original; }
  if (!found) return null;
  const canvas = app.canvas.canvas;
  const box = canvas.getBoundingClientRect();
  const sx = box.width / canvas.width, sy = box.height / canvas.height;
  const page = (x, y) => [box.left + (found.t.a * x + found.t.c * y + found.t.e) * sx,
                          box.top + (found.t.b * x + found.t.d * y + found.t.f) * sy];
  const [x, y, w, h] = found.r;
  return {topLeft: page(x, y), bottomRight: page(x + w, y + h), natural: [img.naturalWidth, img.naturalHeight]};
}"""

READOUT_JS = """() => {
  const r = document.querySelector('[data-ca-readout]');
  if (!r || r.hidden) return null;
  return {
    head: r.querySelector('.ca-readout-head')?.textContent,
    rows: [...r.querySelectorAll('.ca-readout-row')].map(row => ({
      index: Number(row.dataset.index), value: Number(row.dataset.value),
      name: row.querySelector('.ca-readout-name').textContent,
      text: row.querySelector('.ca-readout-value').textContent,
      color: getComputedStyle(row.querySelector('.ca-swatch')).backgroundColor,
    })),
    markup: r.querySelectorAll('b').length,
  };
}"""


def _rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _with_save(graph: dict, source: str, prefix: str, pos) -> dict:
    graph["nodes"].append(node("save", "ConceptAttentionSaveSaliency", pos, [300, 120], filename_prefix=prefix))
    graph["links"].append((source, "saliency", "save", "saliency"))
    return graph


def _run(comfy, node_id: int, panels: int) -> dict:
    comfy.evaluate("() => { app.canvas.ds.scale = 0.8; app.canvas.ds.offset = [40, 80]; app.canvas.setDirty(true, true); }")
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    comfy.page.wait_for_function(
        """([id, panels]) => { const n = app.graph.getNodeById(id);
             return (n.__conceptAttention?.legend.length ?? 0) > 0 && n.imgs?.length === panels
               && n.imgs.every(i => i.complete && i.naturalWidth > 0) && n.__conceptAttention.readout; }""",
        arg=[node_id, panels], timeout=120_000)
    return comfy.evaluate("(id) => app.graph.getNodeById(id).__conceptAttention.legend", node_id)


def _saved_maps(browser_server, prefix: str):
    files = sorted(browser_server.output_dir.glob(f"{prefix}*.safetensors"))
    assert files, f"Save Saliency wrote no {prefix}*.safetensors"
    return load_file(str(files[-1]))["maps"]


def _hover(comfy, node_id: int, index: int, row: int, col: int, grid) -> dict | None:
    """Move the mouse to the middle of token (row, col) of image `index` as the front end drew it (the map is the
    square top of the panel: a square picture, its strip below)."""
    drawn = comfy.evaluate(DRAWN_JS, [node_id, index])
    assert drawn, "the front end did not draw the panel"
    (x0, y0), (x1, _) = drawn["topLeft"], drawn["bottomRight"]
    side = x1 - x0  # the map: as tall as wide
    h, w = grid
    x, y = x0 + (col + 0.5) * side / w, y0 + (row + 0.5) * side / h
    comfy.page.mouse.move(x - 3, y - 3)
    comfy.page.mouse.move(x, y)
    comfy.page.wait_for_timeout(100)
    return comfy.evaluate(READOUT_JS)


def _move_off(comfy) -> None:
    """The mouse onto empty canvas (between the Concept List's column and the saliency node)."""
    x, y = comfy.evaluate("""() => { const box = app.canvas.canvas.getBoundingClientRect();
        const [x, y] = app.canvas.ds.convertOffsetToCanvas([670, 980]);
        return [box.left + x * box.width / app.canvas.canvas.width, box.top + y * box.height / app.canvas.canvas.height]; }""")
    comfy.page.mouse.move(x, y)
    comfy.page.wait_for_timeout(100)


def _check(shown, legend, expected, head):
    """The readout lists every concept, ranked, with the legend's name and colour and the saved value."""
    assert shown is not None, "no readout shown over the panel"
    assert head in shown["head"], shown["head"]
    assert shown["markup"] == 0  # names as text, never markup
    assert sorted(row["index"] for row in shown["rows"]) == list(range(len(legend)))
    values = [row["value"] for row in shown["rows"]]
    assert values == sorted(values, reverse=True), "not ranked"
    for row in shown["rows"]:
        entry = legend[row["index"]]
        assert row["name"] == entry["name"] and row["color"] == _rgb(entry["color"])
        saved = float(expected[row["index"]])
        assert abs(row["value"] - saved) <= 1e-4, (row, saved)
        assert row["text"] == f"{saved * 100:.1f}%" or abs(float(row["text"].rstrip("%")) - saved * 100) <= 0.051


@pytest.mark.parametrize("select", [None, "concept"], ids=["grid", "one-panel"])
def test_readout_of_concept_saliency_shows_the_saved_values(comfy, browser_server, select):
    concepts, batch = tiny_graphs.CONCEPTS, 2
    per_picture = len(concepts) + 1
    prefix = f"readout_encode_{select or 'grid'}"
    graph = _with_save(tiny_graphs.encode_graph(batch=batch, size=128), "saliency", prefix, [1090, 760])
    saliency = next(n for n in graph["nodes"] if n["key"] == "saliency")
    saliency["size"] = [380, 900]
    saliency["values"]["seed"] = 0 if select is None else 1  # another run, not ComfyUI's cached one
    ids = build_graph(comfy, graph)
    sal = ids["saliency"]
    legend = _run(comfy, sal, batch * per_picture)
    maps = _saved_maps(browser_server, prefix)  # [B, r, h, w]
    grid = tuple(maps.shape[-2:])
    assert grid == (8, 8)
    if select == "concept":
        comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='1']")
        comfy.page.click("[data-ca-legend] .ca-next")  # picture 2, concept 1: one panel, large
        comfy.page.wait_for_timeout(200)
        index = comfy.evaluate("(id) => app.graph.getNodeById(id).imageIndex", sal)
        assert index == per_picture + 2
    else:
        pressed = "[data-ca-legend] .ca-legend-item[aria-pressed='true']"
        if comfy.page.locator(pressed).count():  # a node laid out too small for a readable grid shows one panel:
            comfy.page.click(pressed)            # clicking its entry again shows the grid of all panels
            comfy.page.wait_for_timeout(200)
        assert comfy.evaluate("(id) => app.graph.getNodeById(id).imageIndex ?? null", sal) is None
        index = per_picture + 2  # picture 2's map of concept 1, in the grid of all panels
    for row, col in [(1, 6), (6, 2)]:
        shown = _hover(comfy, sal, index, row, col, grid)
        _check(shown, legend, maps[1, :, row, col], f"picture 2, token row {row + 1}, column {col + 1}")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    comfy.page.screenshot(path=str(SCREENSHOT_DIR / f"readout_{select or 'grid'}.png"))  # the readout, to look at
    # the segmentation view of picture 1 reads picture 1's maps (grid only: all panels are on screen)
    if select is None:
        shown = _hover(comfy, sal, 0, 3, 4, grid)
        _check(shown, legend, maps[0, :, 3, 4], "picture 1, token row 4, column 5")
    # off the node: no readout
    _move_off(comfy)
    assert comfy.evaluate(READOUT_JS) is None
    assert comfy.extension_problems() == []


def test_readout_of_concept_saliency_from_sampling(comfy, browser_server):
    concepts = tiny_graphs.CONCEPTS
    prefix = "readout_sampling"
    graph = _with_save(tiny_graphs.sampling_graph(size=128), "maps", prefix, [1440, 720])
    ids = build_graph(comfy, graph)
    maps_node = ids["maps"]
    legend = _run(comfy, maps_node, len(concepts) + 1)
    maps = _saved_maps(browser_server, prefix)
    grid = tuple(maps.shape[-2:])
    comfy.page.click("[data-ca-legend] .ca-legend-regions")  # the segmentation view alone
    comfy.page.wait_for_timeout(200)
    shown = _hover(comfy, maps_node, 0, 5, 3, grid)
    _check(shown, legend, maps[0, :, 5, 3], "token row 6, column 4")
    assert "picture" not in shown["head"]  # one picture: no picture number
    assert comfy.extension_problems() == []


VIDEO_EXAMPLE = next(spec["name"] for spec in EXAMPLE_SPECS if "cogvideox" in spec["name"])
ANIMATION_BOX_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  const img = node.widgets?.find(w => w.name === '$$comfy_animation_preview')?.element?.querySelector('img');
  if (!img || !img.naturalWidth) return null;
  const b = img.getBoundingClientRect();
  return {box: [b.left, b.top, b.width, b.height], natural: [img.naturalWidth, img.naturalHeight]};
}"""
LAST_OUTPUT_JS = """async (id) => {
  const history = await (await fetch('/api/history?max_items=1')).json();
  const run = Object.values(history)[0];
  return run.outputs[String(id)].concept_readout[0];
}"""


def test_readout_of_a_video_shows_the_frame_on_screen(comfy):
    """A video's panel is an animated WebP: the readout reads the clip on screen at the frame it shows (the heading
    names it), from the maps the node sent."""
    from concept_attention.concept_patch.maps.readout import decode_readout

    example_runs.load_with_tiny_models(comfy, json.loads(_example_file(VIDEO_EXAMPLE).read_text(encoding="utf-8")))
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    example_runs.wait_for_previews(comfy, result)
    [sal] = comfy.evaluate("() => app.graph.nodes.filter(n => n.widgets?.some(w => w.name === 'concept_legend'))"
                           ".map(n => n.id)")
    comfy.evaluate("(id) => { const n = app.graph.getNodeById(id); app.canvas.ds.scale = 0.8;"
                   " app.canvas.ds.offset = [40 - n.pos[0] * 0.8, 80 - n.pos[1] * 0.8]; app.canvas.setDirty(true, true); }",
                   sal)
    comfy.page.wait_for_function(f"(id) => ({ANIMATION_BOX_JS})(id) !== null", arg=sal, timeout=60_000)
    payload = comfy.evaluate(LAST_OUTPUT_JS, sal)
    frames, h, w = payload["grid"]
    values = decode_readout(payload)[0]  # clip 1: [r, T, h, w]
    legend = comfy.evaluate("(id) => app.graph.getNodeById(id).__conceptAttention.legend", sal)
    shown = comfy.evaluate(ANIMATION_BOX_JS, sal)
    left, top, width, height = shown["box"]
    nw, nh = shown["natural"]
    scale = min(width / nw, height / nh)  # object-fit: contain
    x0, y0 = left + (width - nw * scale) / 2, top + (height - nh * scale) / 2
    ph, pw = payload["panel"]
    for row, col in [(0, 0), (h - 1, w - 1)]:
        x, y = x0 + (col + 0.5) * pw / w * scale, y0 + (row + 0.5) * ph / h * scale
        comfy.page.mouse.move(x - 2, y - 2)
        comfy.page.mouse.move(x, y)
        comfy.page.wait_for_timeout(100)
        readout = comfy.evaluate(READOUT_JS)
        assert readout is not None, "no readout over the video's panel"
        frame = int(re.search(r"frame (\d+)", readout["head"]).group(1)) - 1
        assert 0 <= frame < len(payload["frame_tokens"])
        expected = values[:, payload["frame_tokens"][frame], row, col]
        _check(readout, legend, expected, f"token row {row + 1}, column {col + 1}")
    assert comfy.extension_problems() == []
