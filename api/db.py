"""The service database: one SQLAlchemy engine and one MetaData for every table.

Tables (the explanation store here, audit jobs later) register on `metadata`; call
`init_db(engine)` after importing their modules. SQLite files get WAL mode and a busy
timeout so several gunicorn workers share them; a Postgres URL works unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.engine import make_url

metadata = MetaData()

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """An engine for `url`; SQLite: creates the parent directory and enables WAL."""
    parsed = make_url(url)
    # hide_parameters: database errors (logged, or an audit's reason) never hold input values.
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False}, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def init_db(engine: Engine) -> None:
    """Create every table registered on `metadata` that does not exist yet."""
    metadata.create_all(engine, checkfirst=True)
