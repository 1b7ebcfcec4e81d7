"""Screenshots of the web viewer for the README: `docs/viewer-image.png`, `docs/viewer-tabular.png`.

Each shows a real explanation: the zoo's lesion image model on a generated lesion, and the
credit-risk model on its example applicant. Uses a running server (`--base-url`, e.g. the
one `make run` starts) or starts `explainer serve` on a free port itself, and drives
Debian's chromium headless through Playwright:

    .venv/bin/python docs/make_screenshots.py [--base-url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import Page, expect, sync_playwright

from models.zoo.lesion_data import generate

DOCS = Path(__file__).resolve().parent
if str(DOCS.parent) not in sys.path:  # run as a script from docs/; `benchmarks` is not installed
    sys.path.append(str(DOCS.parent))

from benchmarks.browser import launch_chromium  # noqa: E402
from benchmarks.liveserver import running_server  # noqa: E402

IMAGE_MODEL, TABULAR_MODEL = "lesion-64", "credit-risk"
LESION_SEED = 7  # a generated malignant lesion (veil and dots inside) with a hair and an ink mark
EXPLAIN_TIMEOUT_MS = 300_000


def lesion_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(generate(1, seed=LESION_SEED).images[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def explain_and_capture(page: Page, path: Path) -> None:
    """Press Explain, wait for the result, open the whole tree and save a full-page shot."""
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#status.ok")).to_be_visible(timeout=EXPLAIN_TIMEOUT_MS)
    page.locator("details.whole-tree summary").click()
    page.screenshot(path=path, full_page=True)
    print(f"wrote {path}")


def capture(base_url: str) -> None:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(base_url=base_url, viewport={"width": 1440, "height": 900})
        page.goto("/")
        expect(page.locator("#model option").first).to_be_attached()

        page.get_by_label("Model").select_option(IMAGE_MODEL)
        page.locator("#image-file").set_input_files(
            {"name": "lesion.png", "mimeType": "image/png", "buffer": lesion_png()}
        )
        explain_and_capture(page, DOCS / "viewer-image.png")

        page.get_by_label("Model").select_option(TABULAR_MODEL)
        explain_and_capture(page, DOCS / "viewer-tabular.png")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="a running server (default: start one)")
    args = parser.parse_args()
    if args.base_url:
        capture(args.base_url.rstrip("/"))
    else:
        with running_server(threads=None, inherit=["EXPLAINER_DEVICE"]) as server:
            capture(server.url)


if __name__ == "__main__":
    main()
