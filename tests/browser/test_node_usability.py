"""What an artist sees of the nodes in the real front end: captions readable at 100 % zoom, names whole, a
segmentation key naming every colour, outdated maps marked as such, an encode's progress, and only the inputs that
matter up front (advanced inputs hidden, `threshold` only for the methods that read it).

One server and one page for the whole module (see conftest.py); each test loads its own graph.
"""

from __future__ import annotations

from concept_attention_tests.browser import example_runs, tiny_graphs
from concept_attention_tests.browser.browser_session import NODE_BOUNDS_JS, build_graph

ADVANCED = ["concept_self_attention", "concept_cross_attention", "requery_cache_mb", "softmax", "softmax_temperature",
            "softmax_after_mean"]
TINY_FLUX_DOUBLE_BLOCKS = 3  # tests/server/fixture_nodes: the tiny Flux.1 (layers "all" reads these)


def _zoom(comfy, scale: float = 1.0, node_id: int | None = None) -> None:
    comfy.evaluate("""([s, id]) => { const n = id === null ? null : app.graph.getNodeById(id);
        app.canvas.ds.scale = s;
        app.canvas.ds.offset = n ? [40 - n.pos[0], 80 - n.pos[1]] : [40, 80];
        app.canvas.setDirty(true, true); }""", [scale, node_id])
    comfy.page.wait_for_timeout(150)


