"""The pack's web extension and example workflows in the real ComfyUI front end (headless Chromium).

One server and one page for the whole module (see conftest.py); each test loads its own graph.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse

import pytest
from concept_attention_examples.specs import EXAMPLES as EXAMPLE_SPECS  # registered by browser_session
from concept_attention_examples.specs import EXPECTED, file_stem
from concept_attention_examples.thumbnails import card_problems, thumbnail_parts, tile_kinds

from concept_attention_tests.browser import example_runs, tiny_graphs
from concept_attention_tests.browser.browser_session import (
    EXAMPLE_WORKFLOWS_DIR,
    EXTENSION_NAME,
    PACK_DIR_NAME,
    REPO_ROOT,
    build_graph,
)

PACK_NODES = {
    "ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionPatchModel",
    "ConceptAttentionSamplingSaliency", "ConceptAttentionSaliencyToMask", "ConceptAttentionSaveSaliency",
    "ConceptAttentionLoadSaliency", "ConceptAttentionSoundtrackCurve", "ConceptAttentionApplySoundtrackCurve",
}
EXAMPLES = [spec["name"] for spec in EXAMPLE_SPECS]
SPECS = {spec["name"]: spec for spec in EXAMPLE_SPECS}
EXAMPLE_FILES = {spec["name"]: EXAMPLE_WORKFLOWS_DIR / f"{file_stem(spec)}.json" for spec in EXAMPLE_SPECS}
WEB_DIR = REPO_ROOT / "web"
# A template card shows about this many characters of its title (the file name) before cutting it.
TITLE_CHARS = 32


def _workflow(name: str) -> dict:
    return json.loads(EXAMPLE_FILES[name].read_text(encoding="utf-8"))

LEGEND_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  const root = node.widgets.find(w => w.name === 'concept_legend').element;
  return {
    state: node.__conceptAttention,
    imageIndex: node.imageIndex ?? null,
    imgs: (node.imgs || []).map(i => new URL(i.src).searchParams.get('filename')),
    regions: root.querySelector('.ca-legend-regions')?.getAttribute('aria-pressed') ?? null,
    bar: [...root.querySelectorAll('.ca-legend-bar > span')].map(s => s.style.width),
    items: [...root.querySelectorAll('.ca-legend-item:not(.ca-legend-regions)')].map(b => ({
      name: b.querySelector('.ca-name').textContent,
      share: b.querySelector('.ca-share').textContent,
      color: getComputedStyle(b.querySelector('.ca-swatch')).backgroundColor,
      pressed: b.getAttribute('aria-pressed'),
      markup: b.querySelectorAll('b').length,
    })),
    label: root.querySelector('.ca-image-label')?.textContent ?? null,
  };
}"""

CHIPS_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  const root = node.widgets.find(w => w.name === 'concept_suggestions').element;
  return {
    chips: [...root.querySelectorAll('.ca-chip:not(.ca-chip-missing)')].map(c => [c.textContent, c.getAttribute('aria-pressed')]),
    missing: [...root.querySelectorAll('.ca-chip.ca-chip-missing')].map(c => c.dataset.concept),
    hint: root.querySelector('.ca-picker-hint')?.textContent ?? null,
    value: node.widgets.find(w => w.name === 'concepts').value,
    markup: root.querySelectorAll('b').length,
  };
}"""


def _rgb(hex_color: str) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def _legend_ready(comfy, node_id: int, panels: int) -> None:
    comfy.page.wait_for_function(
        """([id, panels]) => { const n = app.graph.getNodeById(id);
             return (n.__conceptAttention?.legend.length ?? 0) > 0 && n.imgs?.length === panels
               && n.imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=[node_id, panels], timeout=120_000)


def _canvas_region(comfy, node_id: int) -> bytes:
    from concept_attention_tests.browser.browser_session import NODE_BOUNDS_JS

    comfy.evaluate("app.canvas.setDirty(true, true); app.canvas.draw(true, true)")
    comfy.page.wait_for_timeout(100)
    return comfy.page.screenshot(clip=comfy.evaluate(NODE_BOUNDS_JS, [str(node_id)]))


def _show(comfy, scale: float = 0.9) -> None:
    comfy.evaluate("(s) => { app.canvas.ds.scale = s; app.canvas.ds.offset = [40, 80]; app.canvas.setDirty(true, true); }",
                   scale)
    comfy.page.wait_for_timeout(150)


# ------------------------------------------------------------------------------------------
# the extension loads cleanly
# ------------------------------------------------------------------------------------------


def test_page_loads_with_the_extension_and_no_console_errors_from_it(comfy, browser_server):
    registered = comfy.evaluate("() => (app.extensions || []).map(e => e.name)")
    assert EXTENSION_NAME in registered
    types = set(comfy.evaluate("() => Object.keys(LiteGraph.registered_node_types)"))
    assert PACK_NODES <= types, PACK_NODES - types
    status, body = browser_server.request("GET", f"/extensions/{PACK_DIR_NAME}/concept_attention.js")
    assert status == 200 and "registerExtension" in body
    comfy.screenshot("page_loaded", hide_ui=False)
    assert comfy.extension_problems() == []
    # Nothing the extension did made the front end warn (deprecated imports warn on load).
    warnings = [e.text for e in comfy.console if e.type == "warning" and e.from_extension()]
    assert warnings == []


