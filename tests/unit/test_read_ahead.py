"""read_ahead: parsing runs ahead of embedding without changing what comes out, or when."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ingest.pipeline import read_ahead


def numbers(n: int, seen: list[int] | None = None) -> Iterator[int]:
    for i in range(n):
        if seen is not None:
            seen.append(i)
        yield i


@pytest.mark.parametrize("depth", [0, 1, 3, 64])
def test_read_ahead_yields_everything_in_order(depth: int) -> None:
    assert list(read_ahead(numbers(50), depth)) == list(range(50))


def test_read_ahead_produces_on_another_thread_while_the_consumer_works() -> None:
    produced: list[str] = []

    def names() -> Iterator[str]:
        for _ in range(3):
            produced.append(threading.current_thread().name)
            yield "doc"

    for consumed, _ in enumerate(read_ahead(names(), 2), start=1):
        if consumed == 1:
            deadline = time.monotonic() + 5
            while len(produced) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)  # the producer fills the queue while we "embed"
            assert len(produced) == 3
    assert set(produced) == {"parse-ahead"}


def test_read_ahead_raises_the_producers_error_after_the_items_before_it() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("parser broke")

    got: list[int] = []

    def drain() -> None:
        got.extend(read_ahead(failing(), 4))

    with pytest.raises(ValueError, match="parser broke"):
        drain()
    assert got == [1, 2]


def test_read_ahead_stops_producing_when_the_consumer_stops() -> None:
    seen: list[int] = []
    stream = read_ahead(numbers(1_000, seen), 2)
    assert next(stream) == 0
    stream.close()
    settled = len(seen)
    time.sleep(0.3)
    assert len(seen) == settled < 10