def _legend_ready(comfy, node_id: int, panels: int) -> None:
    comfy.page.wait_for_function(
        """([id, panels]) => { const n = app.graph.getNodeById(id);
             return (n.__conceptAttention?.legend.length ?? 0) > 0 && n.imgs?.length === panels
               && n.imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        arg=[node_id, panels], timeout=120_000)


def _drawn(comfy) -> None:
    comfy.evaluate("app.canvas.setDirty(true, true); app.canvas.draw(true, true)")
    comfy.page.wait_for_timeout(150)
    comfy.evaluate("app.canvas.setDirty(true, true); app.canvas.draw(true, true)")
    comfy.page.wait_for_timeout(150)


# On screen (CSS px at the current zoom), for every preview panel: its drawn width and the height of the first line
# of text in its caption strip (white ink), and the colours of its strip's pixels.
PANELS_ON_SCREEN_JS = """async (id) => {
  const node = app.graph.getNodeById(id);
  const zoom = app.canvas.ds.scale;
  const out = [];
  for (const [k, img] of node.imgs.entries()) {
    const [, , cw, ch] = node.imageRects[k];
    const scale = Math.min(cw / img.naturalWidth, ch / img.naturalHeight) * zoom;
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const mapHeight = img.naturalWidth;  // square pictures: the map is square, its strip below
    const data = ctx.getImageData(0, mapHeight, canvas.width, canvas.height - mapHeight).data;
    const rows = [];
    const colours = new Set();
    for (let y = 0; y < canvas.height - mapHeight; y++) {
      let ink = false;
      for (let x = 0; x < canvas.width; x++) {
        const i = (y * canvas.width + x) * 4;
        if (Math.min(data[i], data[i + 1], data[i + 2]) > 204) ink = true;
        colours.add('#' + [data[i], data[i + 1], data[i + 2]].map(v => v.toString(16).padStart(2, '0')).join(''));
      }
      rows.push(ink);
    }
    const first = rows.indexOf(true);
    let last = first;
    while (last + 1 < rows.length && rows[last + 1]) last++;
    out.push({shownWidth: img.naturalWidth * scale, inkHeight: first < 0 ? 0 : (last - first + 1) * scale,
              natural: [img.naturalWidth, img.naturalHeight], colours: [...colours]});
  }
  return out;
}"""

LEGEND_NAMES_JS = """(id) => [...app.graph.getNodeById(id).widgets.find(w => w.name === 'concept_legend').element
  .querySelectorAll('.ca-legend-item:not(.ca-legend-regions) .ca-name')].map(n => ({
    text: n.textContent, whole: n.scrollWidth <= n.clientWidth + 1,
    ellipsis: getComputedStyle(n).textOverflow === 'ellipsis' && getComputedStyle(n).whiteSpace === 'nowrap'}))"""


def test_captions_are_at_least_12_px_at_100_percent_zoom_and_names_are_whole(comfy):
    """A node with no room laid out for a run grows so that all its panels, in a grid, show their captions at least
    12 px tall at 100 % zoom."""
    concepts = ["cat", "background", "sky", "a red bicycle leaning on the garden wall"]
    graph = tiny_graphs.encode_graph(concepts=concepts, size=128)
    next(n for n in graph["nodes"] if n["key"] == "saliency")["size"] = [330, 300]  # a new node: no room laid out
    ids = build_graph(comfy, graph)
    sal = ids["saliency"]
    _zoom(comfy, 1.0, sal)
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, sal, len(concepts) + 1)
    _drawn(comfy)
    panels = comfy.evaluate(PANELS_ON_SCREEN_JS, sal)
    state = comfy.evaluate("(id) => app.graph.getNodeById(id).__conceptAttention", sal)
    readable_width = state["panel"][0]
    for k, panel in enumerate(panels):
        assert panel["shownWidth"] >= readable_width - 1, (k, panel["shownWidth"], readable_width)
    # The caption's ink, ascenders to descenders, on screen: panels 2 and 4 are "background" and "a red bicycle ...".
    for k in (2, 4):
        assert panels[k]["inkHeight"] >= 12, (k, panels[k]["inkHeight"], panels[k]["natural"])
    # The legend beside the maps shows every name whole (wrapped), never cut with an ellipsis.
    names = comfy.evaluate(LEGEND_NAMES_JS, sal)
    assert [n["text"] for n in names] == concepts
    assert all(n["whole"] and not n["ellipsis"] for n in names), names
    # The segmentation view's key: a swatch for every concept that wins part of the picture.
    coloured = {e["color"] for e in state["legend"] if e["shares"][0] > 0}
    assert coloured and coloured <= set(panels[0]["colours"]), (coloured, len(panels[0]["colours"]))
    comfy.screenshot("captions_at_100_percent", clip_nodes=[sal])
    assert comfy.extension_problems() == []


def test_a_laid_out_node_too_small_for_a_readable_grid_keeps_its_size_and_shows_the_regions_large(comfy):
    """A node laid out with room for a run (a workflow's) is not resized; where that room cannot show every panel
    readably, it shows the segmentation view alone, large enough to read its key; the legend still picks any panel."""
    graph = tiny_graphs.encode_graph(batch=2, size=128)
    [saliency] = [n for n in graph["nodes"] if n["key"] == "saliency"]
    saliency["size"] = [330, 800]
    ids = build_graph(comfy, graph)
    sal = ids["saliency"]
    _zoom(comfy, 1.0, sal)
    size = comfy.evaluate("(id) => app.graph.getNodeById(id).size.map(Number)", sal)
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, sal, 2 * (len(tiny_graphs.CONCEPTS) + 1))
    _drawn(comfy)
    comfy.page.wait_for_function("(id) => { app.canvas.setDirty(true, true); return app.graph.getNodeById(id)"
                                 ".imageIndex === 0; }", arg=sal, timeout=10_000)
    _drawn(comfy)
    shown = comfy.evaluate("""(id) => { const n = app.graph.getNodeById(id);
        const preview = n.widgets.find(w => w.name === '$$canvas-image-preview');
        const img = n.imgs[n.imageIndex];
        const scale = Math.min(n.size[0] / img.naturalWidth, preview.computedHeight / img.naturalHeight, 1);
        return {size: n.size.map(Number), index: n.imageIndex, selected: n.__conceptAttention.selected,
                shownWidth: img.naturalWidth * scale, readable: n.__conceptAttention.panel[0]}; }""", sal)
    assert shown["size"] == size
    assert shown["index"] == 0 and shown["selected"] == "regions", shown
    assert shown["shownWidth"] >= shown["readable"], shown
    comfy.page.click("[data-ca-legend] .ca-legend-item[data-index='1']")
    comfy.page.wait_for_timeout(200)
    assert comfy.evaluate("(id) => app.graph.getNodeById(id).imageIndex", sal) == 2
    assert comfy.extension_problems() == []


def test_a_large_batch_is_shown_one_readable_panel_at_a_time_rather_than_in_a_huge_node(comfy):
    """Growing a node to show every panel of a large batch readably would make it thousands of pixels tall: it grows
    to show one panel readably instead (the segmentation view; the legend and arrows pick the others)."""
    ids = build_graph(comfy, tiny_graphs.encode_graph())
    sal = ids["saliency"]
    shown = comfy.evaluate("""async ([id, url]) => {
        const { showLegend } = await import(url);
        const node = app.graph.getNodeById(id);
        const legend = ['a', 'b', 'c', 'd', 'e'].map((name, index) => ({name, color: '#ff0000', shares: [0.2], index}));
        const run = (pictures) => {
          node.setSize([330, 300]);
          node.__conceptAttention.selected = null;
          const images = Array.from({length: pictures * 6}, (_, k) => ({filename: `p${k}.png`, type: 'temp'}));
          showLegend(node, {concept_legend: legend, concept_batch: [pictures], concept_segmentation: [true], images,
                            concept_panel: [[131, 203]]});
          return {height: node.size[1], selected: node.__conceptAttention.selected};
        };
        return {one: run(1), eight: run(8)};
    }""", [sal, "/extensions/ComfyUI-ConceptAttention/concept_attention.js"])
    assert shown["one"]["selected"] is None and shown["one"]["height"] >= 3 * 203
    assert shown["eight"]["selected"] == "regions", shown
    assert shown["eight"]["height"] < shown["one"]["height"] and shown["eight"]["height"] < 1200, shown


STALE_JS = """(id) => { const n = app.graph.getNodeById(id);
  const root = n.widgets.find(w => w.name === 'concept_legend').element;
  const note = root.querySelector('.ca-legend-stale-note');
  return {stale: n.__conceptAttention.stale, marked: root.classList.contains('ca-legend-stale'),
          note: note ? note.textContent : null, shown: note ? note.getBoundingClientRect().height > 0 : false}; }"""


def _preview_brightness(comfy, node_id: int) -> float:
    """Mean brightness of the node's preview area on screen (below its widgets)."""
    from io import BytesIO

    from PIL import Image

    _drawn(comfy)
    box = comfy.evaluate(NODE_BOUNDS_JS, [str(node_id)])
    top = comfy.evaluate("""(id) => { const n = app.graph.getNodeById(id);
        const w = n.widgets.find(w => w.name === '$$canvas-image-preview');
        return (w.y + 20) * app.canvas.ds.scale; }""", node_id)
    clip = {"x": box["x"], "y": box["y"] + top + 30, "width": box["width"], "height": box["height"] - top - 40}
    image = Image.open(BytesIO(comfy.page.screenshot(clip=clip))).convert("L")
    return sum(image.tobytes()) / (image.width * image.height)


def test_maps_are_marked_outdated_after_the_concepts_change_until_the_next_run(comfy):
    ids = build_graph(comfy, tiny_graphs.encode_graph())
    sal = ids["saliency"]
    _zoom(comfy, 0.8, sal)
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    _legend_ready(comfy, sal, len(tiny_graphs.CONCEPTS) + 1)
    assert comfy.evaluate(STALE_JS, sal) == {"stale": False, "marked": False, "note": None, "shown": False}
    fresh = _preview_brightness(comfy, sal)

    comfy.evaluate("""(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'concepts').value = 'cat, tree';
                      app.canvas.setDirty(true, true); }""", ids["concepts"])
    comfy.page.wait_for_function(f"(id) => ({STALE_JS})(id).stale", arg=sal, timeout=10_000)
    stale = comfy.evaluate(STALE_JS, sal)
    assert stale["marked"] and stale["shown"] and stale["note"].startswith("Outdated"), stale
    veiled = _preview_brightness(comfy, sal)
    assert veiled < fresh * 0.8, (fresh, veiled)  # the maps are covered by the dark "outdated" veil
    comfy.screenshot("maps_outdated", clip_nodes=[sal, ids["concepts"]])

    # Back to the concepts of the run: the maps are current again.
    comfy.evaluate("""([id, text]) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'concepts').value = text;
                      app.canvas.setDirty(true, true); }""", [ids["concepts"], ", ".join(tiny_graphs.CONCEPTS)])
    comfy.page.wait_for_function(f"(id) => !({STALE_JS})(id).stale", arg=sal, timeout=10_000)
    comfy.evaluate("""(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'concepts').value = 'cat, tree';
                      app.canvas.setDirty(true, true); }""", ids["concepts"])
    comfy.page.wait_for_function(f"(id) => ({STALE_JS})(id).stale", arg=sal, timeout=10_000)

    # The next run shows the new concepts, unmarked.
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    comfy.page.wait_for_function("(id) => app.graph.getNodeById(id).__conceptAttention.legend.length === 2", arg=sal,
                                 timeout=120_000)
    _drawn(comfy)
    assert comfy.evaluate(STALE_JS, sal) == {"stale": False, "marked": False, "note": None, "shown": False}
    assert comfy.extension_problems() == []


def test_concept_saliency_from_sampling_is_marked_outdated_through_the_patch(comfy):
    ids = build_graph(comfy, tiny_graphs.sampling_graph())
    maps = ids["maps"]
    _zoom(comfy, 0.8, maps)  # on screen: the mark is checked as the node is drawn
    legend = [{"name": n, "color": "#ff0000", "shares": [0.5], "index": i} for i, n in enumerate(tiny_graphs.CONCEPTS)]
    comfy.evaluate("""async ([id, url, legend]) => { const { showLegend } = await import(url);
        showLegend(app.graph.getNodeById(id), {concept_legend: legend, concept_batch: [1], images: []}); }""",
                   [maps, "/extensions/ComfyUI-ConceptAttention/concept_attention.js", legend])
    _drawn(comfy)
    assert comfy.evaluate(STALE_JS, maps)["stale"] is False
    comfy.evaluate("""(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'concepts').value = 'cat, sky';
                      app.canvas.setDirty(true, true); }""", ids["concepts"])
    comfy.page.wait_for_function(f"(id) => ({STALE_JS})(id).stale", arg=maps, timeout=10_000)
    assert comfy.evaluate(STALE_JS, maps)["note"].startswith("Outdated")


def test_a_videos_animated_maps_are_marked_outdated_too(comfy):
    """A video's maps play in the front end's animation widget (a DOM element): it is greyed out while outdated."""
    import json

    from concept_attention_examples.specs import EXAMPLES, file_stem

    from concept_attention_tests.browser.browser_session import EXAMPLE_WORKFLOWS_DIR

    [spec] = [spec for spec in EXAMPLES if "cogvideox" in spec["name"]][:1]
    workflow = json.loads((EXAMPLE_WORKFLOWS_DIR / f"{file_stem(spec)}.json").read_text(encoding="utf-8"))
    example_runs.load_with_tiny_models(comfy, workflow)
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    example_runs.wait_for_previews(comfy, result)
    [sal] = comfy.evaluate("() => app.graph.nodes.filter(n => n.widgets?.some(w => w.name === 'concept_legend'))"
                           ".map(n => n.id)")
    [concepts] = comfy.evaluate("() => app.graph.nodes.filter(n => n.type === 'ConceptAttentionConceptList')"
                                ".map(n => n.id)")
    _zoom(comfy, 0.8, sal)
    host_js = """(id) => app.graph.getNodeById(id).widgets.find(w => w.name === '$$comfy_animation_preview')
        ?.element.classList.contains('ca-stale-media') ?? null"""
    comfy.page.wait_for_function(f"(id) => ({host_js})(id) === false", arg=sal, timeout=10_000)
    comfy.evaluate("""(id) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === 'concepts');
                      w.value = w.value + ', moon'; app.canvas.setDirty(true, true); }""", concepts)
    comfy.page.wait_for_function(f"(id) => ({STALE_JS})(id).stale && ({host_js})(id) === true", arg=sal,
                                 timeout=10_000)
    assert comfy.evaluate(STALE_JS, sal)["shown"]
    assert comfy.extension_problems() == []


PROGRESS_JS = """(id) => new Promise((resolve) => {
  const seen = [];
  const listener = (e) => { if (String(e.detail?.node) === String(id)) seen.push([e.detail.value, e.detail.max]); };
  api.addEventListener('progress', listener);
  window.__caProgress = seen;
  resolve(true);
})"""


def test_an_encode_reports_progress_in_samples_times_blocks(comfy):
    """The node's progress during an encode counts samples x blocks, starting with the first block (not 0 % until
    the end)."""
    ids = build_graph(comfy, tiny_graphs.encode_graph())
    sal = ids["saliency"]
    _zoom(comfy, 0.8, sal)  # on screen: the front end loads a node's pictures once it is drawn
    comfy.evaluate("(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'samples').value = 2; }", sal)
    comfy.evaluate("""async () => { const { api } = await import('/scripts/api.js'); window.__caApi = api; }""")
    comfy.evaluate(PROGRESS_JS.replace("api.addEventListener", "window.__caApi.addEventListener"), sal)
    result = example_runs.run(comfy)
    assert result["kind"] == "execution_success", result
    _legend_ready(comfy, sal, len(tiny_graphs.CONCEPTS) + 1)
    seen = comfy.evaluate("() => window.__caProgress")
    total = 2 * TINY_FLUX_DOUBLE_BLOCKS
    assert seen and seen[0] == [1, total] and seen[-1] == [total, total], seen
    assert all(m == total for _, m in seen)


def _widgets_shown(comfy, node_type: str, method: str | None = None) -> dict:
    return comfy.evaluate("""([type, method]) => {
        const node = LiteGraph.createNode(type);
        app.graph.add(node);
        if (method !== null) {
          const w = node.widgets.find(w => w.name === 'method');
          w.value = method; w.callback?.(w.value, app.canvas, node);
        }
        const shown = () => Object.fromEntries(node.widgets.filter(w => !w.name.startsWith('$$') && w.type !== 'concept-legend'
          && w.type !== 'concept-suggestions').map(w => [w.name, node.isWidgetVisible(w)]));
        const before = shown();
        const height = node.computeSize()[1];
        const menu = app.canvas.getNodeMenuOptions(node).map(o => o?.content);
        node.toggleAdvanced();  // what the node menu's "Show Advanced" does
        const advanced = shown();
        const grown = node.computeSize()[1] - height;
        app.graph.remove(node);
        return {before, advanced, grown, menu};
    }""", [node_type, method])


def test_advanced_inputs_are_hidden_until_asked_for(comfy, browser_server):
    info = browser_server.get_json("/api/object_info/ConceptAttentionSaliency")["ConceptAttentionSaliency"]["input"]
    for name in ADVANCED:
        spec = info.get("required", {}).get(name) or info["optional"][name]
        assert spec[1].get("advanced") is True, name
    build_graph(comfy, {"nodes": [], "links": []})
    saliency = _widgets_shown(comfy, "ConceptAttentionSaliency")
    assert {name for name, shown in saliency["before"].items() if not shown} == set(ADVANCED)
    assert "Show Advanced" in saliency["menu"]
    assert all(saliency["advanced"].values())
    assert saliency["grown"] >= len(ADVANCED) * 20  # hidden advanced widgets took no room (no gap in the node)
    patch = _widgets_shown(comfy, "ConceptAttentionPatchModel")
    assert {name for name, shown in patch["before"].items() if not shown} == set(ADVANCED) - {"requery_cache_mb"}
    assert all(patch["advanced"].values())


def test_threshold_is_shown_only_for_the_methods_that_read_it(comfy, browser_server):
    info = browser_server.get_json("/api/object_info/ConceptAttentionSaliencyToMask")
    spec = info["ConceptAttentionSaliencyToMask"]["input"]["required"]
    methods = spec["method"][0]
    assert spec["threshold"][1]["read_by_methods"] == ["value", "top_percent"]
    build_graph(comfy, {"nodes": [], "links": []})
    for method in methods:
        shown = _widgets_shown(comfy, "ConceptAttentionSaliencyToMask", method)["before"]
        assert shown["threshold"] is (method in ("value", "top_percent")), (method, shown)
        assert shown["method"] and shown["grow"] and shown["concepts"]

    # A workflow saved with method 'value' opens with the threshold shown; a value set by a script (no callback)
    # shows or hides it on the next draw; the prompt always carries the threshold.
    ids = build_graph(comfy, {"nodes": [
        {"key": "mask", "type": "ConceptAttentionSaliencyToMask", "pos": [0, 0], "size": [320, 320],
         "values": {"method": "top_percent", "threshold": 25.0}}], "links": []})
    mask = ids["mask"]
    workflow = comfy.evaluate("() => app.graph.serialize()")
    comfy.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    _drawn(comfy)
    visible = ("(id) => { const n = app.graph.getNodeById(id);"
               " return n.isWidgetVisible(n.widgets.find(w => w.name === 'threshold')); }")
    assert comfy.evaluate(visible, mask) is True
    comfy.evaluate("(id) => { app.graph.getNodeById(id).widgets.find(w => w.name === 'method').value = 'otsu'; }", mask)
    _drawn(comfy)
    assert comfy.evaluate(visible, mask) is False
    prompt = comfy.evaluate("async () => (await app.graphToPrompt()).output")
    assert prompt[str(mask)]["inputs"]["threshold"] == 25.0
    assert comfy.extension_problems() == []
