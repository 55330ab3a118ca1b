"""Headless Chromium driving the real ComfyUI front end, for the browser tier and the docs tools.

Import as ``concept_attention_tests.browser.browser_session``. Debian's Chromium
(/usr/bin/chromium, installed by scripts/setup_browser.sh) runs under Python Playwright with
``executable_path``; Playwright never downloads a browser of its own here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The server tier's test-only node pack (tiny Flux.1 MODEL and CLIP builders), reused here.
FIXTURE_NODES_DIR = REPO_ROOT / "tests" / "server" / "fixture_nodes"
EXAMPLE_WORKFLOWS_DIR = REPO_ROOT / "example_workflows"
# The example workflows' specs (scripts/examples/): importable as concept_attention_examples.* once
# this module is imported, by the browser tier and by scripts/make_examples.py alike.
EXAMPLES_PACKAGE = "concept_attention_examples"
EXAMPLES_DIR = REPO_ROOT / "scripts" / "examples"


def _register_examples_package() -> None:
    if EXAMPLES_PACKAGE in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        EXAMPLES_PACKAGE, EXAMPLES_DIR / "__init__.py", submodule_search_locations=[str(EXAMPLES_DIR)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[EXAMPLES_PACKAGE] = module
    spec.loader.exec_module(module)


_register_examples_package()
SCREENSHOT_DIR = REPO_ROOT / "test-artifacts" / "screenshots"
PACK_DIR_NAME = "ComfyUI-ConceptAttention"
EXTENSION_NAME = "ConceptAttention.Frontend"
EXTENSION_URL_PART = f"/extensions/{PACK_DIR_NAME}/"

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1000}

# Front-end settings written through the server before the page opens: no first-run template
# dialog, no minimap over the canvas, no missing-model dialog (there are no model files).
UI_SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Workflow.ShowMissingModelsWarning": False,
}


def chromium_problem() -> str | None:
    if Path(CHROMIUM_PATH).is_file() and os.access(CHROMIUM_PATH, os.X_OK):
        return None
    return (f"Chromium was not found at {CHROMIUM_PATH}. Install Debian's package "
            "(scripts/setup_browser.sh runs `apt-get install -y chromium`) or set CHROMIUM_PATH.")


def launch_chromium(playwright, user_data_dir: Path):
    """A persistent context over an empty profile folder, with the flags the tier uses."""
    Path(user_data_dir).mkdir(parents=True, exist_ok=True)
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport=VIEWPORT,
        device_scale_factor=1,
    )


@dataclass
class ConsoleEntry:
    type: str
    text: str
    url: str = ""

    def from_extension(self) -> bool:
        return EXTENSION_URL_PART in self.url or EXTENSION_URL_PART in self.text or "ConceptAttention" in self.text


@dataclass
class ComfyPage:
    """An open ComfyUI tab and everything its console said."""

    page: object
    base_url: str
    console: list[ConsoleEntry] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)

    def evaluate(self, script: str, arg=None):
        return self.page.evaluate(script, arg)

    def extension_problems(self) -> list[str]:
        """Console errors, uncaught exceptions and failed requests that concern this pack."""
        problems = [f"{e.type}: {e.text} ({e.url})" for e in self.console
                    if e.type in ("error", "pageerror") and e.from_extension()]
        problems += [f"request failed: {u}" for u in self.failed_requests if EXTENSION_URL_PART in u]
        return problems

    def screenshot(self, name: str, *, clip_nodes: list | None = None, hide_ui: bool = True,
                   directory: Path = SCREENSHOT_DIR, padding: int = 24) -> Path:
        """A PNG of the canvas (the UI chrome hidden), or of the region around some nodes."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        if hide_ui:
            self.evaluate(HIDE_UI_JS, True)
        try:
            self.evaluate("app.canvas.setDirty(true, true); app.canvas.draw(true, true)")
            self.page.wait_for_timeout(150)
            clip = None
            if clip_nodes:
                clip = self.evaluate(NODE_BOUNDS_JS, [str(n) for n in clip_nodes])
                clip = _pad(clip, padding)
            self.page.screenshot(path=str(path), clip=clip)
        finally:
            if hide_ui:
                self.evaluate(HIDE_UI_JS, False)
        return path


def _pad(box: dict, padding: int) -> dict:
    x = max(0, box["x"] - padding)
    y = max(0, box["y"] - padding)
    right = min(VIEWPORT["width"], box["x"] + box["width"] + padding)
    bottom = min(VIEWPORT["height"], box["y"] + box["height"] + padding)
    return {"x": x, "y": y, "width": right - x, "height": bottom - y}


HIDE_UI_JS = """(hide) => {
  const overlay = document.querySelector('#graph-canvas-container > div.pointer-events-none');
  if (overlay) overlay.style.display = hide ? 'none' : '';
  app.canvas.show_info = !hide;
  for (const el of document.querySelectorAll('.p-toast')) el.style.visibility = hide ? 'hidden' : '';
}"""

# Screen rectangle (CSS px) around the given node ids, title bar included.
NODE_BOUNDS_JS = """(ids) => {
  const canvas = app.canvas;
  const rect = canvas.canvas.getBoundingClientRect();
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const id of ids) {
    const node = app.graph.getNodeById(Number(id)) ?? app.graph.getNodeById(id);
    if (!node) continue;
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    const [a, b] = canvas.ds.convertOffsetToCanvas([node.pos[0], node.pos[1] - title]);
    const [c, d] = canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0], node.pos[1] + node.size[1]]);
    x0 = Math.min(x0, a); y0 = Math.min(y0, b); x1 = Math.max(x1, c); y1 = Math.max(y1, d);
  }
  const scale = rect.width / canvas.canvas.width;
  return {x: rect.x + x0 * scale, y: rect.y + y0 * scale, width: (x1 - x0) * scale, height: (y1 - y0) * scale};
}"""

