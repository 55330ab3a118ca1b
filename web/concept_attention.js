// ComfyUI front-end extension of ComfyUI-ConceptAttention.
//
// * Concept Saliency / Concept Saliency from Sampling: after a run, a legend lists every concept
//   with its colour and its share of the picture on screen (the fraction of its tokens where the
//   concept wins). The colours are those of the segmentation view (the first panel of every
//   picture: each region in its winning concept's colour). Clicking "All concepts" shows that view
//   large, clicking a concept shows its map large; clicking again goes back to the grid of all
//   panels. With a batch, arrows step through the pictures (and the shares follow the picture).
//   Above it, how the run went (ui.concept_run): a model run or a re-query, and the node's time.
//   Hovering a panel (a picture's, or a video's frame) shows every concept's value at the token under the pointer,
//   ranked, in the legend's colours (ui.concept_readout; web/readout.js).
//   Names wrap, never cut. After a run a new node grows until each panel's baked caption is at least 12 px tall
//   at 100 % zoom (ui.concept_panel: the width and height a panel needs on screen for that); a node laid out with
//   room of its own keeps its size and, where that room is too small for a readable grid, shows the segmentation
//   view alone. When the upstream Concept List no longer lists the concepts of the last run, the legend and the
//   maps are marked outdated until the next run.
// * Saliency to Mask: the concept names of the upstream Concept List (or of the file a Load
//   Saliency read) are offered as buttons; clicking one adds it to (or removes it from) the
//   `concepts` text. A chosen name the list no longer has is shown as missing. What the last run
//   has to say (ui.concept_mask_note: e.g. an empty mask because the concept is absent) is shown
//   under the buttons.
//
// Only the public extension API is used: `app` from scripts/app.js (a shim over
// window.comfyAPI.app), `api` from scripts/api.js, app.registerExtension with the
// beforeRegisterNodeDef / onNodeOutputsUpdated hooks, and LGraphNode.addDOMWidget. Concept names
// come from users and workflow files: they only ever reach the page through textContent.

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { READOUT_STYLES, animationAt, decodeReadout, hideReadout, panelAt, showReadout, shownFrame, tokenAt } from "./readout.js";

const EXTENSION_NAME = "ConceptAttention.Frontend";

export const SALIENCY_NODES = new Set([
  "ConceptAttentionSaliency",
  "ConceptAttentionSamplingSaliency",
]);
export const MASK_NODE = "ConceptAttentionSaliencyToMask";
// Nodes that pick concepts of a SALIENCY by name and report a note: the concept picker and the note, as on Saliency to
// Mask (the SAM 3 nodes: docs/sam3.md).
const PICKER_NODES = new Set([MASK_NODE, "ConceptAttentionSaliencyToSAM3Prompts", "ConceptAttentionSaliencyToSAM3InitialMasks"]);
const CONCEPT_LIST_NODE = "ConceptAttentionConceptList";
const PATCH_NODE = "ConceptAttentionPatchModel";
const LOAD_SALIENCY_NODE = "ConceptAttentionLoadSaliency";

const LEGEND_WIDGET = "concept_legend";
const PICKER_WIDGET = "concept_suggestions";
const HEX_COLOR = /^#[0-9a-fA-F]{6}$/;
const MAX_TRACE_DEPTH = 64;
const REGIONS = "regions"; // the legend entry of the segmentation view
// The front end plays an animated output (a video's panels) in this DOM widget, always its first image.
const ANIMATION_WIDGET = "$$comfy_animation_preview";
// The widget in which the front end draws a node's preview images on the canvas.
const CANVAS_PREVIEW_WIDGET = "$$canvas-image-preview";

// ------------------------------------------------------------------------------------------
// small helpers
// ------------------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function comfyClassOf(node) {
  return node?.comfyClass ?? node?.constructor?.comfyClass ?? node?.type;
}

/** Concept names as the Concept List node reads them: comma or newline separated, trimmed. */
export function splitConceptNames(text) {
  if (typeof text !== "string") return [];
  const seen = new Set();
  const names = [];
  for (const part of text.split(/[,\n\r]+/)) {
    const name = part.trim();
    const key = name.toLowerCase();
    if (name && !seen.has(key)) {
      seen.add(key);
      names.push(name);
    }
  }
  return names;
}

function formatShare(share) {
  const value = Math.min(Math.max(Number(share) || 0, 0), 1) * 100;
  return `${value < 10 && value > 0 ? value.toFixed(1) : Math.round(value)}%`;
}

function imageURL(image) {
  const params = new URLSearchParams({
    filename: image.filename ?? "",
    subfolder: image.subfolder ?? "",
    type: image.type ?? "temp",
  });
  return api.apiURL(`/view?${params}`);
}

