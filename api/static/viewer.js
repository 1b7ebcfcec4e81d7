// The viewer page: wires the form, the API and the renderers together.

import { ApiError, apiKey, requestJson } from "./api.js";
import { h } from "./dom.js";
import {
  featureSpecs,
  fileToBase64,
  markErrors,
  readFeatures,
  readMethods,
  readOptions,
  renderFeatures,
  renderMethods,
  renderTargets,
} from "./form.js";
import {
  clearHeatmaps,
  renderBars,
  renderHeatmaps,
  renderReasons,
  renderSummary,
  renderTimings,
  renderTree,
} from "./render.js";

// Colour-blind-safe colormaps of the heatmap endpoint: diverging for signed maps first.
const COLORMAPS = ["", "RdBu_r", "PuOr_r", "BrBG", "viridis", "cividis"];

const $ = (id) => document.getElementById(id);

const state = {
  models: [],
  model: null,
  image: null, // {file, url, name}: the image chosen (its url is the preview's)
  last: null, // {response, explanation, input}: the explanation shown (input has its own url)
  tickets: 0, // bumped by each request and model change: an older response is stale
  draws: 0, // bumped by each heatmap drawing and clearing: an older drawing is dropped
};

function setStatus(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function heatmapDisplay() {
  return {
    style: $("hm-style").value,
    alpha: $("hm-alpha").value,
    colormap: $("hm-colormap").value,
  };
}

function showKeyState() {
  $("key-state").textContent = apiKey.get() ? "key set for this tab" : "";
  $("api-key").value = apiKey.get();
}

async function loadModels() {
  try {
    state.models = (await requestJson("/v1/models")).models;
  } catch (error) {
    setStatus(`Could not list the models: ${error.message}`, "error");
    if (error instanceof ApiError && error.status === 401) $("api-key").focus();
    return;
  }
  $("model").replaceChildren(
    ...state.models.map((m) => h("option", { value: m.name, text: `${m.name} (${m.modality})` })),
  );
  selectModel(state.models[0]?.name);
}

/** Make `last` the explanation shown, revoking the input image URL of the one it replaces. */
function setLast(last) {
  if (state.last?.input) URL.revokeObjectURL(state.last.input.url);
  state.last = last;
}

/** Revoke the URL of a request's input image, unless the explanation shown uses it. */
function releaseInput(request) {
  if (request.input && state.last?.input !== request.input) URL.revokeObjectURL(request.input.url);
}

/** Back to the empty results panel (a new model makes the old explanation stale). */
function clearResults() {
  setLast(null);
  state.tickets += 1; // a response still on its way is for the old model
  state.draws += 1;
  $("summary").replaceChildren();
  clearHeatmaps($("heatmap-grid"));
  for (const id of ["heatmaps", "bars", "reasons", "tree", "timings", "raw-json"]) {
    $(id).hidden = true;
  }
  $("placeholder").hidden = false;
  setStatus("");
}

function selectModel(name) {
  const model = state.models.find((m) => m.name === name);
  state.model = model ?? null;
  if (!model) return;
  clearResults();
  const isImage = model.modality === "image";
  const size = model.image && `${model.image.width}×${model.image.height} px`;
  $("model-info").textContent = [model.classes.join(" / "), size, model.description]
    .filter(Boolean)
    .join(" · ");
  $("image-input").hidden = !isImage;
  $("tabular-input").hidden = isImage;
  if (!isImage) renderFeatures($("features"), model, model.example);
  renderMethods($("methods"), model);
  renderTargets($("target"), model);
  applyLimits(model.limits ?? {});
}

/** Cap the option fields at the model's limits (the API answers 422 above them). */
function applyLimits(limits) {
  const caps = {
    "ig-steps": limits.max_n_steps,
    "lime-samples": limits.max_num_samples,
    "tree-depth": limits.max_depth,
  };
  for (const [id, cap] of Object.entries(caps)) {
    if (cap === undefined) continue;
    $(id).max = cap;
    if (Number($(id).value) > cap) $(id).value = cap;
  }
}

function takeImage(file) {
  if (!file) return;
  if (!["image/png", "image/jpeg"].includes(file.type)) {
    setStatus("Only PNG and JPEG images are accepted.", "error");
    return;
  }
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = { file, url: URL.createObjectURL(file), name: file.name };
  $("image-preview").src = state.image.url;
  $("image-preview").alt = `Preview of ${file.name}`;
  $("image-preview").hidden = false;
  $("image-name").textContent = file.name;
  setStatus("");
}

/**
 * The explain request the form describes, with what it is about, taken now: the model, the
 * input image with a URL of its own (null for tabular) and the tabular row (null for images).
 */
async function buildRequest() {
  const model = state.model;
  const image = state.image;
  const isImage = model.modality === "image";
  const methods = readMethods($("methods"));
  if (methods.length === 0) throw new Error("Pick at least one method.");
  if (isImage && !image) throw new Error("Choose or drop an image first.");
  const row = isImage ? null : readFeatures($("features"));
  const instance = isImage ? { b64: await fileToBase64(image.file) } : row;
  const body = {
    instances: [instance],
    methods,
    target: $("target").value,
    seed: Number($("seed").value) || 0,
    options: readOptions(methods, {
      igSteps: $("ig-steps"),
      igBaseline: $("ig-baseline"),
      limeSamples: $("lime-samples"),
      treeDepth: $("tree-depth"),
    }),
    heatmaps: isImage,
  };
  const input = isImage ? { ...image, url: URL.createObjectURL(image.file) } : null;
  return { body, model, input, row };
}

/** Draw the shown explanation's heatmaps, unless a later drawing overtakes this one. */
async function showHeatmaps() {
  const { response, explanation, input } = state.last;
  const draw = ++state.draws;
  await renderHeatmaps(
    $("heatmaps"),
    $("heatmap-grid"),
    response,
    explanation,
    input,
    heatmapDisplay(),
    () => draw === state.draws,
  );
}

/** Show the response to `request`: everything from the request, nothing from the form. */
async function showExplanation(request, response, roundTrip) {
  const { model, input, row } = request;
  const explanation = response.explanations[0];
  setLast({ response, explanation, input });
  $("placeholder").hidden = true;
  renderSummary($("summary"), response, explanation, model.classes);
  const raw = $("raw-json");
  raw.href = `/v1/explanations/${response.id}`;
  raw.hidden = false;
  if (input) {
    await showHeatmaps();
    $("bars").hidden = true;
  } else {
    $("heatmaps").hidden = true;
    renderBars($("bars"), explanation, featureSpecs(model), row);
  }
  renderReasons($("reasons"), explanation);
  await renderTree($("tree"), explanation, featureSpecs(model), input);
  renderTimings($("timings"), explanation, roundTrip);
}

async function explain(event) {
  event.preventDefault();
  if (!state.model) return;
  const button = $("explain");
  const ticket = ++state.tickets;
  const current = () => ticket === state.tickets;
  let request;
  try {
    request = await buildRequest();
  } catch (error) {
    if (current()) setStatus(error.message, "error");
    return;
  }
  if (!current()) return releaseInput(request); // model changed or Explain pressed again
  button.disabled = true;
  $("results").setAttribute("aria-busy", "true");
  setStatus(`Explaining with ${request.body.methods.length} methods…`, "busy");
  const started = performance.now();
  try {
    const response = await requestJson(
      `/v1/models/${encodeURIComponent(request.model.name)}/explain`,
      request.body,
    );
    if (!current()) return; // the model was changed meanwhile: its results are gone
    const roundTrip = performance.now() - started;
    await showExplanation(request, response, roundTrip);
    if (!current()) return clearResults(); // changed while the results were drawn
    setStatus(`Explained in ${(roundTrip / 1000).toFixed(2)} s.`, "ok");
  } catch (error) {
    if (!current()) return;
    if (error instanceof ApiError) markErrors($("features"), error.errors);
    const details =
      error instanceof ApiError
        ? error.errors.map((e) => ` ${[].concat(e.loc).join(".")}: ${e.msg}`)
        : [];
    setStatus(`${error.message}${details.join(";")}`, "error");
  } finally {
    releaseInput(request);
    button.disabled = false;
    $("results").removeAttribute("aria-busy");
  }
}

/** The raw JSON link: a plain link without a key; with one, fetched with it and shown. */
async function openRawJson(event) {
  if (!apiKey.get()) return;
  event.preventDefault();
  const tab = window.open("", "_blank");
  try {
    const body = await requestJson(event.currentTarget.getAttribute("href"));
    const blob = new Blob([JSON.stringify(body, null, 2)], { type: "application/json" });
    tab.location = URL.createObjectURL(blob);
  } catch (error) {
    tab.close();
    setStatus(error.message, "error");
  }
}

function wireImageDrop() {
  const zone = $("drop-zone");
  $("image-file").addEventListener("change", (e) => takeImage(e.target.files[0]));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragging");
    takeImage(e.dataTransfer.files[0]);
  });
}

