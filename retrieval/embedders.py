"""Embedders turn text into dense vectors: ONNX (default), sentence-transformers, OpenAI-compatible."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed documents (chunks); one row per text, in order."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """Embed one search query; a 1-D vector."""
        ...