let stylesAdded = false;
function addStyles() {
  if (stylesAdded) return;
  stylesAdded = true;
  const style = el("style");
  style.id = "concept-attention-styles";
  style.textContent = `
.ca-legend, .ca-picker {
  box-sizing: border-box; width: 100%; height: 100%; overflow: auto; padding: 4px 6px;
  font: 12px/1.3 Inter, Arial, sans-serif; color: var(--input-text, #ddd);
  background: var(--comfy-input-bg, #222); border-radius: 6px;
}
.ca-legend-empty, .ca-picker-hint {
  color: var(--descrip-text, #999); font-style: italic; padding: 2px;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.ca-legend-run { color: var(--descrip-text, #aaa); font: 11px/15px Inter, Arial, sans-serif; height: 15px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
.ca-legend-bar { display: flex; height: 8px; border-radius: 4px; overflow: hidden; margin: 2px 0 4px; }
.ca-legend-bar > span { display: block; height: 100%; }
.ca-legend-nav { display: flex; align-items: center; gap: 6px; margin-bottom: 3px; }
.ca-legend-nav button, .ca-legend-item, .ca-chip {
  font: inherit; color: inherit; cursor: pointer; border: 1px solid var(--border-color, #444);
  background: var(--comfy-menu-bg, #333); border-radius: 4px;
}
.ca-legend-nav button { padding: 0 6px; }
.ca-legend-list { list-style: none; margin: 0; padding: 0; }
.ca-legend-item {
  display: flex; align-items: center; gap: 6px; width: 100%; margin: 1px 0; padding: 1px 4px;
  text-align: left; min-height: 20px;
}
.ca-legend-item[aria-pressed="true"] { outline: 2px solid var(--p-primary-color, #4a90e2); }
.ca-swatch { flex: none; width: 12px; height: 12px; border-radius: 3px; border: 1px solid rgba(0,0,0,.5); }
.ca-name { flex: 1 1 auto; min-width: 0; white-space: normal; overflow-wrap: anywhere; }
.ca-share { flex: none; font-variant-numeric: tabular-nums; color: var(--descrip-text, #aaa); }
.ca-chips { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 3px; }
.ca-chip { padding: 1px 8px; border-radius: 10px; }
.ca-chip[aria-pressed="true"] { background: var(--p-primary-color, #4a90e2); color: #fff; }
.ca-chip.ca-chip-missing { background: #6b2b2b; color: #fff; text-decoration: line-through; }
.ca-mask-note {
  margin-top: 4px; padding: 1px 6px; border-radius: 4px; background: #5a4a1a; color: #fff; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis;
}
.ca-mask-note:empty { display: none; }
.ca-legend-stale .ca-legend-list, .ca-legend-stale .ca-legend-bar, .ca-legend-stale .ca-legend-run { opacity: .45; }
.ca-legend-stale-note {
  margin: 0 0 3px; padding: 1px 6px; border-radius: 4px; background: #7a3b12; color: #fff; font-weight: 600;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
}
.ca-stale-media { filter: grayscale(1) brightness(.5); }
.ca-swatch-regions { background: conic-gradient(#1f77b4 0 25%, #ff7f0e 0 50%, #2ca02c 0 75%, #d62728 0); }
${READOUT_STYLES}`;
  document.head.appendChild(style);
}

// ------------------------------------------------------------------------------------------
// legend of Concept Saliency / Concept Saliency from Sampling
// ------------------------------------------------------------------------------------------

const LEGEND_ROW_PX = 23;
// The legend shows at most this many rows (the rest scrolls), so a run never grows the node by
// more than LEGEND_MAX_ROWS rows plus the preview room below.
export const LEGEND_MAX_ROWS = 7;
const PREVIEW_ROOM_PX = 240;
// One line of 11 px text: the laid-out example workflows keep this much room under their legends.
const RUN_LINE_PX = 15;
// What the front end keeps around the preview grid (its side margins; the image size line some settings draw).
const PREVIEW_MARGIN_PX = 20;
// The tallest preview grid a run grows a node to (more panels are shown one at a time, the legend picking them).
const MAX_GRID_PX = 900;

function legendState(node) {
  node.__conceptAttention ??= {
    legend: [], batch: 1, images: [], selected: null, imageNo: 0, applied: true, segmentation: false, unit: "picture",
    run: "", panel: null, stale: false, readout: null,
  };
  return node.__conceptAttention;
}

function legendHeight(node) {
  const state = legendState(node);
  // DOM widgets lose their margin (10 px) on each side.
  if (!state.legend.length) return 48;
  // Names wrap: a long one takes a row per line of about 6 px a character beside its swatch and share.
  const charsPerRow = Math.max(12, Math.floor(((node.size?.[0] ?? 280) - 100) / 6));
  const nameRows = state.legend.reduce(
    (sum, e) => sum + Math.min(3, Math.max(1, Math.ceil(e.name.length / charsPerRow))), 0);
  const rows = Math.min(nameRows + (state.segmentation ? 1 : 0), LEGEND_MAX_ROWS);
  return 36 + rows * LEGEND_ROW_PX + (state.batch > 1 ? 26 : 0) + (state.run || state.stale ? RUN_LINE_PX : 0);
}

/** The share of `entry` in the picture on screen (per-picture shares; the batch's as a fallback). */
function shareOf(entry, imageNo) {
  const perPicture = entry.shares?.[imageNo];
  return Number.isFinite(perPicture) ? perPicture : entry.share;
}

// A DOM widget of the pack's (not saved with the workflow) whose height follows its content.
function addPanelWidget(node, name, type, root, height) {
  addStyles();
  const widget = node.addDOMWidget(name, type, root, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => height(node),
    getMaxHeight: () => height(node),
  });
  widget.serialize = false;
  return widget;
}

function addLegendWidget(node) {
  const root = el("div", "ca-legend");
  root.dataset.caLegend = "";
  const widget = addPanelWidget(node, LEGEND_WIDGET, "concept-legend", root, legendHeight);
  renderLegend(node);
  return widget;
}

function legendRoot(node) {
  return node.widgets?.find((w) => w.name === LEGEND_WIDGET)?.element ?? null;
}

