"""Sentences of a chunk, and their vectors computed once at ingestion.

The extractive answerer quotes sentences of the retrieved chunks, scored by cosine with the
question. Embedding those sentences at question time was the whole cost of an answer, so
ingestion stores one vector per sentence with the chunk: the mean of the model's token states
over the sentence's span, taken from the forward pass that embeds the chunk anyway (no extra
model work). `sentence_spans` is the one definition of "a sentence" both sides use, so the
stored rows line up with what the answerer splits at query time.

Stored form: int8 rows (unit vector x 127), base64, one row per span; an all-zero row marks a
sentence the model did not see (past its window), which the answerer embeds itself.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import numpy.typing as npt

SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n+")
_SCALE = 127.0

Span = tuple[int, int]


def sentence_spans(text: str) -> list[Span]:
    """(start, end) character offsets of each piece of `text` between sentence ends."""
    spans: list[Span] = []
    start = 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    return spans


def content_spans(embed_text: str, content: str) -> list[Span]:
    """The sentence spans of `content`, as offsets into `embed_text` (which ends with it)."""
    if not embed_text.endswith(content):
        return []
    offset = len(embed_text) - len(content)
    return [(offset + start, offset + end) for start, end in sentence_spans(content)]


def encode_sentence_vectors(vectors: npt.NDArray[np.float32]) -> str:
    """int8 rows, base64: ~1/5 the size of float32 JSON, cosine error below 0.01."""
    quantised = np.clip(np.rint(vectors * _SCALE), -127, 127).astype(np.int8)
    return base64.b64encode(quantised.tobytes()).decode("ascii")


def decode_sentence_vectors(data: str, dimension: int) -> npt.NDArray[np.float32]:
    """Rows back as float32 (unit length up to quantisation; zero rows stay zero)."""
    raw = np.frombuffer(base64.b64decode(data), dtype=np.int8)
    if raw.size % dimension:
        return np.zeros((0, dimension), dtype=np.float32)
    return raw.reshape(-1, dimension).astype(np.float32) / _SCALE
