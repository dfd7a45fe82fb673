"""Retrieval levers beyond fusion, on SciFact's TRAIN qrels, computed exactly in numpy.

Stage A of bench/tune_scifact.py builds (or reuses) the chunked index through the real
pipeline; this script reads its chunks, dense vectors and stored sentence vectors back and
scores every document for every query, so each lever costs seconds:

  * BM25 scope: per chunk (what the index does; reproduces Qdrant's figure exactly), per whole
    document, per chunk with its neighbours;
  * dense extras: + lambda * cosine with the document's mean chunk vector; sentence MaxSim
    (the sentence vectors stored at ingestion) alone and added to the chunk cosine;
  * mixed granularity: dense from a second chunking (--other-chunking) with BM25 from this one;
  * two-pass hybrid (pseudo-relevance feedback from the fused top k): Rocchio on the dense
    query, BM25 term expansion, both.

Documents score by their best chunk (MaxP); lists are fused with the document-level min-max
convex combination (top 100 per side), the best Python fusion of bench/tune_scifact.py.
Prints one JSON line per lever. Usage:
    .venv/bin/python -m bench.scifact_levers [--data-dir DIR] [--chunking 200:32]
        [--other-chunking 128:32] [--index SHARD_DIR] [--split train]
The figures in docs/evaluation.md: `--index bench/results/query-data/indexes/scifact` (bench.query's
200/32 index, which has the sentence vectors) and, for mixed granularity, `--other-chunking 128:32`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import qdrant_edge as edge
import scipy.sparse as sp

from bench.tune_scifact import SCIFACT, chunked_index, score
from core.settings import Settings, configure_offline_environment
from evaluation.datasets import BeirDataset, load_beir
from retrieval.embedders import make_embedder
from retrieval.index import DENSE, SENTENCE_VECTORS
from retrieval.index.points import payload_fields
from retrieval.sentences import decode_sentence_vectors
from retrieval.sparse import Bm25Encoder

Array = npt.NDArray[np.float64]


@dataclass
class Corpus:
    """One chunking of the corpus: chunk texts, owners, dense and sentence vectors."""

    doc_ids: list[str]
    owner: npt.NDArray[np.int64]  # chunk -> document row
    index_in_doc: list[int]
    texts: list[str]  # embed_text (title + section + content)
    contents: list[str]
    dense: Array
    sentences: Array  # every stored sentence vector
    sentence_owner: npt.NDArray[np.int64]  # sentence -> chunk row

    def doc_max(self, chunk_scores: Array) -> Array:
        out = np.full(len(self.doc_ids), -np.inf)
        np.maximum.at(out, self.owner, chunk_scores)
        return out


def load_corpus(path: Path, doc_row: dict[str, int] | None = None) -> Corpus:
    shard = edge.EdgeShard.load(str(path))
    rows: list[tuple[str, int, str, str, np.ndarray, np.ndarray | None]] = []
    offset = None
    try:
        while True:
            request = edge.ScrollRequest(
                offset=offset, limit=1024, with_payload=True, with_vector=[DENSE]
            )
            records, offset = shard.scroll(request)
            for r in records:
                p = payload_fields(r.payload or {})
                vector = np.asarray(r.vector[DENSE], dtype=np.float64)  # type: ignore[index]
                stored = p.get(SENTENCE_VECTORS)
                sentences = decode_sentence_vectors(stored, len(vector)) if stored else None
                rows.append(
                    (
                        p["doc_id"],
                        p["chunk_index"],
                        p["embed_text"],
                        p["content"],
                        vector,
                        sentences,
                    )
                )
            if offset is None:
                break
    finally:
        shard.close()
    if doc_row is None:
        doc_row = {d: i for i, d in enumerate(sorted({r[0] for r in rows}))}
    dense = np.stack([r[4] for r in rows])
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    sentence_rows, sentence_owner = [], []
    for i, r in enumerate(rows):
        for s in r[5] if r[5] is not None else ():
            if s.any():
                sentence_rows.append(s)
                sentence_owner.append(i)
    return Corpus(
        doc_ids=list(doc_row),
        owner=np.array([doc_row[r[0]] for r in rows]),
        index_in_doc=[r[1] for r in rows],
        texts=[r[2] for r in rows],
        contents=[r[3] for r in rows],
        dense=dense,
        sentences=np.stack(sentence_rows) if sentence_rows else np.zeros((0, dense.shape[1])),
        sentence_owner=np.array(sentence_owner, dtype=np.int64),
    )


class Bm25Matrix:
    """BM25 as Qdrant computes it: the encoder's saturated TF times IDF over these texts."""

    def __init__(self, texts: Sequence[str], encoder: Bm25Encoder) -> None:
        self.encoder = encoder
        rows, cols, vals = [], [], []
        self.vocab: dict[int, int] = {}
        for i, text in enumerate(texts):
            v = encoder.encode_document(text)
            for term, weight in zip(v.indices, v.values, strict=True):
                rows.append(i)
                cols.append(self.vocab.setdefault(term, len(self.vocab)))
                vals.append(weight)
        self.matrix = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), len(self.vocab)))
        df = np.diff(self.matrix.tocsc().indptr)
        n = len(texts)
        self.idf = np.log((n - df + 0.5) / (df + 0.5) + 1)

    def query_weights(self, text: str) -> Array:
        w = np.zeros(len(self.vocab))
        for term in self.encoder.encode_query(text).indices:
            if term in self.vocab:
                w[self.vocab[term]] = 1.0
        return w

    def scores(self, weights: Array) -> Array:
        return np.asarray(self.matrix @ (weights * self.idf)).ravel()


