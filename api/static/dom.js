// Small DOM and formatting helpers shared by the viewer modules.

/** Create an element: h("p", {class: "hint", text: "..."}, child, ...). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "style") Object.assign(el.style, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** A number with `digits` significant digits, without exponent noise for ordinary values. */
export function fmt(value, digits = 3) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-4) return value.toExponential(digits - 1);
  return Number(value.toPrecision(digits)).toString();
}

/** Human-readable method names. */
const METHOD_NAMES = {
  saliency: "Saliency",
  integrated_gradients: "Integrated gradients",
  shap: "SHAP",
  lime: "LIME",
  tree: "Decision tree",
  smoothgrad: "SmoothGrad",
  gradcam: "Grad-CAM",
  occlusion: "Occlusion",
};

export function methodName(method) {
  return METHOD_NAMES[method] ?? method.replaceAll("_", " ");
}

/** A response's `methods` entries in the canonical order above, unknown methods last. */
export function orderedMethods(methods = {}) {
  const known = Object.keys(METHOD_NAMES);
  const rank = (name) => (known.includes(name) ? known.indexOf(name) : known.length);
  return Object.entries(methods).sort(([a], [b]) => rank(a) - rank(b));
}
