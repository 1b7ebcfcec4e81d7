"""Database errors never carry the statement's parameters (input values) into logs or reasons.

An audit's failure reason is `str(error)` and is logged; SQLAlchemy would append
`[parameters: ...]`, the explanation documents with the rows' values, unless hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from api.db import create_db_engine
from benchmarks.canary import CANARY_STRING
from explainer.audit.store import database_engine


@pytest.mark.parametrize("make_engine", [create_db_engine, database_engine])
def test_a_failed_statement_hides_its_parameters(
    make_engine: Callable[[str], Engine], tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    insert = text("INSERT INTO t (id, value) VALUES (1, :value)")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, value TEXT)"))
        connection.execute(insert, {"value": "first"})
    with pytest.raises(IntegrityError) as failure, engine.begin() as connection:
        connection.execute(insert, {"value": CANARY_STRING})
    assert CANARY_STRING not in str(failure.value)