def test_extension_uses_only_public_imports_and_never_inner_html():
    for path in WEB_DIR.glob("*.js"):
        source = path.read_text(encoding="utf-8")
        imports = re.findall(r"""^\s*import\s.*?from\s+["']([^"']+)["']""", source, re.M)
        siblings = {f"./{p.name}" for p in WEB_DIR.glob("*.js")}  # the pack's own modules
        assert set(imports) <= {"../../scripts/app.js", "../../scripts/api.js"} | siblings, (path.name, imports)
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", source), path.name


# ------------------------------------------------------------------------------------------
# example workflows
# ------------------------------------------------------------------------------------------


def test_every_example_workflow_is_listed_with_a_thumbnail(browser_server):
    assert set(EXAMPLES) == set(EXPECTED)
    stems = sorted(p.stem for p in EXAMPLE_WORKFLOWS_DIR.glob("*.json"))
    assert stems == sorted(path.stem for path in EXAMPLE_FILES.values())
    listed = browser_server.get_json("/api/workflow_templates")
    assert sorted(listed.get(PACK_DIR_NAME, [])) == stems
    for name in stems:
        # The template browser shows the file name as the title: a title, short enough for a card.
        assert "_" not in name and len(name) <= TITLE_CHARS and name[0].isupper(), name
        thumb = EXAMPLE_WORKFLOWS_DIR / f"{name}.jpg"
        assert thumb.is_file() and thumb.read_bytes()[:3] == b"\xff\xd8\xff", thumb
        # Where the template dialog asks for it.
        url = f"/api/workflow_templates/{PACK_DIR_NAME}/{urllib.parse.quote(name)}.jpg"
        status, _ = browser_server.request("GET", url)
        assert status == 200, url


