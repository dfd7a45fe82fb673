"""Evaluation dataset loaders: BEIR, QA jsonl, PubMedQA and MTRAG-UN as shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InvalidDatasetError
from evaluation.datasets import load_beir, load_qa, read_qrels

SMOKE = Path(__file__).resolve().parents[2] / "data" / "eval" / "smoke"


def test_load_beir_keeps_only_queries_with_qrels_and_graded_relevance() -> None:
    dataset = load_beir(SMOKE, split="test")
    assert "q9" not in dataset.queries  # in queries.jsonl, not judged in the split
    assert set(dataset.queries) == set(dataset.qrels)
    assert dataset.qrels["q1"] == {"travel": 2, "expenses": 1}
    assert dataset.qrels["q5"]["passwords"] == 0
    records = list(dataset.iter_corpus())
    assert [r.doc_id for r in records][:2] == ["travel", "vacation"]
    assert records[0].title == "Travel policy"
    assert len(dataset.corpus_hash()) == 64


def test_load_beir_names_the_missing_split(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (tmp_path / "qrels" / "dev.tsv").write_text("q\td\t1\n")
    with pytest.raises(InvalidDatasetError, match="splits available: dev"):
        load_beir(tmp_path, split="test")


def test_read_qrels_accepts_no_header_and_trec_four_columns(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("q1\t0\td1\t2\nq1\t0\td2\t0\n")
    assert read_qrels(path) == {"q1": {"d1": 2, "d2": 0}}


def test_read_qrels_rejects_a_bad_score_after_the_header(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(InvalidDatasetError, match=":2: score 'high'"):
        read_qrels(path)


def test_load_qa_jsonl_reads_questions_conversations_and_the_corpus_beside_it() -> None:
    dataset = load_qa(SMOKE / "qa.jsonl")
    by_id = {item.qid: item for item in dataset.items}
    assert by_id["a1"].relevant_doc_ids == frozenset({"travel"})
    assert by_id["a4"].messages[1].role == "assistant"
    assert by_id["a4"].question.startswith("Does the company pay")
    assert by_id["u1"].answerable is False
    assert {r.doc_id for r in dataset.corpus} >= {"travel", "remote"}


def test_load_qa_jsonl_reads_short_gold_answers(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"question": "When?", "answer": "1989", "answers": ["1989", "in 1989", ""]}\n'
        '{"question": "Who?", "answerable": false}\n'
    )
    first, second = load_qa(path).items
    assert first.answers == ("1989", "in 1989")
    assert second.answers == ()
    path.write_text('{"question": "When?", "answers": "1989"}\n')
    with pytest.raises(InvalidDatasetError, match="answers must be a list"):
        load_qa(path)


def test_load_qa_jsonl_says_which_line_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "ok?"}\n{"messages": [{"role": "assistant", "content": "hi"}]}\n')
    with pytest.raises(
        InvalidDatasetError, match=r"qa\.jsonl:2: the last message must be the user"
    ):
        load_qa(path)


def test_load_pubmedqa_makes_each_abstract_a_document(tmp_path: Path) -> None:
    rows = [
        {
            "id": "1",
            "question": "Q1?",
            "contexts": ["a", "b"],
            "long_answer": "yes because",
            "final_decision": "yes",
            "split": "test",
        },
        {
            "id": "2",
            "question": "Q2?",
            "contexts": ["c"],
            "long_answer": "no",
            "final_decision": "no",
            "split": "train_dev",
        },
    ]
    (tmp_path / "pqal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_qa(tmp_path)
    assert [i.qid for i in dataset.items] == ["1"]
    assert dataset.items[0].relevant_doc_ids == frozenset({"1"})
    assert [r.text for r in dataset.corpus] == ["a\n\nb", "c"]  # every abstract, any split
    assert len(load_qa(tmp_path, split="all").items) == 2


def test_load_mtrag_pools_reference_passages_and_maps_answerability(tmp_path: Path) -> None:
    def task(tid: str, label: str, docs: list[str]) -> dict[str, object]:
        return {
            "task_id": tid,
            "input": [
                {"speaker": "user", "text": "hi"},
                {"speaker": "agent", "text": "hello"},
                {"speaker": "user", "text": f"question {tid}"},
            ],
            "contexts": [{"document_id": d, "text": f"text of {d}"} for d in docs],
            "targets": [{"speaker": "agent", "text": "the answer"}],
            "answerability": [label],
            "Collection": "govt",
        }

    rows = [
        task("t1", "ANSWERABLE", ["p1", "p2"]),
        task("t2", "UNANSWERABLE", []),
        task("t3", "UNDERSPECIFIED", ["p2"]),
    ]
    (tmp_path / "reference.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_qa(tmp_path)
    assert [r.doc_id for r in dataset.corpus] == ["p1", "p2"]
    assert [i.answerable for i in dataset.items] == [True, False, None]
    assert dataset.items[0].messages[1].role == "assistant"
    assert dataset.items[0].question == "question t1"


@pytest.mark.dataset
def test_shared_qa_datasets_load_as_shipped(shared_datasets: Path) -> None:
    pubmed = load_qa(shared_datasets / "pubmedqa")
    assert (len(pubmed.items), len(pubmed.corpus)) == (500, 1000)
    mtrag = load_qa(shared_datasets / "mtrag-un")
    assert len(mtrag.items) == 507
    assert sum(1 for i in mtrag.items if i.answerable is False) == 97
    assert all(i.messages[-1].role == "user" for i in mtrag.items)