function renderLegend(node) {
  const root = legendRoot(node);
  if (!root) return;
  const state = legendState(node);
  root.replaceChildren();
  if (!state.legend.length) {
    root.appendChild(el("div", "ca-legend-empty", "Run to see the concepts here."));
    return;
  }
  root.classList.toggle("ca-legend-stale", state.stale);
  if (state.stale) {
    const note = el("div", "ca-legend-stale-note", "Outdated: the concepts changed. Run again.");
    note.setAttribute("role", "status");
    note.title = "These maps and shares are from the last run, made for the concepts listed below; the Concept "
      + "List now lists others. Run the workflow again to see the new concepts' maps.";
    root.appendChild(note);
  } else if (state.run) {
    const run = el("div", "ca-legend-run", state.run);
    run.title = "How this node's last run went: a re-query runs only the concepts over what the model computed "
      + "for this picture before (requery_cache_mb)";
    root.appendChild(run);
  }
  const bar = el("div", "ca-legend-bar");
  bar.title = `Share of the ${state.unit} where each concept wins`;
  for (const entry of state.legend) {
    const seg = el("span");
    seg.dataset.index = String(entry.index);
    seg.style.width = `${Math.min(Math.max(shareOf(entry, state.imageNo), 0), 1) * 100}%`;
    seg.style.backgroundColor = entry.color;
    bar.appendChild(seg);
  }
  root.appendChild(bar);

  if (state.batch > 1) {
    const nav = el("div", "ca-legend-nav");
    const prev = el("button", "ca-prev", "◀");
    prev.type = "button";
    prev.title = `Previous ${state.unit}`;
    const label = el("span", "ca-image-label", `${state.unit} ${state.imageNo + 1} / ${state.batch}`);
    const next = el("button", "ca-next", "▶");
    next.type = "button";
    next.title = `Next ${state.unit}`;
    prev.addEventListener("click", () => stepImage(node, -1));
    next.addEventListener("click", () => stepImage(node, +1));
    nav.append(prev, label, next);
    root.appendChild(nav);
  }

  const list = el("ul", "ca-legend-list");
  if (state.segmentation) {
    const item = el("li");
    const button = el("button", "ca-legend-item ca-legend-regions");
    button.type = "button";
    button.dataset.index = REGIONS;
    button.setAttribute("aria-pressed", String(state.selected === REGIONS));
    button.title = "Show the segmentation view: each region in the colour of its winning concept (click again for all panels)";
    button.append(el("span", "ca-swatch ca-swatch-regions"), el("span", "ca-name", "All concepts (regions)"));
    button.addEventListener("click", () => selectConcept(node, REGIONS));
    item.appendChild(button);
    list.appendChild(item);
  }
  for (const entry of state.legend) {
    const item = el("li");
    const button = el("button", "ca-legend-item");
    button.type = "button";
    button.dataset.index = String(entry.index);
    button.setAttribute("aria-pressed", String(state.selected === entry.index));
    button.title = `Show the map of "${entry.name}" (click again for all maps)`;
    const swatch = el("span", "ca-swatch");
    swatch.style.backgroundColor = entry.color;
    button.append(swatch, el("span", "ca-name", entry.name),
      el("span", "ca-share", formatShare(shareOf(entry, state.imageNo))));
    button.addEventListener("click", () => selectConcept(node, entry.index));
    item.appendChild(button);
    list.appendChild(item);
  }
  root.appendChild(list);
}

function updateLegendSelection(node) {
  const root = legendRoot(node);
  if (!root) return;
  const state = legendState(node);
  for (const button of root.querySelectorAll(".ca-legend-item")) {
    const key = button.dataset.index === REGIONS ? REGIONS : Number(button.dataset.index);
    const pressed = String(state.selected === key);
    if (button.getAttribute("aria-pressed") !== pressed) button.setAttribute("aria-pressed", pressed);
  }
  // Shares are per picture: they follow the picture on screen.
  const byIndex = new Map(state.legend.map((e) => [String(e.index), e]));
  for (const share of root.querySelectorAll(".ca-legend-item .ca-share")) {
    const entry = byIndex.get(share.parentElement.dataset.index);
    if (entry) share.textContent = formatShare(shareOf(entry, state.imageNo));
  }
  for (const seg of root.querySelectorAll(".ca-legend-bar > span")) {
    const entry = byIndex.get(seg.dataset.index);
    if (entry) seg.style.width = `${Math.min(Math.max(shareOf(entry, state.imageNo), 0), 1) * 100}%`;
  }
  const label = root.querySelector(".ca-image-label");
  if (label) label.textContent = `${state.unit} ${state.imageNo + 1} / ${state.batch}`;
}

/**
 * The panel (index into the preview images) that shows concept `j` of picture `i`, or picture i's
 * segmentation view for j === "regions". With a segmentation view each picture has conceptCount + 1
 * panels, the segmentation view first.
 */
export function panelIndex(i, j, conceptCount, segmentation = false) {
  const perPicture = conceptCount + (segmentation ? 1 : 0);
  if (j === REGIONS) return i * perPicture;
  return i * perPicture + (segmentation ? 1 : 0) + j;
}

function previewsLoaded(node) {
  const state = legendState(node);
  const imgs = node.imgs;
  if (!imgs?.length || imgs.length !== state.images.length || !state.images.length) return false;
  try {
    const first = new URL(imgs[0].src, window.location.href).searchParams.get("filename");
    return first === state.images[0].filename;
  } catch {
    return false;
  }
}

