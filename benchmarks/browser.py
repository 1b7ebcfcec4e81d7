"""Debian's chromium, headless through Playwright: the browser tests' and the README screenshots'.

It lives here, next to `liveserver`, so that tests/ and docs/ share it without importing
each other.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")  # Debian's chromium: no browser download is possible here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright: Playwright) -> Browser:
    """Launch CHROMIUM with CHROMIUM_ARGS (no sandbox, GPU or background network traffic)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
