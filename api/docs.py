"""`/openapi.json` and `/docs`: the spec and a small self-hosted page that renders it.

The page loads nothing from a CDN: its script reads `/openapi.json` and lists every
operation with its parameters, request body and responses. With API keys configured the
spec needs the key like every API route, while the page itself is open (it holds no data,
and a browser cannot send a bearer token when it navigates): it sends the key the viewer
keeps in the tab's sessionStorage, and asks for one when the spec answers 401.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>explainer API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h2{margin-top:2rem;border-bottom:1px solid #ccc}
.op{border:1px solid #ddd;border-radius:6px;margin:.8rem 0;padding:.6rem .9rem}
.verb{display:inline-block;min-width:4.5rem;font-weight:700}
.get{color:#1565c0}.post{color:#2e7d32}.delete{color:#c62828}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:24rem}
summary{cursor:pointer}
#key-form{margin:1rem 0}
</style></head>
<body><h1>explainer HTTP API</h1>
<p>The machine-readable spec: <a href="openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<form id="key-form" hidden>
<label for="api-key">API key</label>
<input id="api-key" type="password" autocomplete="off" spellcheck="false">
<button type="submit">Load the spec</button>
<span id="key-state" role="status"></span>
</form>
<div id="ops">Loading the spec…</div>
<script>
// The viewer's sessionStorage entry: a key entered on either page serves both in this tab.
const KEY_STORAGE = "explainer.apiKey";
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const text = (tag, value, cls) => {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
};
const block = (title, value) => {
  const details = document.createElement("details");
  details.append(text("summary", title), text("pre", JSON.stringify(value, null, 2)));
  return details;
};
const render = (spec) => {
  const root = document.getElementById("ops");
  root.textContent = "";
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [verb, op] of Object.entries(item)) {
      const box = document.createElement("div");
      box.className = "op";
      const head = document.createElement("div");
      head.append(text("span", verb.toUpperCase(), "verb " + verb), text("code", path));
      box.append(head);
      if (op.summary) box.append(text("p", op.summary));
      if (op.description) box.append(text("p", op.description));
      if (op.parameters) box.append(block("parameters", op.parameters));
      if (op.requestBody) box.append(block("request body", op.requestBody));
      box.append(block("responses", op.responses));
      root.append(box);
    }
  }
  root.append(text("h2", "Schemas"));
  for (const [name, schema] of Object.entries(spec.components.schemas || {})) {
    root.append(block(name, schema));
  }
};
const load = () => {
  const key = sessionStorage.getItem(KEY_STORAGE) ?? "";
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  return fetch("openapi.json", { headers }).then((r) => {
    if (r.status === 401) {
      keyForm.hidden = false;
      document.getElementById("key-state").textContent = key
        ? "That key was refused."
        : "This server requires an API key.";
      document.getElementById("ops").textContent = "";
      keyInput.focus();
      return;
    }
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json().then((spec) => { keyForm.hidden = true; render(spec); });
  }).catch(() => { document.getElementById("ops").textContent = "Could not load /openapi.json"; });
};
keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim());
  keyInput.value = "";
  load();
});
load();
</script></body></html>
"""


@bp.get("/openapi.json")
def spec() -> Response:
    """The OpenAPI 3 document generated from the schemas."""
    return jsonify(current_app.api_doc)  # type: ignore[attr-defined]


@bp.get("/docs")
def page() -> Response:
    """The human-readable API reference."""
    return Response(_PAGE, mimetype="text/html")