function applySelection(node) {
  const state = legendState(node);
  if (!previewsLoaded(node)) {
    state.applied = false; // applied when the preview images have loaded (see syncFromCanvas)
    return;
  }
  node.imageIndex = state.selected === null
    ? null
    : panelIndex(state.imageNo, state.selected, state.legend.length, state.segmentation);
  state.applied = true;
  showSelectedAnimation(node);
  node.setDirtyCanvas?.(true, true);
}

function selectConcept(node, index) {
  const state = legendState(node);
  state.selected = state.selected === index ? null : index;
  updateLegendSelection(node);
  applySelection(node);
}

function stepImage(node, delta) {
  const state = legendState(node);
  state.imageNo = (state.imageNo + delta + state.batch) % state.batch;
  if (state.selected === null && state.legend.length) state.selected = state.segmentation ? REGIONS : 0;
  updateLegendSelection(node);
  applySelection(node);
}

/** The preview image on screen: the selected panel, or the first (the segmentation view) for all panels. */
function shownImage(node) {
  const state = node.__conceptAttention;
  const index = state?.selected === null || state?.selected === undefined
    ? 0
    : panelIndex(state.imageNo, state.selected, state.legend.length, state.segmentation);
  return node.imgs?.[index] ?? null;
}

/**
 * A video's panels are animated WebPs, which the front end plays one at a time in its animation
 * widget: the first image, put back on every draw. So that widget is told to show the selected panel
 * instead (its replaceChildren swaps in ours), or the legend could not pick a concept of a video.
 */
function showSelectedAnimation(node) {
  const state = node.__conceptAttention;
  if (state?.unit !== "clip" || !previewsLoaded(node)) return;
  const host = node.widgets?.find((w) => w.name === ANIMATION_WIDGET)?.element;
  if (!host) return;
  if (!host.__conceptAttentionReadout) {
    host.__conceptAttentionReadout = true;
    host.addEventListener("pointermove", (e) => hoverAnimation(node, e));
    host.addEventListener("pointerleave", () => hideReadout());
  }
  if (!host.__conceptAttention) {
    const replace = host.replaceChildren.bind(host);
    host.__conceptAttention = (...children) => {
      const wanted = shownImage(node);
      if (!wanted || !node.imgs?.includes(children[0])) return replace(...children);
      wanted.className = children[0].className;
      wanted.style.pointerEvents = "none";
      if (host.childElementCount !== 1 || host.firstElementChild !== wanted) {
        wanted.__caShownAt = performance.now(); // the readout's estimate of the frame on screen starts here
        replace(wanted);
      }
    };
    host.replaceChildren = host.__conceptAttention;
  }
  const first = host.firstElementChild;
  if (first && first !== shownImage(node)) host.replaceChildren(first);
}

/** Keeps the legend in step with the canvas preview (its × button and arrow keys). */
function syncFromCanvas(node) {
  const state = node.__conceptAttention;
  if (!state?.legend.length || !previewsLoaded(node)) return;
  if (!state.applied) {
    applySelection(node);
    return;
  }
  const seg = state.segmentation ? 1 : 0;
  const perPicture = state.legend.length + seg;
  const index = node.imageIndex;
  let selected = null;
  if (index !== null && index !== undefined) {
    const k = index % perPicture;
    selected = seg && k === 0 ? REGIONS : k - seg;
  }
  const imageNo = selected === null ? state.imageNo : Math.floor(index / perPicture);
  if (selected !== state.selected || imageNo !== state.imageNo) {
    state.selected = selected;
    state.imageNo = imageNo;
    updateLegendSelection(node);
  }
}

function cleanLegend(raw) {
  if (!Array.isArray(raw)) return [];
  return raw
    .filter((e) => e && typeof e === "object")
    .map((e, i) => ({
      name: String(e.name ?? `concept ${i + 1}`),
      color: HEX_COLOR.test(String(e.color)) ? String(e.color) : "#808080",
      share: Number.isFinite(Number(e.share)) ? Number(e.share) : 0,
      shares: Array.isArray(e.shares) ? e.shares.map((v) => (Number.isFinite(Number(v)) ? Number(v) : 0)) : null,
      index: Number.isInteger(e.index) ? e.index : i,
    }));
}

