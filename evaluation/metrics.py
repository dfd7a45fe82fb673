"""Pure metric functions: IR relevance (through pytrec_eval, trec_eval's C code) and answer quality.

Retrieval metrics are trec_eval's, as BEIR reports them: nDCG@k (``ndcg_cut``, linear gain
on graded relevance), Recall@k, MAP@100 (``map_cut``) and MRR@k (``recip_rank`` on the run
cut at k). trec_eval orders a run by score and breaks ties by document id, so runs are passed
with scores that strictly decrease with rank: the metric sees exactly our ranking.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import pytrec_eval

Qrels = Mapping[str, Mapping[str, int]]
Ranking = Mapping[str, Sequence[str]]
"""query id -> document ids, best first."""

DEEP_CUTOFF = 100
_MARKER = re.compile(r"\[doc(\d+)\]")
_FIRST_CITED = re.compile(r"(?:\s*\[doc\d+\])+[.!?]?")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def retrieval_metric_names(k: int = 10) -> tuple[str, ...]:
    """The metrics `retrieval_metrics` returns, in report order."""
    return (f"ndcg@{k}", f"recall@{k}", f"recall@{DEEP_CUTOFF}", f"mrr@{k}", f"map@{DEEP_CUTOFF}")


def retrieval_metrics(
    qrels: Qrels, ranking: Ranking, *, k: int = 10
) -> dict[str, dict[str, float]]:
    """Per query: nDCG@k, Recall@k, Recall@100, MRR@k, MAP@100 (queries of `qrels` only).

    A query of `qrels` absent from `ranking` retrieved nothing and scores 0 everywhere.
    """
    judged = {q: {d: int(r) for d, r in docs.items()} for q, docs in qrels.items()}
    deep = _trec_eval(
        judged, _scored(ranking, judged, depth=None), {"ndcg_cut", "recall", "map_cut"}, k
    )
    top = _trec_eval(judged, _scored(ranking, judged, depth=k), {"recip_rank"}, k)
    names = retrieval_metric_names(k)
    out: dict[str, dict[str, float]] = {}
    for qid in judged:
        d, t = deep.get(qid, {}), top.get(qid, {})
        values = (
            d.get(f"ndcg_cut_{k}", 0.0),
            d.get(f"recall_{k}", 0.0),
            d.get(f"recall_{DEEP_CUTOFF}", 0.0),
            t.get("recip_rank", 0.0),
            d.get(f"map_cut_{DEEP_CUTOFF}", 0.0),
        )
        out[qid] = dict(zip(names, (float(v) for v in values), strict=True))
    return out


def _scored(ranking: Ranking, qrels: Qrels, *, depth: int | None) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for qid in qrels:
        docs = _unique(ranking.get(qid, ()))[:depth]
        run[qid] = {doc: float(len(docs) - rank) for rank, doc in enumerate(docs)}
    return run


def _unique(docs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(docs))


def _trec_eval(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], measures: set[str], k: int
) -> dict[str, dict[str, float]]:
    cutoffs = ",".join(str(c) for c in sorted({k, DEEP_CUTOFF}))
    spec = {m if m == "recip_rank" else f"{m}.{cutoffs}" for m in measures}
    nonempty = {q: docs for q, docs in run.items() if docs}
    if not nonempty:
        return {}
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, spec)
    return dict(evaluator.evaluate(nonempty))


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values (None when there are none)."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def mean_by_metric(per_query: Mapping[str, Mapping[str, float | None]]) -> dict[str, float | None]:
    """Metric -> mean over queries (undefined values left out)."""
    names = list(dict.fromkeys(n for row in per_query.values() for n in row))
    return {name: mean(row.get(name) for row in per_query.values()) for name in names}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- answers -------------------------------------------------------------------------------


def normalize_answer(text: str) -> list[str]:
    """SQuAD normalisation: lower case, no punctuation, no articles, [docN] markers dropped."""
    text = _MARKER.sub(" ", text.lower()).translate(_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def token_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 between an answer and the gold answer (SQuAD's definition)."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def contains_answer(text: str, golds: Iterable[str]) -> bool:
    """Whether a gold answer appears in the text, both SQuAD-normalised (word-aligned)."""
    padded = f" {' '.join(normalize_answer(text))} "
    return any((gold := " ".join(normalize_answer(g))) and f" {gold} " in padded for g in golds)


def first_sentence(answer: str) -> str:
    """The answer's first sentence: up to its first citation marker (and the punctuation after
    it), as the extractive answer cites each sentence; else up to the first sentence end."""
    marker = _FIRST_CITED.search(answer)
    if marker:
        return answer[: marker.end()]
    end = _SENTENCE_END.search(answer)
    return answer[: end.start()] if end else answer


def citation_markers(text: str) -> list[int]:
    """The N of every [docN] marker in an answer, in order."""
    return [int(n) for n in _MARKER.findall(text)]


def citation_precision(cited: Iterable[str], relevant: Iterable[str]) -> float | None:
    """Share of the cited documents that are relevant (None: nothing cited or no gold)."""
    cited_set, relevant_set = set(cited), set(relevant)
    if not cited_set or not relevant_set:
        return None
    return len(cited_set & relevant_set) / len(cited_set)


def citation_recall(cited: Iterable[str], relevant: Iterable[str]) -> float | None:
    """Share of the relevant documents that are cited (None: no gold)."""
    relevant_set = set(relevant)
    if not relevant_set:
        return None
    return len(set(cited) & relevant_set) / len(relevant_set)


def refusal_correct(refused: bool, answerable: bool | None) -> bool | None:
    """Unanswerable refused, answerable answered (None when answerability is not scored)."""
    if answerable is None:
        return None
    return refused != answerable


def hallucinated_citations(
    markers: Sequence[int], citations: Sequence[str], retrieved: Iterable[str] | None
) -> int:
    """How many markers cite nothing real.

    A marker [docN] is hallucinated when N names no returned citation (1-based), or when its
    citation is a chunk that the retrieval did not return (`retrieved`: chunk ids; None when
    the server did not say what it retrieved).
    """
    known = set(retrieved) if retrieved is not None else None
    bad = 0
    for n in markers:
        if not 1 <= n <= len(citations) or (known is not None and citations[n - 1] not in known):
            bad += 1
    return bad
