"""`python -m retrieval.index.edge_optimize PATH DIMENSION [PARENT_PID [CORES [SEGMENTS]]]`.

QdrantEdgeIndex.optimize runs this on a copy of its shard, so that the engine's `optimize`,
which holds the GIL throughout, holds this process's and not the one serving queries. It runs
on CORES (comma-separated; all when empty), the ones queries leave free (edge.spare_cores),
keeps SEGMENTS indexed segments (edge.engine_segments; 1 when not given) and dies with
its parent. Prints "true" or "false" (whether the optimise changed anything),
then how many cores it ran on.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from pathlib import Path

from retrieval.index.edge import optimize_copy

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent ends (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it ended before the request took effect
        os._exit(1)


def main() -> None:
    if len(sys.argv) > 3:
        die_with_parent(int(sys.argv[3]))
    cores = [int(c) for c in sys.argv[4].split(",") if c] if len(sys.argv) > 4 else []
    segments = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    changed = optimize_copy(Path(sys.argv[1]), int(sys.argv[2]), cores, segments)
    ran_on = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    print("true" if changed else "false", ran_on)


if __name__ == "__main__":
    main()
