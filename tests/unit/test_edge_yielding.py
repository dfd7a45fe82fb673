"""An optimise child stops while queries run (retrieval.index.edge._Yielding), on a real process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrieval.index.edge import _Yielding

BUSY = "while True: pass"


def _state(pid: int) -> str:
    """The process's state letter: T when stopped, R or S when it may run."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen([sys.executable, "-c", BUSY], text=True)
    yield process
    process.kill()
    process.wait(5)


pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def test_the_child_is_stopped_while_a_query_runs_and_runs_between(
    child: subprocess.Popen[str],
) -> None:
    yielding = _Yielding()
    yielding.attach(child)
    for _ in range(3):
        with yielding.query():
            _wait_until(lambda: _state(child.pid) == "T")
        _wait_until(lambda: _state(child.pid) != "T")
    yielding.detach()
    assert yielding.stops == 3
    assert yielding.stopped_s > 0


def test_overlapping_queries_keep_it_stopped_until_the_last_ends(
    child: subprocess.Popen[str],
) -> None:
    yielding = _Yielding()
    yielding.attach(child)
    first, second = yielding.query(), yielding.query()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert _state(child.pid) == "T"
    second.__exit__(None, None, None)
    _wait_until(lambda: _state(child.pid) != "T")
    yielding.detach()
    assert yielding.stops == 1


def test_a_query_in_flight_at_attach_stops_it_and_detach_lets_it_go(
    child: subprocess.Popen[str],
) -> None:
    yielding = _Yielding()
    with yielding.query():
        yielding.attach(child)
        _wait_until(lambda: _state(child.pid) == "T")
        yielding.detach()  # the optimise ends (or fails) while a query still runs
        _wait_until(lambda: _state(child.pid) != "T")
    assert yielding.stops == 1


def test_queries_that_never_pause_still_leave_it_its_share(
    child: subprocess.Popen[str],
) -> None:
    # a bucket of 0.2 s of stop, earned at half the rate it is spent: held stopped by
    # back-to-back overlapping queries, the child must run again within ~0.4 s, then be stopped
    yielding = _Yielding(min_share=0.5)
    yielding.CAPACITY_S = 0.2
    yielding.attach(child)
    seen: set[str] = set()
    with yielding.query():  # one query always in flight
        deadline = time.monotonic() + 5
        while not {"T", "R"} <= seen or yielding.stops < 2:
            assert time.monotonic() < deadline, "the child never ran while queries overlapped"
            with yielding.query():
                time.sleep(0.01)
            seen.add("R" if _state(child.pid) != "T" else "T")
    yielding.detach()
    assert yielding.stops >= 2  # stopped, let run for its share, stopped again


def test_signals_after_the_child_ended_are_harmless(child: subprocess.Popen[str]) -> None:
    yielding = _Yielding()
    yielding.attach(child)
    child.kill()
    child.wait(5)
    with yielding.query():
        pass
    yielding.detach()


def test_the_child_dies_with_its_parent_even_when_stopped(tmp_path: Path) -> None:
    # a parent that starts a child asking to die with it, stops it, and is killed
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal, subprocess, sys\n"
        "code = 'import os, sys, time; sys.path.insert(0, sys.argv[1]);"
        " from retrieval.index.edge_optimize import die_with_parent;"
        ' die_with_parent(os.getppid()); print("ready", flush=True); time.sleep(60)\'\n'
        "child = subprocess.Popen([sys.executable, '-c', code, sys.argv[1]],"
        " stdout=subprocess.PIPE, text=True)\n"
        "child.stdout.readline()\n"
        "os.kill(child.pid, signal.SIGSTOP)\n"
        "print(child.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.run(
        [sys.executable, str(script), str(root)], capture_output=True, text=True, timeout=60
    )
    pid = int(parent.stdout.split()[0])
    _wait_until(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z")
