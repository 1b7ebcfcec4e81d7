"""OpenAPI helpers: request bodies parsed by `api.parsing` (JSON or multipart) in the spec.

flask-openapi3 documents a `body` argument it also validates; the explain and predict
bodies are parsed by `read_body` instead (strict JSON, multipart uploads), so their
schemas enter the spec here, through `openapi_extensions`.
"""

from __future__ import annotations

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
