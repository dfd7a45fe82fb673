"""The optimise-apart child: the cores it gets, and its end with its parent (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.index import QdrantEdgeIndex
from retrieval.index.edge import CHILD_MODULE, spare_cores
from tests.support.waiting import wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def _state(pid: int) -> str:
    """The process's state letter (T: stopped, Z: ended, waiting to be reaped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_spare_cores_leave_the_query_slots_their_cores() -> None:
    mine = sorted(os.sched_getaffinity(0))
    assert spare_cores(0) == mine
    assert spare_cores(1) == mine[1:]  # [] on one core: nothing to pin to, so no pinning
    assert spare_cores(len(mine)) == []


def test_the_child_runs_on_the_cores_it_is_given(tmp_path: Path) -> None:
    QdrantEdgeIndex.open(tmp_path / "shard", dimension=4).close()
    core = sorted(os.sched_getaffinity(0))[-1]
    arguments = [str(tmp_path / "shard"), "4", str(os.getpid()), str(core)]
    out = subprocess.run(
        [sys.executable, "-m", CHILD_MODULE, *arguments],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
        check=True,
    )
    assert out.stdout.split() == ["false", "1"]  # nothing to build, on the one core given


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
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _state(pid) == "Z")