APP_READY_JS = f"""() => !!(window.app && window.app.graph && window.LiteGraph && window.app.canvas
  && window.app.extensionManager
  && (window.app.extensions || []).some(e => e.name === {json.dumps(EXTENSION_NAME)}))"""


def open_comfy(context, server, *, timeout_ms: int = 90_000) -> ComfyPage:
    """Writes UI_SETTINGS through the server, opens the UI and waits until this pack's extension
    is registered. Console messages and failed requests are recorded from the start."""
    for key, value in UI_SETTINGS.items():
        status, body = server.request("POST", f"/api/settings/{key}", value)
        if status != 200:
            raise AssertionError(f"POST /api/settings/{key} -> {status}: {body}")
    page = context.new_page()
    comfy = ComfyPage(page=page, base_url=server.base_url)
    page.on("console", lambda m: comfy.console.append(
        ConsoleEntry(m.type, m.text, (m.location or {}).get("url", ""))))
    page.on("pageerror", lambda e: comfy.console.append(
        ConsoleEntry("pageerror", f"{e}\n{getattr(e, 'stack', '')}", "")))
    page.on("requestfailed", lambda r: comfy.failed_requests.append(r.url))
    page.on("response", lambda r: comfy.failed_requests.append(f"{r.url} -> {r.status}")
            if r.status >= 400 and EXTENSION_URL_PART in r.url else None)
    page.goto(server.base_url, wait_until="domcontentloaded")
    page.wait_for_function(APP_READY_JS, timeout=timeout_ms)
    # Start from an empty canvas (the default graph names models that are not installed).
    page.evaluate(LOAD_EMPTY_JS)
    return comfy


LOAD_EMPTY_JS = """async () => {
  await app.loadGraphData({id: crypto.randomUUID(), revision: 0, last_node_id: 0, last_link_id: 0,
    nodes: [], links: [], groups: [], config: {}, extra: {}, version: 0.4});
}"""


# --------------------------------------------------------------------------------------------
# building graphs through the UI's own node classes
# --------------------------------------------------------------------------------------------

BUILD_GRAPH_JS = """async (spec) => {
  if (spec.clear !== false) {
    // A new, empty workflow with a fresh graph id: the front end keeps widget values per
    // (graph id, node id), so reusing the old graph would hand new nodes old values.
    await app.loadGraphData({id: crypto.randomUUID(), revision: 0, last_node_id: 0, last_link_id: 0,
      nodes: [], links: [], groups: [], config: {}, extra: {}, version: 0.4});
  }
  const graph = app.graph;
  const made = {};
  for (const n of spec.nodes) {
    const node = LiteGraph.createNode(n.type);
    if (!node) throw new Error('unknown node type ' + n.type);
    if (n.title) node.title = n.title;
    node.pos = n.pos;
    graph.add(node);
    for (const [name, value] of Object.entries(n.values || {})) {
      const widget = node.widgets?.find(w => w.name === name);
      if (!widget) throw new Error(`${n.type} has no widget ${name}: ` + (node.widgets || []).map(w => w.name));
      widget.value = value;
    }
    if (n.properties) Object.assign(node.properties, structuredClone(n.properties));
    if (n.color) node.color = n.color;
    if (n.bgcolor) node.bgcolor = n.bgcolor;
    const min = node.computeSize();
    node.setSize([Math.max(n.size?.[0] ?? 0, min[0]), Math.max(n.size?.[1] ?? 0, min[1])]);
    made[n.key] = node;
  }
  for (const [fromKey, output, toKey, input] of spec.links) {
    const from = made[fromKey], to = made[toKey];
    const slotOf = (slots, findSlot, name) => {
      if (typeof name === 'number') return name;
      const i = findSlot(name);
      if (i >= 0) return i;
      return (slots || []).findIndex(s => s.label === name || s.localized_name === name || s.type === name);
    };
    const out = slotOf(from.outputs, (n) => from.findOutputSlot(n), output);
    const inp = slotOf(to.inputs, (n) => to.findInputSlot(n), input);
    if (out < 0 || inp < 0) throw new Error(`bad link ${fromKey}.${output} -> ${toKey}.${input}`);
    from.connect(out, to, inp);
  }
  for (const g of spec.groups || []) {
    const group = new LiteGraph.LGraphGroup(g.title);
    group.pos = g.pos; group.size = g.size;
    if (g.color) group.color = g.color;
    graph.add(group);
  }
  graph.setDirtyCanvas(true, true);
  return Object.fromEntries(Object.entries(made).map(([k, n]) => [k, n.id]));
}"""


def build_graph(comfy: ComfyPage, spec: dict) -> dict:
    """Creates nodes (type, pos, widget values by name, properties) and links by slot name; returns key -> id."""
    return comfy.evaluate(BUILD_GRAPH_JS, spec)


def fit_view(comfy: ComfyPage) -> None:
    comfy.evaluate("""() => { app.canvas.deselectAll?.();
      return app.extensionManager.command.execute('Comfy.Canvas.FitView'); }""")
    comfy.page.wait_for_timeout(200)


def queue_and_wait(comfy: ComfyPage, done_js: str, timeout_ms: int = 120_000) -> None:
    """Queues the current graph like the Run button and waits until `done_js` is true."""
    comfy.evaluate("() => app.queuePrompt(0, 1)")
    comfy.page.wait_for_function(done_js, timeout=timeout_ms)


def wait_idle(comfy: ComfyPage, seconds: float = 0.3) -> None:
    time.sleep(seconds)
