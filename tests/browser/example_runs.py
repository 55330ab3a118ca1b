"""Running the example workflows in the real UI on tiny random-weight models.

Every loader of an example (UNETLoader, DualCLIPLoader, CLIPLoader, TripleCLIPLoader, VAELoader,
CheckpointLoaderSimple) is swapped in the loaded graph for a test-only node with the same outputs
(tests/server/fixture_nodes/), at the loader's place and size; pictures and step counts are made
small; then the graph is queued like the Run button does. Used by the browser tier (the laid-out
workflow stays readable after a run) and by scripts/make_examples.py (thumbnails show a run's result).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

EXAMPLE_PICTURE = "example.png"  # the LoadImage file the example workflows name
EXAMPLE_VIDEO = "example.mp4"  # the LoadVideo file, written next to the picture
PICTURE_SIZE = 128

# Widget values that keep a run small on the CPU: {node type: {widget: value}}.
SMALL_RUN = {
    "EmptySD3LatentImage": {"width": 64, "height": 64},
    "KSampler": {"steps": 2},
    "Flux2Scheduler": {"steps": 2},
    "ImageScaleToMaxDimension": {"largest_size": PICTURE_SIZE},
    "EmptyHunyuanLatentVideo": {"width": 64, "height": 64, "length": 9},
    "ImageScale": {"width": 64, "height": 64},
    "MiniMaxH3ImageToVideo": {"width": 64, "height": 64, "length": 5},
    "BasicScheduler": {"steps": 2},
}

# Nodes passed through (bypassed) for a small run: they would scale the picture up to a megapixel.
BYPASS = ["FluxKontextImageScale"]

# Loader type -> [(substring of its file widget or "", stand-in type, stand-in widget values)].
SWAPS = {
    "UNETLoader": [("cogvideox", "ConceptAttentionTestTinyCogVideoX", {"seed": 1}),
                   ("minimax", "ConceptAttentionTestTinyMiniMax", {"seed": 5}),
                   ("klein", "ConceptAttentionTestTinyKlein", {"seed": 0}),
                   ("qwen_image_edit_2511", "ConceptAttentionTestTinyQwenImage", {"seed": 2, "edit_2511": True}),
                   ("qwen_image", "ConceptAttentionTestTinyQwenImage", {"seed": 2}),
                   ("", "ConceptAttentionTestTinyFlux", {"seed": 2})],
    "DualCLIPLoader": [("", "ConceptAttentionTestTinyFluxClip", {"seed": 1})],
    "CLIPLoader": [("qwen_3", "ConceptAttentionTestTinyKleinClip", {"variant": "4b", "seed": 16}),
                   ("qwen_2.5_vl", "ConceptAttentionTestTinyQwenImageClip", {"seed": 3}),
                   ("t5xxl", "ConceptAttentionTestTinyCogVideoXClip", {"seed": 21}),
                   ("qwen3vl_32b", "ConceptAttentionTestTinyMiniMaxClip", {"seed": 23})],
    "TripleCLIPLoader": [("", "ConceptAttentionTestTinySD3Clip", {"seed": 0})],
    "VAELoader": [("cogvideox", "ConceptAttentionTestTinyCogVideoXVAE", {"seed": 22}),
                  ("minimax_h3_video", "ConceptAttentionTestTinyMiniMaxVAE", {"seed": 31}),
                  ("minimax_h3_audio", "ConceptAttentionTestTinyMiniMaxAudioVAE", {"seed": 32}),
                  ("flux2", "ConceptAttentionTestTinyFlux2VAE", {"seed": 0}),
                  ("qwen_image", "ConceptAttentionTestTinyQwenImageVAE", {"seed": 0}),
                  ("", "ConceptAttentionTestTinyVAE", {"seed": 0})],
    "CheckpointLoaderSimple": [("sam3", "ConceptAttentionTestTinySAM3", {"seed": 3}),
                               ("", "ConceptAttentionTestTinySD3Checkpoint", {"seed": 0})],
}


def write_example_picture(path, size: int = PICTURE_SIZE) -> None:
    """The examples' Load Image picture (draw_example_picture), and next to it the clip examples' Load Video
    file (EXAMPLE_VIDEO)."""
    image = draw_example_picture(size)
    image.save(path)
    write_example_video(Path(path).with_name(EXAMPLE_VIDEO), image)


def draw_example_picture(size: int = PICTURE_SIZE) -> Image.Image:
    """A simple synthetic picture (sky, sun, hill, a house) to run the tiny models on."""
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
    return image


def write_example_video(path, picture: Image.Image, frames: int = 9, fps: int = 8) -> None:
    """A short clip (9 frames: a CogVideoX length, 4k + 1) of the picture with a dark shape running over the hill."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = picture.width, picture.height, "yuv420p"
        for k in range(frames):
            frame = picture.copy()
            x = picture.width * (0.5 + 0.04 * k)
            ImageDraw.Draw(frame).ellipse([x, picture.height * 0.66, x + picture.width * 0.16, picture.height * 0.76],
                                          fill=(90, 60, 40))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")))
        container.mux(stream.encode())