def minmax_top(scores: Array, k: int = 100) -> tuple[Array, npt.NDArray[np.bool_]]:
    top = np.argpartition(-scores, k)[:k]
    lo, hi = scores[top].min(), scores[top].max()
    out = np.zeros_like(scores)
    out[top] = (scores[top] - lo) / (hi - lo + 1e-12)
    mask = np.zeros(len(scores), dtype=bool)
    mask[top] = True
    return out, mask


def convex(dense: Array, sparse: Array, alpha: float = 0.5) -> Array:
    nd, m1 = minmax_top(dense)
    ns, m2 = minmax_top(sparse)
    return np.where(m1 | m2, alpha * nd + (1 - alpha) * ns, -1.0)


def report(dataset: BeirDataset, docs: list[str], name: str, scores: dict[str, Array]) -> None:
    rankings = {q: [docs[i] for i in np.argsort(-s)[:100]] for q, s in scores.items()}
    ndcg, recall = score(dataset, rankings)
    row = {"lever": name, "ndcg@10": round(ndcg, 4), "recall@100": round(recall, 4)}
    print(json.dumps(row), flush=True)


def neighbour_texts(corpus: Corpus) -> list[str]:
    at = {
        (int(o), k): i
        for i, (o, k) in enumerate(zip(corpus.owner, corpus.index_in_doc, strict=True))
    }
    out = []
    for i, (o, k) in enumerate(zip(corpus.owner, corpus.index_in_doc, strict=True)):
        near = [corpus.contents[at[(int(o), k + d)]] for d in (-1, 1) if (int(o), k + d) in at]
        out.append("\n".join([corpus.texts[i], *near]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".ondata"))
    parser.add_argument("--chunking", default="200:32")
    parser.add_argument("--other-chunking", default=None, help="e.g. 128:32 (mixed granularity)")
    parser.add_argument(
        "--index",
        type=Path,
        default=None,
        help="an existing Edge shard of SciFact to read instead (e.g. bench.query's)",
    )
    parser.add_argument("--split", default="train")
    args = parser.parse_args()
    configure_offline_environment()
    dataset = load_beir(SCIFACT, split=args.split)
    base = Settings(data_dir=args.data_dir)
    embedder = make_embedder(base.embedding)
    size, overlap = (int(x) for x in args.chunking.split(":"))
    corpus = load_corpus(
        args.index or chunked_index(base, dataset, size, overlap, embedder) / "corpus"
    )
    docs = corpus.doc_ids
    queries = {q: embedder.embed_query(t).astype(np.float64) for q, t in dataset.queries.items()}
    chunk_bm25 = Bm25Matrix(corpus.texts, Bm25Encoder())
    full = {r.doc_id: f"{r.title}\n{r.text}" for r in dataset.iter_corpus()}
    doc_bm25 = Bm25Matrix([full[d] for d in docs], Bm25Encoder(avg_len=300))
    window_bm25 = Bm25Matrix(neighbour_texts(corpus), Bm25Encoder())

    dense = {q: corpus.doc_max(corpus.dense @ v) for q, v in queries.items()}
    keyword = {
        q: corpus.doc_max(chunk_bm25.scores(chunk_bm25.query_weights(t)))
        for q, t in dataset.queries.items()
    }

    def each(fn: Callable[[str], Array]) -> dict[str, Array]:
        return {q: fn(q) for q in dataset.queries}

    report(dataset, docs, "dense (MaxP)", dense)
    report(dataset, docs, "bm25 per chunk", keyword)
    report(dataset, docs, "convex a=0.5 (baseline)", each(lambda q: convex(dense[q], keyword[q])))
    _bm25_scope(dataset, docs, corpus, dense, doc_bm25, window_bm25)
    _dense_extras(dataset, docs, corpus, queries, dense, keyword)
    if args.other_chunking:
        size, overlap = (int(x) for x in args.other_chunking.split(":"))
        path = chunked_index(base, dataset, size, overlap, embedder) / "corpus"
        other = load_corpus(path, {d: i for i, d in enumerate(docs)})
        dense2 = {q: other.doc_max(other.dense @ v) for q, v in queries.items()}
        report(
            dataset,
            docs,
            f"dense {args.other_chunking} + bm25 {args.chunking}",
            each(lambda q: convex(dense2[q], keyword[q])),
        )
        report(
            dataset,
            docs,
            "dense of both averaged + bm25",
            each(lambda q: convex((dense[q] + dense2[q]) / 2, keyword[q])),
        )
    _two_pass(dataset, docs, corpus, chunk_bm25, queries, dense, keyword)