def test_template_browser_shows_the_example_workflows(comfy):
    page = comfy.page
    page.get_by_text("Templates", exact=True).first.click()
    page.get_by_text(PACK_DIR_NAME).first.click()
    try:
        for path in EXAMPLE_FILES.values():
            title = page.get_by_text(path.stem, exact=True).first
            title.wait_for(state="visible", timeout=15_000)
            # shown whole, not cut short with an ellipsis
            assert title.evaluate("(el) => el.scrollWidth <= el.clientWidth + 1"), path.stem
        # The cards show the .jpg thumbnails (fetched, then shown from blob: URLs): 640x480.
        page.wait_for_function(
            """(count) => [...document.querySelectorAll('img')].filter(
                 i => i.complete && i.naturalWidth === 640 && i.naturalHeight === 480).length >= count""",
            arg=len(EXAMPLES), timeout=15_000)
        comfy.screenshot("template_browser", hide_ui=False)
    finally:
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_loads_in_the_ui_and_converts_to_a_prompt(comfy, name):
    workflow = _workflow(name)
    notes = [n for n in workflow["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    assert notes and "models/" in notes[0]["widgets_values"][0]
    # Markdown notes whose model files are links, as ComfyUI's stock templates have
    assert all(n["type"] == "MarkdownNote" for n in notes)
    assert re.search(r"\[[^\]]+\.safetensors\]\(https://huggingface\.co/[^)]+\)", notes[0]["widgets_values"][0])
    result = comfy.evaluate(
        """async (workflow) => {
          const missing = [];
          const original = app.showMissingNodesError;
          app.showMissingNodesError = function (types, ...rest) { missing.push(...types); };
          try {
            await app.loadGraphData(workflow, true, true, null);
          } finally {
            app.showMissingNodesError = original;
          }
          const unknown = app.graph.nodes
            .filter(n => !LiteGraph.registered_node_types[n.type])
            .map(n => n.type);
          const prompt = (await app.graphToPrompt()).output;
          return {missing: missing.map(m => typeof m === 'string' ? m : (m.type ?? JSON.stringify(m))),
                  unknown, count: app.graph.nodes.length, prompt};
        }""", workflow)
    assert result["missing"] == [] and result["unknown"] == [], result
    assert result["count"] == len(workflow["nodes"])
    prompt = result["prompt"]
    types = {n["class_type"] for n in prompt.values()}
    expected = EXPECTED[name]
    assert expected["types"] <= types, expected["types"] - types
    assert not types & expected.get("absent_types", set()), types & expected["absent_types"]
    values = {v for n in prompt.values() for v in n["inputs"].values() if isinstance(v, str)}
    assert expected["files"] <= values, expected["files"] - values
    if "mask_method" in expected:
        methods = {n["inputs"]["method"] for n in prompt.values()
                   if n["class_type"] == "ConceptAttentionSaliencyToMask"}
        assert methods == {expected["mask_method"]}
    for class_type, inputs in expected.get("widgets", {}).items():
        found = [n["inputs"] for n in prompt.values() if n["class_type"] == class_type]
        assert found and all(f[k] == v for f in found for k, v in inputs.items()), (class_type, found)
    # Loaders name their files with a download URL and folder, as ComfyUI's templates do; the
    # loaded graph still carries them.
    for class_type, wanted in expected.get("models", {}).items():
        wanted = wanted if isinstance(wanted, list) else [wanted]
        models = comfy.evaluate(
            "(type) => app.graph.nodes.filter(n => n.type === type).map(n => n.properties?.models ?? null)",
            class_type)
        assert models and all(m and len(m) == len(wanted) for m in models), (class_type, models)
        for entries in models:
            assert [(e["name"], e["directory"]) for e in entries] == wanted, entries
            for entry in entries:
                url = urllib.parse.urlparse(entry["url"])
                assert url.scheme == "https" and url.netloc == "huggingface.co", entry
                assert url.path.endswith("/resolve/main/" + entry["name"]) or url.path.endswith("/" + entry["name"])
    # Every loader file has a link, except gated ones, which the Note says are gated.
    linked = {m["name"] for n in workflow["nodes"] for m in (n.get("properties") or {}).get("models", [])}
    gated = set(expected.get("gated", []))
    assert expected["files"] - {"example.png"} <= linked | gated, expected["files"] - linked - gated
    if gated:
        assert "gated" in notes[0]["widgets_values"][0]
    # The Concept List's concepts are offered on every Saliency to Mask of the workflow.
    chips = comfy.evaluate(
        """() => app.graph.nodes.filter(n => n.type === 'ConceptAttentionSaliencyToMask')
             .map(n => [...n.widgets.find(w => w.name === 'concept_suggestions').element
                        .querySelectorAll('.ca-chip')].map(c => c.textContent))""")
    concept_text = next(n["inputs"]["concepts"] for n in prompt.values()
                        if n["class_type"] == "ConceptAttentionConceptList")
    for offered in chips:
        assert offered == [c.strip() for c in concept_text.split(",")]
    comfy.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    comfy.screenshot(f"workflow_{name}")


def _node_boxes(workflow: dict) -> list[tuple[str, float, float, float, float]]:
    """(type, x0, y0, x1, y1) of every node, its title bar (30 px above pos) included."""
    return [(n["type"], n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
            for n in workflow["nodes"]]


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_nodes_do_not_overlap(name):
    workflow = _workflow(name)
    boxes = _node_boxes(workflow)
    overlaps = [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
    assert overlaps == []
    room = EXPECTED[name].get("saliency_room")
    if room:
        # Concept Saliency grows after a run (legend and maps): that much room stays free below it.
        [saliency] = [n for n in workflow["nodes"] if n["type"] == "ConceptAttentionSaliency"]
        x0, x1 = saliency["pos"][0], saliency["pos"][0] + saliency["size"][0]
        y0 = saliency["pos"][1] + saliency["size"][1]
        below = [b[0] for b in boxes if b[1] < x1 and x0 < b[3] and b[2] < y0 + room and y0 < b[4]]
        assert below == [], f"nodes within {room} px below Concept Saliency: {below}"


# How ComfyUI opens a workflow: from the template browser (openSource "template": the view fitted to the nodes,
# whatever the file says) or as a file (its saved `extra.ds`). Then the zoom, whether the canvas draws nodes in
# low quality (no text: below 8 px text, about 0.57 zoom here), and how many nodes lie wholly in view.
OPEN_WORKFLOW_JS = """async ([workflow, source]) => {
  await app.loadGraphData(workflow, true, true, null, source ? {openSource: source} : {});
  for (let i = 0; i < 3; i++) await new Promise((r) => requestAnimationFrame(r));
  const canvas = app.canvas;
  canvas.setDirty(true, true); canvas.draw(true, true);
  const rect = canvas.canvas.getBoundingClientRect();
  const {scale, offset} = canvas.ds;
  const view = [-offset[0], -offset[1], -offset[0] + rect.width / scale, -offset[1] + rect.height / scale];
  const inView = (n) => n.pos[0] >= view[0] && n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT >= view[1]
    && n.pos[0] + n.size[0] <= view[2] && n.pos[1] + n.size[1] <= view[3];
  return {scale, lowQuality: canvas.low_quality, nodes: app.graph.nodes.length,
          outOfView: app.graph.nodes.filter((n) => !inView(n)).map((n) => n.type), canvas: [rect.width, rect.height]};
}"""
# Readable: nodes drawn with their text, at 60 % zoom or more.
READABLE_ZOOM = 0.6


@pytest.mark.parametrize("source", ["template", "file"])
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_opens_readable(comfy, name, source):
    """Opened from the template browser or as a file, on the tier's 1600 x 1000 page, an example shows all its
    nodes at a zoom where ComfyUI draws them with their text."""
    workflow = _workflow(name)
    assert "ds" in workflow["extra"]
    opened = comfy.evaluate(OPEN_WORKFLOW_JS, [workflow, "template" if source == "template" else None])
    assert opened["scale"] >= READABLE_ZOOM and opened["lowQuality"] is False, opened
    assert opened["outOfView"] == [], opened
    if source == "template":
        comfy.screenshot(f"workflow_opened_{name}", hide_ui=False)


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_does_not_repeat_the_saliency_panels(name):
    """Concept Saliency shows its panels and legend itself: no Preview Image shows its `preview` again."""
    workflow = _workflow(name)
    types = {n["id"]: n["type"] for n in workflow["nodes"]}
    repeated = [(types[link[1]], types[link[3]]) for link in workflow["links"]
                if types[link[1]] in SALIENCY_TYPES and link[5] == "IMAGE" and types[link[3]] == "PreviewImage"]
    assert repeated == []


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_thumbnail_shows_what_the_workflow_makes(name):
    """The template card shows a run's result, not a degenerate one: a picture, regions in at least two
    concepts' colours, and a mask that is neither empty nor the whole picture (scripts/examples/thumbnails.py)."""
    from PIL import Image

    card = Image.open(EXAMPLE_FILES[name].with_suffix(".jpg"))
    assert card.size == (640, 480)
    assert card_problems(card, tile_kinds(thumbnail_parts(SPECS[name]), SPECS[name].get("flat_tiny_maps"))) == []


def _node_names(object_info: dict) -> dict[str, str]:
    """Every name a Note could call a node by (type and display name) -> its type; only names long
    and specific enough not to be ordinary words."""
    names = {}
    for node_type, info in object_info.items():
        for name in (node_type, info.get("display_name") or ""):
            if len(name) >= 6 and any(c.isupper() for c in name) and name not in {"Note", "MarkdownNote"}:
                names[name] = node_type
    return names


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_note_mentions_only_nodes_of_its_workflow(browser_server, name):
    workflow = _workflow(name)
    names = _node_names(browser_server.object_info())
    present = {n["type"] for n in workflow["nodes"]}
    for note in (n for n in workflow["nodes"] if n["type"] in ("Note", "MarkdownNote")):
        text = re.sub(r"\(https?://[^)]*\)", "", note["widgets_values"][0])  # links name files, not nodes
        mentioned = set()
        for mention in sorted(names, key=len, reverse=True):  # "Concept Saliency from Sampling" first
            pattern = rf"(?<![\w-]){re.escape(mention)}(?![\w-])"
            if re.search(pattern, text):
                mentioned.add(names[mention])
                text = re.sub(pattern, " ", text)
        assert mentioned <= present, f"the Note names nodes this workflow does not have: {mentioned - present}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_run_on_tiny_models_leaves_no_nodes_overlapping(comfy, name):
    """Each example runs through the UI on tiny random-weight stand-ins for its loaders; afterwards
    (Concept Saliency with its legend and maps) no two nodes overlap, and the saliency nodes, laid out
    at their size after a run, did not have to grow."""
    swapped = example_runs.load_with_tiny_models(comfy, _workflow(name), SPECS[name].get("tiny"))
    assert swapped
    before = {b["id"]: b["box"] for b in comfy.evaluate(example_runs.NODE_BOXES_JS)}
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    example_runs.wait_for_previews(comfy, result)
    boxes = comfy.evaluate(example_runs.NODE_BOXES_JS)
    assert example_runs.overlaps(boxes) == []
    grew = [(b["type"], before[b["id"]], b["box"]) for b in boxes
            if b["type"] in SALIENCY_TYPES and b["box"] != before[b["id"]]]
    assert grew == []
    comfy.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
    comfy.screenshot(f"workflow_run_{name}")
    assert comfy.extension_problems() == []


SALIENCY_TYPES = {"ConceptAttentionSaliency", "ConceptAttentionSamplingSaliency"}


# ------------------------------------------------------------------------------------------
# a run on tiny models: the legend
# ------------------------------------------------------------------------------------------


def _formatted(share: float) -> str:
    """A share as the legend writes it (formatShare in the extension: JavaScript rounds halves up)."""
    value = min(max(share, 0.0), 1.0) * 100
    if 0 < value < 10:
        return f"{math.floor(value * 10 + 0.5) / 10:.1f}%"
    return f"{math.floor(value + 0.5)}%"


def test_legend_after_a_run_and_clicking_a_concept_shows_its_map(comfy):
    concepts = tiny_graphs.CONCEPTS
    r, batch = len(concepts), 2
    per_picture = r + 1  # the segmentation view, then one map per concept
    graph = tiny_graphs.encode_graph(batch=batch)
    # a node with no room laid out for a run: it grows to show all panels readably (a laid-out node too small for
    # that shows the regions alone: test_node_usability.py)
    next(n for n in graph["nodes"] if n["key"] == "saliency")["size"] = [330, 300]
    ids = build_graph(comfy, graph)
    _show(comfy)
    sal = ids["saliency"]
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, sal, batch * per_picture)
    comfy.screenshot("legend_after_run", clip_nodes=[sal])

    legend = comfy.evaluate(LEGEND_JS, sal)
    state = legend["state"]
    assert state["segmentation"] is True and legend["regions"] == "false"
    assert [e["name"] for e in state["legend"]] == concepts
    assert [i["name"] for i in legend["items"]] == concepts  # names as text ...
    assert all(i["markup"] == 0 for i in legend["items"])  # ... never as markup
    assert [i["color"] for i in legend["items"]] == [_rgb(e["color"]) for e in state["legend"]]
    # shares are those of the picture on screen (picture 1 of 2), not of the whole batch
    assert [i["share"] for i in legend["items"]] == [_formatted(e["shares"][0]) for e in state["legend"]]
    shares = [float(i["share"].rstrip("%")) for i in legend["items"]]
    assert all(0 <= s <= 100 for s in shares) and abs(sum(shares) - 100) < 1.5
    assert state["batch"] == batch and legend["label"] == f"picture 1 / {batch}"
    assert legend["imageIndex"] is None  # all panels in a grid before a click
    panels = [img["filename"] for img in state["images"]]
    assert legend["imgs"] == panels

    before = _canvas_region(comfy, sal)
    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='1']")
    comfy.page.wait_for_timeout(200)
    after = comfy.evaluate(LEGEND_JS, sal)
    assert after["imageIndex"] == 2  # picture 0: [regions, concept 0, concept 1, ...] (image-major)
    assert [i["pressed"] for i in after["items"]] == ["false", "true", "false"]
    shown = _canvas_region(comfy, sal)
    assert shown != before, "the canvas still shows the same picture after clicking a concept"
    comfy.screenshot("legend_concept_clicked", clip_nodes=[sal])

    comfy.page.click("[data-ca-legend] .ca-next")
    comfy.page.wait_for_timeout(200)
    nxt = comfy.evaluate(LEGEND_JS, sal)
    assert nxt["imageIndex"] == 1 * per_picture + 1 + 1 and nxt["label"] == f"picture 2 / {batch}"
    assert nxt["imgs"][nxt["imageIndex"]] == panels[per_picture + 2]
    assert _canvas_region(comfy, sal) != shown
    # the shares (and the bar) follow the picture
    assert [i["share"] for i in nxt["items"]] == [_formatted(e["shares"][1]) for e in state["legend"]]
    assert nxt["bar"] == [f"{e['shares'][1] * 100:g}%" for e in state["legend"]]
    assert [e["shares"][0] for e in state["legend"]] != [e["shares"][1] for e in state["legend"]], \
        "the two pictures should differ (their noise does)"

    comfy.page.click("[data-ca-legend] .ca-legend-regions")
    comfy.page.wait_for_timeout(200)
    regions = comfy.evaluate(LEGEND_JS, sal)
    assert regions["imageIndex"] == 1 * per_picture and regions["regions"] == "true"
    comfy.screenshot("legend_regions_clicked", clip_nodes=[sal])

    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='2']")
    comfy.page.wait_for_timeout(200)
    assert comfy.evaluate(LEGEND_JS, sal)["imageIndex"] == 1 * per_picture + 1 + 2
    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='2']")  # again: back to all panels
    comfy.page.wait_for_timeout(200)
    back = comfy.evaluate(LEGEND_JS, sal)
    assert back["imageIndex"] is None and all(i["pressed"] == "false" for i in back["items"])
    assert comfy.extension_problems() == []


