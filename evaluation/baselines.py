"""Public retrieval baselines, run on the same dataset beside ondata's modes (`--baselines`).

They anchor a run on data nobody tuned for: forty lines of public libraries, as the
literature runs them, on the same corpus, queries and qrels.

* bm25: bm25s (its defaults: Lucene BM25, k1 1.5, b 0.75) over title + text, tokenised with
  bm25s's English stopwords and PyStemmer's English (Snowball) stemmer;
* dense: all-MiniLM-L6-v2 (the bundled model) through sentence-transformers, one vector per
  document over title + text, cut at 256 word pieces, cosine;
* rrf: reciprocal rank fusion (k = 60) of those two rankings.

The libraries are the `eval` extra (``pip install -e '.[eval]'``). Document vectors are
cached beside the evaluation indexes, keyed by the corpus bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import ConfigurationError
from evaluation import metrics
from evaluation.datasets import BeirDataset, CorpusRecord

logger = logging.getLogger(__name__)

BASELINES = ("bm25", "dense", "rrf")
RRF_K = 60
DENSE_WINDOW = 256
"""Word pieces per document for the dense baseline, [CLS] and [SEP] included."""

Ranking = dict[str, list[str]]


def baseline_rankings(
    dataset: BeirDataset, *, depth: int, cache_dir: Path | None = None
) -> dict[str, Ranking]:
    """The three baselines' document rankings of every query, `depth` deep."""
    records = list(dataset.iter_corpus())
    doc_ids = [r.doc_id for r in records]
    texts = [_text(r) for r in records]
    qids = list(dataset.queries)
    queries = [dataset.queries[q] for q in qids]
    bm25 = _bm25(texts, queries, depth=depth)
    dense = _dense(texts, queries, depth=depth, cache=_cache_file(cache_dir, dataset))
    by_query = {
        "bm25": {q: [doc_ids[i] for i in row] for q, row in zip(qids, bm25, strict=True)},
        "dense": {q: [doc_ids[i] for i in row] for q, row in zip(qids, dense, strict=True)},
    }
    by_query["rrf"] = {
        q: rrf([by_query["bm25"][q], by_query["dense"][q]], k=RRF_K)[:depth] for q in qids
    }
    return by_query


def baseline_summary(
    dataset: BeirDataset, rankings: Mapping[str, Ranking], *, k: int
) -> dict[str, dict[str, float]]:
    """Mean metrics per baseline, the same names `ondata eval retrieval` reports per mode."""
    names = metrics.retrieval_metric_names(k)
    out: dict[str, dict[str, float]] = {}
    for name, ranking in rankings.items():
        scores = metrics.retrieval_metrics(dataset.qrels, ranking, k=k)
        out[name] = {n: round(metrics.mean(s[n] for s in scores.values()) or 0.0, 6) for n in names}
    return out


def rrf(rankings: Sequence[Sequence[str]], *, k: int = RRF_K) -> list[str]:
    """Reciprocal rank fusion: score = sum of 1 / (k + rank), ranks from 1 (pure)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc_id in enumerate(ranking, start=1):
            scores[doc_id] = scores.get(doc_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))


def _text(record: CorpusRecord) -> str:
    return f"{record.title} {record.text}".strip()


def _bm25(texts: list[str], queries: list[str], *, depth: int) -> list[list[int]]:
    try:
        import bm25s
        import Stemmer
    except ImportError as exc:
        raise ConfigurationError(
            "the baselines need the eval extra: pip install -e '.[eval]'"
        ) from exc
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
    found, _ = retriever.retrieve(tokens, k=min(depth, len(texts)), show_progress=False)
    return [[int(i) for i in row] for row in np.asarray(found)]


def _dense(
    texts: list[str], queries: list[str], *, depth: int, cache: Path | None
) -> list[list[int]]:
    from sentence_transformers import SentenceTransformer

    from retrieval.onnx_export import BUNDLED_MODEL, resolve_model_dir

    model_dir = resolve_model_dir(BUNDLED_MODEL)
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    model.max_seq_length = DENSE_WINDOW
    docs = _cached_vectors(cache, lambda: _encode(model, texts), rows=len(texts))
    scores = _encode(model, queries) @ docs.T
    top = min(depth, len(texts))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    return [[int(i) for i in row] for row in order]


def _encode(model: Any, texts: list[str]) -> npt.NDArray[np.float32]:
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def _cached_vectors(path: Path | None, compute: Any, *, rows: int) -> npt.NDArray[np.float32]:
    if path is not None and path.is_file():
        stored = np.load(path)
        if stored.shape[0] == rows:
            return np.asarray(stored, dtype=np.float32)
    vectors: npt.NDArray[np.float32] = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors)
    return vectors


def _cache_file(cache_dir: Path | None, dataset: BeirDataset) -> Path | None:
    if cache_dir is None:
        return None
    return cache_dir / f"baseline-dense-{dataset.corpus_hash()[:16]}.npy"
