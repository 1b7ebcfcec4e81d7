"""Reading audit data: CSV and Parquet rows keep their exact values (no JSON round trip)."""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
import pytest

from explainer.audit.io import DataFormat, ResultFormat, export, export_texts, read_rows
from models.errors import ErrorItem, InvalidInput

ROWS: list[dict[str, Any]] = [
    {"tiny": 1.2345678901234567e-9, "sum": 0.1 + 0.2, "big": 2**53 + 1, "region": "north"},
    {"tiny": -5e-324, "sum": 1 / 3, "big": -(2**62), "region": None},
]


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


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_stored_texts_export_as_the_documents_do(fmt: ResultFormat) -> None:
    documents = [
        {"row": i, "seed": i, "input": {"a": i / 3}, "error": {"title": "t", "detail": "d"}}
        for i in range(2500)  # more than one JSONL part
    ]
    texts = [json.dumps(d, allow_nan=False, separators=(",", ":")) for d in documents]
    parts = list(export_texts(iter(texts), fmt, ["no", "yes"]))
    assert len(parts) == (3 if fmt == "jsonl" else 1)
    assert b"".join(parts) == export(documents, fmt, ["no", "yes"])