LOAD_AND_SWAP_JS = """async ([workflow, swaps, small, bypass, overrides]) => {
  await app.loadGraphData(workflow, true, true, null);
  const graph = app.graph;
  const linkOf = (id) => graph.getLink?.(id) ?? (graph.links instanceof Map ? graph.links.get(id) : graph.links[id]);
  const swapped = [];
  for (const node of [...graph.nodes]) {
    if (bypass.includes(node.type)) node.mode = 4;
    for (const [name, value] of Object.entries(small[node.type] ?? {})) {
      const widget = node.widgets?.find(w => w.name === name);
      if (widget) widget.value = value;
    }
    const rules = swaps[node.type];
    if (!rules) continue;
    const file = String(node.widgets?.find(w => typeof w.value === 'string')?.value ?? '');
    const rule = rules.find(([part]) => !part || file.includes(part));
    if (!rule) throw new Error(`no tiny stand-in for ${node.type} ${file}`);
    const [, type, values] = rule;
    const stand = LiteGraph.createNode(type);
    if (!stand) throw new Error('unknown node type ' + type);
    stand.pos = [...node.pos];
    graph.add(stand);
    for (const [name, value] of Object.entries({...values, ...(overrides[type] ?? {})})) {
      const widget = stand.widgets?.find(w => w.name === name);
      if (widget) widget.value = value;
    }
    stand.size = [...node.size];  // exactly the loader's place on the canvas
    for (let slot = 0; slot < (node.outputs?.length ?? 0); slot++) {
      for (const id of [...(node.outputs[slot].links ?? [])]) {
        const link = linkOf(id);
        const target = graph.getNodeById(link.target_id);
        stand.connect(slot, target, link.target_slot);
      }
    }
    graph.remove(node);
    swapped.push({id: stand.id, type, was: node.type});
  }
  graph.setDirtyCanvas(true, true);
  return swapped;
}"""

RUN_JS = """() => new Promise((resolve) => {
  const api = window.comfyAPI.api.api;
  const events = ['execution_success', 'execution_error', 'execution_interrupted'];
  const handlers = [];
  const shown = {};  // node id -> number of pictures its UI output has, for this run only
  const onExecuted = (event) => {
    const id = String(event.detail?.display_node ?? event.detail?.node);
    shown[id] = event.detail?.output?.images?.length ?? 0;
  };
  const finish = (kind) => (event) => {
    events.forEach((e, i) => api.removeEventListener(e, handlers[i]));
    api.removeEventListener('executed', onExecuted);
    resolve({kind, detail: kind === 'execution_success' ? null : event.detail, shown});
  };
  api.addEventListener('executed', onExecuted);
  events.forEach((e) => { const h = finish(e); handlers.push(h); api.addEventListener(e, h); });
  app.queuePrompt(0, 1);
})"""

# Every node's box on the canvas after the run, its title bar included: [{id, type, box}].
NODE_BOXES_JS = """() => app.graph.nodes.map(n => ({
  id: n.id, type: n.type, title: n.title,
  box: [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, n.pos[0] + n.size[0], n.pos[1] + n.size[1]],
}))"""


def load_with_tiny_models(comfy, workflow: dict, overrides: dict | None = None) -> list[dict]:
    """Loads the workflow through the UI with its loaders swapped for tiny stand-ins; returns the swaps.
    overrides: {stand-in type: {widget: value}} over SWAPS' values (an example's `tiny` seeds)."""
    return comfy.evaluate(LOAD_AND_SWAP_JS, [workflow, SWAPS, SMALL_RUN, BYPASS, overrides or {}])


def run(comfy, timeout_ms: int = 300_000) -> dict:
    """Queues the graph like the Run button and waits until it finished: {kind, detail, shown}
    (shown: node id -> how many pictures the node showed in this run)."""
    comfy.page.set_default_timeout(timeout_ms)
    try:
        return comfy.evaluate(RUN_JS)
    finally:
        comfy.page.set_default_timeout(30_000)


PREVIEWS_READY_JS = """(shown) => Object.entries(shown).every(([id, count]) => {
  const n = app.graph.getNodeById(Number(id)) ?? app.graph.getNodeById(id);
  // the pack's nodes (whose size follows their legend and pictures); ComfyUI loads other nodes'
  // pictures only once they are drawn on screen
  if (!n || !n.type.startsWith('ConceptAttention')) return true;
  if (n.widgets?.some(w => w.name === 'concept_legend') && !(n.__conceptAttention?.legend.length > 0)) return false;
  if (!count) return true;
  return n.imgs?.length === count && n.imgs.every(i => i.complete && i.naturalWidth > 0);
})"""

PREVIEWS_STATE_JS = """(shown) => Object.entries(shown).map(([id, count]) => {
  const n = app.graph.getNodeById(Number(id)) ?? app.graph.getNodeById(id);
  return {id, type: n?.type, count, imgs: (n?.imgs ?? []).map(i => [i.complete, i.naturalWidth, i.src.slice(-60)]),
          legend: n?.__conceptAttention?.legend?.length ?? null};
})"""


def wait_for_previews(comfy, result: dict, timeout_ms: int = 60_000) -> None:
    """Until the pack's nodes that showed pictures in this run (result of run()) have them loaded,
    and Concept Saliency's legend is there."""
    shown = result.get("shown") or {}
    try:
        comfy.page.wait_for_function(PREVIEWS_READY_JS, arg=shown, timeout=timeout_ms)
    except Exception as e:  # say which node is still waiting
        state = comfy.evaluate(PREVIEWS_STATE_JS, shown)
        raise AssertionError(f"previews not shown after {timeout_ms} ms: {state}") from e
    comfy.evaluate("() => { app.canvas.setDirty(true, true); app.canvas.draw(true, true); }")


def overlaps(boxes: list[dict]) -> list[tuple[str, str]]:
    """Pairs of nodes whose boxes overlap."""
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a["box"], b["box"]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                found.append((f"{a['type']} #{a['id']}", f"{b['type']} #{b['id']}"))
    return found
