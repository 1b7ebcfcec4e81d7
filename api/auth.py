"""Bearer API keys: when any are configured, every route but the open ones needs one.

Open: /healthz and /readyz (probes), and the pages a browser navigates to, which hold no
data (a browser cannot send a bearer token when it navigates): the web viewer's page and
static files, and the API reference page /docs. Each page asks for the key and sends it on
its API calls (/docs on its fetch of /openapi.json, which needs the key like every other
API route). Keys are compared in constant time; a missing or wrong key is a 401 problem
with `WWW-Authenticate: Bearer`.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from flask import Flask, request

from api.errors import Unauthorized

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs"})
OPEN_BLUEPRINTS = frozenset({"viewer"})


def _valid(token: str, keys: Sequence[bytes]) -> bool:
    given = token.encode()
    matched = False
    for key in keys:  # no early exit: the time does not depend on which key matched
        matched |= hmac.compare_digest(given, key)
    return matched


def install_auth(app: Flask, api_keys: Sequence[str]) -> None:
    """Require `Authorization: Bearer <key>` except on OPEN_PATHS and OPEN_BLUEPRINTS."""
    if not api_keys:
        return
    keys = [key.encode() for key in api_keys]

    def check() -> None:
        if request.path in OPEN_PATHS or request.blueprint in OPEN_BLUEPRINTS:
            return
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not _valid(token.strip(), keys):
            raise Unauthorized("a valid API key is required: Authorization: Bearer <key>")

    app.before_request(check)
