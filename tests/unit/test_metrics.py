"""Metric functions: trec_eval's IR measures cross-checked by hand, and the answer metrics."""

from __future__ import annotations

import math

import pytest

from evaluation import metrics
from evaluation.datasets import QAItem, Turn
from evaluation.runs import answer_summary, score_reply
from retrieval.citations import NOT_FOUND_MESSAGE, is_refusal

QRELS = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1}}
RANKING = {"q1": ["d3", "d2", "dx", "d1"], "q2": []}


def test_retrieval_metrics_match_a_hand_computed_case() -> None:
    scores = metrics.retrieval_metrics(QRELS, RANKING, k=3)

    # q1 ranks d3 (rel 0), d2 (rel 1), dx (unjudged), d1 (rel 2). trec_eval's nDCG uses
    # linear gain: DCG@3 = 1/log2(3); the ideal order d1, d2, d3 gives 2/1 + 1/log2(3).
    ndcg = (1 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert scores["q1"]["ndcg@3"] == pytest.approx(ndcg)
    assert scores["q1"]["recall@3"] == pytest.approx(1 / 2)  # d2 of {d1, d2}
    assert scores["q1"]["recall@100"] == pytest.approx(1.0)
    assert scores["q1"]["mrr@3"] == pytest.approx(1 / 2)  # first relevant at rank 2
    assert scores["q1"]["map@100"] == pytest.approx((1 / 2 + 2 / 4) / 2)  # P@2, P@4 over 2 rel
    assert scores["q2"] == dict.fromkeys(metrics.retrieval_metric_names(3), 0.0)


def test_retrieval_metrics_keep_our_order_not_trec_evals_tie_break() -> None:
    # trec_eval breaks score ties by document id; ranks must decide, whatever the ids.
    scores = metrics.retrieval_metrics({"q": {"a": 1}}, {"q": ["z", "a"]}, k=1)
    assert scores["q"]["mrr@1"] == 0.0
    assert scores["q"]["recall@100"] == 1.0
    assert metrics.retrieval_metrics({"q": {"a": 1}}, {"q": ["a", "z"]}, k=1)["q"]["mrr@1"] == 1.0


def test_retrieval_metrics_mrr_is_cut_at_k() -> None:
    ranking = {"q": ["x1", "x2", "x3", "a"]}
    assert metrics.retrieval_metrics({"q": {"a": 1}}, ranking, k=3)["q"]["mrr@3"] == 0.0
    assert metrics.retrieval_metrics({"q": {"a": 1}}, ranking, k=10)["q"]["mrr@10"] == 0.25


def test_retrieval_metrics_ignore_duplicate_documents_in_a_ranking() -> None:
    scores = metrics.retrieval_metrics({"q": {"a": 1, "b": 1}}, {"q": ["a", "a", "b"]}, k=2)
    assert scores["q"]["recall@2"] == 1.0


def test_mean_by_metric_leaves_out_undefined_values() -> None:
    per_query: dict[str, dict[str, float | None]] = {
        "a": {"x": 1.0, "y": None},
        "b": {"x": 0.0, "y": 0.5},
    }
    assert metrics.mean_by_metric(per_query) == {"x": 0.5, "y": 0.5}
    assert metrics.mean([None, None]) is None


def test_percentile_interpolates_between_ranks() -> None:
    assert metrics.percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert metrics.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert metrics.percentile([], 50) is None


def test_token_f1_normalises_like_squad() -> None:
    assert metrics.token_f1("The hotel limit is 180 euros [doc1].", "180 euros") == pytest.approx(
        2 * (2 / 5) * 1 / (2 / 5 + 1)  # "hotel limit is 180 euros": 2 of 5 tokens
    )
    assert metrics.token_f1("Paris", "paris!") == 1.0
    assert metrics.token_f1("London", "Paris") == 0.0


def test_citation_precision_and_recall() -> None:
    assert metrics.citation_precision(["a", "b"], ["a"]) == 0.5
    assert metrics.citation_recall(["a", "b"], ["a", "c"]) == 0.5
    assert metrics.citation_precision([], ["a"]) is None
    assert metrics.citation_recall(["a"], []) is None


def test_refusal_is_recognised_by_retrieval_whatever_the_case_and_markers() -> None:
    assert is_refusal("the requested information is NOT available in the retrieved data")
    assert not is_refusal("The hotel limit is 180 euros [doc1].")
    assert metrics.refusal_correct(True, answerable=False) is True
    assert metrics.refusal_correct(True, answerable=True) is False
    assert metrics.refusal_correct(False, answerable=None) is None


def test_containment_is_word_aligned_after_squad_normalisation() -> None:
    reply = "The Normans were in Normandy in the 10th century [doc1]. Rollo led them [doc2]."
    assert metrics.contains_answer(reply, ["10th century", "x"])
    assert metrics.contains_answer(reply, ["the Normandy"])  # articles dropped on both sides
    assert not metrics.contains_answer(reply, ["0th century"])
    assert not metrics.contains_answer(reply, ["", "France"])


def test_first_sentence_ends_at_the_first_citation() -> None:
    reply = "Rollo led them [doc2][doc1]. The Normans were in Normandy [doc1]."
    assert metrics.first_sentence(reply) == "Rollo led them [doc2][doc1]."
    assert metrics.first_sentence("No markers here. Second one.") == "No markers here."


def test_short_answer_metrics_separate_refusals_by_answerability() -> None:
    refusal = {"choices": [{"message": {"content": NOT_FOUND_MESSAGE}}]}
    reply = {"choices": [{"message": {"content": "Walls [doc1]. It was 1989 [doc1]."}}]}
    asked = QAItem("a", (Turn("user", "When?"),), answer="1989", answers=("1989",))
    unanswerable = QAItem("u", (Turn("user", "Who?"),), answerable=False)
    rows = [
        {"answerable": True, "latency_ms": 1.0} | score_reply(asked, reply),
        {"answerable": True, "latency_ms": 1.0} | score_reply(asked, refusal),
        {"answerable": False, "latency_ms": 1.0} | score_reply(unanswerable, refusal),
    ]
    assert [r["first_sentence_contained"] for r in rows] == [False, False, None]
    summary = answer_summary(rows, judged=False)
    assert summary["answer_containment"] == 0.5
    assert summary["first_sentence_containment"] == 0.0
    assert summary["refusal_rate_unanswerable"] == 1.0
    assert summary["false_refusal_rate"] == 0.5


def test_hallucinated_citations_count_markers_that_cite_nothing_retrieved() -> None:
    markers = metrics.citation_markers("A [doc1]. B [doc2][doc3].")
    assert markers == [1, 2, 3]
    # doc3 names no citation; doc2's chunk was never retrieved
    assert metrics.hallucinated_citations(markers, ["c1", "c9"], ["c1", "c2"]) == 2
    assert metrics.hallucinated_citations(markers, ["c1", "c9"], None) == 1


def test_answer_scores_count_only_the_documents_the_markers_cite() -> None:
    citations = [{"doc_id": d, "chunk_id": f"{d}-0", "content": d} for d in ("a", "b", "c")]
    reply = {
        "choices": [
            {
                "message": {
                    "content": "X [doc3]. Y [doc3][doc9].",
                    "context": {"citations": citations},
                }
            }
        ]
    }
    item = QAItem("q", (Turn("user", "Which?"),), relevant_doc_ids=frozenset({"c", "b"}))
    row = score_reply(item, reply)
    # every document given to the model is listed; the answer cites the third only
    assert row["cited_doc_ids"] == ["c"]
    assert row["citation_precision"] == 1.0
    assert row["citation_recall"] == 0.5
    assert row["hallucinated"] == 1