PIXELS_JS = """async ([src, mapHeight]) => {
  const img = new Image();
  img.src = src;
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, mapHeight).data;
  const counts = {};
  for (let i = 0; i < data.length; i += 4) {
    const hex = '#' + [data[i], data[i + 1], data[i + 2]].map(v => v.toString(16).padStart(2, '0')).join('');
    counts[hex] = (counts[hex] ?? 0) + 1;
  }
  return {counts, width: canvas.width, height: canvas.height};
}"""


def test_legend_colours_are_the_segmentation_views_colours_per_picture(comfy):
    """Read the pixels of each picture's segmentation panel as the browser shows it: its colours are
    exactly the legend's swatches, and each colour covers the share the legend gives for that picture."""
    concepts = ["house", "sun", "hill", "sky"]
    batch, r = 2, 4
    ids = build_graph(comfy, tiny_graphs.encode_graph(batch=batch, size=128, concepts=concepts))
    _show(comfy, 0.6)
    sal = ids["saliency"]
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, sal, batch * (r + 1))
    legend = comfy.evaluate(LEGEND_JS, sal)
    entries = legend["state"]["legend"]
    swatches = {item["color"] for item in legend["items"]}
    assert swatches == {_rgb(e["color"]) for e in entries}
    sources = comfy.evaluate("(id) => app.graph.getNodeById(id).imgs.map(i => i.src)", sal)
    for picture in range(batch):
        src = sources[picture * (r + 1)]
        size = comfy.evaluate("async (src) => { const i = new Image(); i.src = src; await i.decode();"
                              " return [i.naturalWidth, i.naturalHeight]; }", src)
        pixels = comfy.evaluate(PIXELS_JS, [src, size[0]])  # a square picture: the map is square, its strip below
        total = sum(pixels["counts"].values())
        assert set(pixels["counts"]) <= {e["color"] for e in entries}, pixels["counts"].keys()
        for e in entries:
            seen = pixels["counts"].get(e["color"], 0) / total
            assert abs(seen - e["shares"][picture]) < 0.03, (picture, e["name"], seen, e["shares"][picture])
    assert comfy.extension_problems() == []


