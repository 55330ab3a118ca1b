// ComfyUI front-end extension of ComfyUI-ConceptAttention: only the inputs that matter up front.
//
// * Advanced inputs (the node definition's `advanced`: the paper's Table-4 switches, softmax, the re-query cache
//   size, Concept List's pooling) are hidden until the user picks "Show Advanced" in the node's menu. The front
//   end passes the flag to a widget's options only, where its canvas renderer does not look: it is applied to the
//   widget here. With the setting "Always show advanced widgets on all nodes" they stay shown.
// * Saliency to Mask shows its `threshold` widget only for the methods that read it (the node definition lists
//   them: the threshold input's `read_by_methods`). A threshold that is linked to another node stays shown.
//
// Only the public extension API is used (app.registerExtension, beforeRegisterNodeDef).

import { app } from "../../scripts/app.js";

const PACK_PREFIX = "ConceptAttention";
const MASK_NODE = "ConceptAttentionSaliencyToMask";
const ALWAYS_SHOW_ADVANCED = "Comfy.Node.AlwaysShowAdvancedWidgets";
const FALLBACK_METHODS = ["value", "top_percent"];

function widgetNamed(node, name) {
  return node.widgets?.find((w) => w.name === name) ?? null;
}

function isLinked(node, name) {
  const slot = node.inputs?.find((input) => input.widget?.name === name || input.name === name);
  return slot?.link != null;
}

/** Shows `threshold` for the methods that read it, hides it for the others; grows the node when it appears. */
export function syncThreshold(node, methods = node.constructor?.__conceptAttentionThresholdMethods ?? FALLBACK_METHODS) {
  const threshold = widgetNamed(node, "threshold");
  const method = widgetNamed(node, "method");
  if (!threshold || !method) return;
  const shown = methods.includes(String(method.value)) || isLinked(node, "threshold");
  if (!threshold.hidden === shown) return;
  threshold.hidden = !shown;
  threshold.options ??= {};
  threshold.options.hidden = !shown;
  if (shown) {
    const min = node.computeSize?.();
    if (min && node.size[1] < min[1]) node.setSize([node.size[0], min[1]]);
  }
  node.setDirtyCanvas?.(true, true);
}

function alwaysShowAdvanced() {
  try {
    return app.extensionManager?.setting?.get?.(ALWAYS_SHOW_ADVANCED) === true;
  } catch {
    return false;
  }
}

/**
 * Hides the widgets of advanced inputs unless the node shows its advanced inputs ("Show Advanced" in its menu, saved
 * with the workflow as showAdvanced). The front end's canvas renderer skips drawing an advanced widget but still
 * lays it out, leaving a gap: so it is hidden (no room taken) as well as marked advanced (the menu entry, its
 * outline colour). Grows the node when they appear; `fit` also shrinks it to what is shown (a node just created).
 */
export function syncAdvanced(node, fit = false) {
  const show = alwaysShowAdvanced() || node.showAdvanced === true;
  let changed = false;
  for (const widget of node.widgets ?? []) {
    if (widget.options?.advanced !== true) continue;
    widget.advanced = true;
    if (widget.hidden !== !show) {
      widget.hidden = !show;
      changed = true;
    }
  }
  if (!changed && !fit) return;
  const min = node.computeSize?.();
  if (min && (fit || node.size[1] < min[1])) node.setSize([node.size[0], min[1]]);
  node.setDirtyCanvas?.(true, true);
}

function chain(proto, name, after) {
  const original = proto[name];
  proto[name] = function (...args) {
    const result = original?.apply(this, args);
    after.apply(this, args);
    return result;
  };
}

app.registerExtension({
  name: "ConceptAttention.Inputs",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!String(nodeData?.name ?? "").startsWith(PACK_PREFIX)) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      syncAdvanced(this, true);
    });
    chain(nodeType.prototype, "onConfigure", function () {
      syncAdvanced(this);
    });
    chain(nodeType.prototype, "toggleAdvanced", function () {
      syncAdvanced(this);
    });
    chain(nodeType.prototype, "onDrawForeground", function () {
      syncAdvanced(this);
    });
    if (nodeData.name !== MASK_NODE) return;
    const spec = nodeData.input?.required?.threshold?.[1] ?? nodeData.input?.optional?.threshold?.[1];
    const methods = Array.isArray(spec?.read_by_methods) ? spec.read_by_methods.map(String) : FALLBACK_METHODS;
    nodeType.__conceptAttentionThresholdMethods = methods;
    chain(nodeType.prototype, "onNodeCreated", function () {
      const method = widgetNamed(this, "method");
      if (method) {
        const callback = method.callback;
        method.callback = (...args) => {
          const result = callback?.apply(method, args);
          syncThreshold(this, methods);
          return result;
        };
      }
      syncThreshold(this, methods);
      syncAdvanced(this, true); // a new node: as tall as what it shows
    });
    chain(nodeType.prototype, "onConfigure", function () {
      syncThreshold(this, methods);
    });
    chain(nodeType.prototype, "onConnectionsChange", function () {
      syncThreshold(this, methods);
    });
    // A value set without the widget's callback (a workflow script, undo) is caught on the next draw.
    chain(nodeType.prototype, "onDrawForeground", function () {
      syncThreshold(this, methods);
    });
  },
});