/** Shows the legend of one run: `output` is the node's UI message (images, concept_legend, concept_batch). */
export function showLegend(node, output) {
  if (!output) return;
  const legend = cleanLegend(output.concept_legend);
  if (!legend.length) return;
  const state = legendState(node);
  const batch = Math.max(1, Number(output.concept_batch?.[0]) || 1);
  state.legend = legend;
  state.batch = batch;
  // A video's panels are animated clips: the arrows step through clips, and shares cover a whole clip.
  state.unit = output.animated?.[0] === true ? "clip" : "picture";
  state.segmentation = output.concept_segmentation?.[0] === true;
  state.images = Array.isArray(output.images) ? output.images : [];
  state.run = Array.isArray(output.concept_run) ? String(output.concept_run[0] ?? "") : "";
  state.readout = Array.isArray(output.concept_readout) ? decodeReadout(output.concept_readout[0]) : null;
  const panel = Array.isArray(output.concept_panel?.[0]) ? output.concept_panel[0].map(Number) : null;
  state.panel = panel?.length === 2 && panel.every((v) => Number.isFinite(v) && v > 0) ? panel : null;
  state.stale = conceptsChanged(node);
  state.imageNo = Math.min(state.imageNo, batch - 1);
  if (state.selected === REGIONS && !state.segmentation) state.selected = null;
  if (typeof state.selected === "number" && state.selected >= legend.length) state.selected = null;
  if (!node.widgets?.some((w) => w.name === LEGEND_WIDGET)) addLegendWidget(node);
  renderLegend(node);
  // Room for the legend (at most LEGEND_MAX_ROWS rows) and a preview below it whose panels are shown large enough
  // to read their captions. A node laid out with room for a run's output (PREVIEW_ROOM_PX below its widgets) keeps
  // its size, so a laid-out workflow stays as it is; where its room is too small for a readable grid of all panels
  // (or the grid would be taller than MAX_GRID_PX), it shows the segmentation view alone (its key readable; the
  // legend picks any other panel, and clicking the pressed entry again shows the grid).
  const minSize = node.computeSize?.() ?? node.size;
  const previewTop = minSize[1] - previewMinHeight(node);
  const laidOut = node.size[1] - previewTop >= PREVIEW_ROOM_PX;
  const grid = readableRoom(state, Math.max(node.size[0], minSize[0], 280));
  // A grid taller than MAX_GRID_PX (a batch of many panels) is not grown to: one panel at a time is shown instead.
  const target = grid.height <= MAX_GRID_PX ? grid : readableRoom({ ...state, unit: "clip" }, node.size[0]);
  const width = Math.max(node.size[0], minSize[0], 280, laidOut ? 0 : target.width);
  const height = laidOut ? node.size[1] : Math.max(node.size[1], previewTop + Math.max(PREVIEW_ROOM_PX, target.height));
  const readable = height - previewTop >= grid.height && width >= grid.width;
  if (!readable && state.selected === null && state.unit !== "clip") {
    state.selected = state.segmentation ? REGIONS : 0;
    updateLegendSelection(node);
  }
  state.applied = state.selected === null;
  if (width !== node.size[0] || height !== node.size[1]) node.setSize([width, height]);
  node.setDirtyCanvas?.(true, true);
}

/** The picture (or clip) a preview panel belongs to, from its index among the node's images. */
function clipOfPanel(state, index) {
  return Math.floor(index / (state.legend.length + (state.segmentation ? 1 : 0)));
}

/** The readout for node point `pos` of the canvas preview (pictures), or none off the panels' maps. */
function hoverReadout(node, e, pos) {
  const state = node.__conceptAttention;
  if (!state?.readout || state.unit === "clip" || !previewsLoaded(node) || !pos) {
    if (state?.unit !== "clip") hideReadout();
    return;
  }
  const hit = panelAt(app, node, pos);
  const token = hit ? tokenAt(state.readout, hit.px, hit.py) : null;
  if (!token) {
    hideReadout();
    return;
  }
  const clip = clipOfPanel(state, hit.index);
  const where = `${state.batch > 1 ? `picture ${clip + 1}, ` : ""}token row ${token.row + 1}, column ${token.col + 1}`;
  showReadout(state.readout, state.legend, clip, 0, token, [e.clientX, e.clientY], where);
}

/** The readout over a video's animation (the clip on screen, the frame it shows now). */
function hoverAnimation(node, e) {
  const state = node.__conceptAttention;
  if (!state?.readout || state.unit !== "clip") return;
  const hit = animationAt(node, [e.clientX, e.clientY]);
  const token = hit ? tokenAt(state.readout, hit.px, hit.py) : null;
  if (!token) {
    hideReadout();
    return;
  }
  const pixelFrame = shownFrame(state.readout, hit.img);
  const frame = state.readout.frameTokens[pixelFrame] ?? 0;
  const index = node.imgs?.indexOf(hit.img) ?? -1;
  const clip = index >= 0 ? clipOfPanel(state, index) : state.imageNo;
  const where = `${state.batch > 1 ? `clip ${clip + 1}, ` : ""}frame ${pixelFrame + 1}, token row ${token.row + 1}, `
    + `column ${token.col + 1}`;
  showReadout(state.readout, state.legend, clip, frame, token, [e.clientX, e.clientY], where);
}

/** The least height the front end gives the node's image preview (0 before it has one): part of computeSize. */
function previewMinHeight(node) {
  const preview = node.widgets?.find((w) => w.name === CANVAS_PREVIEW_WIDGET);
  if (!preview) return 0;
  const layout = preview.computeLayoutSize?.();
  return Number.isFinite(layout?.minHeight) ? layout.minHeight : 0;
}

/**
 * The room {width, height} the preview needs below the widgets so that every panel on screen is at least as large as
 * ui.concept_panel says (its baked captions then at least 12 px tall at 100 % zoom): all panels in a grid for
 * pictures, the one animation a video shows. `width` is the node's width to lay the grid out in.
 */
export function readableRoom(state, width) {
  if (!state.panel) return { width: 0, height: 0 };
  const [panelWidth, panelHeight] = state.panel;
  const count = state.unit === "clip" ? 1 : Math.max(1, state.images.length);
  const usable = Math.max(width, panelWidth + PREVIEW_MARGIN_PX) - PREVIEW_MARGIN_PX;
  const cols = Math.max(1, Math.min(count, Math.floor(usable / panelWidth)));
  return {
    width: Math.ceil(panelWidth + PREVIEW_MARGIN_PX),
    height: Math.ceil(Math.ceil(count / cols) * panelHeight + PREVIEW_MARGIN_PX),
  };
}

