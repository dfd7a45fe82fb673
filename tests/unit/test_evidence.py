"""Which sentence answers, and whether any does (retrieval/evidence.py, pure)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from retrieval.evidence import (
    Answerability,
    QuestionKind,
    answerability,
    fits_kind,
    missing_names,
    question_kind,
    sentence_scores,
    term_coverage,
    term_weights,
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("When did the first French bible appear?", "when"),
        ("In what year was the treaty signed?", "when"),
        ("How many clergymen were there?", "number"),
        ("How much does a night cost?", "number"),
        ("Who developed the first steam pump?", "who"),
        ("Where do staff park?", "where"),
        ("In what country is Normandy?", "where"),
        ("What is a Turing machine?", None),
        ("Does the company pay anything when I work remotely?", None),  # "when" joins here
        ("Since when is the office open?", "when"),
    ],
)
def test_question_kind_reads_the_wording(question: str, kind: QuestionKind | None) -> None:
    assert question_kind(question) == kind


def test_a_sentence_fits_the_kind_of_answer_asked_for() -> None:
    assert fits_kind("It was first published in 1294.", "when", "When?")
    assert fits_kind("The canteen opens at eight.", "when", "When?")
    assert not fits_kind("It was published by a priest.", "when", "When?")
    assert fits_kind("About two million people lived there.", "number", "How many?")
    assert not fits_kind("Many people lived there.", "number", "How many?")
    assert fits_kind("Parents receive sixteen weeks of leave.", "number", "How many weeks?")
    # who: a name the question does not already hold
    assert fits_kind("The pump was developed by Thomas Savery.", "who", "Who developed it?")
    assert not fits_kind("The pump was developed by Savery.", "who", "Who was Savery?")
    assert fits_kind("Staff park in garage B.", "where", "Where do staff park?")
    assert fits_kind("Anything at all.", None, "What?")


def test_rare_query_terms_weigh_most_and_coverage_is_their_share() -> None:
    sentences = [{1, 2}, {1}, {1, 3}]
    weights = term_weights({1, 2, 9}, sentences)
    assert weights[9] > weights[2] > weights[1]  # absent, in one, in all three
    coverage = term_coverage(weights, sentences)
    assert coverage[0] > coverage[1] > 0.0
    assert coverage[0] == pytest.approx((weights[1] + weights[2]) / sum(weights.values()))
    assert list(term_coverage({}, sentences)) == [0.0, 0.0, 0.0]


def test_terms_and_kind_can_outrank_a_closer_cosine() -> None:
    scores = sentence_scores(
        np.array([0.60, 0.55, 0.60]), np.array([0.1, 0.8, 0.1]), [False, True, False], [1, 2, 3]
    )
    assert int(np.argmax(scores)) == 1
    assert scores[0] > scores[2]  # same evidence, the better ranked chunk wins


def test_missing_names_skip_sentence_openers_and_function_words() -> None:
    passages = ["The Normans settled in Normandy in 911."]
    assert missing_names("What did the Normans do in 911?", passages) == ()
    assert missing_names("Where did Rollo go in 1169? What happened?", passages) == (
        "rollo",
        "1169",
    )


def _verdict(question: str, best: str) -> Answerability:
    return answerability(
        question, passages=["x"], best=best, cosine=0.9, coverage=1.0, margin=0.1, kind_fits=True
    )


def test_negation_counts_in_a_one_sentence_question_only() -> None:
    best = "The Court held that Austria was entitled to restrict places."
    negated = _verdict("What was Austria not entitled to?", best)
    assert negated.negation_unmatched
    assert not negated.answerable(3)
    assert negated.answerable(2)
    longer = _verdict("I do not know this. What was Austria entitled to?", best)
    assert not longer.negation_unmatched


def test_higher_strictness_never_answers_what_a_lower_one_refuses() -> None:
    grid = itertools.product(
        [0.0, 0.2, 0.35, 0.45, 0.55, 0.7],
        [0.0, 0.5, 1.0],
        [(), ("x",)],
        [False, True],
        [True, False],
    )
    for cosine, coverage, missing, negation, fits in grid:
        verdict = Answerability(cosine, coverage, 0.0, missing, negation, fits)
        answered = [verdict.answerable(s) for s in range(1, 6)]
        assert answered == sorted(answered, reverse=True), (verdict, answered)
