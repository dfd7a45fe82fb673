"""The stored payload of a chunk: what it holds, and how a hit's chunk is rebuilt from it."""

from __future__ import annotations

import numpy as np

from core.models import Chunk, SparseVector
from retrieval.index import IndexedChunk, chunk_payload, scored_chunk

CONTENT = "Staff book travel through the portal at least ten days ahead."
CHUNK = Chunk(
    chunk_id="handbook#00001",
    doc_id="handbook",
    chunk_index=1,
    content=CONTENT,
    embed_text=f"Handbook > Travel\n{CONTENT}",
    title="Handbook",
    section="Travel",
    content_hash="h1",
    acl_groups=("staff",),
)


def _item(chunk: Chunk) -> IndexedChunk:
    dense = np.full(4, 0.5, dtype=np.float32)
    return IndexedChunk(chunk=chunk, dense=dense, sparse=SparseVector(indices=(1,), values=(1.0,)))


def test_payload_holds_the_chunk_text_once() -> None:
    payload = chunk_payload(_item(CHUNK))
    assert "embed_text" not in payload
    assert sum(str(v).count("ten days ahead") for v in payload.values()) == 1
    assert scored_chunk(payload, 0.5).chunk == CHUNK


def test_payload_of_an_embed_text_not_ending_with_the_content_keeps_it_whole() -> None:
    odd = CHUNK.model_copy(update={"embed_text": "a summary written apart"})
    payload = chunk_payload(_item(odd))
    assert payload["embed_text"] == "a summary written apart"
    assert scored_chunk(payload, 0.5).chunk == odd


def test_payload_written_before_the_heading_form_still_reads() -> None:
    legacy = CHUNK.model_dump(mode="json")
    assert scored_chunk(legacy, 0.5).chunk == CHUNK