def _bm25_scope(
    dataset: BeirDataset,
    docs: list[str],
    corpus: Corpus,
    dense: dict[str, Array],
    doc_bm25: Bm25Matrix,
    window_bm25: Bm25Matrix,
) -> None:
    for name, matrix, per_chunk in (("document", doc_bm25, False), ("window", window_bm25, True)):
        lists = {}
        for q, text in dataset.queries.items():
            s = matrix.scores(matrix.query_weights(text))
            lists[q] = corpus.doc_max(s) if per_chunk else s
        report(dataset, docs, f"bm25 per {name}", lists)
        report(
            dataset,
            docs,
            f"convex a=0.5, bm25 per {name}",
            {q: convex(dense[q], lists[q]) for q in lists},
        )


def _dense_extras(
    dataset: BeirDataset,
    docs: list[str],
    corpus: Corpus,
    queries: dict[str, Array],
    dense: dict[str, Array],
    keyword: dict[str, Array],
) -> None:
    mean = np.zeros((len(docs), corpus.dense.shape[1]))
    np.add.at(mean, corpus.owner, corpus.dense)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    for lam in (0.3, 0.5, 1.0):
        lists = {q: dense[q] + lam * (mean @ v) for q, v in queries.items()}
        report(
            dataset,
            docs,
            f"convex a=0.5, dense + {lam} x doc mean",
            {q: convex(lists[q], keyword[q]) for q in lists},
        )
    if not len(corpus.sentences):
        return
    best_sentence = {}
    for q, v in queries.items():
        chunk = np.full(len(corpus.texts), -1.0)
        np.maximum.at(chunk, corpus.sentence_owner, corpus.sentences @ v)
        best_sentence[q] = corpus.doc_max(chunk)
    report(dataset, docs, "sentence MaxSim alone", best_sentence)
    for mu in (0.3, 0.5, 1.0):
        report(
            dataset,
            docs,
            f"convex a=0.5, dense + {mu} x sentence MaxSim",
            {q: convex(dense[q] + mu * best_sentence[q], keyword[q]) for q in queries},
        )


def _two_pass(
    dataset: BeirDataset,
    docs: list[str],
    corpus: Corpus,
    bm25: Bm25Matrix,
    queries: dict[str, Array],
    dense: dict[str, Array],
    keyword: dict[str, Array],
) -> None:
    """Pseudo-relevance feedback from the fused first pass (k docs; beta dense, gamma terms)."""
    for k, beta, gamma, terms in (
        (3, 0.5, 0, 0),
        (3, 1.0, 0, 0),
        (3, 0, 0.3, 10),
        (3, 0, 0.5, 20),
        (3, 0.5, 0.3, 10),
        (5, 0.5, 0.3, 10),
    ):
        lists = {}
        for q, text in dataset.queries.items():
            top = np.argsort(-convex(dense[q], keyword[q]))[:k]
            cos = corpus.dense @ queries[q]
            best = [
                np.flatnonzero(corpus.owner == t)[np.argmax(cos[corpus.owner == t])] for t in top
            ]
            v = queries[q] + beta * corpus.dense[best].mean(axis=0)
            d2 = corpus.doc_max(corpus.dense @ (v / np.linalg.norm(v)))
            w = bm25.query_weights(text)
            if gamma:
                rows = np.flatnonzero(np.isin(corpus.owner, top))
                weight = np.asarray(bm25.matrix[rows].sum(axis=0)).ravel() * bm25.idf
                weight[w > 0] = 0
                extra = np.argsort(-weight)[:terms]
                w[extra] += gamma * weight[extra] / (weight[extra].max() + 1e-12)
            lists[q] = convex(d2, corpus.doc_max(bm25.scores(w)))
        report(dataset, docs, f"two-pass k={k} beta={beta} gamma={gamma} terms={terms}", lists)


if __name__ == "__main__":
    main()
