"""Strict request bodies: JSON without NaN or Infinity, or multipart with image files.

`StrictJSONProvider` and `StrictRequest` make every JSON body parse strictly (400 when
malformed, 422 for NaN, Infinity, a number that overflows or nesting too deep to parse) and
hold a chunked body to the body limit (413); `read_body` validates a JSON or multipart body
against a pydantic schema in strict mode (unknown fields and values of the wrong JSON type
rejected), and `multipart_request` reads the JSON object of a multipart body's `request`
part. A multipart body that cannot be parsed (cut short, or without its boundary) is a 400,
as malformed JSON is; a query parameter of a route's query model given more than once is a
422 (`install_single_query_values`), where flask-openapi3 would take its first value.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Collection
from functools import cache
from typing import IO, Any, NoReturn, TypeVar, cast, get_type_hints

from flask import Flask, Request, current_app, request
from flask.json.provider import DefaultJSONProvider
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from api.errors import MalformedRequest, UnsupportedMediaType, invalid_input
from models.errors import ErrorItem, InvalidInput, LimitExceeded, PayloadTooLarge

JSON_MIME = "application/json"
MULTIPART_MIME = "multipart/form-data"
# Multipart: image files in this field (repeatable, in order), options as JSON in "request"
# (a form field or a file).
FILES_FIELD = "instances"
REQUEST_FIELD = "request"

Schema = TypeVar("Schema", bound=BaseModel)


class NonFiniteNumber(ValueError):
    """NaN, Infinity, or a number too large for a float."""


class NestedTooDeeply(ValueError):
    """Arrays and objects nested past the parser's recursion limit."""


