"""Browser tests of the web viewer (issue 7): Debian's chromium driven by Playwright.

Each test loads `/` from the live server, explains one input through the page as a user
would and checks what the page shows. Screenshots are kept under `test-artifacts/`.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect

from api.app import create_app
from api.config import ApiConfig

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
EXPLAIN_TIMEOUT_MS = 180_000  # the first SHAP call of a model compiles (DESIGN 8)


@dataclass
class Viewer:
    """A page on the viewer and every console error or uncaught exception it produced."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def explain(self) -> None:
        """Press Explain and wait until the page reports success."""
        self.page.get_by_role("button", name="Explain").click()
        status = self.page.locator("#status")
        expect(status).to_have_class(re.compile(r"\b(ok|error)\b"), timeout=EXPLAIN_TIMEOUT_MS)
        assert status.get_attribute("class") == "status ok", status.inner_text()

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / name, full_page=True)


@pytest.fixture(scope="module")
def models(live_server: str) -> list[dict[str, Any]]:
    """The live server's model listing."""
    response = requests.get(f"{live_server}/v1/models", timeout=30)
    response.raise_for_status()
    listing: list[dict[str, Any]] = response.json()["models"]
    return listing


def first_model(models: list[dict[str, Any]], modality: str) -> dict[str, Any]:
    """The first model of a modality, preferring one with categorical features."""
    candidates = [m for m in models if m["modality"] == modality]
    if not candidates:
        pytest.skip(f"the live server has no {modality} model")
    categorical = [m for m in candidates if any(isinstance(v, str) for v in example_of(m).values())]
    return (categorical or candidates)[0]


def example_of(model: dict[str, Any]) -> dict[str, Any]:
    """The model's example row, or an empty one."""
    return model.get("example") or {}


@pytest.fixture
def viewer(browser: Browser, live_server: str) -> Iterator[Viewer]:
    context = browser.new_context(base_url=live_server, viewport={"width": 1440, "height": 900})
    viewer = Viewer(context.new_page())

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            viewer.errors.append(f"{message.text} at {message.location}")

    viewer.page.on("console", on_console)
    viewer.page.on("pageerror", lambda error: viewer.errors.append(f"uncaught: {error}"))
    viewer.page.goto("/")
    expect(viewer.page.locator("#model option").first).to_be_attached()
    yield viewer
    context.close()


def lesion_png(size: tuple[int, int]) -> bytes:
    """A PNG of a generated lesion (the zoo's own generator) or, failing that, a dark disc."""
    try:
        from models.zoo.lesion_data import generate

        pixels = generate(1, seed=7).images[0]
    except ImportError:
        yy, xx = np.mgrid[:64, :64]
        disc = (yy - 32) ** 2 + (xx - 30) ** 2 < 15**2
        pixels = np.where(disc[..., None], [110, 60, 45], [220, 175, 145]).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize(size).save(buffer, format="PNG")
    return buffer.getvalue()


def white_png(size: tuple[int, int]) -> bytes:
    """A plain white PNG: an input unlike the lesion."""
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format="PNG")
    return buffer.getvalue()


def choose_image(page: Page, name: str, data: bytes) -> None:
    page.locator("#image-file").set_input_files(
        {"name": name, "mimeType": "image/png", "buffer": data}
    )


def check_methods(page: Page, methods: set[str]) -> None:
    """Check exactly the model's methods in `methods`."""
    for box in page.locator("#methods input").all():
        box.set_checked(box.get_attribute("value") in methods)


def held_explain_request(page: Page) -> Route:
    """Press Explain and return its request, held until the test lets it go (`continue_`)."""
    held: list[Route] = []
    page.route("**/explain", lambda route: held.append(route))
    page.get_by_role("button", name="Explain").click()
    for _ in range(200):
        if held:
            return held[0]
        page.wait_for_timeout(50)
    raise AssertionError("the page sent no explain request")


