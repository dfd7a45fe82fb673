"""Queries enter the Edge engine in the order they asked (retrieval.index.edge._Turns)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from retrieval.index.edge import _Turns, engine_query_slots, engine_segments
from tests.support.waiting import wait_until


def test_waiting_queries_are_admitted_in_arrival_order() -> None:
    turns = _Turns(1)
    admitted: list[int] = []
    release_first = threading.Event()

    def first() -> None:
        with turns.turn():
            admitted.append(0)
            release_first.wait()

    def later(n: int) -> None:
        with turns.turn():
            admitted.append(n)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    wait_until(lambda: admitted == [0])
    for n in range(1, 6):  # each one queued before the next asks
        thread = threading.Thread(target=later, args=(n,))
        thread.start()
        threads.append(thread)
        wait_until(lambda n=n: turns.waiting == n)
    release_first.set()
    for thread in threads:
        thread.join(5)
    assert admitted == [0, 1, 2, 3, 4, 5]
    assert turns.waiting == 0


def test_slots_bound_how_many_hold_a_turn_at_once() -> None:
    turns = _Turns(2)
    inside, most = 0, 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        with turns.turn():
            with lock:
                inside += 1
                most = max(most, inside)
            time.sleep(0.002)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most == 2
    assert turns.waiting == 0


def test_a_failing_holder_passes_its_turn_on() -> None:
    turns = _Turns(1)
    with pytest.raises(RuntimeError), turns.turn():
        raise RuntimeError("engine error")
    with turns.turn():  # the slot came back
        pass


@pytest.mark.parametrize(("configured", "expected"), [(3, 3), (1, 1)])
def test_configured_slots_are_taken_as_given(configured: int, expected: int) -> None:
    assert engine_query_slots(configured) == expected


def test_automatic_slots_are_half_the_cores_and_at_least_one() -> None:
    assert engine_query_slots(0) >= 1


def test_segments_are_as_configured_or_one_per_core() -> None:
    assert engine_segments(3) == 3
    assert engine_segments(0) == len(os.sched_getaffinity(0))