def test_legend_of_a_video_batch_steps_through_clips(comfy):
    """A video's preview panels are animated clips (the node's `animated` flag): the legend's arrows, label and
    bar speak of clips; a batch of pictures keeps speaking of pictures."""
    ids = build_graph(comfy, tiny_graphs.encode_graph(batch=1))
    sal = ids["saliency"]
    shown = comfy.evaluate(
        """async ([id, url]) => {
          const { showLegend } = await import(url);
          const node = app.graph.getNodeById(id);
          const legend = [{name: 'dog', color: '#ff0000', shares: [0.75, 0.25], index: 0},
                          {name: 'grass', color: '#00ff00', shares: [0.25, 0.75], index: 1}];
          const read = () => {
            const r = node.widgets.find(w => w.name === 'concept_legend').element;
            return [r.querySelector('.ca-image-label')?.textContent, r.querySelector('.ca-next')?.title,
                    r.querySelector('.ca-legend-bar')?.title];
          };
          showLegend(node, {concept_legend: legend, concept_batch: [2], animated: [true], images: []});
          const clips = read();
          showLegend(node, {concept_legend: legend, concept_batch: [2], animated: [false], images: []});
          return {clips, pictures: read()};
        }""",
        [sal, f"/extensions/{PACK_DIR_NAME}/concept_attention.js"],
    )
    assert shown["clips"] == ["clip 1 / 2", "Next clip", "Share of the clip where each concept wins"]
    assert shown["pictures"] == ["picture 1 / 2", "Next picture", "Share of the picture where each concept wins"]


