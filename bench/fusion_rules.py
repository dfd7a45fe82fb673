"""Keyword statistics and fusion on a cached evaluation index, exactly in numpy (issue 11).

Reads an Edge shard that `ondata eval retrieval` (or bench.tune_scifact) built: the chunks'
text and dense vectors. BM25 is recomputed from the text as Qdrant scores it (saturated TF
times IDF), so each variant costs seconds: the old fixed mean length of 256 with unit query
weights (first), the index's own mean length with query-term counts and IDF over chunks
(before) or over documents (today's default, retrieval/term_statistics.py), other k1/b.
Hybrid runs fuse the two chunk lists as Qdrant does (300 candidates a side, fused at chunk
level, documents by their best chunk): DBSF, RRF k in {10, 30, 60}, min-max convex alpha in
{0.4, 0.5, 0.6}. Prints one JSON line per run. Choose on a train split; a test split only
reports. Usage:
    .venv/bin/python -m bench.fusion_rules --dataset ../shared/datasets/scifact --split train \
        --shard <data_dir>/eval-cache/scifact-<key>/indexes/corpus
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from bench.scifact_levers import Corpus, load_corpus
from bench.tune_scifact import score
from core.settings import Settings, configure_offline_environment
from evaluation.datasets import BeirDataset, load_beir
from retrieval.embedders import make_embedder
from retrieval.sparse import Bm25Encoder

Array = npt.NDArray[np.float64]
DEPTH = 300
"""Candidates a side, and documents ranked: `ondata eval retrieval` asks for 300 chunks, and
Qdrant prefetches max(candidates, limit) a side."""


class Bm25:
    """Term counts of every chunk, from which BM25 weights are made for any k1, b, mean."""

    def __init__(
        self, texts: list[str], encoder: Bm25Encoder, owners: npt.NDArray[np.int64] | None = None
    ) -> None:
        self.encoder = encoder
        self.vocab: dict[int, int] = {}
        rows, cols, counts = [], [], []
        for i, text in enumerate(texts):
            v = encoder.term_counts(text)
            for term, count in zip(v.indices, v.values, strict=True):
                rows.append(i)
                cols.append(self.vocab.setdefault(term, len(self.vocab)))
                counts.append(count)
        self.tf = sp.csr_matrix((counts, (rows, cols)), shape=(len(texts), len(self.vocab)))
        self.lengths = np.asarray(self.tf.sum(axis=1)).ravel()
        df = np.diff(self.tf.tocsc().indptr)
        self.idf = np.log((len(texts) - df + 0.5) / (df + 0.5) + 1)
        self.document_idf = self.idf
        if owners is not None:  # a term's document frequency: documents holding it
            held = self.tf.tocoo()
            pairs = np.unique(owners[held.row].astype(np.int64) << 32 | held.col.astype(np.int64))
            doc_df = np.bincount(pairs & 0xFFFFFFFF, minlength=len(self.vocab))
            docs = len(np.unique(owners))
            self.document_idf = np.log((docs - doc_df + 0.5) / (doc_df + 0.5) + 1)

    def weights(self, k1: float, b: float, avg_len: float) -> sp.csr_matrix:
        m = self.tf.tocoo(copy=True)
        m.data = m.data * (k1 + 1) / (m.data + k1 * (1 - b + b * self.lengths[m.row] / avg_len))
        return m.tocsr()

    def scores(
        self, weights: sp.csr_matrix, query: str, *, counts: bool, documents: bool = False
    ) -> Array:
        w = np.zeros(len(self.vocab))
        v = self.encoder.term_counts(query)
        for term, count in zip(v.indices, v.values, strict=True):
            if term in self.vocab:
                w[self.vocab[term]] = count if counts else 1.0
        idf = self.document_idf if documents else self.idf
        return np.asarray(weights @ (w * idf)).ravel()


def documents(corpus: Corpus, chunk_scores: Array, kept: npt.NDArray[np.bool_]) -> list[str]:
    best = corpus.doc_max(np.where(kept, chunk_scores, -np.inf))
    order = np.argsort(-best, kind="stable")[:DEPTH]
    return [corpus.doc_ids[i] for i in order if np.isfinite(best[i])]


def _dbsf(values: Array) -> Array:
    """Qdrant's DBSF normalisation: mean ± 3 sample standard deviations to 0..1, unclipped (a
    score beyond 3 deviations goes past 1, as in the engine; clipping it cost 0.04 on train)."""
    mean, spread = values.mean(), 3 * values.std(ddof=1)
    return (values - mean + spread) / (2 * spread + 1e-12)


def _minmax(values: Array) -> Array:
    return (values - values.min()) / (values.max() - values.min() + 1e-12)


def fused(dense: Array, sparse: Array, how: str, param: float) -> tuple[Array, Array]:
    """Chunk scores of one fusion over the top DEPTH of each side, and which chunks it saw."""
    out, kept = np.zeros(len(dense)), np.zeros(len(dense), dtype=bool)
    for side, weight in ((dense, param), (sparse, 1 - param)):
        top = np.argpartition(-side, DEPTH)[:DEPTH]
        kept[top] = True
        if how == "dbsf":
            out[top] += _dbsf(side[top])
        elif how == "minmax":
            out[top] += weight * _minmax(side[top])
        else:  # rrf, k = param
            ranked = top[np.argsort(-side[top], kind="stable")]
            out[ranked] += 1.0 / (param + 1 + np.arange(len(ranked)))
    return out, kept


def report(dataset: BeirDataset, name: str, rankings: dict[str, list[str]]) -> None:
    ndcg, recall = score(dataset, rankings)
    print(json.dumps({"run": name, "ndcg@10": round(ndcg, 4), "recall@100": round(recall, 4)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--shard", type=Path, required=True)
    args = parser.parse_args()
    configure_offline_environment()
    dataset = load_beir(args.dataset, split=args.split)
    corpus = load_corpus(args.shard)
    bm25 = Bm25(corpus.texts, Bm25Encoder(), corpus.owner)
    mean = float(bm25.lengths.mean())
    qids = list(dataset.queries)
    vectors = make_embedder(Settings().embedding).embed([dataset.queries[q] for q in qids])
    dense = {
        q: corpus.dense @ np.asarray(v, dtype=np.float64)
        for q, v in zip(qids, vectors, strict=True)
    }
    everything = np.ones(len(corpus.texts), dtype=bool)

    def keyword(
        k1: float, b: float, avg_len: float, counts: bool, documents: bool = True
    ) -> dict[str, Array]:
        w = bm25.weights(k1, b, avg_len)
        return {
            q: bm25.scores(w, dataset.queries[q], counts=counts, documents=documents) for q in qids
        }

    def each(lists: dict[str, Array]) -> dict[str, list[str]]:
        return {q: documents(corpus, lists[q], everything) for q in qids}

    def hybrid(lists: dict[str, Array], how: str, param: float) -> dict[str, list[str]]:
        return {q: documents(corpus, *fused(dense[q], lists[q], how, param)) for q in qids}

    print(json.dumps({"chunks": len(corpus.texts), "mean_chunk_length": round(mean, 1)}))
    report(dataset, "vector (MaxP)", each(dense))
    for k1, b, avg, counts, docs, name in (
        (1.2, 0.75, 256.0, False, False, "mean 256, unit query weights, chunk IDF (first)"),
        (1.2, 0.75, mean, False, False, "index mean, unit query weights, chunk IDF"),
        (1.2, 0.75, 256.0, True, False, "mean 256, query term counts, chunk IDF"),
        (1.2, 0.75, mean, True, False, "index mean, counts, chunk IDF (before)"),
        (1.5, 0.75, mean, True, True, "index mean, counts, document IDF, k1 1.5"),
        (0.9, 0.4, mean, True, True, "index mean, counts, document IDF, k1 0.9 b 0.4"),
    ):
        report(dataset, f"keyword: {name}", each(keyword(k1, b, avg, counts, docs)))
    new = keyword(1.2, 0.75, mean, counts=True)
    report(dataset, "keyword: index mean, counts, document IDF (default)", each(new))
    fusions = [("dbsf", 0.5), ("rrf", 10), ("rrf", 30), ("rrf", 60)]
    fusions += [("minmax", 0.4), ("minmax", 0.5), ("minmax", 0.6)]
    for how, param in fusions:
        report(dataset, f"hybrid {how} {param}", hybrid(new, how, param))


if __name__ == "__main__":
    main()
