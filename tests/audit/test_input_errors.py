"""Bad audit data is refused with a 422 (CLI: exit code 2) naming the cell or line at fault.

A JSONL number too large for a float (`1e400`) is refused like NaN, in any column; a CSV
column of a numeric feature holding one non-number names that cell, not the first row.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask.testing import FlaskClient

from explainer.audit.io import read_rows
from explainer.cli import main
from models import ModelHandle
from models.errors import ErrorItem, InvalidInput
from tests.api.conftest import app_factory
from tests.audit.conftest import MODEL, credit_rows


@pytest.fixture(scope="module")
def client(credit_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> FlaskClient:
    return app_factory(credit_repo, tmp_path_factory)().test_client()


def upload(client: FlaskClient, content: bytes, name: str, **request: Any) -> Any:
    body = {"model": MODEL, "methods": ["saliency"], **request}
    return client.post(
        "/v1/audits",
        data={"data": (io.BytesIO(content), name), "request": json.dumps(body)},
        content_type="multipart/form-data",
    )


def jsonl(rows: list[dict[str, Any]], region: str) -> bytes:
    """Rows as JSONL with a `region` column whose first value is written as `region`."""
    lines = [json.dumps({**row, "region": 0}) for row in rows]
    lines[0] = lines[0].replace('"region": 0', f'"region": {region}')
    return "\n".join(lines).encode()


# ---- JSONL numbers that overflow a float ----


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e999"])
def test_a_jsonl_number_that_overflows_is_refused_naming_its_line(number: str) -> None:
    content = b'{"x": 1.0}\n\n' + f'{{"x": 2.0, "y": {number}}}'.encode()
    with pytest.raises(InvalidInput) as refused:
        read_rows(content, "jsonl")
    assert refused.value.errors == [ErrorItem(("data", 3), "numbers must be finite")]


def test_jsonl_nan_and_bad_json_are_still_refused() -> None:
    for line in (b'{"x": NaN}', b'{"x": -Infinity}', b'{"x": '):
        with pytest.raises(InvalidInput) as refused:
            read_rows(line, "jsonl")
        assert [item.loc for item in refused.value.errors] == [("data", 1)]


def test_jsonl_large_finite_numbers_are_kept() -> None:
    assert read_rows(b'{"x": 1e300, "y": -1.5e-320}', "jsonl") == [{"x": 1e300, "y": -1.5e-320}]


@pytest.mark.parametrize("segment_by", [None, "region"])
def test_api_refuses_an_overflowing_jsonl_number_in_an_extra_column(
    client: FlaskClient, segment_by: str | None
) -> None:
    content = jsonl(credit_rows(2), "1e400")
    response = upload(client, content, "rows.jsonl", segment_by=segment_by)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == [{"loc": ["data", 1], "msg": "numbers must be finite"}]


def test_cli_refuses_an_overflowing_jsonl_number_with_exit_code_2(
    credit_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_bytes(jsonl(credit_rows(2), "1e400"))
    argv = ["audit", MODEL, str(data), "--out", str(tmp_path / "out")]
    code = main([*argv, "--model-repo", str(credit_repo), "--methods", "saliency"])
    assert code == 2
    assert "at data.1: numbers must be finite" in capsys.readouterr().err


# ---- CSV: a numeric feature's column holding one non-number ----


def csv_with(column: str, values: list[Any]) -> bytes:
    frame = pd.DataFrame(credit_rows(len(values)))
    frame[column] = values
    return frame.to_csv(index=False).encode()


def test_api_names_the_csv_cell_that_is_not_a_number(client: FlaskClient) -> None:
    content = csv_with("debt_to_income", ["0.55", "abc", "0.2"])
    response = upload(client, content, "applicants.csv")
    assert response.status_code == 422, response.get_json()
    assert [item["loc"] for item in response.get_json()["errors"]] == [
        ["data", 1, "debt_to_income"]
    ]


def test_api_names_a_csv_number_too_large_in_a_column_with_text(client: FlaskClient) -> None:
    content = csv_with("income", ["28000", "1e400", "abc"])
    response = upload(client, content, "applicants.csv")
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == [
        {"loc": ["data", 1, "income"], "msg": "numbers must be finite"}
    ]


def test_cli_names_the_csv_cell_that_is_not_a_number(
    credit_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.csv"
    data.write_bytes(csv_with("utilisation", ["0.8", "1e-1", "high"]))
    argv = ["audit", MODEL, str(data), "--out", str(tmp_path / "out")]
    code = main([*argv, "--model-repo", str(credit_repo), "--methods", "saliency"])
    assert code == 2
    assert "at data.2.utilisation:" in capsys.readouterr().err


NUMERIC_TEXT = "n,c,extra\n1,7,3\n-2.5,x,4.0\n.5e3,8,y\n+1E-2,9,\n1.,10,z\n"


def test_csv_numbers_in_numeric_columns_with_text_are_read_as_numbers() -> None:
    rows = read_rows(NUMERIC_TEXT.encode() + b"oops,11,w\n", "csv", numeric=["n", "c"])
    assert [row["n"] for row in rows] == [1, -2.5, 500.0, 0.01, 1.0, "oops"]
    assert [type(row["n"]) for row in rows[:2]] == [int, float]
    # only the named columns: another column with text keeps its cells as read
    assert [row["extra"] for row in rows] == ["3", "4.0", "y", None, "z", "w"]


def test_a_csv_integer_too_long_for_a_float_is_refused_naming_its_cell() -> None:
    with pytest.raises(InvalidInput) as refused:
        read_rows(f"n\nx\n{'9' * 5000}\n".encode(), "csv", numeric=["n"])
    assert refused.value.errors == [ErrorItem(("data", 1, "n"), "numbers must be finite")]


@pytest.mark.parametrize("text", ["1 000", "0x10", "1e", "e5", ".", "-", "1.2.3", "NaN1", "1_0"])
def test_only_decimal_numbers_are_converted(text: str) -> None:
    rows = read_rows(f"n,m\n{text},a\n".encode(), "csv", numeric=["n"])
    assert rows == [{"n": text, "m": "a"}]


def test_categorical_columns_are_left_as_read(client: FlaskClient) -> None:
    # Category names that look like numbers stay text when the column is not numeric.
    frame = pd.DataFrame({"n": ["1", "x"], "age_band": ["18", "66+"]})
    rows = read_rows(frame.to_csv(index=False).encode(), "csv", numeric=["n"])
    assert rows == [{"n": 1, "age_band": "18"}, {"n": "x", "age_band": "66+"}]
    # the API passes the model's numeric features only: age_band "18-25" etc. are unchanged
    content = csv_with("income", ["28000", "61000"])
    response = upload(client, content, "applicants.csv")
    assert response.status_code == 202, response.get_json()


def test_the_numeric_features_are_the_non_categorical_ones(credit: ModelHandle) -> None:
    assert credit.spec.tabular is not None
    assert credit.spec.tabular.numeric_features == [
        "income",
        "debt_to_income",
        "utilisation",
        "delinquencies",
        "history_length_years",
    ]


def test_parquet_and_jsonl_are_not_converted() -> None:
    content = b'{"n": "1.5"}'
    assert read_rows(content, "jsonl", numeric=["n"]) == [{"n": "1.5"}]
    frame = pd.DataFrame({"n": ["1.5", "x"]})
    assert read_rows(frame.to_parquet(index=False), "parquet", numeric=["n"]) == [
        {"n": "1.5"},
        {"n": "x"},
    ]


# ---- segment values the results could not hold ----


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1, 2], "must be a string, a number, a boolean or null"),
        ({"a": [1]}, "must be a string, a number, a boolean or null"),
        (10**30, "integer out of the 64-bit range"),
        (-(2**64), "integer out of the 64-bit range"),
    ],
    ids=["list", "object", "huge-int", "huge-negative-int"],
)
def test_a_segment_value_the_results_cannot_hold_is_refused(
    client: FlaskClient, value: Any, message: str
) -> None:
    """Such values were accepted, and every CSV or Parquet download of the results was a 500."""
    rows = [{**row, "region": "north"} for row in credit_rows(3)]
    rows[2]["region"] = value
    body = {"model": MODEL, "methods": ["saliency"], "instances": rows, "segment_by": "region"}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"] == [{"loc": ["data", 2, "region"], "msg": message}]
    content = "\n".join(json.dumps(row) for row in rows).encode()  # the same rows as JSONL
    response = upload(client, content, "rows.jsonl", segment_by="region")
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["loc"] == ["data", 2, "region"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_mixed_segment_values_download_as_csv_and_parquet(client: FlaskClient, fmt: str) -> None:
    """Null, text, booleans, 64-bit integers and floats in one segment column."""
    values = [None, "north", True, 2**63 - 1, -(2**63), 2.5]
    rows = [{**row, "region": value} for row, value in zip(credit_rows(6), values, strict=True)]
    body = {"model": MODEL, "methods": ["saliency"], "instances": rows, "segment_by": "region"}
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.get_json()
    location = response.headers["Location"]
    deadline = time.monotonic() + 60
    while client.get(location).get_json()["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the audit did not finish"
        time.sleep(0.2)
    assert client.get(location).get_json()["status"] == "completed"
    download = client.get(f"{location}/results?format={fmt}")
    assert download.status_code == 200, download.get_data(as_text=True)[:500]
    frame = (
        pd.read_csv(io.BytesIO(download.get_data()))
        if fmt == "csv"
        else pd.read_parquet(io.BytesIO(download.get_data()))
    )
    assert len(frame) == 6
