"""Stored explanations: the response JSON plus the arrays its heatmaps are drawn from.

Rows live in the service database (shared by every gunicorn worker and replica), so a
heatmap URL returned by one worker works on every other. The store is bounded: a row
expires `ttl_s` seconds after it was written, and beyond `max_entries` rows the oldest
go. Expired rows are never served and are purged on every write.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Engine,
    Float,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    func,
    select,
)

from api.db import metadata
from models.errors import NotFound

explanations = Table(
    "explanations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("created_at", Float, nullable=False, index=True),  # Unix seconds
    Column("expires_at", Float, nullable=False, index=True),
    Column("payload", Text, nullable=False),  # the response JSON
    Column("arrays", LargeBinary, nullable=False),  # npz: inputs and attribution maps
)


def new_id() -> str:
    """A random, unguessable 128-bit id in hex."""
    return secrets.token_hex(16)


def _pack(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    named: dict[str, Any] = dict(arrays)
    np.savez_compressed(buffer, **named)
    return buffer.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


@dataclass(frozen=True)
class StoredExplanation:
    id: str
    model: str
    created_at: float
    payload: dict[str, Any]
    arrays: dict[str, np.ndarray]


class ExplanationStore:
    """Put and get explanations by id in the shared database."""

    def __init__(
        self,
        engine: Engine,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock

    def put(
        self, id_: str, model: str, payload: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
    ) -> None:
        """Store one explanation, then purge expired rows and those beyond `max_entries`."""
        now = self.clock()
        row = {
            "id": id_,
            "model": model,
            "created_at": now,
            "expires_at": now + self.ttl_s,
            "payload": json.dumps(payload, allow_nan=False, separators=(",", ":")),
            "arrays": _pack(arrays),
        }
        with self.engine.begin() as connection:
            connection.execute(explanations.insert().values(**row))
            connection.execute(delete(explanations).where(explanations.c.expires_at <= now))
            surplus = (
                select(explanations.c.id)
                .order_by(explanations.c.created_at.desc(), explanations.c.id)
                .offset(self.max_entries)
                .scalar_subquery()
            )
            connection.execute(delete(explanations).where(explanations.c.id.in_(surplus)))

    def get(self, id_: str, *, with_arrays: bool = True) -> StoredExplanation:
        """The stored explanation `id_`, or NotFound when unknown or expired."""
        columns = [explanations.c.model, explanations.c.created_at, explanations.c.payload]
        if with_arrays:
            columns.append(explanations.c.arrays)
        query = select(*columns).where(
            explanations.c.id == id_, explanations.c.expires_at > self.clock()
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise NotFound("no such explanation (unknown or expired)")
        return StoredExplanation(
            id=id_,
            model=row.model,
            created_at=row.created_at,
            payload=json.loads(row.payload),
            arrays=_unpack(row.arrays) if with_arrays else {},
        )

    def count(self) -> int:
        """Rows held, expired or not (for tests and metrics)."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(explanations)).scalar_one()
            )
