// Rendering of one explain response (DESIGN 3.2): prediction, heatmaps, attribution bars,
// reason codes, the local tree and timings. Optional fields may be absent.

import { objectUrl } from "./api.js";
import { fmt, h, methodName, orderedMethods } from "./dom.js";
import { methodBadges } from "./quality.js";

const TOP_FEATURES = 10;

function show(section, ...children) {
  const shown = children.filter(Boolean);
  section.replaceChildren(...shown);
  section.hidden = shown.length === 0;
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

/** Prediction, class probabilities, what was explained and every quality badge. */
export function renderSummary(container, response, explanation, classes) {
  const { prediction = {}, target = {} } = explanation;
  const probabilities = prediction.probabilities ?? [];
  const ranked = probabilities
    .map((p, i) => ({ p, label: classes[i] ?? `class ${i}` }))
    .sort((a, b) => b.p - a.p)
    .slice(0, 5);
  const { score } = explanation;
  const badges = orderedMethods(explanation.methods).flatMap(([, result]) =>
    methodBadges(result, score),
  );
  const model = response.model ?? {};
  const scoreKind = orderedMethods(explanation.methods)[0]?.[1].score_kind ?? "";
  const provenance = response.provenance;
  container.replaceChildren(
    h(
      "div",
      { class: "card prediction" },
      h(
        "div",
        { class: "prediction-main" },
        h("span", { class: "eyebrow", text: "Prediction" }),
        h("strong", {
          class: "prediction-label",
          id: "prediction-label",
          text: prediction.label ?? "–",
        }),
        probabilities[prediction.index] !== undefined &&
          h("span", { class: "prediction-prob", text: percent(probabilities[prediction.index]) }),
      ),
      ranked.length > 0 &&
        h(
          "table",
          { class: "probabilities" },
          h("caption", { class: "visually-hidden", text: "Class probabilities" }),
          h(
            "tbody",
            {},
            ranked.map(({ p, label }) =>
              h(
                "tr",
                {},
                h("th", { scope: "row", text: label }),
                h("td", { class: "prob-bar" }, h("span", { style: { width: percent(p) } })),
                h("td", { class: "num", text: percent(p) }),
              ),
            ),
          ),
        ),
      h(
        "dl",
        { class: "facts" },
        h("dt", { text: "Explained class" }),
        h("dd", { text: target.label ?? prediction.label ?? "–" }),
        score !== undefined && [
          h("dt", { text: "Target score" }),
          h("dd", { text: `${fmt(score, 4)} ${scoreKind}` }),
        ],
        h("dt", { text: "Model" }),
        h("dd", {
          text: [model.name, model.version && `v${model.version}`].filter(Boolean).join(" "),
        }),
        model.sha256 && [
          h("dt", { text: "Weights" }),
          h("dd", { class: "mono", text: `sha256 ${model.sha256.slice(0, 10)}…` }),
        ],
        provenance && [
          h("dt", { text: "Run" }),
          h("dd", { text: `${provenance.device} · seed ${provenance.seed}` }),
        ],
      ),
      badges.length > 0 &&
        h(
          "div",
          { class: "badges", role: "list", "aria-label": "Quality" },
          badges.map((b) => h("span", { role: "listitem" }, b)),
        ),
    ),
  );
}

/** Release the object URLs of the fetched images under `root`. */
function revokeImages(root) {
  for (const img of root.querySelectorAll("img[data-object-url]")) URL.revokeObjectURL(img.src);
}

/** Empty the heatmap grid, releasing the object URLs of its images. */
export function clearHeatmaps(grid) {
  revokeImages(grid);
  grid.replaceChildren();
}

/** Query parameters of the heatmap PNG endpoint: ?style=overlay|map&colormap&alpha. */
function heatmapPath(response, method, result, display) {
  const base = result.heatmap_url ?? `/v1/explanations/${response.id}/0/${method}.png`;
  const url = new URL(base, window.location.origin);
  url.searchParams.set("style", display.style);
  url.searchParams.set("alpha", display.alpha);
  if (display.colormap) url.searchParams.set("colormap", display.colormap);
  return url.pathname + url.search;
}

/**
 * Heatmaps side by side, the input first. Images are fetched with the API key and shown
 * from object URLs; the previous ones are revoked. Resolves once every image has loaded;
 * when `isCurrent()` then says a later drawing was asked for, they are dropped instead.
 */
export async function renderHeatmaps(
  section,
  grid,
  response,
  explanation,
  input,
  display,
  isCurrent = () => true,
) {
  const { score } = explanation;
  const label = explanation.target?.label ?? explanation.prediction?.label ?? "";
  const methods = orderedMethods(explanation.methods);
  const figures = await Promise.all(
    methods.map(async ([method, result]) => {
      const src = await objectUrl(heatmapPath(response, method, result, display));
      const img = h("img", {
        src,
        "data-object-url": true,
        alt: `${methodName(method)} heatmap toward ${label}`,
      });
      await img.decode();
      return h(
        "figure",
        { class: "heatmap" },
        img,
        h(
          "figcaption",
          {},
          h("span", { class: "figure-title", text: methodName(method) }),
          result.units && h("span", { class: "hint", text: result.units }),
          h("span", { class: "figure-badges" }, methodBadges(result, score)),
        ),
      );
    }),
  );
  if (!isCurrent()) {
    figures.forEach(revokeImages);
    return;
  }
  const original = h(
    "figure",
    { class: "heatmap" },
    h("img", { src: input.url, alt: "The input image" }),
    h(
      "figcaption",
      {},
      h("span", { class: "figure-title", text: "Input" }),
      h("span", { class: "hint", text: input.name }),
    ),
  );
  clearHeatmaps(grid);
  grid.replaceChildren(original, ...figures);
  section.hidden = false;
}

/** A diverging bar from the middle, or a neutral one from the left for a magnitude. */
function barCell(value, scale, magnitude) {
  const share = scale > 0 ? Math.abs(value) / scale : 0;
  const side = magnitude ? "magnitude" : value >= 0 ? "pos" : "neg";
  return h(
    "td",
    { class: "bar-cell" },
    h(
      "span",
      { class: magnitude ? "bar-track from-zero" : "bar-track" },
      h("span", {
        class: `bar bar-${side}`,
        style: { width: `${(magnitude ? 100 : 50) * share}%` },
      }),
    ),
    h("span", { class: "bar-value num", text: fmt(value) }),
  );
}

/** What the bars' colours mean: red and blue for signed columns, grey for magnitudes. */
function barsLegend(columns, magnitudes) {
  const grey = columns.filter((_, c) => magnitudes[c]).map(([method]) => methodName(method));
  return [
    magnitudes.some((m) => !m) && "Red pushes toward the explained class, blue away.",
    grey.length > 0 &&
      `${grey.join(" and ")} (grey): a magnitude, how strongly the score reacts to the ` +
        "feature, not in which direction.",
  ]
    .filter(Boolean)
    .join(" ");
}

/** Tabular attributions: features x methods, one diverging bar per cell, top features first. */
export function renderBars(section, explanation, features, row) {
  const columns = orderedMethods(explanation.methods).filter(
    ([, result]) =>
      Array.isArray(result.attributions) && result.attributions.length === features.length,
  );
  if (columns.length === 0) return show(section);
  const sortBy = columns.find(([m]) => m === "shap") ?? columns[0];
  const order = features
    .map((_, i) => i)
    .sort((a, b) => Math.abs(sortBy[1].attributions[b]) - Math.abs(sortBy[1].attributions[a]));
  const scales = columns.map(([, r]) => Math.max(...r.attributions.map(Math.abs)));
  // `magnitude: true` marks absolute values (saliency with abs, SmoothGrad): no direction.
  const magnitudes = columns.map(([, r]) => r.magnitude === true);
  const rows = order.map((i, rank) =>
    h(
      "tr",
      { hidden: rank >= TOP_FEATURES },
      h(
        "th",
        { scope: "row" },
        h("span", { class: "feature-name", text: features[i].name }),
        h("span", {
          class: "feature-value hint",
          text: `${row[features[i].name]}${features[i].unit ? ` ${features[i].unit}` : ""}`,
        }),
      ),
      columns.map(([, result], c) => barCell(result.attributions[i], scales[c], magnitudes[c])),
    ),
  );
  const toggle =
    features.length > TOP_FEATURES &&
    h("button", {
      type: "button",
      class: "secondary",
      "aria-expanded": "false",
      text: `Show all ${features.length} features`,
      onclick: (event) => {
        const expanded = event.currentTarget.getAttribute("aria-expanded") !== "true";
        event.currentTarget.setAttribute("aria-expanded", String(expanded));
        event.currentTarget.textContent = expanded
          ? `Show the top ${TOP_FEATURES}`
          : `Show all ${features.length} features`;
        rows.forEach((tr, rank) => {
          tr.hidden = !expanded && rank >= TOP_FEATURES;
        });
      },
    });
  show(
    section,
    h(
      "div",
      { class: "card-head" },
      h("h3", { id: "bars-title", text: "Attributions" }),
      h("p", {
        class: "hint",
        id: "bars-legend",
        text:
          `Sorted by |${methodName(sortBy[0])}|; bars scaled per method. ` +
          barsLegend(columns, magnitudes),
      }),
    ),
    h(
      "div",
      { class: "table-scroll" },
      h(
        "table",
        { class: "bars" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col", text: "Feature" }),
            columns.map(([method, result], c) =>
              h(
                "th",
                { scope: "col" },
                methodName(method),
                result.units && h("span", { class: "hint", text: ` ${result.units}` }),
                magnitudes[c] && h("span", { class: "hint", text: " (magnitude)" }),
              ),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
    toggle,
  );
}

/** Reason codes: {method, adverse_class, codes: [{rank, feature, reason, contribution}]}. */
export function renderReasons(section, explanation) {
  const reasons = explanation.reason_codes;
  if (!reasons?.codes?.length) return show(section);
  show(
    section,
    h(
      "div",
      { class: "card-head" },
      h("h3", { id: "reasons-title", text: "Reason codes" }),
      h("p", {
        class: "hint",
        text:
          `Features pushing toward “${reasons.adverse_class?.label}”, ` +
          `by ${methodName(reasons.method)} contribution.`,
      }),
    ),
    h(
      "ol",
      { class: "reasons" },
      reasons.codes.map((code) =>
        h(
          "li",
          {},
          h("span", { class: "reason-text", text: code.reason }),
          h("span", { class: "hint", text: ` · ${code.feature} · +${fmt(code.contribution)}` }),
        ),
      ),
    ),
  );
}

/** A split's two conditions in the input's terms: numbers, categories or image regions. */
function conditions(node, features) {
  const spec = features.find((f) => f.name === node.feature);
  if (!spec) return [`${node.feature} hidden`, `${node.feature} kept`];
  if (spec.choices) {
    const side = (left) =>
      spec.choices.filter((_, code) => code <= node.threshold === left).join(", ");
    return [`${node.feature} in {${side(true)}}`, `${node.feature} in {${side(false)}}`];
  }
  const unit = spec.unit ? ` ${spec.unit}` : "";
  const threshold = node.threshold_text; // as the rules write it
  return [`${node.feature} ≤ ${threshold}${unit}`, `${node.feature} > ${threshold}${unit}`];
}

/** One node of {nodes: [{id, value, weight, feature, threshold, threshold_text, left, right}], path}. */
function treeNode(id, tree, features, condition) {
  const node = tree.nodes[id];
  const onPath = tree.path.includes(id);
  const leaf = node.left === undefined;
  const text = leaf ? `${condition}: score ≈ ${fmt(node.value)}` : condition;
  return h(
    "li",
    { class: onPath ? "on-path" : undefined },
    h("span", { class: leaf ? "node leaf" : "node", text }),
    onPath && h("span", { class: "visually-hidden", text: " (this input's path)" }),
    !leaf &&
      h(
        "ul",
        {},
        conditions(node, features).map((cond, side) =>
          treeNode(side ? node.right : node.left, tree, features, cond),
        ),
      ),
  );
}

const REGION_SCALE = 4; // canvas pixels per model pixel in the region map

/** Region ids named in image rules such as "region 10 kept". */
function namedRegions(rules) {
  return new Set(rules.flatMap((rule) => [...rule.matchAll(/region (\d+)/g)].map((m) => +m[1])));
}

/**
 * The input image with its superpixel regions outlined and numbered, the regions the rules
 * name outlined in orange, so that "region 10 kept" can be found on the image.
 */
async function regionMap(input, segments, named) {
  const [height, width] = [segments.length, segments[0].length];
  const canvas = h("canvas", {
    class: "region-map",
    width: width * REGION_SCALE,
    height: height * REGION_SCALE,
    role: "img",
    "aria-label": `The input's superpixel regions; the rules name regions ${[...named].join(", ")}`,
  });
  const ctx = canvas.getContext("2d");
  const image = new Image();
  image.src = input.url;
  await image.decode();
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  const edge = (x0, y0, x1, y1, a, b) => {
    const strong = named.has(a) || named.has(b);
    ctx.strokeStyle = strong ? "#f07c00" : "rgba(255, 255, 255, 0.75)";
    ctx.lineWidth = strong ? 3 : 1;
    ctx.beginPath();
    ctx.moveTo(x0 * REGION_SCALE, y0 * REGION_SCALE);
    ctx.lineTo(x1 * REGION_SCALE, y1 * REGION_SCALE);
    ctx.stroke();
  };
  const centres = new Map();
  segments.forEach((row, y) =>
    row.forEach((id, x) => {
      if (x + 1 < width && row[x + 1] !== id) edge(x + 1, y, x + 1, y + 1, id, row[x + 1]);
      if (y + 1 < height && segments[y + 1][x] !== id)
        edge(x, y + 1, x + 1, y + 1, id, segments[y + 1][x]);
      const [sx, sy, n] = centres.get(id) ?? [0, 0, 0];
      centres.set(id, [sx + x, sy + y, n + 1]);
    }),
  );
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  for (const [id, [sx, sy, n]] of centres) {
    const strong = named.has(id);
    ctx.font = `${strong ? "bold 15px" : "11px"} system-ui, sans-serif`;
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.7)";
    ctx.fillStyle = strong ? "#ffd08a" : "#ffffff";
    const [cx, cy] = [(sx / n + 0.5) * REGION_SCALE, (sy / n + 0.5) * REGION_SCALE];
    ctx.strokeText(String(id), cx, cy);
    ctx.fillText(String(id), cx, cy);
  }
  return h(
    "figure",
    { class: "regions" },
    canvas,
    h("figcaption", {
      class: "hint",
      text: "Regions (superpixels); those in the rules in orange.",
    }),
  );
}

/**
 * The local surrogate: the input's rules, its leaf value, fidelity and the whole tree; for
 * images also the region map the rules refer to (`input` is the image, null for tabular).
 */
export async function renderTree(section, explanation, features, input) {
  const result = explanation.methods?.tree;
  if (!result?.rules) return show(section);
  const { score } = explanation;
  const regions =
    input && result.segments
      ? await regionMap(input, result.segments, namedRegions(result.rules))
      : null;
  show(
    section,
    h(
      "div",
      { class: "card-head" },
      h("h3", { id: "tree-title", text: "Local decision tree" }),
      h("span", { class: "figure-badges" }, methodBadges(result, score)),
    ),
    h(
      "div",
      { class: "tree-body" },
      regions,
      h(
        "div",
        {},
        h("p", {
          class: "hint",
          text: "The rules on this input's own path through a shallow tree fitted around it.",
        }),
        h(
          "ol",
          { class: "rules", id: "tree-rules" },
          result.rules.map((rule) => h("li", {}, h("code", { text: rule }))),
        ),
        result.leaf_value !== undefined &&
          h(
            "p",
            { class: "leaf-value" },
            "Then the surrogate predicts a score of ",
            h("strong", { text: fmt(result.leaf_value, 4) }),
          ),
        result.tree?.nodes?.length > 0 &&
          h(
            "details",
            { class: "whole-tree" },
            h("summary", { text: "The whole tree (this input's path highlighted)" }),
            h(
              "ul",
              { class: "tree" },
              treeNode(
                0,
                result.tree,
                features,
                `all samples (score ≈ ${fmt(result.tree.nodes[0].value)})`,
              ),
            ),
          ),
      ),
    ),
  );
}

/** Per-method server timings and the round trip measured here. */
export function renderTimings(section, explanation, roundTripMs) {
  const timings = orderedMethods(explanation.timings_ms);
  const longest = Math.max(1, ...timings.map(([, ms]) => ms));
  show(
    section,
    h("h3", { id: "timings-title", text: "Timings" }),
    h(
      "table",
      { class: "timings" },
      h(
        "tbody",
        {},
        timings.map(([method, ms]) =>
          h(
            "tr",
            {},
            h("th", { scope: "row", text: methodName(method) }),
            h(
              "td",
              { class: "prob-bar" },
              h("span", { style: { width: `${(100 * ms) / longest}%` } }),
            ),
            h("td", { class: "num", text: `${fmt(ms)} ms` }),
          ),
        ),
        h(
          "tr",
          { class: "total" },
          h("th", { scope: "row", text: "Round trip" }),
          h("td"),
          h("td", { class: "num", text: `${Math.round(roundTripMs)} ms` }),
        ),
      ),
    ),
  );
}
