"""Audit data in and out: read CSV, Parquet or JSONL rows; export results as JSONL, CSV, Parquet.

Input rows are objects keyed by column name (extra columns, such as a segment column the
model does not use, are allowed) or lists in the model's feature order (JSONL only).
Results are one JSON document per row; CSV and Parquet flatten it to one column per value.
A row that was not explained keeps its inputs and prediction and gets an `error` column.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from models.errors import ErrorItem, InvalidInput, LimitExceeded

DataFormat = Literal["csv", "parquet", "jsonl"]
ResultFormat = Literal["jsonl", "csv", "parquet"]
RESULT_FORMATS: tuple[ResultFormat, ...] = ("jsonl", "csv", "parquet")
SUFFIXES: dict[str, DataFormat] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
MEDIA_TYPES: dict[ResultFormat, str] = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}


def format_of(name: str) -> DataFormat:
    """The data format named by a file's suffix, or InvalidInput."""
    fmt = SUFFIXES.get(Path(name).suffix.lower())
    if fmt is None:
        raise InvalidInput(
            "unknown data format",
            [ErrorItem(("data",), f"file name must end in one of {sorted(SUFFIXES)}")],
        )
    return fmt


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _jsonl_rows(data: bytes) -> list[Any]:
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line, parse_constant=_reject_constant))
        except ValueError:
            raise InvalidInput(
                "invalid JSONL", [ErrorItem(("data", number), "not valid JSON (NaN refused)")]
            ) from None
    return rows


def _records(frame: pd.DataFrame) -> list[Any]:
    """Rows as JSON values: missing cells become None, dates ISO strings, numbers exact."""
    text = frame.to_json(orient="records", date_format="iso", double_precision=15)
    records: list[Any] = json.loads(text)
    return records


def read_rows(data: bytes, fmt: DataFormat, max_rows: int | None = None) -> list[Any]:
    """The rows of a CSV, Parquet or JSONL file's bytes (at most `max_rows`)."""
    try:
        if fmt == "jsonl":
            rows = _jsonl_rows(data)
        elif fmt == "csv":
            rows = _records(pd.read_csv(io.BytesIO(data)))
        else:
            rows = _records(pd.read_parquet(io.BytesIO(data)))
    except InvalidInput:
        raise
    except Exception as exc:  # untrusted bytes: any parser failure is the input's fault
        raise InvalidInput(
            f"unreadable {fmt} data", [ErrorItem(("data",), type(exc).__name__)]
        ) from None
    if max_rows is not None and len(rows) > max_rows:
        raise LimitExceeded(
            "too many rows in the audit data", [ErrorItem(("data",), f"at most {max_rows} rows")]
        )
    if not rows:
        raise InvalidInput("no rows in the audit data", [ErrorItem(("data",), "is empty")])
    return rows


def read_file(path: Path, max_rows: int | None = None) -> list[Any]:
    """The rows of a data file, its format taken from the suffix."""
    return read_rows(path.read_bytes(), format_of(path.name), max_rows)


def flat_record(document: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """One row's document as flat columns: inputs, prediction, then per-method values (or,
    for a row that was not explained, `error`)."""
    features = list(document["input"])
    record: dict[str, Any] = {"row": document["row"], "seed": document["seed"]}
    if "segment" in document:
        record["segment"] = document["segment"]
    record.update({f"input.{name}": value for name, value in document["input"].items()})
    prediction = document.get("prediction")
    if prediction is not None:
        record["prediction"] = prediction["label"]
        for label, probability in zip(classes, prediction["probabilities"], strict=True):
            record[f"p.{label}"] = probability
    if "error" in document:
        record["error"] = f"{document['error']['title']}: {document['error']['detail']}"
        return record
    record["target"] = document["target"]["label"]
    record["score"] = document["score"]
    for method, result in document["methods"].items():
        for name, value in zip(features, result["attributions"], strict=True):
            record[f"{method}.{name}"] = value
        for key, value in result["quality"].items():
            record[f"{method}.{key}"] = value
        for key in ("base_value", "intercept", "leaf_value"):
            if key in result:
                record[f"{method}.{key}"] = result[key]
        if "rules" in result:
            record[f"{method}.rules"] = " AND ".join(result["rules"])
    codes = document.get("reason_codes")
    if codes is not None:
        record["reasons"] = "; ".join(code["reason"] for code in codes["codes"])
    return record


def export(documents: Iterable[dict[str, Any]], fmt: ResultFormat, classes: Sequence[str]) -> bytes:
    """Row documents as JSONL, or flattened as CSV or Parquet."""
    if fmt == "jsonl":
        lines = (json.dumps(d, allow_nan=False, separators=(",", ":")) for d in documents)
        return "".join(line + "\n" for line in lines).encode()
    frame = pd.DataFrame([flat_record(document, classes) for document in documents])
    if "error" in frame:  # the reason a row was not explained comes last
        frame = frame[[column for column in frame.columns if column != "error"] + ["error"]]
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