def test_legend_of_concept_saliency_from_sampling(comfy):
    concepts = tiny_graphs.CONCEPTS
    ids = build_graph(comfy, tiny_graphs.sampling_graph())
    _show(comfy, 0.75)
    maps = ids["maps"]
    # The Saliency to Mask after a reroute on the MODEL link still finds the Concept List.
    chips = comfy.evaluate(CHIPS_JS, ids["mask"])
    assert [c for c, _ in chips["chips"]] == concepts
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, maps, len(concepts) + 1)
    legend = comfy.evaluate(LEGEND_JS, maps)
    assert [i["name"] for i in legend["items"]] == concepts
    assert legend["label"] is None  # one picture: no picture arrows
    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='2']")
    comfy.page.wait_for_timeout(200)
    assert comfy.evaluate(LEGEND_JS, maps)["imageIndex"] == 1 + 2
    comfy.screenshot("sampling_legend", clip_nodes=[maps, ids["mask"]])
    assert comfy.extension_problems() == []


# ------------------------------------------------------------------------------------------
# Saliency to Mask: the upstream concepts
# ------------------------------------------------------------------------------------------


def test_mask_node_offers_the_upstream_concepts(comfy):
    concepts = tiny_graphs.CONCEPTS
    ids = build_graph(comfy, tiny_graphs.encode_graph())
    _show(comfy)
    mask = ids["mask"]
    state = comfy.evaluate(CHIPS_JS, mask)
    assert state["chips"] == [[concepts[0], "true"], [concepts[1], "false"], [concepts[2], "false"]]
    assert state["markup"] == 0 and state["value"] == concepts[0]
    comfy.screenshot("mask_concept_buttons", clip_nodes=[mask, ids["concepts"]])

    comfy.page.click(f"[data-ca-picker] .ca-chip[data-concept='{concepts[2]}']")
    assert comfy.evaluate(CHIPS_JS, mask)["value"] == f"{concepts[0]}, {concepts[2]}"
    comfy.page.click(f"[data-ca-picker] .ca-chip[data-concept='{concepts[0]}']")
    state = comfy.evaluate(CHIPS_JS, mask)
    assert state["value"] == concepts[2]
    assert [p for _, p in state["chips"]] == ["false", "false", "true"]
    # The prompt carries what the buttons wrote.
    prompt = comfy.evaluate("async () => (await app.graphToPrompt()).output")
    assert prompt[str(mask)]["inputs"]["concepts"] == concepts[2]

    # Editing the Concept List updates the buttons.
    comfy.evaluate("""(id) => { const n = app.graph.getNodeById(id);
        n.widgets.find(w => w.name === 'concepts').value = 'tree\\nriver, Sky'; app.canvas.setDirty(true, true); }""",
                   ids["concepts"])
    comfy.page.wait_for_function(
        "(id) => [...app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_suggestions').element"
        ".querySelectorAll('.ca-chip')].map(c => c.textContent).join('|') === 'tree|river|Sky'",
        arg=mask, timeout=10_000)
    assert [p for _, p in comfy.evaluate(CHIPS_JS, mask)["chips"]] == ["false", "false", "true"]  # 'sky' ~ 'Sky'

    # Unplugged: no buttons, a hint instead.
    comfy.evaluate("(id) => { const n = app.graph.getNodeById(id); n.disconnectInput(n.findInputSlot('saliency')); }",
                   mask)
    comfy.page.wait_for_function(
        "(id) => !app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_suggestions').element"
        ".querySelector('.ca-chip')", arg=mask, timeout=10_000)
    assert comfy.evaluate(CHIPS_JS, mask)["hint"]
    assert comfy.extension_problems() == []


