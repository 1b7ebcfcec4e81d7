"""Audit data in and out: read CSV, Parquet or JSONL rows; export results as JSONL, CSV, Parquet.

Input rows are objects keyed by column name (extra columns, such as a segment column the
model does not use, are allowed) or lists in the model's feature order (JSONL only).
Results are one JSON document per row; CSV and Parquet flatten it to one column per value.
A row that was not explained keeps its inputs and prediction and gets an `error` column.
"""

from __future__ import annotations

import datetime
import io
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
EXPORT_BATCH = 1000  # rows per streamed part of a results download


def format_of(name: str) -> DataFormat:
    """The data format named by a file's suffix, or InvalidInput."""
    fmt = SUFFIXES.get(Path(name).suffix.lower())
    if fmt is None:
        raise InvalidInput(
            "unknown data format",
            [ErrorItem(("data",), f"file name must end in one of {sorted(SUFFIXES)}")],
        )
    return fmt


class _NonFinite(ValueError):
    """NaN, Infinity, or a number too large for a float."""


def _reject_constant(name: str) -> Any:
    raise _NonFinite(f"{name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: json.loads would give inf
        raise _NonFinite("overflow")
    return value


def _jsonl_rows(data: bytes) -> list[Any]:
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(
                json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
            )
        except _NonFinite:
            raise InvalidInput(
                "NaN, Infinity and out-of-range numbers are not allowed",
                [ErrorItem(("data", number), "numbers must be finite")],
            ) from None
        except ValueError:
            raise InvalidInput(
                "invalid JSONL", [ErrorItem(("data", number), "not valid JSON")]
            ) from None
    return rows


def _cell(value: Any) -> Any:
    """A cell as a JSON value; ValueError for a number that is not finite or another type."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite")
        return float(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise ValueError(f"unsupported value type {type(value).__name__}")


def _unusable(row: int, column: str, msg: str) -> InvalidInput:
    return InvalidInput("unusable value in the audit data", [ErrorItem(("data", row, column), msg)])


# A decimal number as written in a CSV cell: an optional sign, digits with an optional point
# and fraction (or a point and a fraction), an optional exponent.
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def _number(value: Any) -> Any:
    """A string spelling a decimal number as that number (int for an integer literal)."""
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        return value
    if _INTEGER.fullmatch(value):
        try:
            return int(value)
        except ValueError:  # more digits than Python converts: as a float, too large
            pass
    return float(value)


def _column(name: str, series: pd.Series, numeric: bool = False) -> list[Any]:
    """A column's cells as JSON values (missing cells None, numbers exact, dates ISO).

    `numeric`: the column is a numeric feature's, whose cells that spell a number are read as
    numbers even when another cell is not one (pandas then reads them all as strings), so
    that only the cells that are really not numbers are refused.
    """
    values: list[Any] = series.astype(object).where(series.notna(), None).tolist()
    if numeric and series.dtype.kind not in "biuf":
        values = [_number(value) for value in values]
    if series.dtype.kind in "biu":  # integers and booleans: exact Python values already
        return values
    if series.dtype.kind == "f":  # Python floats already; refuse infinities
        infinite = np.flatnonzero(np.isinf(series.to_numpy(dtype=float, na_value=np.nan)))
        if infinite.size:
            raise _unusable(int(infinite[0]), name, "numbers must be finite")
        return values
    cells = []
    for row, value in enumerate(values):
        try:
            cells.append(_cell(value))
        except ValueError as error:
            raise _unusable(row, name, str(error)) from None
    return cells


def _records(frame: pd.DataFrame, numeric: Collection[str] = ()) -> list[Any]:
    """Rows as JSON objects keyed by column name, values exact (no JSON round trip);
    strings spelling numbers in the `numeric` columns read as numbers."""
    names = [str(name) for name in frame.columns]
    columns = [_column(name, frame.iloc[:, i], name in numeric) for i, name in enumerate(names)]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def read_rows(
    data: bytes,
    fmt: DataFormat,
    max_rows: int | None = None,
    numeric: Collection[str] = (),
) -> list[Any]:
    """The rows of a CSV, Parquet or JSONL file's bytes (at most `max_rows`).

    `numeric` names the model's numeric features: in a CSV file, a column of theirs with a
    cell that is not a number is read as strings by pandas, and its cells that spell decimal
    numbers are turned back into numbers, so that a bad row is refused naming that row's
    cell. Other columns (category names may be digits) and other formats are left as read.
    """
    try:
        if fmt == "jsonl":
            rows = _jsonl_rows(data)
        elif fmt == "csv":
            rows = _records(pd.read_csv(io.BytesIO(data)), frozenset(numeric))
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


def read_file(path: Path, max_rows: int | None = None, numeric: Collection[str] = ()) -> list[Any]:
    """The rows of a data file, its format taken from the suffix (`numeric`: see read_rows)."""
    return read_rows(path.read_bytes(), format_of(path.name), max_rows, numeric)


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


def document_json(document: dict[str, Any]) -> str:
    """A row document as compact JSON: how the store keeps it and a JSONL line gives it."""
    return json.dumps(document, allow_nan=False, separators=(",", ":"))


@dataclass
class FlatColumns:
    """The flattened columns of a set of rows, in first-seen order, with the Python types of
    their values (NoneType where a cell is missing), to give every batch the same columns."""

    # Each distinct (column, value type) sequence and how many rows have it: an audit's rows
    # share a few, so a row costs one tuple.
    shapes: Counter[tuple[tuple[str, type], ...]] = field(default_factory=Counter)
    row_numbers: set[int] = field(default_factory=set)  # the rows' `row` values

    def add(self, record: dict[str, Any]) -> None:
        self.row_numbers.add(record["row"])
        self.shapes[tuple(zip(record, map(type, record.values()), strict=True))] += 1

    @cached_property
    def types(self) -> dict[str, set[type]]:
        """Each column's value types, the columns in first-seen order (read after `add`s)."""
        types: dict[str, set[type]] = {}
        for shape in self.shapes:
            for name, kind in shape:
                types.setdefault(name, set()).add(kind)
        return types

    @cached_property
    def present(self) -> dict[str, int]:
        """How many rows hold each column."""
        present: Counter[str] = Counter()
        for shape, count in self.shapes.items():
            present.update(dict.fromkeys((name for name, _ in shape), count))
        return dict(present)

    @property
    def rows(self) -> int:
        return len(self.row_numbers)

    @property
    def names(self) -> list[str]:
        """Column names; the reason a row was not explained comes last."""
        return [name for name in self.types if name != "error"] + (
            ["error"] if "error" in self.types else []
        )

    def dtype(self, name: str) -> str:
        """The dtype pandas infers for the column when it holds every row at once."""
        types = self.types[name]
        missing = self.present[name] < self.rows or type(None) in types
        values = types - {type(None)}
        if values == {int} and not missing:
            return "int64"
        if values and values <= {int, float}:
            return "float64"
        if values == {bool} and not missing:
            return "bool"
        return "object"

    def arrow_type(self, name: str) -> pa.DataType:
        """The column's Parquet type (text for a column mixing kinds of values)."""
        dtype = self.dtype(name)
        if dtype != "object":
            return pa.from_numpy_dtype(np.dtype(dtype))
        values = self.types[name] - {type(None)}
        if not values:
            return pa.null()
        return pa.bool_() if values == {bool} else pa.string()


def _flat_frame(
    documents: Iterable[dict[str, Any]], classes: Sequence[str], columns: FlatColumns
) -> pd.DataFrame:
    """A batch of documents flattened, with the whole set's columns and dtypes."""
    frame = pd.DataFrame([flat_record(d, classes) for d in documents])
    frame = frame.reindex(columns=columns.names)
    for name in columns.names:
        dtype = columns.dtype(name)
        if dtype == "object" and columns.arrow_type(name) == pa.string():
            frame[name] = frame[name].map(lambda v: v if v is None or pd.isna(v) else str(v))
        frame[name] = frame[name].astype(dtype)
    return frame


def flat_columns(texts: Iterable[str], classes: Sequence[str]) -> FlatColumns:
    """The rows, columns and column types of stored row documents flattened for CSV and
    Parquet (one reading of the texts)."""
    columns = FlatColumns()
    for text in texts:
        columns.add(flat_record(json.loads(text), classes))
    return columns


def _flat_parts(
    texts: Callable[[], Iterable[str]],
    fmt: ResultFormat,
    classes: Sequence[str],
    columns: FlatColumns | None,
) -> Iterator[bytes]:
    """CSV or Parquet, a batch of rows at a time: a first reading of the texts finds the
    rows, their columns and the columns' types (unless given); a second flattens and writes
    those rows."""
    if columns is None:
        columns = flat_columns(texts(), classes)
    schema = pa.schema([(name, columns.arrow_type(name)) for name in columns.names])
    sink = io.BytesIO()
    writer = pq.ParquetWriter(sink, schema) if fmt == "parquet" else None
    # Rows stored since the first reading (an audit still running) are left out.
    documents = (d for d in map(json.loads, texts()) if d["row"] in columns.row_numbers)
    header = True
    while batch := list(itertools.islice(documents, EXPORT_BATCH)):
        frame = _flat_frame(batch, classes, columns)
        if writer is None:
            yield frame.to_csv(index=False, header=header).encode()
            header = False
            continue
        writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
        yield _drained(sink)
    if writer is None:
        if header:  # no rows: the header alone
            yield ",".join(columns.names).encode() + b"\n"
        return
    writer.close()
    yield _drained(sink)


def _drained(sink: io.BytesIO) -> bytes:
    """What was written to `sink` so far, leaving it empty."""
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def export_texts(
    texts: Callable[[], Iterable[str]],
    fmt: ResultFormat,
    classes: Sequence[str],
    columns: FlatColumns | None = None,
) -> Iterator[bytes]:
    """Stored row documents (their `document_json` text, as the store keeps them) in `fmt`, in
    parts to stream, never holding the whole set: JSONL a batch of lines at a time; CSV and
    Parquet flattened to one column per value, a batch of rows at a time. `texts` gives the
    texts anew on each call: CSV and Parquet read them twice, once only when given the
    `flat_columns` of the same texts (a set that no longer changes, for both formats)."""
    if fmt != "jsonl":
        yield from _flat_parts(texts, fmt, classes, columns)
        return
    lines = iter(texts())
    while batch := list(itertools.islice(lines, EXPORT_BATCH)):
        yield "".join(line + "\n" for line in batch).encode()


def export(documents: Sequence[dict[str, Any]], fmt: ResultFormat, classes: Sequence[str]) -> bytes:
    """Row documents as JSONL, or flattened as CSV or Parquet."""
    return b"".join(export_texts(lambda: map(document_json, documents), fmt, classes))