/** The concept names of a saliency node's last run, if any. */
function lastRunNames(node) {
  const state = node?.__conceptAttention;
  if (state?.legend.length) return state.legend.map((e) => e.name);
  if (Array.isArray(node?.__conceptAttentionNames)) return node.__conceptAttentionNames;
  return null;
}

// ------------------------------------------------------------------------------------------
// Saliency to Mask: the concepts of the upstream Concept List
// ------------------------------------------------------------------------------------------

function inputOrigin(node, inputName) {
  const slot = node.findInputSlot?.(inputName) ?? -1;
  if (slot < 0 || node.inputs?.[slot]?.link == null) return null;
  return node.getInputNode?.(slot) ?? null;
}

function widgetText(node, name) {
  const widget = node.widgets?.find((w) => w.name === name);
  return typeof widget?.value === "string" ? widget.value : null;
}

function conceptListText(node) {
  // The `concepts` widget, or the text of a node linked to it (a primitive / string node).
  const linked = inputOrigin(node, "concepts");
  if (linked) {
    const w = linked.widgets?.find((w) => typeof w.value === "string");
    if (w) return w.value;
  }
  return widgetText(node, "concepts");
}

/**
 * Where the SALIENCY reaching `maskNode` got its concept names: {names, source, pending?} or null.
 * Follows the links back through Concept Saliency (its `concepts`), Concept Saliency from
 * Sampling (its `model`) and Concept Attention (Generation) (its `concepts`) to the Concept List,
 * and through any other node (reroutes, model patches) along inputs of the same type. A Load
 * Saliency knows its names once it has run; before that it is {names: [], source, pending: true}.
 */
export function upstreamConcepts(maskNode) {
  return traceConcepts(inputOrigin(maskNode, "saliency"), "SALIENCY");
}

/** Where the concepts reaching `start` (through an input of `type`) come from; see upstreamConcepts. */
function traceConcepts(start, type) {
  const seen = new Set();
  const visit = (node, type, depth) => {
    if (!node || depth > MAX_TRACE_DEPTH || seen.has(node)) return null;
    seen.add(node);
    const cls = comfyClassOf(node);
    if (cls === CONCEPT_LIST_NODE) {
      const names = splitConceptNames(conceptListText(node) ?? "");
      return { names, source: node };
    }
    if (cls === "ConceptAttentionSaliency" || cls === PATCH_NODE) {
      return visit(inputOrigin(node, "concepts"), "CONCEPTS", depth + 1)
        ?? (lastRunNames(node) ? { names: lastRunNames(node), source: node } : null);
    }
    if (cls === "ConceptAttentionSamplingSaliency") {
      return visit(inputOrigin(node, "model"), "MODEL", depth + 1)
        ?? (lastRunNames(node) ? { names: lastRunNames(node), source: node } : null);
    }
    if (cls === LOAD_SALIENCY_NODE) {
      return lastRunNames(node)
        ? { names: lastRunNames(node), source: node }
        : { names: [], source: node, pending: true };
    }
    for (let slot = 0; slot < (node.inputs?.length ?? 0); slot++) {
      const input = node.inputs[slot];
      if (input.link == null) continue;
      if (input.type !== type && input.type !== "*") continue;
      const found = visit(node.getInputNode(slot), type, depth + 1);
      if (found) return found;
    }
    return null;
  };
  return visit(start, type, 0);
}

/**
 * The names the Concept List feeding a saliency node lists now (through Concept Saliency's `concepts`, or Concept
 * Saliency from Sampling's `model` and its patch), or null when no Concept List is linked.
 */
export function listedConcepts(node) {
  const found = comfyClassOf(node) === "ConceptAttentionSaliency"
    ? traceConcepts(inputOrigin(node, "concepts"), "CONCEPTS")
    : traceConcepts(inputOrigin(node, "model"), "MODEL");
  return found && comfyClassOf(found.source) === CONCEPT_LIST_NODE ? found.names : null;
}

/** Whether the concepts listed now differ from those of the legend's run (the maps on the node are outdated). */
export function conceptsChanged(node) {
  const state = node?.__conceptAttention;
  if (!state?.legend.length) return false;
  const listed = listedConcepts(node);
  if (!listed) return false;
  const ran = state.legend.map((e) => e.name);
  return listed.length !== ran.length || listed.some((name, i) => name !== ran[i]);
}

/** Re-checks whether the maps are outdated; re-renders the legend and marks a video's animation when that changed. */
function updateStale(node) {
  const state = node.__conceptAttention;
  if (!state) return;
  const stale = conceptsChanged(node);
  if (stale !== state.stale) {
    state.stale = stale;
    renderLegend(node);
    node.setDirtyCanvas?.(true, true);
  }
  const host = node.widgets?.find((w) => w.name === ANIMATION_WIDGET)?.element;
  if (host && host.classList.contains("ca-stale-media") !== stale) host.classList.toggle("ca-stale-media", stale);
}

/**
 * Covers the preview images of an outdated run with a dark, hatched veil and the word "Outdated". The front end
 * draws node images after the whole canvas frame (a microtask), so the veil is queued after them the same way.
 */
