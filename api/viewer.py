"""The web viewer (issue 7): one page at `/` with its static JavaScript and CSS.

The page is plain HTML, CSS and ES modules served from `api/static/` (no build step, no CDN).
It talks to the public HTTP API only (`/v1/models`, `/v1/models/{name}/explain`,
`/v1/explanations/{id}`), so it needs no server-side state of its own.
"""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint(
    "viewer",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/viewer/static",
)


@bp.get("/")
def index() -> str:
    """Serve the viewer page."""
    return render_template("viewer.html")