def test_mask_node_marks_a_renamed_concept_as_missing(comfy):
    ids = build_graph(comfy, tiny_graphs.encode_graph())
    _show(comfy)
    mask = ids["mask"]
    assert comfy.evaluate(CHIPS_JS, mask)["missing"] == []
    # 'cat' (chosen in Saliency to Mask) is renamed 'kitten' in the Concept List
    comfy.evaluate("""(id) => { const n = app.graph.getNodeById(id);
        n.widgets.find(w => w.name === 'concepts').value = 'kitten, sky'; app.canvas.setDirty(true, true); }""",
                   ids["concepts"])
    comfy.page.wait_for_function(
        "(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_suggestions').element"
        ".querySelector('.ca-chip-missing')", arg=mask, timeout=10_000)
    state = comfy.evaluate(CHIPS_JS, mask)
    assert state["missing"] == ["cat"] and [c for c, _ in state["chips"]] == ["kitten", "sky"]
    comfy.screenshot("mask_missing_concept", clip_nodes=[mask, ids["concepts"]])
    comfy.page.click("[data-ca-picker] .ca-chip-missing[data-concept='cat']")  # removes it
    comfy.page.wait_for_timeout(200)
    state = comfy.evaluate(CHIPS_JS, mask)
    assert state["value"] == "" and state["missing"] == []
    assert comfy.extension_problems() == []


def test_mask_node_fed_by_load_saliency_lists_the_files_concepts_after_a_run(comfy, browser_server):
    import torch
    from safetensors.torch import save_file

    file_name = "maps_for_the_picker.safetensors"
    save_file({"maps": torch.rand(1, 3, 4, 4).softmax(1)}, str(browser_server.input_dir / file_name), metadata={
        "format": "concept_attention.saliency", "format_version": "1", "names": json.dumps(["cat", "dog", "sky"]),
        "image_size": json.dumps([64, 64]), "softmax": "true", "metadata": "{}"})
    ids = build_graph(comfy, {"nodes": [
        {"key": "load", "type": "ConceptAttentionLoadSaliency", "pos": [0, 0], "size": [320, 90]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [380, 0], "size": [320, 320],
         "values": {"concepts": "dog", "method": "mean"}},
        {"key": "preview", "type": "MaskPreview", "pos": [760, 0], "size": [300, 300]},
    ], "links": [("load", "saliency", "mask", "saliency"), ("mask", "mask", "preview", "mask")]})
    comfy.evaluate("([id, file]) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'file').value = file; }",
                   [ids["load"], file_name])
    _show(comfy)
    state = comfy.evaluate(CHIPS_JS, ids["mask"])
    assert state["hint"] == "Run once to list this file's concepts." and state["chips"] == []
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    comfy.page.wait_for_function(
        "(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_suggestions').element"
        ".querySelectorAll('.ca-chip').length === 3", arg=ids["mask"], timeout=10_000)
    state = comfy.evaluate(CHIPS_JS, ids["mask"])
    assert state["chips"] == [["cat", "false"], ["dog", "true"], ["sky", "false"]] and state["missing"] == []
    comfy.screenshot("mask_from_load_saliency", clip_nodes=[ids["load"], ids["mask"]])
    assert comfy.extension_problems() == []


MASK_PIXELS_JS = """async (id) => {
  const node = app.graph.getNodeById(id);
  const img = node.imgs[0];
  await img.decode();
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] > 127) lit++;
  return lit / (data.length / 4);
}"""
NOTE_JS = """(id) => { const n = app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_suggestions').element
  .querySelector('.ca-mask-note');
  return n ? {text: n.title, headline: n.textContent, shown: n.getBoundingClientRect().height > 0} : null; }"""


def test_mask_of_an_absent_concept_is_empty_by_default_and_the_node_says_so(comfy, browser_server):
    """'dog' wins no token of the picture (0 % in the legend): the default method gives an empty mask and the
    node says why; relative_mean still masks the upper half of its map, as the paper's mean cut did."""
    import torch
    from safetensors.torch import save_file

    file_name = "maps_without_a_dog.safetensors"
    maps = torch.rand(1, 3, 8, 8).softmax(1)
    maps[:, 1] = maps[:, [0, 2]].amin(1) * 0.5  # dog: under cat and sky everywhere, yet a varied map
    save_file({"maps": maps / maps.sum(1, keepdim=True)}, str(browser_server.input_dir / file_name), metadata={
        "format": "concept_attention.saliency", "format_version": "1", "names": json.dumps(["cat", "dog", "sky"]),
        "image_size": json.dumps([64, 64]), "softmax": "true", "metadata": "{}"})
    ids = build_graph(comfy, {"nodes": [
        {"key": "load", "type": "ConceptAttentionLoadSaliency", "pos": [0, 0], "size": [320, 90]},
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [380, 0], "size": [320, 320],
         "values": {"concepts": "dog"}},
        {"key": "preview", "type": "MaskPreview", "pos": [760, 0], "size": [300, 300]},
    ], "links": [("load", "saliency", "mask", "saliency"), ("mask", "mask", "preview", "mask")]})
    comfy.evaluate("([id, file]) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'file').value = file; }",
                   [ids["load"], file_name])
    _show(comfy)
    mask = ids["mask"]
    assert comfy.evaluate("(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'method').value",
                          mask) == "mean"  # the default
    assert comfy.evaluate(NOTE_JS, mask) == {"text": "", "headline": "", "shown": False}
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    comfy.page.wait_for_function(f"(id) => ({NOTE_JS})(id)?.text", arg=mask, timeout=10_000)
    note = comfy.evaluate(NOTE_JS, mask)
    assert note["shown"] and note["text"].startswith("Empty mask for 'dog' in this picture: "), note
    assert note["headline"] == "Empty mask for 'dog' in this picture"
    assert "relative_mean" in note["text"]
    comfy.page.wait_for_function("(id) => app.graph.getNodeById(id).imgs?.[0]?.complete", arg=ids["preview"],
                                 timeout=10_000)
    assert comfy.evaluate(MASK_PIXELS_JS, ids["preview"]) == 0
    comfy.screenshot("mask_of_an_absent_concept", clip_nodes=[mask, ids["preview"]])

    comfy.evaluate("(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'method').value = "
                   "'relative_mean'; }", mask)
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    comfy.page.wait_for_function(f"(id) => ({NOTE_JS})(id)?.text === ''", arg=mask, timeout=10_000)
    comfy.page.wait_for_function(f"async (id) => ({MASK_PIXELS_JS})(id).then(v => v > 0.2)", arg=ids["preview"],
                                 timeout=10_000)
    assert comfy.extension_problems() == []


