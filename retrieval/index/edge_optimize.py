"""`python -m retrieval.index.edge_optimize PATH DIMENSION`: the child of an optimise apart.

QdrantEdgeIndex.optimize runs this on a copy of its shard, so that the engine's `optimize`,
which holds the GIL throughout, holds this process's and not the one serving queries.
Prints "true" when the optimise changed anything, "false" when not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from retrieval.index.edge import optimize_copy


def main() -> None:
    changed = optimize_copy(Path(sys.argv[1]), int(sys.argv[2]))
    print("true" if changed else "false")


if __name__ == "__main__":
    main()
