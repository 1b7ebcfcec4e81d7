// Quality badges: each method's quality figure graded good / fair / poor by the
// thresholds documented in docs/VIEWER.md.

import { h } from "./dom.js";

/**
 * `relative`: the figure is divided by |target score| (the explained logit or probability)
 * before grading, and lower is better; otherwise it is an R² and higher is better.
 */
const THRESHOLDS = {
  convergence_delta: { label: "IG convergence δ", relative: true, good: 0.05, fair: 0.2 },
  additivity_error: { label: "SHAP additivity error", relative: true, good: 0.01, fair: 0.1 },
  local_r2: { label: "LIME local R²", good: 0.8, fair: 0.5 },
  fidelity_r2: { label: "Tree fidelity R²", good: 0.8, fair: 0.5 },
};

const LEVEL_TEXT = { good: "good", fair: "fair", poor: "poor", info: "" };
const LEVEL_ICON = { good: "✓", fair: "!", poor: "✕", info: "i" };

/** Grade one figure: {level, label, text, title}. */
export function grade(metric, value, score) {
  const rule = THRESHOLDS[metric];
  const label = rule?.label ?? metric.replaceAll("_", " ");
  if (!rule || typeof value !== "number") {
    return { level: "info", label, text: formatFigure(value), title: "" };
  }
  if (rule.relative) {
    const scale = Math.max(Math.abs(score ?? 0), 1e-6);
    const ratio = Math.abs(value) / scale;
    const level = ratio <= rule.good ? "good" : ratio <= rule.fair ? "fair" : "poor";
    return {
      level,
      label,
      text: `${ratio < 1e-4 ? "< 0.01" : (100 * ratio).toPrecision(2)}% of |score|`,
      title:
        `|${formatFigure(value)}| / |${formatFigure(score)}|: ` +
        `good ≤ ${100 * rule.good}%, fair ≤ ${100 * rule.fair}%`,
    };
  }
  const level = value >= rule.good ? "good" : value >= rule.fair ? "fair" : "poor";
  return {
    level,
    label,
    text: formatFigure(value),
    title: `good ≥ ${rule.good}, fair ≥ ${rule.fair}`,
  };
}

function formatFigure(value) {
  return typeof value === "number" ? Number(value.toPrecision(3)).toString() : "n/a";
}

/** A badge element: colour plus icon and word, so the grade never rests on colour alone. */
function badge(metric, value, score) {
  const g = grade(metric, value, score);
  const words = LEVEL_TEXT[g.level] ? ` (${LEVEL_TEXT[g.level]})` : "";
  return h(
    "span",
    { class: `badge badge-${g.level}`, title: g.title || undefined },
    h("span", { class: "badge-icon", "aria-hidden": "true", text: LEVEL_ICON[g.level] }),
    ` ${g.label}: ${g.text}${words}`,
  );
}

/** Badges for every quality figure of one method's result. */
export function methodBadges(result, score) {
  return Object.entries(result.quality ?? {}).map(([metric, value]) => badge(metric, value, score));
}
