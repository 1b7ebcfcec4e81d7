"""`create_app(config)`: the Flask (flask-openapi3) application factory.

One Engine and one model repository per process, created here; under gunicorn this runs
in each worker after the fork, so CUDA is first touched in the worker.
"""

from __future__ import annotations

import importlib
import importlib.util

from flask_openapi3 import Info, OpenAPI

from api.auth import OPEN_PATHS, install_auth
from api.config import ApiConfig
from api.docs import bp as docs_bp
from api.errors import openapi_validation_response, register_error_handlers
from api.metrics import install_metrics
from api.observability import install_request_logging
from api.openapi import BEARER, apply_security
from api.overload import install_overload
from api.parsing import StrictJSONProvider, StrictRequest, install_single_query_values
from api.routes import audits, explanations, health, models
from api.runtime import EXTENSION, Runtime
from api.schemas import Problem

VIEWER_MODULE = "api.viewer"


def _register_viewer(app: ExplainerApp) -> None:
    """The web viewer (issue 7) lives in `api/viewer.py` as a Blueprint `bp` serving `/`.

    It is optional: registered when the module exists, so the API works without it.
    """
    if importlib.util.find_spec(VIEWER_MODULE) is not None:
        app.register_blueprint(importlib.import_module(VIEWER_MODULE).bp)


class ExplainerApp(OpenAPI):
    """flask-openapi3's app with strict JSON parsing (no NaN or Infinity), whose spec
    declares the bearer requirement of every operation that needs a key."""

    json_provider_class = StrictJSONProvider
    request_class = StrictRequest

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        apply_security(self.spec_json, bool(self.security_schemes), OPEN_PATHS)


def create_app(config: ApiConfig | None = None) -> ExplainerApp:
    """Build the app: config, errors, auth, blueprints, metrics, and the models (loaded once)."""
    config = config or ApiConfig.from_env()
    app = ExplainerApp(
        __name__,
        info=Info(title="explainer", version="1"),
        doc_ui=False,  # /docs is our own page (no CDN), in api.docs
        validation_error_status=422,
        validation_error_model=Problem,
        validation_error_callback=openapi_validation_response,
        # {} rather than None: flask-openapi3 would write `"securitySchemes": null`.
        security_schemes={BEARER: {"type": "http", "scheme": "bearer"}} if config.api_keys else {},
    )
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_request_logging(app)
    install_auth(app, config.api_keys)
    install_single_query_values(app)
    register_error_handlers(app)
    for blueprint in (health.bp, models.bp, explanations.bp, audits.bp):
        app.register_api(blueprint)
    app.register_blueprint(docs_bp)
    _register_viewer(app)
    install_overload(app, config)
    state = Runtime(config)
    install_metrics(app, state)  # after the overload gate: its 503 and 504 are counted
    app.extensions[EXTENSION] = state
    state.start()
    return app