function drawStaleVeil(node, ctx) {
  if (!node.__conceptAttention?.stale || !node.imgs?.length) return;
  const preview = node.widgets?.find((w) => w.name === CANVAS_PREVIEW_WIDGET);
  if (!preview) return;
  const top = preview.y ?? preview.last_y ?? 0;
  const height = Math.max(0, (preview.computedHeight ?? node.size[1] - top));
  const width = node.size[0];
  if (!height) return;
  const transform = ctx.getTransform();
  // Foregrounds are drawn before widgets: one microtask more puts the veil after the images' own.
  queueMicrotask(() => queueMicrotask(() => {
    ctx.save();
    ctx.setTransform(transform);
    ctx.beginPath();
    ctx.rect(0, top, width, height);
    ctx.clip();
    ctx.fillStyle = "rgba(16, 16, 16, 0.62)";
    ctx.fillRect(0, top, width, height);
    ctx.strokeStyle = "rgba(255, 140, 60, 0.35)";
    ctx.lineWidth = 2;
    ctx.beginPath();
    for (let x = -height; x < width; x += 18) {
      ctx.moveTo(x, top + height);
      ctx.lineTo(x + height, top);
    }
    ctx.stroke();
    ctx.fillStyle = "#ffb070";
    ctx.font = "bold 16px Inter, Arial, sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText("Outdated: run again", width / 2, top + Math.min(height / 2, 40));
    ctx.restore();
  }));
}

function conceptsWidget(node) {
  return node.widgets?.find((w) => w.name === "concepts") ?? null;
}

function setConceptsText(node, text) {
  const widget = conceptsWidget(node);
  if (!widget || widget.value === text) return;
  widget.value = text;
  widget.callback?.(widget.value, app.canvas, node);
  node.setDirtyCanvas?.(true, true);
  node.graph?.change?.();
}

function toggleConcept(node, name) {
  const widget = conceptsWidget(node);
  if (!widget) return;
  const chosen = splitConceptNames(String(widget.value ?? ""));
  const key = name.toLowerCase();
  const has = chosen.some((n) => n.toLowerCase() === key);
  const picker = node.__conceptAttentionPicker;
  const offered = picker?.names ?? [];
  const next = has ? chosen.filter((n) => n.toLowerCase() !== key) : [...chosen, name];
  // Offered names in the Concept List's order, then anything typed by hand.
  const nextKeys = new Set(next.map((n) => n.toLowerCase()));
  const ordered = offered.filter((n) => nextKeys.has(n.toLowerCase()));
  const orderedKeys = new Set(ordered.map((n) => n.toLowerCase()));
  const rest = next.filter((n) => !orderedKeys.has(n.toLowerCase()));
  setConceptsText(node, [...ordered, ...rest].join(", "));
  refreshPicker(node);
}

// The note is one line (its headline; the whole text is its tooltip), so it fits the room the laid-out
// example workflows leave under the node.
function noteHeight(text) {
  return text ? 22 : 0;
}

function pickerHeight(node) {
  const picker = node.__conceptAttentionPicker;
  const note = noteHeight(picker?.note.textContent ?? "");
  const shown = [...(picker?.names ?? []), ...(picker?.missing ?? []).map((n) => `${n} (missing)`)];
  if (!shown.length) return 58 + note;
  // Rough wrap estimate: ~40 characters of chips per row at the default node width.
  const chars = shown.reduce((sum, n) => sum + Math.min(n.length, 40) + 4, 0);
  const rows = Math.max(1, Math.ceil(chars / 40));
  return 46 + 26 * rows + note;
}

function addPickerWidget(node) {
  const root = el("div", "ca-picker");
  root.dataset.caPicker = "";
  const note = el("div", "ca-mask-note");
  note.setAttribute("role", "status");
  node.__conceptAttentionPicker = { names: [], missing: [], key: null, root, note };
  const widget = addPanelWidget(node, PICKER_WIDGET, "concept-suggestions", root, pickerHeight);
  root.addEventListener("pointerenter", () => refreshPicker(node));
  refreshPicker(node);
  return widget;
}

