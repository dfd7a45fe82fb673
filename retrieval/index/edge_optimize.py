"""`python -m retrieval.index.edge_optimize PATH DIMENSION [PARENT_PID]`: an optimise apart's child.

QdrantEdgeIndex.optimize runs this on a copy of its shard, so that the engine's `optimize`,
which holds the GIL throughout, holds this process's and not the one serving queries (which
also stops this one while queries run: edge._Yielding). It dies with its parent, stopped or
not. Prints "true" when the optimise changed anything, "false" when not.
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
    changed = optimize_copy(Path(sys.argv[1]), int(sys.argv[2]))
    print("true" if changed else "false")


if __name__ == "__main__":
    main()