VIDEO_EXAMPLES = [spec["name"] for spec in EXAMPLE_SPECS if "cogvideox" in spec["name"] or "minimax" in spec["name"]]
ANIMATION_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  const host = node.widgets?.find(w => w.name === '$$comfy_animation_preview')?.element;
  const img = host?.querySelector('img');
  return {count: host?.querySelectorAll('img').length ?? 0,
          shown: img ? new URL(img.src).searchParams.get('filename') : null,
          playing: img ? img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().height > 0 : false};
}"""


@pytest.mark.parametrize("name", VIDEO_EXAMPLES)
def test_legend_of_a_video_shows_the_clicked_concepts_animation(comfy, name):
    """A video's panels are animated WebPs that the front end plays one at a time (the first); clicking a concept
    in the legend plays that concept's animated map, 'All concepts' the regions, and clicking again goes back."""
    assert VIDEO_EXAMPLES
    example_runs.load_with_tiny_models(comfy, _workflow(name))
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    example_runs.wait_for_previews(comfy, result)
    [sal] = comfy.evaluate("() => app.graph.nodes.filter(n => n.widgets?.some(w => w.name === 'concept_legend'))"
                           ".map(n => n.id)")
    comfy.evaluate("(id) => { const n = app.graph.getNodeById(id); app.canvas.ds.scale = 0.8;"
                   " app.canvas.ds.offset = [40 - n.pos[0] * 0.8, 80 - n.pos[1] * 0.8]; app.canvas.setDirty(true, true); }",
                   sal)
    state = comfy.evaluate(LEGEND_JS, sal)["state"]
    assert state["unit"] == "clip" and state["segmentation"] is True
    files = [img["filename"] for img in state["images"]]
    assert len(files) == len(state["legend"]) + 1 and all(f.endswith(".webp") for f in files)
    comfy.page.wait_for_function(f"(id) => ({ANIMATION_JS})(id).shown !== null", arg=sal, timeout=10_000)
    assert comfy.evaluate(ANIMATION_JS, sal)["shown"] == files[0]  # before a click: the regions

    for index in range(len(state["legend"])):
        comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='{index}']")
        comfy.page.wait_for_timeout(300)  # several frames drawn: the front end puts its first image back on each
        shown = comfy.evaluate(ANIMATION_JS, sal)
        assert shown["shown"] == files[1 + index] and shown["count"] == 1, (index, shown, files)
        assert shown["playing"], shown
        assert comfy.evaluate(LEGEND_JS, sal)["state"]["selected"] == index
    comfy.screenshot(f"video_legend_concept_{name}", clip_nodes=[sal])
    comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='{len(state['legend']) - 1}']")  # again: all panels
    comfy.page.wait_for_timeout(300)
    assert comfy.evaluate(ANIMATION_JS, sal)["shown"] == files[0]
    assert comfy.extension_problems() == []


RUN_JS_TEXT = """(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_legend').element
  .querySelector('.ca-legend-run')?.textContent ?? null"""


def test_concept_saliency_shows_a_requery_and_its_time(comfy):
    """A picture given as IMAGE + VAE: the first run runs the model; new concepts on it are a re-query, and the
    legend says so with the node's time."""
    ids = build_graph(comfy, tiny_graphs.encode_graph(vae=True))
    _show(comfy)
    sal = ids["saliency"]
    # the tiny loaders' seeds: the front end would draw new ones (new models) after each run
    comfy.evaluate("() => app.graph.nodes.forEach(n => n.widgets?.forEach(w => {"
                   " if (w.name === 'control_after_generate') w.value = 'fixed'; }))")
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    example_runs.wait_for_previews(comfy, result)
    first = comfy.evaluate(RUN_JS_TEXT, sal)
    assert re.fullmatch(r"Model run: \d+\.\d\d s", first or ""), first
    comfy.evaluate("""(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'concepts').value = 'cat, tree';
                      }""", ids["concepts"])
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    comfy.page.wait_for_function("(id) => app.graph.getNodeById(id).__conceptAttention.legend.length === 2", arg=sal)
    second = comfy.evaluate(RUN_JS_TEXT, sal)
    assert re.fullmatch(r"Re-query: \d+\.\d\d s \(model not run\)", second or ""), second
    comfy.screenshot("legend_requery", clip_nodes=[sal])
    assert comfy.extension_problems() == []
