// The request form: built from a model's description (GET /v1/models), read into an
// explain request (DESIGN 3.2).

import { h, methodName } from "./dom.js";

/** One entry per tabular feature: {name, unit, min, max, choices}. */
export function featureSpecs(model) {
  const names = model.features ?? [];
  const units = model.units ?? {};
  const ranges = model.ranges ?? {};
  const categorical = model.categorical ?? {};
  return names.map((name) => ({
    name,
    unit: units[name] ?? "",
    min: ranges[name]?.min,
    max: ranges[name]?.max,
    choices: categorical[name],
  }));
}

function featureField(spec, index, value) {
  const id = `feature-${index}`;
  const hintId = `${id}-hint`;
  const label = h(
    "label",
    { for: id, text: spec.name },
    spec.unit && h("span", { class: "unit", text: ` [${spec.unit}]` }),
  );
  let control;
  let hint = "";
  if (spec.choices) {
    control = h(
      "select",
      { id, "data-feature": spec.name },
      spec.choices.map((choice) => h("option", { value: choice, text: choice })),
    );
    control.value = typeof value === "number" ? spec.choices[value] : (value ?? spec.choices[0]);
  } else if (typeof value === "string") {
    // A category whose choices the listing does not give: typed as text.
    control = h("input", { id, type: "text", required: true, "data-feature": spec.name });
    control.value = value;
  } else {
    control = h("input", {
      id,
      type: "number",
      step: "any",
      required: true,
      min: spec.min,
      max: spec.max,
      "data-feature": spec.name,
      "aria-describedby": hintId,
    });
    control.value = value ?? "";
    if (spec.min !== undefined && spec.max !== undefined) hint = `${spec.min} to ${spec.max}`;
  }
  return h(
    "div",
    { class: "feature" },
    label,
    control,
    h("span", { id: hintId, class: "hint", text: hint }),
  );
}

/** Fill the features fieldset with one field per feature, pre-filled with `values`. */
export function renderFeatures(container, model, values) {
  container.replaceChildren(
    ...featureSpecs(model).map((spec, i) => featureField(spec, i, values?.[spec.name])),
  );
}

/** The row the form describes, keyed by feature name; throws on an invalid field. */
export function readFeatures(container) {
  const row = {};
  for (const control of container.querySelectorAll("[data-feature]")) {
    control.removeAttribute("aria-invalid");
    if (control.tagName === "SELECT" || control.type === "text") {
      row[control.dataset.feature] = control.value;
      continue;
    }
    if (control.value === "" || !control.checkValidity()) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
      const why = control.validationMessage || "a number is required";
      throw new Error(`${control.dataset.feature}: ${why}`);
    }
    row[control.dataset.feature] = Number(control.value);
  }
  return row;
}

/** Mark the fields named in a problem's errors (loc = ["instances", 0, feature]). */
export function markErrors(container, errors) {
  for (const { loc } of errors) {
    const feature = Array.isArray(loc) ? loc[loc.length - 1] : undefined;
    for (const control of container.querySelectorAll("[data-feature]")) {
      if (control.dataset.feature === feature) control.setAttribute("aria-invalid", "true");
    }
  }
}

/** One checkbox per method the model supports; its default methods start checked. */
export function renderMethods(container, model) {
  const checked = model.default_methods ?? model.methods;
  container.replaceChildren(
    ...model.methods.map((method) => {
      const id = `method-${method}`;
      return h(
        "div",
        { class: "check" },
        h("input", { id, type: "checkbox", value: method, checked: checked.includes(method) }),
        h("label", { for: id, text: methodName(method) }),
      );
    }),
  );
}

/** The checked methods, in the order shown. */
export function readMethods(container) {
  return [...container.querySelectorAll("input:checked")].map((box) => box.value);
}

/** The explain target choices: the predicted class, then each class by label. */
export function renderTargets(select, model) {
  select.replaceChildren(
    h("option", { value: "predicted", text: "the predicted class" }),
    ...model.classes.map((label) => h("option", { value: label, text: label })),
  );
}

/** Options for the requested methods only (the API rejects unknown keys). */
export function readOptions(methods, controls) {
  const options = {};
  if (methods.includes("integrated_gradients")) {
    options.integrated_gradients = { n_steps: Number(controls.igSteps.value) };
    if (controls.igBaseline.value) {
      options.integrated_gradients.baseline = controls.igBaseline.value;
    }
  }
  if (methods.includes("lime")) options.lime = { num_samples: Number(controls.limeSamples.value) };
  if (methods.includes("tree")) options.tree = { max_depth: Number(controls.treeDepth.value) };
  return options;
}

/** Base64 (without the data: prefix) of an uploaded file. */
export function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