def _reject_constant(name: str) -> NoReturn:
    raise NonFiniteNumber(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NonFiniteNumber("overflow")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (4300): out of range
        raise NonFiniteNumber("overflow") from None


def strict_loads(text: str | bytes) -> Any:
    """`json.loads` that refuses NaN, Infinity, overflowing numbers and deep nesting."""
    try:
        return json.loads(
            text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_integer
        )
    except RecursionError:
        raise NestedTooDeeply("nested too deeply") from None


def _json_failure(
    error: ValueError, loc: tuple[str | int, ...]
) -> InvalidInput | LimitExceeded | MalformedRequest:
    if isinstance(error, NonFiniteNumber):
        return InvalidInput(
            "NaN, Infinity and out-of-range numbers are not allowed",
            [ErrorItem(loc, "numbers must be finite")],
        )
    if isinstance(error, NestedTooDeeply):
        return LimitExceeded(
            "arrays and objects nested too deeply", [ErrorItem(loc, "nested too deeply")]
        )
    return MalformedRequest("the body is not valid JSON", [ErrorItem(loc, "invalid JSON")])


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with strict parsing; responses never contain NaN."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return strict_loads(s)


class _CappedBody(LimitedStream):
    """A body without Content-Length (chunked), read whole: past `limit` a 413. Werkzeug's
    own `readall` stops at the limit, which cut an oversized JSON body short silently."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._source.read(1):
            raise RequestEntityTooLarge()
        return data


class StrictRequest(Request):
    """A request whose JSON errors become problem responses (400 or 422), whose multipart
    body is a 400 when it cannot be parsed, and whose chunked body is held to the body
    limit (413) as one with Content-Length is."""

    def make_form_data_parser(self) -> FormDataParser:
        # werkzeug's parser is silent by default: a multipart body cut short parsed as no
        # fields at all, and its route answered "instances: field required".
        parser = super().make_form_data_parser()
        parser.silent = False
        return parser

    def _load_form_data(self) -> None:
        try:
            super()._load_form_data()
        except ValueError:  # werkzeug's parse errors; a 413 is not a ValueError
            raise MalformedRequest(
                "the multipart body is malformed or truncated",
                [ErrorItem(("body",), "malformed multipart/form-data")],
            ) from None

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        # Without "wsgi.input_terminated" werkzeug reads nothing of such a body.
        chunked = self.content_length is None and "wsgi.input_terminated" in self.environ
        if chunked and limit is not None and not self.shallow:
            return cast(IO[bytes], _CappedBody(self.input_stream, limit))  # as werkzeug does
        return super().stream

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:
            raise UnsupportedMediaType(f"expected {JSON_MIME}")
        raise _json_failure(e, ("body",))


def _request_part() -> str:
    """The multipart `request` part's text ("{}" when absent), from a form field or a file.

    A file is read as UTF-8 (a BOM allowed) within the form field size limit.
    """
    texts = request.form.getlist(REQUEST_FIELD)
    uploads = request.files.getlist(REQUEST_FIELD)
    if len(texts) + len(uploads) > 1:
        raise InvalidInput("request given twice", [ErrorItem((REQUEST_FIELD,), "send it once")])
    if texts:
        return texts[0]
    if not uploads:
        return "{}"
    limit = request.max_form_memory_size
    content = uploads[0].read() if limit is None else uploads[0].read(limit + 1)
    if limit is not None and len(content) > limit:
        raise PayloadTooLarge(f"the {REQUEST_FIELD} part is larger than {limit} bytes")
    return content.decode("utf-8-sig")  # UnicodeDecodeError: a ValueError, invalid JSON


def multipart_request(file_fields: Collection[str]) -> dict[str, Any]:
    """A multipart body's JSON object in `request` (a form field or a file; {} if absent).

    Every other part must be one of `file_fields` and hold a file: unknown parts, and text
    where a file is expected, are rejected.
    """
    known = {*file_fields, REQUEST_FIELD}
    unknown = sorted((set(request.form) | set(request.files)) - known)
    if unknown:
        raise InvalidInput(
            "unknown multipart fields",
            [ErrorItem((name,), "unknown field") for name in unknown],
        )
    as_text = sorted(set(request.form) & set(file_fields))
    if as_text:
        raise InvalidInput(
            "file fields sent as text", [ErrorItem((name,), "must be a file") for name in as_text]
        )
    try:
        data = strict_loads(_request_part())
    except ValueError as error:
        raise _json_failure(error, (REQUEST_FIELD,)) from None
    if not isinstance(data, dict):
        raise InvalidInput("bad request field", [ErrorItem((REQUEST_FIELD,), "must be an object")])
    return data


def _multipart_data() -> dict[str, Any]:
    data = multipart_request({FILES_FIELD})
    files = [upload.read() for upload in request.files.getlist(FILES_FIELD)]
    if files:
        if "instances" in data:
            raise InvalidInput(
                "instances given twice",
                [ErrorItem((REQUEST_FIELD, "instances"), "not allowed with uploaded files")],
            )
        data["instances"] = files
    return data


def read_body(schema: type[Schema], *, multipart: bool = True) -> Schema:
    """The request body (JSON, or multipart with image files) validated against `schema`.

    `multipart=False`: JSON only, any other media type is a 415.
    """
    if request.mimetype == JSON_MIME:
        data = request.get_json()
    elif multipart and request.mimetype == MULTIPART_MIME:
        data = _multipart_data()
    else:
        accepted = f"{JSON_MIME} or {MULTIPART_MIME}" if multipart else JSON_MIME
        raise UnsupportedMediaType(f"send {accepted}")
    try:
        return schema.model_validate(data, strict=True)  # "64" is not an integer, nor true
    except ValidationError as error:
        raise invalid_input(error) from None


# ---- query parameters ----


@cache
def _query_names(view: Callable[..., Any]) -> frozenset[str]:
    """The parameters of a view's flask-openapi3 query model (its `query` argument's type)
    that take one value; none when it has no query model."""
    try:
        model = get_type_hints(inspect.unwrap(view)).get("query")
    except Exception:  # a view that is not a flask-openapi3 route (static files, say)
        return frozenset()
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return frozenset()
    properties = model.model_json_schema().get("properties", {})
    names = set()
    for name, field in model.model_fields.items():
        key = field.alias or name
        schema = properties.get(key, {})
        kinds = [schema, *schema.get("anyOf", [])]
        if not any(kind.get("type") == "array" for kind in kinds):  # a list may repeat
            names.add(key)
    return frozenset(names)


def _single_query_values() -> None:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return
    repeated = sorted(n for n in _query_names(view) if len(request.args.getlist(n)) > 1)
    if repeated:
        raise InvalidInput(
            "query parameters given more than once",
            [ErrorItem((name,), "given more than once: send it once") for name in repeated],
        )


def install_single_query_values(app: Flask) -> None:
    """A known query parameter given twice (`?format=csv&format=jsonl`) is a 422 naming it.

    flask-openapi3 reads a one-value parameter with `request.args.get`, the first value,
    silently ignoring the others; this runs before it, after the API key check.
    """
    app.before_request(_single_query_values)