function wireHeatmapToolbar() {
  $("hm-colormap").replaceChildren(
    ...COLORMAPS.map((name) => h("option", { value: name, text: name || "default" })),
  );
  const redraw = () =>
    state.last?.input && showHeatmaps().catch((error) => setStatus(error.message, "error"));
  $("hm-style").addEventListener("change", redraw);
  $("hm-colormap").addEventListener("change", redraw);
  $("hm-alpha").addEventListener("input", () => {
    $("hm-alpha-value").value = Number($("hm-alpha").value).toFixed(2);
  });
  $("hm-alpha").addEventListener("change", redraw);
}

function init() {
  showKeyState();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    apiKey.set($("api-key").value.trim());
    showKeyState();
    if (state.models.length === 0) loadModels(); // the first listing may have needed the key
  });
  $("key-clear").addEventListener("click", () => {
    apiKey.clear();
    showKeyState();
  });
  $("model").addEventListener("change", (e) => selectModel(e.target.value));
  $("reset-example").addEventListener("click", () =>
    renderFeatures($("features"), state.model, state.model.example),
  );
  $("explain-form").addEventListener("submit", explain);
  $("raw-json").addEventListener("click", openRawJson);
  wireImageDrop();
  wireHeatmapToolbar();
  loadModels();
}

init();
