"""Choosing a model's rows per call from throughput measurements taken on a busy machine.

A measurement is the fastest of several calls, so another process using the cores can only
make a chunk size look slower than it is, never faster. On a machine shared with other work
(other workers loading their models, a job beside the service) a burst of it used to spoil
the measurement of one size: the search then stopped there, or kept a size that happened to
be measured in a quiet moment, and the model ran in calls of 8 or 16 rows instead of 16384
for the life of the process (up to 50 times slower explanations for a small tabular model).
So every size is measured (up to the memory and size limits), and a larger size that looks
slower than the one chosen is measured again later before it is ruled out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# Sizes within this fraction of the best rate are as good: the largest of them is kept (fewer,
# larger calls cost the explainers less Python overhead).
CLOSE = 0.9
# Measurements at most of each size: one in a first pass over every size, then again for a
# size larger than the one chosen so far but slower than it (the spoilt ones), a pass later.
ROUNDS = 3

# Rows per second of one measurement at a chunk size; None when the size does not fit in
# the device's memory.
Measure = Callable[[int], float | None]


def fastest_chunk(measure: Measure, candidates: Sequence[int]) -> int | None:
    """The largest of `candidates` (smallest first) whose best measured rate is within CLOSE
    of the best of all, or None when the first size does not fit. Every size is measured
    once, up to the first that does not fit; a larger size than the one chosen that measured
    slower is measured again in each later round, up to ROUNDS in all, its best kept."""
    rates: dict[int, float] = {}
    for chunk in candidates:
        if not _measured(measure, rates, chunk):
            break
    for _ in range(ROUNDS - 1):
        doubtful = [c for c in rates if c > _chosen(rates) and rates[c] < CLOSE * _best(rates)]
        for chunk in doubtful:
            if not _measured(measure, rates, chunk):
                break
    return _chosen(rates) if rates else None


def _measured(measure: Measure, rates: dict[int, float], chunk: int) -> bool:
    """Measure `chunk` and keep its best rate; a size that does not fit is dropped with every
    larger one (False)."""
    rate = measure(chunk)
    if rate is None:
        for size in [c for c in rates if c >= chunk]:
            del rates[size]
        return False
    rates[chunk] = max(rates.get(chunk, 0.0), rate)
    return True


def _best(rates: dict[int, float]) -> float:
    return max(rates.values())


def _chosen(rates: dict[int, float]) -> int:
    return max(chunk for chunk, rate in rates.items() if rate >= CLOSE * _best(rates))