def test_page_loads_with_labelled_keyboard_reachable_controls(viewer: Viewer) -> None:
    page = viewer.page
    expect(page).to_have_title("explainer · viewer")
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, button, textarea")]
            .filter((el) => !el.closest("[hidden]"))
            .filter((el) => el.labels?.length === 0 && !el.getAttribute("aria-label")
                            && !el.textContent.trim())
            .map((el) => el.id || el.outerHTML)"""
    )
    assert unlabelled == []
    page.locator("#model").focus()
    for _ in range(80):
        if page.evaluate("document.activeElement.id") == "explain":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "explain"
    assert viewer.errors == []


def test_explain_an_uploaded_image(viewer: Viewer, models: list[dict[str, Any]]) -> None:
    model = first_model(models, "image")
    page = viewer.page
    page.get_by_label("Model").select_option(model["name"])
    size = (model["image"]["width"], model["image"]["height"])
    page.locator("#image-file").set_input_files(
        {"name": "lesion.png", "mimeType": "image/png", "buffer": lesion_png(size)}
    )
    expect(page.locator("#image-preview")).to_be_visible()

    viewer.explain()

    heatmaps = page.locator("#heatmap-grid img")
    methods = page.locator("#methods input:checked").count()
    expect(heatmaps).to_have_count(methods + 1)  # the input, then one map per method
    sizes = heatmaps.evaluate_all(
        "imgs => imgs.map((img) => [img.naturalWidth, img.naturalHeight])"
    )
    assert all(width > 0 and height > 0 for width, height in sizes), sizes
    expect(page.locator("#prediction-label")).not_to_be_empty()
    expect(page.locator("#tree-rules li").first).to_be_visible()
    expect(page.locator("#tree canvas.region-map")).to_be_visible()  # what "region N" means
    expect(page.locator("#summary .badge").first).to_be_visible()
    viewer.screenshot("viewer-image.png")

    # Switching the display re-renders the maps without explaining again.
    with page.expect_response(lambda r: ".png?" in r.url and "style=map" in r.url):
        page.get_by_label("Style").select_option("map")
    expect(heatmaps).to_have_count(methods + 1)
    assert viewer.errors == []


def test_explain_a_tabular_row_through_the_form(
    viewer: Viewer, models: list[dict[str, Any]]
) -> None:
    model = first_model(models, "tabular")
    page = viewer.page
    page.get_by_label("Model").select_option(model["name"])
    features = page.locator("#features [data-feature]")
    expect(features).to_have_count(len(model["features"]))
    example = example_of(model)
    if example:  # the form starts from the model's example
        first = model["features"][0]
        assert float(page.locator(f'[data-feature="{first}"]').input_value()) == pytest.approx(
            example[first]
        )
    else:
        for i in range(len(model["features"])):
            features.nth(i).fill("0")

    viewer.explain()

    assert page.locator("#prediction-label").inner_text() in model["classes"]
    expect(page.locator("#bars tbody tr").first).to_be_visible()
    expect(page.locator("#tree-rules li").first).to_be_visible()
    page.locator("details.whole-tree summary").click()
    expect(page.locator(".tree .on-path").first).to_be_visible()
    viewer.screenshot("viewer-tabular.png")

    raw = page.locator("#raw-json")
    expect(raw).to_have_attribute("href", re.compile(r"^/v1/explanations/[^/]+$"))
    href = raw.get_attribute("href") or ""
    stored = page.request.get(href)
    assert stored.ok and stored.json()["explanations"][0]["methods"]
    # With an API key the link fetches the JSON with it and opens it in a new tab.
    page.get_by_label("API key").fill("any-key")
    page.get_by_role("button", name="Use key").click()
    with page.expect_popup() as popup:
        raw.click()
    expect(popup.value.locator("body")).to_contain_text(href.rsplit("/", 1)[1])
    assert viewer.errors == []


def test_api_key_is_kept_for_the_tab_and_sent_as_bearer(viewer: Viewer) -> None:
    page = viewer.page
    page.get_by_label("API key").fill("test-key")
    page.get_by_role("button", name="Use key").click()
    assert page.evaluate("sessionStorage.getItem('explainer.apiKey')") == "test-key"
    with page.expect_request(lambda r: r.url.endswith("/v1/models")) as listing:
        page.reload()
    assert listing.value.headers.get("authorization") == "Bearer test-key"
    expect(page.get_by_label("API key")).to_have_value("test-key")
    page.get_by_role("button", name="Forget").click()
    assert page.evaluate("sessionStorage.getItem('explainer.apiKey')") is None


def test_page_and_its_files_need_no_api_key(tmp_path: Path) -> None:
    """The page holds no data, so it loads without a key; the API calls it makes need one."""
    config = {
        "api_keys": "secret",
        "model_repo": tmp_path,  # no models: the page needs none to load
        "database_url": f"sqlite:///{tmp_path / 'explainer.db'}",
    }
    client = create_app(ApiConfig.from_env(config, environ={})).test_client()
    for path in ("/", "/viewer/static/viewer.js", "/viewer/static/viewer.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer secret"}).status_code == 200


def test_an_image_chosen_while_explaining_is_not_shown_as_its_input(
    viewer: Viewer, models: list[dict[str, Any]]
) -> None:
    """The result shows the image that was explained, whatever was chosen since, and keeps
    showing it when the heatmaps are redrawn."""
    model = first_model(models, "image")
    page = viewer.page
    page.get_by_label("Model").select_option(model["name"])
    size = (model["image"]["width"], model["image"]["height"])
    choose_image(page, "lesion.png", lesion_png(size))
    check_methods(page, {"saliency"})
    request = held_explain_request(page)
    choose_image(page, "white.png", white_png(size))
    request.continue_()
    status = page.locator("#status")
    expect(status).to_have_class(re.compile(r"\b(ok|error)\b"), timeout=EXPLAIN_TIMEOUT_MS)
    assert status.get_attribute("class") == "status ok", status.inner_text()
    original = page.locator("#heatmap-grid figure").first
    expect(original.locator(".hint")).to_have_text("lesion.png")

    choose_image(page, "other.png", white_png(size))  # the shown input must stay loadable
    with page.expect_response(lambda r: "colormap=PuOr_r" in r.url):
        page.get_by_label("Colormap").select_option("PuOr_r")
    expect(page.locator("#heatmap-grid img")).to_have_count(2)
    expect(original.locator(".hint")).to_have_text("lesion.png")
    width = original.locator("img").evaluate(
        "img => img.decode().then(() => img.naturalWidth, () => 0)"
    )
    assert width > 0, "the input image was revoked"
    assert viewer.errors == []


def test_a_model_changed_while_explaining_drops_the_response(
    viewer: Viewer, models: list[dict[str, Any]]
) -> None:
    """A response for the model no longer chosen is not shown under the new model's classes."""
    model = first_model(models, "tabular")
    other = next((m for m in models if m["name"] != model["name"]), None)
    if other is None:
        pytest.skip("the live server has a single model")
    page = viewer.page
    page.get_by_label("Model").select_option(model["name"])
    request = held_explain_request(page)
    page.get_by_label("Model").select_option(other["name"])
    request.continue_()
    expect(page.get_by_role("button", name="Explain")).to_be_enabled(timeout=EXPLAIN_TIMEOUT_MS)
    expect(page.locator("#summary")).to_be_empty()
    expect(page.locator("#placeholder")).to_be_visible()
    assert page.locator("#status").get_attribute("class") != "status ok"


