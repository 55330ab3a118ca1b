// Per-pixel readout of Concept Saliency / Concept Saliency from Sampling: hovering a preview panel (a picture's, or
// a video's frame) shows every concept's value at the token under the pointer, ranked, in the legend's colours.
//
// The node sends the token-grid maps it shows (ui.concept_readout, concept_patch/maps/readout.py): per clip the
// values [r, T, h, w] as base64 uint16 over [lo, hi], the panel's picture size above its label strip, the token
// frame each pixel frame shows, the fps of a video's animation. Where the maps were too large to send, `omitted`
// says so and the readout says that instead of values. Concept names only ever reach the page as textContent.

const LEVELS = 65535;
const CANVAS_PREVIEW_WIDGET = "$$canvas-image-preview";
const ANIMATION_WIDGET = "$$comfy_animation_preview";
const IMAGE_SIZE_SETTING = "Comfy.Node.AllowImageSizeDraw";
const IMAGE_SIZE_LINE_PX = 15;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function positiveInts(value, length) {
  return Array.isArray(value) && value.length === length && value.every((v) => Number.isInteger(v) && v > 0);
}

/** The readout of one node output (ui.concept_readout[0]), checked and decoded; null when there is none. */
export function decodeReadout(raw) {
  if (!raw || typeof raw !== "object") return null;
  const r = Number(raw.concepts);
  if (!Number.isInteger(r) || r < 1 || !positiveInts(raw.grid, 3) || !positiveInts(raw.panel, 2)) return null;
  const [frames, h, w] = raw.grid;
  const readout = {
    concepts: r, frames, h, w, panel: raw.panel, cell: Number(raw.cell) || raw.panel[0],
    frameTokens: Array.isArray(raw.frame_tokens) ? raw.frame_tokens.map((t) => Math.min(Math.max(t | 0, 0), frames - 1)) : [0],
    fps: Number(raw.fps) > 0 ? Number(raw.fps) : 8, softmax: raw.softmax !== false, clips: [], omitted: null,
    lo: 0, hi: 1,
  };
  if (typeof raw.omitted === "string" || !Array.isArray(raw.clips)) {
    readout.omitted = typeof raw.omitted === "string" ? raw.omitted : "no values were sent";
    return readout;
  }
  const range = Array.isArray(raw.range) ? raw.range.map(Number) : [0, 1];
  if (range.length !== 2 || !range.every(Number.isFinite)) return null;
  [readout.lo, readout.hi] = range;
  const count = r * frames * h * w;
  for (const clip of raw.clips) {
    let bytes;
    try {
      bytes = Uint8Array.from(atob(String(clip)), (c) => c.charCodeAt(0));
    } catch {
      return null;
    }
    if (bytes.length !== 2 * count) return null;
    readout.clips.push(new DataView(bytes.buffer));
  }
  return readout;
}

/** Every concept's value at token (row, col) of token frame `frame` of clip `clip`: [value per concept]. */
export function valuesAt(readout, clip, frame, row, col) {
  const view = readout.clips[clip];
  if (!view) return null;
  const { concepts, frames, h, w, lo, hi } = readout;
  const values = [];
  for (let j = 0; j < concepts; j++) {
    const q = view.getUint16(2 * (((j * frames + frame) * h + row) * w + col), true);
    values.push(lo + (q / LEVELS) * (hi - lo));
  }
  return values;
}

/** The token under a point of a panel image (its pixels, panel-image coordinates): {row, col} or null (the strip). */
export function tokenAt(readout, x, y) {
  const [ph, pw] = readout.panel;
  if (!(x >= 0 && y >= 0 && x < pw && y < ph)) return null;
  return { row: Math.min(readout.h - 1, Math.floor((y * readout.h) / ph)),
           col: Math.min(readout.w - 1, Math.floor((x * readout.w) / pw)) };
}

function settingOn(app, id) {
  try {
    return app.extensionManager?.setting?.get?.(id) === true;
  } catch {
    return false;
  }
}

/**
 * Where the canvas preview draws image `index` of `node` (node coordinates): {x, y, scale} or null. The front end
 * draws all panels in a grid (node.imageRects: its cells, each image contained and centred in its cell) or one
 * image, contained (never enlarged) and centred in the preview's room.
 */
function drawnImage(app, node, index) {
  const img = node.imgs?.[index];
  const preview = node.widgets?.find((w) => w.name === CANVAS_PREVIEW_WIDGET);
  if (!img?.naturalWidth || !preview) return null;
  const iw = img.naturalWidth;
  const ih = img.naturalHeight;
  if (node.imageIndex == null && node.imgs.length > 1) {
    const cell = node.imageRects?.[index];
    if (!cell) return null;
    const [cx, cy, cw, ch] = cell;
    const scale = Math.min(cw / iw, ch / ih);
    return { x: cx + (cw - iw * scale) / 2, y: cy + (ch - ih * scale) / 2, scale };
  }
  const top = preview.y ?? preview.last_y ?? 0;
  const room = (preview.computedHeight ?? node.size[1] - top) - (settingOn(app, IMAGE_SIZE_SETTING) ? IMAGE_SIZE_LINE_PX : 0);
  const width = node.size[0];
  const scale = Math.min(width / iw, room / ih, 1);
  return { x: (width - iw * scale) / 2, y: (room - ih * scale) / 2 + top, scale };
}

