"""The explanation store: round trip, TTL, size bound, WAL mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from api.db import create_db_engine, init_db
from api.store import ExplanationStore, new_id
from models.errors import NotFound


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def make_store(
    tmp_path: Path, clock: Clock, ttl: float = 60, max_entries: int = 3
) -> ExplanationStore:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sub' / 'store.db'}")
    init_db(engine)
    return ExplanationStore(engine, ttl, max_entries, clock)


def test_round_trip(tmp_path: Path, clock: Clock) -> None:
    store = make_store(tmp_path, clock)
    arrays = {"0/saliency": np.arange(6, dtype=np.float32).reshape(2, 3), "inputs": np.zeros(2)}
    id_ = new_id()
    store.put(id_, "m", {"id": id_, "x": [1, 2]}, arrays)
    stored = store.get(id_)
    assert stored.payload == {"id": id_, "x": [1, 2]} and stored.model == "m"
    np.testing.assert_array_equal(stored.arrays["0/saliency"], arrays["0/saliency"])
    assert store.get(id_, with_arrays=False).arrays == {}


def test_expired_entries_are_not_served_and_are_purged(tmp_path: Path, clock: Clock) -> None:
    store = make_store(tmp_path, clock, ttl=60)
    store.put("old", "m", {}, {})
    clock.now += 61
    with pytest.raises(NotFound):
        store.get("old")
    store.put("new", "m", {}, {})
    assert store.count() == 1 and store.get("new").payload == {}


def test_oldest_entries_go_beyond_max_entries(tmp_path: Path, clock: Clock) -> None:
    store = make_store(tmp_path, clock, max_entries=3)
    for i in range(5):
        clock.now += 1
        store.put(f"e{i}", "m", {"i": i}, {})
    assert store.count() == 3
    for gone in ("e0", "e1"):
        with pytest.raises(NotFound):
            store.get(gone)
    assert store.get("e4").payload == {"i": 4}


def test_sqlite_uses_wal(tmp_path: Path, clock: Clock) -> None:
    store = make_store(tmp_path, clock)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_ids_are_random_128_bit_hex() -> None:
    ids = {new_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