def test_magnitudes_and_tree_thresholds_of_a_tabular_row(
    viewer: Viewer, models: list[dict[str, Any]]
) -> None:
    """Saliency (|gradient|) is drawn without a direction; the whole tree's thresholds read
    as the rules do."""
    model = first_model(models, "tabular")
    page = viewer.page
    page.get_by_label("Model").select_option(model["name"])
    check_methods(page, {"saliency", "shap", "tree"})
    viewer.explain()

    headers = page.locator("#bars thead th").all_text_contents()
    column = next(i for i, text in enumerate(headers) if text.startswith("Saliency")) + 1
    bars = page.locator(f"#bars tbody td:nth-child({column}) .bar")
    assert set(bars.evaluate_all("bars => bars.map((b) => b.className)")) == {"bar bar-magnitude"}
    assert page.locator("#bars .bar-pos, #bars .bar-neg").count() > 0  # SHAP keeps its sign
    expect(page.locator("#bars-legend")).to_contain_text("Saliency (grey): a magnitude")

    rules = page.locator("#tree-rules li").all_text_contents()
    path = page.locator(".tree li.on-path > .node").all_text_contents()
    for rule in rules:
        condition = rule.replace("<=", "≤")
        assert any(node.startswith(condition) for node in path), (rule, path)
    assert viewer.errors == []
