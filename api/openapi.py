"""OpenAPI helpers: request bodies parsed by `api.parsing` (JSON or multipart) in the spec,
and the bearer security requirements.

flask-openapi3 documents a `body` argument it also validates; the explain and predict
bodies are parsed by `read_body` instead (strict JSON, multipart uploads), so their
schemas enter the spec here, through `openapi_extensions`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from flask_openapi3 import APIBlueprint
from flask_openapi3.types import ResponseDict
from flask_openapi3.utils import parse_body, parse_form
from pydantic import BaseModel

from api.schemas import Problem

PROBLEM_RESPONSE = {
    "description": "RFC 9457 problem details",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def request_body(
    bp: APIBlueprint, json_model: type[BaseModel], multipart_model: type[BaseModel] | None = None
) -> dict[str, Any]:
    """`openapi_extensions` declaring the body; registers the schemas on `bp`."""
    content, schemas = parse_body(json_model)
    if multipart_model is not None:
        form_content, form_schemas = parse_form(multipart_model)
        content.update(form_content)
        schemas.update(form_schemas)
    bp.components_schemas.update(schemas)
    return {
        "requestBody": {
            "required": True,
            "content": {
                mime: media.model_dump(by_alias=True, exclude_unset=True)
                for mime, media in content.items()
            },
        }
    }


def problem_responses(bp: APIBlueprint, *statuses: int) -> ResponseDict:
    """Responses entries for 422 and the given error statuses, all `Problem`.

    Declaring 422 here keeps flask-openapi3 from documenting its own validation-error shape.
    """
    _, schemas = parse_body(Problem)
    bp.components_schemas.update(schemas)
    return {str(status): PROBLEM_RESPONSE for status in (*statuses, 422)}


BEARER = "bearer"  # the security scheme's name in `components.securitySchemes`


def apply_security(spec: dict[str, Any], keyed: bool, open_paths: Collection[str]) -> None:
    """Declare, per operation, what `api.auth` enforces: the spec describes this server.

    With keys configured, every operation outside `open_paths` requires the bearer scheme
    and lists its 401; the open ones require nothing. Without keys no operation can answer
    401, so none lists it.
    """
    for path, item in spec.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if keyed and path not in open_paths:
                operation["security"] = [{BEARER: []}]
                responses.setdefault("401", PROBLEM_RESPONSE)
            else:
                responses.pop("401", None)
