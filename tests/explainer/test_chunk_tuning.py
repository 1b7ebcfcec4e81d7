"""Choosing the rows per call from measurements that other work on the machine can spoil
(a spoilt measurement is only ever slower than the truth)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from explainer.chunk_tuning import ROUNDS, fastest_chunk

SIZES = (8, 16, 64, 256, 1024, 4096, 16384)
# A small tabular model (rows per second): per-call overhead dominates until large calls.
TABULAR = {8: 50e3, 16: 100e3, 64: 400e3, 256: 1.3e6, 1024: 3.4e6, 4096: 5.9e6, 16384: 6.9e6}


class Scripted:
    """Measurements as scripted: each size's true rate, spoilt (divided by 100) on the
    listed occasions (0: its first measurement); None where the size does not fit."""

    def __init__(
        self,
        rates: dict[int, float],
        spoilt: dict[int, Sequence[int]] | None = None,
        too_large: int | None = None,
    ) -> None:
        self.rates, self.spoilt, self.too_large = rates, spoilt or {}, too_large
        self.calls: list[int] = []

    def __call__(self, chunk: int) -> float | None:
        occasion = self.calls.count(chunk)
        self.calls.append(chunk)
        if self.too_large is not None and chunk >= self.too_large:
            return None
        return self.rates[chunk] / (100 if occasion in self.spoilt.get(chunk, ()) else 1)


def test_a_quiet_machine_keeps_the_fastest_size_measuring_each_once() -> None:
    measure = Scripted(TABULAR)
    assert fastest_chunk(measure, SIZES) == 16384
    assert measure.calls == list(SIZES)


def test_the_largest_size_within_ten_percent_of_the_best_is_kept() -> None:
    rates = {**TABULAR, 4096: 6.5e6, 16384: 6.0e6}  # 16384 is 92% of 4096's rate
    assert fastest_chunk(Scripted(rates), SIZES) == 16384


def test_a_burst_over_the_middle_sizes_no_longer_stops_the_search() -> None:
    """Measured once in a burst, 256 looked 100 times slower than 64: the search stopped
    there and the model ran in calls of 64 rows (about 17 times fewer rows per second)."""
    measure = Scripted(TABULAR, spoilt={256: [0], 1024: [0]})
    assert fastest_chunk(measure, SIZES) == 16384


@pytest.mark.parametrize("spoilt_rounds", range(1, ROUNDS))
def test_spoilt_large_sizes_are_measured_again(spoilt_rounds: int) -> None:
    occasions = list(range(spoilt_rounds))
    measure = Scripted(TABULAR, spoilt={4096: occasions, 16384: occasions})
    assert fastest_chunk(measure, SIZES) == 16384
    assert measure.calls.count(16384) == spoilt_rounds + 1


def test_a_size_slower_in_every_measurement_is_measured_rounds_times_and_passed_over() -> None:
    rates = {8: 2.0e3, 16: 2.4e3, 64: 3.0e3, 256: 2.5e3}  # an image model: best at 64
    measure = Scripted(rates)
    assert fastest_chunk(measure, (8, 16, 64, 256)) == 64
    assert measure.calls.count(256) == ROUNDS
    assert measure.calls.count(16) == 1  # smaller sizes: never again


def test_sizes_from_the_first_that_does_not_fit_are_never_kept() -> None:
    measure = Scripted(TABULAR, too_large=1024)
    assert fastest_chunk(measure, SIZES) == 256
    assert measure.calls == [8, 16, 64, 256, 1024]
    assert fastest_chunk(Scripted(TABULAR, too_large=8), SIZES) is None


def test_a_size_that_no_longer_fits_when_measured_again_is_dropped() -> None:
    class FullLater(Scripted):
        def __call__(self, chunk: int) -> float | None:
            again = chunk in self.calls
            rate = super().__call__(chunk)
            return None if again and chunk >= 4096 else rate

    measure = FullLater(TABULAR, spoilt={4096: [0], 16384: [0]})
    assert fastest_chunk(measure, SIZES) == 1024
