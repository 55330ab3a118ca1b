"""The pack's web extension and example workflows in the real ComfyUI front end (headless Chromium).

One server and one page for the whole module (see conftest.py); each test loads its own graph.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest

from concept_attention_tests.browser import tiny_graphs
from concept_attention_tests.browser.browser_session import (
    EXAMPLE_WORKFLOWS_DIR,
    EXTENSION_NAME,
    PACK_DIR_NAME,
    REPO_ROOT,
    build_graph,
)
from concept_attention_tests.browser.example_specs import EXAMPLES as EXAMPLE_SPECS
from concept_attention_tests.browser.example_specs import EXPECTED

PACK_NODES = {
    "ConceptAttentionConceptList", "ConceptAttentionSaliency", "ConceptAttentionPatchModel",
    "ConceptAttentionSamplingSaliency", "ConceptAttentionSaliencyToMask", "ConceptAttentionSaveSaliency",
    "ConceptAttentionLoadSaliency",
}
EXAMPLES = sorted(p.stem for p in EXAMPLE_WORKFLOWS_DIR.glob("*.json"))
WEB_DIR = REPO_ROOT / "web"

LEGEND_JS = """(id) => {
  const node = app.graph.getNodeById(id);
  const root = node.widgets.find(w => w.name === 'concept_legend').element;
  return {
    state: node.__conceptAttention,
    imageIndex: node.imageIndex ?? null,
    imgs: (node.imgs || []).map(i => new URL(i.src).searchParams.get('filename')),
    items: [...root.querySelectorAll('.ca-legend-item')].map(b => ({
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
    chips: [...root.querySelectorAll('.ca-chip')].map(c => [c.textContent, c.getAttribute('aria-pressed')]),
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
        assert set(imports) <= {"../../scripts/app.js", "../../scripts/api.js"}, (path.name, imports)
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", source), path.name


# ------------------------------------------------------------------------------------------
# example workflows
# ------------------------------------------------------------------------------------------


def test_every_example_workflow_is_listed_with_a_thumbnail(browser_server):
    assert set(EXAMPLES) == set(EXPECTED)
    assert set(EXAMPLES) == {spec["name"] for spec in EXAMPLE_SPECS}
    listed = browser_server.get_json("/api/workflow_templates")
    assert sorted(listed.get(PACK_DIR_NAME, [])) == EXAMPLES
    for name in EXAMPLES:
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
        for name in EXAMPLES:
            page.get_by_text(name, exact=True).first.wait_for(state="visible", timeout=15_000)
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
    workflow = json.loads((EXAMPLE_WORKFLOWS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert notes and "models/" in notes[0]["widgets_values"][0]
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
    for class_type, (file_name, directory) in expected.get("models", {}).items():
        models = comfy.evaluate(
            "(type) => app.graph.nodes.filter(n => n.type === type).map(n => n.properties?.models ?? null)",
            class_type)
        assert models and all(m and len(m) == 1 for m in models), (class_type, models)
        for [entry] in models:
            assert entry["name"] == file_name and entry["directory"] == directory, entry
            assert entry["url"].startswith("https://huggingface.co/") and entry["url"].endswith("/" + file_name), entry
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
    workflow = json.loads((EXAMPLE_WORKFLOWS_DIR / f"{name}.json").read_text(encoding="utf-8"))
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


# ------------------------------------------------------------------------------------------
# a run on tiny models: the legend
# ------------------------------------------------------------------------------------------


def test_legend_after_a_run_and_clicking_a_concept_shows_its_map(comfy):
    concepts = tiny_graphs.CONCEPTS
    r, batch = len(concepts), 2
    ids = build_graph(comfy, tiny_graphs.encode_graph(batch=batch))
    _show(comfy)
    sal = ids["saliency"]
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, sal, batch * r)
    comfy.screenshot("legend_after_run", clip_nodes=[sal])

    legend = comfy.evaluate(LEGEND_JS, sal)
    state = legend["state"]
    assert [e["name"] for e in state["legend"]] == concepts
    assert [i["name"] for i in legend["items"]] == concepts  # names as text ...
    assert all(i["markup"] == 0 for i in legend["items"])  # ... never as markup
    assert [i["color"] for i in legend["items"]] == [_rgb(e["color"]) for e in state["legend"]]
    shares = [float(i["share"].rstrip("%")) for i in legend["items"]]
    assert all(0 <= s <= 100 for s in shares) and abs(sum(shares) - 100) < 1.5
    assert state["batch"] == batch and legend["label"] == f"picture 1 / {batch}"
    assert legend["imageIndex"] is None  # all maps in a grid before a click
    panels = [img["filename"] for img in state["images"]]
    assert legend["imgs"] == panels

    before = _canvas_region(comfy, sal)
    comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='1']")
    comfy.page.wait_for_timeout(200)
    after = comfy.evaluate(LEGEND_JS, sal)
    assert after["imageIndex"] == 1  # picture 0, concept 1 (panels are image-major)
    assert [i["pressed"] for i in after["items"]] == ["false", "true", "false"]
    shown = _canvas_region(comfy, sal)
    assert shown != before, "the canvas still shows the same picture after clicking a concept"
    comfy.screenshot("legend_concept_clicked", clip_nodes=[sal])

    comfy.page.click("[data-ca-legend] .ca-next")
    comfy.page.wait_for_timeout(200)
    nxt = comfy.evaluate(LEGEND_JS, sal)
    assert nxt["imageIndex"] == 1 * r + 1 and nxt["label"] == f"picture 2 / {batch}"
    assert nxt["imgs"][nxt["imageIndex"]] == panels[r + 1]
    assert _canvas_region(comfy, sal) != shown

    comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='2']")
    comfy.page.wait_for_timeout(200)
    assert comfy.evaluate(LEGEND_JS, sal)["imageIndex"] == 1 * r + 2
    comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='2']")  # again: back to all maps
    comfy.page.wait_for_timeout(200)
    back = comfy.evaluate(LEGEND_JS, sal)
    assert back["imageIndex"] is None and all(i["pressed"] == "false" for i in back["items"])
    assert comfy.extension_problems() == []


def test_legend_of_concept_saliency_from_sampling(comfy):
    concepts = tiny_graphs.CONCEPTS
    ids = build_graph(comfy, tiny_graphs.sampling_graph())
    _show(comfy, 0.75)
    maps = ids["maps"]
    # The Saliency to Mask after a reroute on the MODEL link still finds the Concept List.
    chips = comfy.evaluate(CHIPS_JS, ids["mask"])
    assert [c for c, _ in chips["chips"]] == concepts
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, maps, len(concepts))
    legend = comfy.evaluate(LEGEND_JS, maps)
    assert [i["name"] for i in legend["items"]] == concepts
    assert legend["label"] is None  # one picture: no picture arrows
    comfy.page.click(f"[data-ca-legend] .ca-legend-item[data-index='2']")
    comfy.page.wait_for_timeout(200)
    assert comfy.evaluate(LEGEND_JS, maps)["imageIndex"] == 2
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