/** The panel image under node point [x, y] of the canvas preview: {index, px, py} (image pixels) or null. */
export function panelAt(app, node, pos) {
  const count = node.imgs?.length ?? 0;
  const indices = node.imageIndex == null && count > 1 ? [...Array(count).keys()] : [node.imageIndex ?? 0];
  for (const index of indices) {
    const drawn = drawnImage(app, node, index);
    if (!drawn) continue;
    const px = (pos[0] - drawn.x) / drawn.scale;
    const py = (pos[1] - drawn.y) / drawn.scale;
    const img = node.imgs[index];
    if (px >= 0 && py >= 0 && px < img.naturalWidth && py < img.naturalHeight) return { index, px, py };
  }
  return null;
}

function formatValue(value, softmax) {
  if (!softmax) return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  const percent = Math.min(Math.max(value, 0), 1) * 100;
  return `${percent.toFixed(1)}%`;
}

let tooltip = null;

function readoutElement() {
  if (!tooltip) {
    tooltip = el("div", "ca-readout");
    tooltip.dataset.caReadout = "";
    tooltip.setAttribute("role", "tooltip");
    tooltip.hidden = true;
    document.body.appendChild(tooltip);
  }
  return tooltip;
}

export const READOUT_STYLES = `
.ca-readout { position: fixed; z-index: 10000; pointer-events: none; min-width: 140px; max-width: 260px;
  padding: 4px 6px; border-radius: 6px; background: rgba(20, 20, 20, .92); color: #eee;
  font: 11px/1.35 Inter, Arial, sans-serif; box-shadow: 0 2px 8px rgba(0,0,0,.5); }
.ca-readout-head { color: #aaa; margin-bottom: 2px; white-space: nowrap; }
.ca-readout-row { display: flex; align-items: center; gap: 5px; }
.ca-readout-row .ca-swatch { flex: none; width: 10px; height: 10px; border-radius: 2px; }
.ca-readout-name { flex: 1 1 auto; min-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.ca-readout-value { flex: none; font-variant-numeric: tabular-nums; }
`;

/** Hides the readout. */
export function hideReadout() {
  if (tooltip) tooltip.hidden = true;
}

/**
 * Shows the readout of `readout` at token (row, col) of token frame `frame` of clip `clip` beside the screen point
 * (clientX, clientY): every concept ranked by its value, with the legend's colour and name. `legend`: the legend's
 * entries (name, color, index). `where`: the heading (which picture, frame and token).
 */
export function showReadout(readout, legend, clip, frame, token, client, where) {
  const root = readoutElement();
  root.replaceChildren();
  root.dataset.clip = String(clip);
  root.dataset.frame = String(frame);
  root.dataset.row = String(token?.row ?? "");
  root.dataset.col = String(token?.col ?? "");
  root.appendChild(el("div", "ca-readout-head", where));
  if (readout.omitted) {
    root.appendChild(el("div", "ca-readout-omitted", `No per-pixel readout: ${readout.omitted}`));
  } else {
    const values = valuesAt(readout, clip, frame, token.row, token.col) ?? [];
    const ranked = values.map((value, j) => ({ value, j })).sort((a, b) => b.value - a.value || a.j - b.j);
    for (const { value, j } of ranked) {
      const entry = legend.find((e) => e.index === j) ?? { name: `concept ${j + 1}`, color: "#808080" };
      const row = el("div", "ca-readout-row");
      row.dataset.index = String(j);
      row.dataset.value = String(value);
      const swatch = el("span", "ca-swatch");
      swatch.style.backgroundColor = entry.color;
      row.append(swatch, el("span", "ca-readout-name", entry.name), el("span", "ca-readout-value",
        formatValue(value, readout.softmax)));
      root.appendChild(row);
    }
  }
  root.hidden = false;
  const { innerWidth, innerHeight } = window;
  const box = root.getBoundingClientRect();
  const left = client[0] + 16 + box.width > innerWidth ? client[0] - 16 - box.width : client[0] + 16;
  const top = Math.min(client[1] + 16, innerHeight - box.height - 4);
  root.style.left = `${Math.max(0, left)}px`;
  root.style.top = `${Math.max(0, top)}px`;
}

/**
 * The pixel frame an animated panel shows now: the animation runs from when the image was first shown, at the
 * readout's fps, looping (a browser does not say which frame of an animated WebP it shows).
 */
export function shownFrame(readout, img, now = performance.now()) {
  const frames = Math.max(1, readout.frameTokens.length);
  if (frames === 1) return 0;
  img.__caShownAt ??= now;
  return Math.floor(((now - img.__caShownAt) / 1000) * readout.fps) % frames;
}

/** The img of a video's animation widget under a screen point, with the point in its pixels: {img, px, py} or null. */
export function animationAt(node, client) {
  const host = node.widgets?.find((w) => w.name === ANIMATION_WIDGET)?.element;
  const img = host?.firstElementChild;
  if (!img?.naturalWidth) return null;
  const box = img.getBoundingClientRect();
  // object-fit: contain
  const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
  if (!(scale > 0)) return null;
  const x0 = box.left + (box.width - img.naturalWidth * scale) / 2;
  const y0 = box.top + (box.height - img.naturalHeight * scale) / 2;
  const px = (client[0] - x0) / scale;
  const py = (client[1] - y0) / scale;
  if (!(px >= 0 && py >= 0 && px < img.naturalWidth && py < img.naturalHeight)) return null;
  return { img, px, py };
}
