"""Liveness and readiness (KServe style): /healthz always, /readyz once models are loaded."""

from __future__ import annotations

from flask import Response, jsonify
from flask_openapi3 import APIBlueprint, Tag

from api.openapi import problem_responses
from api.runtime import runtime
from api.schemas import Health

bp = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@bp.get(
    "/healthz",
    summary="Liveness: the process answers",
    responses={200: Health, **problem_responses(bp)},
)
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get(
    "/readyz",
    summary="Readiness: 200 once the models are loaded, else a 503 problem saying why",
    responses={200: Health, **problem_responses(bp, 503)},
)
def readyz() -> Response:
    state = runtime()
    state.require_ready()
    body = {"status": state.status, "models": state.repository.names()}
    return jsonify({**body, "errors": state.repository.errors})
