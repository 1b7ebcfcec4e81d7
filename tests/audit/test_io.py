"""Reading audit data: CSV and Parquet rows keep their exact values (no JSON round trip)."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from explainer.audit.io import (
    DataFormat,
    ResultFormat,
    document_json,
    export_texts,
    flat_columns,
    flat_record,
    read_rows,
)
from models.errors import ErrorItem, InvalidInput

ROWS: list[dict[str, Any]] = [
    {"tiny": 1.2345678901234567e-9, "sum": 0.1 + 0.2, "big": 2**53 + 1, "region": "north"},
    {"tiny": -5e-324, "sum": 1 / 3, "big": -(2**62), "region": None},
]
CLASSES = ["no", "yes"]


def encoded(frame: pd.DataFrame, fmt: DataFormat) -> bytes:
    if fmt == "csv":
        return frame.to_csv(index=False).encode()
    return frame.to_parquet(index=False)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_values_are_exact(fmt: DataFormat) -> None:
    rows = read_rows(encoded(pd.DataFrame(ROWS), fmt), fmt)
    assert rows == ROWS
    for row, written in zip(rows, ROWS, strict=True):
        assert [type(value) for value in row.values()] == [
            type(value) for value in written.values()
        ]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_missing_cells_are_none(fmt: DataFormat) -> None:
    frame = pd.DataFrame({"x": [1.5, math.nan], "region": [None, "south"]})
    rows = read_rows(encoded(frame, fmt), fmt)
    assert rows == [{"x": 1.5, "region": None}, {"x": None, "region": "south"}]


def test_parquet_dates_become_iso_strings() -> None:
    frame = pd.DataFrame({"when": pd.to_datetime(["2024-05-06 07:08:09", None])})
    rows = read_rows(encoded(frame, "parquet"), "parquet")
    assert rows == [{"when": "2024-05-06T07:08:09"}, {"when": None}]


@pytest.mark.parametrize(
    ("frame", "item"),
    [
        (
            pd.DataFrame({"x": [1.0, math.inf]}),
            ErrorItem(("data", 1, "x"), "numbers must be finite"),
        ),
        (
            pd.DataFrame({"x": [1.0, 2.0], "y": [b"ok", b"\x00"]}),
            ErrorItem(("data", 0, "y"), "unsupported value type bytes"),
        ),
    ],
    ids=["infinity", "bytes"],
)
def test_unusable_values_are_refused(frame: pd.DataFrame, item: ErrorItem) -> None:
    with pytest.raises(InvalidInput) as refused:
        read_rows(encoded(frame, "parquet"), "parquet")
    assert refused.value.errors == [item]


def one_frame(documents: list[dict[str, Any]]) -> pd.DataFrame:
    """The flattened rows as pandas makes them holding every row at once (the reference)."""
    frame = pd.DataFrame([flat_record(d, CLASSES) for d in documents])
    if "error" in frame:
        frame = frame[[c for c in frame.columns if c != "error"] + ["error"]]
    return frame


def texts_of(documents: list[dict[str, Any]]) -> list[str]:
    return [document_json(d) for d in documents]


def explained(i: int) -> dict[str, Any]:
    return {
        "row": i,
        "seed": i,
        "segment": ["north", 3, 2.5, True, None][i % 5],  # mixed kinds of values
        "input": {"a": i / 3, "n": i, "flag": i % 2 == 0, "region": "x" if i % 7 else None},
        "prediction": {"label": "yes", "probabilities": [0.25, 0.75]},
        "target": {"label": "yes"},
        "score": 0.75,
        "methods": {"shap": {"attributions": [0.5, 1, 0, 0], "quality": {"additivity": 0.0}}},
    }


def unexplained(i: int) -> dict[str, Any]:
    return {"row": i, "seed": i, "input": {"a": 1.0}, "error": {"title": "t", "detail": "d"}}


MIXED = [unexplained(i) if i % 600 == 599 else explained(i) for i in range(2500)]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_stored_texts_export_a_batch_at_a_time(fmt: ResultFormat) -> None:
    texts = texts_of(MIXED)
    parts = list(export_texts(lambda: iter(texts), fmt, CLASSES))
    assert len(parts) == {"jsonl": 3, "csv": 3, "parquet": 4}[fmt]  # parquet: + its footer
    data = b"".join(parts)
    if fmt == "jsonl":
        assert data.decode().splitlines() == texts
    elif fmt == "csv":  # byte for byte what pandas writes from one frame of every row
        assert data == one_frame(MIXED).to_csv(index=False).encode()
    else:
        reference = one_frame(MIXED)
        segment = reference["segment"]  # a column of mixed kinds of values is text in Parquet
        reference["segment"] = segment.map(str).where(segment.notna(), None)
        expected = pd.read_parquet(io.BytesIO(reference.to_parquet(index=False)))
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(data)), expected)
        assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 3


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_rows_stored_while_exporting_are_left_out(fmt: ResultFormat) -> None:
    """An audit still running stores rows between the two readings of a CSV or Parquet
    export: the second reading keeps to the rows (and so the columns) the first one saw."""
    readings = [texts_of(MIXED[:10]), texts_of([*MIXED[:5], unexplained(10), *MIXED[5:10]])]
    data = b"".join(export_texts(lambda: iter(readings.pop(0)), fmt, CLASSES))
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    frame = read(io.BytesIO(data))
    assert frame["row"].tolist() == list(range(10)) and "error" not in frame


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_columns_found_once_serve_both_formats(fmt: ResultFormat) -> None:
    """The CLI finds a finished audit's columns once for CSV and Parquet: each export then
    reads the texts once and writes what it writes on its own."""
    texts = texts_of(MIXED)
    columns = flat_columns(iter(texts), CLASSES)
    readings: list[int] = []

    def reading() -> list[str]:
        readings.append(1)
        return texts

    given = b"".join(export_texts(reading, fmt, CLASSES, columns))
    assert len(readings) == 1
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    alone = b"".join(export_texts(lambda: iter(texts), fmt, CLASSES))
    pd.testing.assert_frame_equal(read(io.BytesIO(given)), read(io.BytesIO(alone)))
    if fmt == "csv":
        assert given == alone


def test_an_int_column_with_a_gap_in_a_later_batch_is_float_throughout() -> None:
    documents = [explained(i) for i in range(1500)]
    documents[1200]["input"]["n"] = None
    csv = b"".join(export_texts(lambda: iter(texts_of(documents)), "csv", CLASSES)).decode()
    assert csv == one_frame(documents).to_csv(index=False)
    assert ",1.0," in csv.splitlines()[2]  # row 1's n, as one frame writes it
