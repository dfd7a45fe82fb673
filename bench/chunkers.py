"""ondata's Chunker beside llama-index's SentenceSplitter: speed and dense retrieval quality.

Both cut the same SciFact documents at the same size (200 tokens, 32 overlap); each chunk is
embedded by the bundled model (the text each pipeline embeds: ondata's heading line + content,
llama-index's node content with its metadata, as `MetadataMode.EMBED` gives it), a document
scores as its best chunk (MaxP), and nDCG@10 / Recall@100 are computed with the harness's
metrics on the chosen split's queries. Nothing else differs, so this isolates the chunker.

Usage: .venv/bin/python -m bench.chunkers [--split train] [--docs N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.settings import Settings, configure_offline_environment

configure_offline_environment()

from core.models import Document, Element  # noqa: E402
from evaluation.datasets import BeirDataset, CorpusRecord, load_beir  # noqa: E402
from evaluation.metrics import mean_by_metric, retrieval_metrics  # noqa: E402
from ingest.chunking import Chunker  # noqa: E402
from retrieval.embedders import Embedder, make_embedder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
SIZE, OVERLAP = 200, 32
Chunks = list[tuple[str, str]]  # (doc_id, text to embed)


def records(dataset: BeirDataset, limit: int | None) -> Iterator[CorpusRecord]:
    """The corpus in file order, the first `limit` records only when given."""
    return islice(dataset.iter_corpus(), limit)


def ondata_chunks(dataset: BeirDataset, limit: int | None) -> Chunks:
    chunker = Chunker(chunk_size=SIZE, chunk_overlap=OVERLAP)
    out: Chunks = []
    for record in records(dataset, limit):
        doc = Document(
            doc_id=record.doc_id,
            source=record.doc_id,
            title=record.title or record.doc_id,
            content_hash=record.doc_id,
            elements=(Element(text=record.text),),
        )
        out.extend((record.doc_id, c.embed_text) for c in chunker.chunk(doc))
    return out


def llamaindex_chunks(dataset: BeirDataset, limit: int | None) -> Chunks:
    from llama_index.core import Document as LlamaDocument
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode

    splitter = SentenceSplitter(chunk_size=SIZE, chunk_overlap=OVERLAP)
    out: Chunks = []
    for record in records(dataset, limit):
        doc = LlamaDocument(text=record.text, metadata={"title": record.title or record.doc_id})
        nodes = splitter.get_nodes_from_documents([doc])
        out.extend((record.doc_id, node.get_content(MetadataMode.EMBED)) for node in nodes)
    return out


def ndcg(dataset: BeirDataset, chunks: Chunks, embedder: Embedder) -> dict[str, float | None]:
    vectors = embedder.embed([text for _, text in chunks])
    doc_ids = np.array([doc for doc, _ in chunks])
    ranking: dict[str, dict[str, float]] = {}
    for qid, text in dataset.queries.items():
        scores: npt.NDArray[np.float32] = vectors @ embedder.embed_query(text)
        best: dict[str, float] = {}
        for i in np.argsort(-scores)[:300]:
            best.setdefault(str(doc_ids[i]), float(scores[i]))
        ranking[qid] = dict(list(best.items())[:100])
    return mean_by_metric(retrieval_metrics(dataset.qrels, ranking))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train")
    parser.add_argument("--docs", type=int, default=None, help="first N corpus documents only")
    args = parser.parse_args()
    if not SCIFACT.is_dir():
        sys.exit(f"{SCIFACT} is absent: this bench needs the SciFact corpus")
    dataset = load_beir(SCIFACT, split=args.split)
    embedder = make_embedder(Settings().embedding)
    rows: list[tuple[str, Callable[[BeirDataset, int | None], Chunks]]] = [
        ("ondata Chunker", ondata_chunks),
        ("llama-index SentenceSplitter", llamaindex_chunks),
    ]
    print(f"SciFact {args.split}: {len(dataset.queries)} queries; {SIZE} tokens, {OVERLAP} overlap")
    print(f"{'chunker':<30} {'chunks':>7} {'chunk/s':>8} {'words':>10} {'nDCG@10':>8} {'R@100':>6}")
    for name, make in rows:
        started = time.perf_counter()
        chunks = make(dataset, args.docs)
        seconds = time.perf_counter() - started
        tokens = sum(len(t.split()) for _, t in chunks)
        scores = ndcg(dataset, chunks, embedder)
        print(
            f"{name:<30} {len(chunks):>7,} {len(chunks) / seconds:>8,.0f} {tokens:>10,} "
            f"{scores['ndcg@10'] or 0:>8.4f} {scores['recall@100'] or 0:>6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