/** Re-reads the upstream concepts; rebuilds the buttons when they changed. Cheap when not. */
export function refreshPicker(node) {
  const picker = node.__conceptAttentionPicker;
  if (!picker) return;
  const found = upstreamConcepts(node);
  const names = found?.names ?? [];
  const sourceTitle = found?.source?.title ?? "";
  const picked = splitConceptNames(String(conceptsWidget(node)?.value ?? ""));
  const offeredKeys = new Set(names.map((n) => n.toLowerCase()));
  // Chosen names the source does not have (renamed or removed in the Concept List): shown as missing.
  const missing = found && !found.pending && names.length
    ? picked.filter((n) => !offeredKeys.has(n.toLowerCase()))
    : [];
  const key = JSON.stringify([found ? 1 : 0, found?.pending ? 1 : 0, sourceTitle, names, missing]);
  if (key !== picker.key) {
    picker.key = key;
    picker.names = names;
    picker.missing = missing;
    const root = picker.root;
    root.replaceChildren();
    if (!found) {
      const hint = el("div", "ca-picker-hint", "Connect saliency to pick concepts.");
      hint.title = "Connect the saliency input to maps made from a Concept List (through Concept Saliency "
        + "or Concept Saliency from Sampling) to pick its concepts here.";
      root.appendChild(hint);
    } else if (found.pending) {
      const hint = el("div", "ca-picker-hint", "Run once to list this file's concepts.");
      hint.title = `${sourceTitle || "Load Saliency"} reads its concept names from the file when it runs.`;
      root.appendChild(hint);
    } else if (!names.length) {
      root.appendChild(el("div", "ca-picker-hint", "The Concept List has no concepts yet."));
    } else {
      root.appendChild(el("div", "ca-picker-hint", `Pick from ${sourceTitle || "Concept List"}:`));
      const chips = el("div", "ca-chips");
      for (const name of names) {
        const chip = el("button", "ca-chip", name);
        chip.type = "button";
        chip.dataset.concept = name;
        chip.addEventListener("click", () => toggleConcept(node, name));
        chips.appendChild(chip);
      }
      for (const name of missing) {
        const chip = el("button", "ca-chip ca-chip-missing", `${name} (missing)`);
        chip.type = "button";
        chip.dataset.concept = name;
        chip.dataset.missing = "";
        chip.title = `"${name}" is not in ${sourceTitle || "the Concept List"}: the run would fail. Click to remove it.`;
        chip.addEventListener("click", () => toggleConcept(node, name));
        chips.appendChild(chip);
      }
      root.appendChild(chips);
    }
    root.appendChild(picker.note);
    const minSize = node.computeSize?.();
    if (minSize && (node.size[1] < minSize[1] || node.size[0] < minSize[0])) {
      node.setSize([Math.max(node.size[0], minSize[0]), Math.max(node.size[1], minSize[1])]);
    }
    node.setDirtyCanvas?.(true, true);
  }
  const chosen = new Set(splitConceptNames(String(conceptsWidget(node)?.value ?? "")).map((n) => n.toLowerCase()));
  for (const chip of picker.root.querySelectorAll(".ca-chip")) {
    const pressed = String(chosen.has(chip.dataset.concept.toLowerCase()));
    if (chip.getAttribute("aria-pressed") !== pressed) chip.setAttribute("aria-pressed", pressed);
  }
}

/** Shows what Saliency to Mask's last run said (ui.concept_mask_note); an empty note clears it. */
export function showMaskNote(node, output) {
  const picker = node.__conceptAttentionPicker;
  if (!picker || !Array.isArray(output?.concept_mask_note)) return;
  const text = String(output.concept_mask_note[0] ?? "");
  if (picker.note.title === text) return;
  // The headline (up to the first colon) on the node; the whole note, with its reason, as the tooltip.
  picker.note.textContent = text.split(": ")[0];
  picker.note.title = text;
  const minSize = node.computeSize?.();
  if (minSize && node.size[1] < minSize[1]) node.setSize([node.size[0], minSize[1]]);
  node.setDirtyCanvas?.(true, true);
}

// ------------------------------------------------------------------------------------------
// registration
// ------------------------------------------------------------------------------------------

function chain(proto, name, after) {
  const original = proto[name];
  proto[name] = function (...args) {
    const result = original?.apply(this, args);
    after.apply(this, args);
    return result;
  };
}

function findNode(locatorId) {
  const graph = app.rootGraph ?? app.graph;
  const id = String(locatorId);
  if (id.includes(":")) return null; // inside a subgraph: restored when that subgraph is shown
  return graph?.getNodeById?.(Number.isNaN(Number(id)) ? id : Number(id)) ?? null;
}

app.registerExtension({
  name: EXTENSION_NAME,

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData?.name;
    if (SALIENCY_NODES.has(name)) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        addLegendWidget(this);
      });
      chain(nodeType.prototype, "onExecuted", function (output) {
        showLegend(this, output);
      });
      chain(nodeType.prototype, "onMouseMove", function (e, pos) {
        hoverReadout(this, e, pos);
      });
      chain(nodeType.prototype, "onMouseLeave", function () {
        if (this.__conceptAttention?.unit !== "clip") hideReadout();
      });
      chain(nodeType.prototype, "onDrawForeground", function (ctx) {
        syncFromCanvas(this);
        showSelectedAnimation(this);
        updateStale(this);
        if (ctx) drawStaleVeil(this, ctx);
      });
    } else if (PICKER_NODES.has(name)) {
      chain(nodeType.prototype, "onNodeCreated", function () {
        addPickerWidget(this);
      });
      chain(nodeType.prototype, "onConnectionsChange", function () {
        refreshPicker(this);
      });
      chain(nodeType.prototype, "onConfigure", function () {
        refreshPicker(this);
      });
      chain(nodeType.prototype, "onExecuted", function (output) {
        showMaskNote(this, output);
      });
      chain(nodeType.prototype, "onDrawForeground", function () {
        refreshPicker(this);
      });
    } else if (name === LOAD_SALIENCY_NODE) {
      // Concept names of the loaded file, where the node reports them (ui.concept_names).
      chain(nodeType.prototype, "onExecuted", function (output) {
        if (Array.isArray(output?.concept_names)) {
          this.__conceptAttentionNames = output.concept_names.map(String);
        } else if (Array.isArray(output?.concept_legend)) {
          this.__conceptAttentionNames = cleanLegend(output.concept_legend).map((e) => e.name);
        }
      });
    }
  },

  // Outputs restored without a run (reopening a workflow tab, reloading the page).
  onNodeOutputsUpdated(nodeOutputs) {
    for (const [locatorId, output] of Object.entries(nodeOutputs ?? {})) {
      if (!output?.concept_legend && !output?.concept_mask_note) continue;
      const node = findNode(locatorId);
      if (node && SALIENCY_NODES.has(comfyClassOf(node))) showLegend(node, output);
      if (node && PICKER_NODES.has(comfyClassOf(node))) showMaskNote(node, output);
    }
  },
});
