"""Evaluation datasets: BEIR retrieval sets, QA jsonl, and PubMedQA / MTRAG-UN as shipped.

A BEIR dataset is a folder with ``corpus.jsonl`` (``_id``, ``title``, ``text``),
``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``,
``score``; graded relevance allowed, header optional). Queries without qrels in the split
are skipped. The corpus is streamed, so a large one never sits in memory.

A QA dataset is a list of questions (or multi-turn conversations) with optional gold answer,
relevant document ids and answerability, plus the corpus to ask them over when one ships with
it. Three formats load into it (see `load_qa`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from core.errors import InvalidDatasetError

logger = logging.getLogger(__name__)

QAFormat = Literal["auto", "qa", "pubmedqa", "mtrag"]
Role = Literal["system", "user", "assistant"]

_PUBMEDQA_FILE = "pqal.jsonl"
_MTRAG_FILE = "reference.jsonl"
_CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")


@dataclass(frozen=True)
class CorpusRecord:
    """One document of an evaluation corpus."""

    doc_id: str
    title: str
    text: str


# --- BEIR ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR dataset for one split: the queries that have qrels, and a streamed corpus."""

    name: str
    path: Path
    split: str
    corpus_file: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def iter_corpus(self) -> Iterator[CorpusRecord]:
        """The corpus records in file order."""
        return read_corpus(self.corpus_file)

    def corpus_hash(self) -> str:
        """sha256 of the corpus file's bytes (the index cache key starts from it)."""
        return file_digest(self.corpus_file)


def load_beir(path: Path, *, split: str = "test") -> BeirDataset:
    """Load a BEIR folder for one split; InvalidDatasetError says what is missing or malformed."""
    if not path.is_dir():
        raise InvalidDatasetError(f"{path} is not a folder (expected a BEIR dataset)")
    corpus_file = _corpus_file(path)
    qrels = read_qrels(_qrels_file(path, split))
    queries = read_queries(_required(path / "queries.jsonl"))
    kept = {qid: queries[qid] for qid in qrels if qid in queries}
    missing = len(qrels) - len(kept)
    if missing:
        logger.warning(
            "%d queries of qrels/%s.tsv are not in queries.jsonl; skipped", missing, split
        )
    if not kept:
        raise InvalidDatasetError(f"no query of qrels/{split}.tsv is in {path / 'queries.jsonl'}")
    return BeirDataset(
        name=path.resolve().name,
        path=path,
        split=split,
        corpus_file=corpus_file,
        queries=kept,
        qrels={qid: qrels[qid] for qid in kept},
    )


def _required(path: Path) -> Path:
    if not path.is_file():
        raise InvalidDatasetError(f"missing {path}")
    return path


def _corpus_file(folder: Path) -> Path:
    for name in _CORPUS_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise InvalidDatasetError(f"missing {folder / 'corpus.jsonl'}")


def _qrels_file(folder: Path, split: str) -> Path:
    path = folder / "qrels" / f"{split}.tsv"
    if path.is_file():
        return path
    available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
    raise InvalidDatasetError(
        f"missing {path}; splits available: {', '.join(available) or 'none'}", param="split"
    )


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8", newline="")


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidDatasetError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InvalidDatasetError(f"{path}:{number}: expected a JSON object")
            yield number, row


def read_corpus(path: Path) -> Iterator[CorpusRecord]:
    """Records of a BEIR corpus.jsonl (``_id`` required; ``title`` and ``text`` may be absent)."""
    for number, row in _json_lines(path):
        doc_id = row.get("_id")
        if doc_id is None or str(doc_id) == "":
            raise InvalidDatasetError(f"{path}:{number}: record without _id")
        yield CorpusRecord(str(doc_id), str(row.get("title") or ""), str(row.get("text") or ""))


def read_queries(path: Path) -> dict[str, str]:
    """query id -> text from a BEIR queries.jsonl."""
    queries: dict[str, str] = {}
    for number, row in _json_lines(path):
        if "_id" not in row or not isinstance(row.get("text"), str):
            raise InvalidDatasetError(f"{path}:{number}: a query needs _id and text")
        queries[str(row["_id"])] = row["text"]
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: graded relevance} from a BEIR qrels TSV (header row optional)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for number, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise InvalidDatasetError(f"{path}:{number}: expected query-id, corpus-id, score")
            try:
                score = int(float(row[-1]))
            except ValueError as exc:
                if number == 1:
                    continue  # the header row
                raise InvalidDatasetError(
                    f"{path}:{number}: score {row[-1]!r} is not a number"
                ) from exc
            # TREC-style 4-column qrels carry an iteration column between the ids
            qrels.setdefault(row[0].strip(), {})[row[-2].strip()] = score
    if not qrels:
        raise InvalidDatasetError(f"{path} has no judgements")
    return qrels


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- QA ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One conversation turn of a QA item."""

    role: Role
    content: str


@dataclass(frozen=True)
class QAItem:
    """A question (the last user turn of `messages`) and what a good answer looks like.

    `answerable` None means refusal is not scored for this item (e.g. an underspecified
    question, where the right move is to ask back).
    """

    qid: str
    messages: tuple[Turn, ...]
    answer: str | None = None
    relevant_doc_ids: frozenset[str] = frozenset()
    answerable: bool | None = True
    metadata: Mapping[str, Any] = field(default_factory=dict)
    answers: tuple[str, ...] = ()
    """Short gold answers (SQuAD-style spans), any of which a reply may contain; () if none."""

    @property
    def question(self) -> str:
        return next(t.content for t in reversed(self.messages) if t.role == "user")


@dataclass(frozen=True)
class QADataset:
    """Questions, and the corpus they are asked over (empty: use an existing index)."""

    name: str
    items: tuple[QAItem, ...]
    corpus: tuple[CorpusRecord, ...] = ()

    def corpus_hash(self) -> str:
        """A digest of the corpus records, in order."""
        digest = hashlib.sha256()
        for record in self.corpus:
            digest.update(json.dumps([record.doc_id, record.title, record.text]).encode())
        return digest.hexdigest()


def load_qa(
    path: Path,
    *,
    fmt: QAFormat = "auto",
    corpus: Path | None = None,
    split: str | None = None,
) -> QADataset:
    """Load a QA dataset.

    Formats: ``qa`` (our jsonl; a ``corpus.jsonl`` beside it, or `corpus`, is its corpus),
    ``pubmedqa`` (a folder with pqal.jsonl: each question's abstract is one document; split
    ``test`` by default, ``all`` for every question), ``mtrag`` (MTRAG-UN's reference.jsonl or
    its folder: the pooled reference passages are the corpus). ``auto`` picks by what is there.
    """
    kind = _detect(path) if fmt == "auto" else fmt
    if kind == "pubmedqa":
        return load_pubmedqa(path, split=split or "test")
    if kind == "mtrag":
        return load_mtrag(path)
    return load_qa_jsonl(path, corpus=corpus)


def _detect(path: Path) -> QAFormat:
    if path.is_dir() and (path / _PUBMEDQA_FILE).is_file():
        return "pubmedqa"
    if (path.is_dir() and (path / _MTRAG_FILE).is_file()) or path.name == _MTRAG_FILE:
        return "mtrag"
    if path.is_file():
        return "qa"
    raise InvalidDatasetError(
        f"{path}: expected a QA jsonl file, a PubMedQA folder (pqal.jsonl) "
        "or an MTRAG-UN reference.jsonl"
    )


def load_qa_jsonl(path: Path, *, corpus: Path | None = None) -> QADataset:
    """Our QA jsonl: one object per line (see `qa_item`); corpus.jsonl beside it if present."""
    _required(path)
    items = tuple(qa_item(row, where=f"{path}:{n}") for n, row in _json_lines(path))
    if not items:
        raise InvalidDatasetError(f"{path} holds no questions")
    corpus_path = corpus or next(
        (path.parent / n for n in _CORPUS_NAMES if (path.parent / n).is_file()), None
    )
    records = tuple(read_corpus(_required(corpus_path))) if corpus_path else ()
    return QADataset(name=path.stem, items=items, corpus=records)


def qa_item(row: Mapping[str, Any], *, where: str) -> QAItem:
    """One QA jsonl object.

    ``question`` (a string) or ``messages`` (``[{"role", "content"}]``, ending with a user
    turn); optional ``id``, ``answer``, ``answers`` (short gold answers, a list),
    ``relevant_doc_ids`` (list), ``answerable`` (bool or null, default true), ``metadata``
    (object).
    """
    messages = _messages(row, where=where)
    relevant = row.get("relevant_doc_ids") or []
    answerable = row.get("answerable", True)
    if not isinstance(relevant, list) or not (answerable is None or isinstance(answerable, bool)):
        raise InvalidDatasetError(f"{where}: relevant_doc_ids must be a list, answerable a boolean")
    answer = row.get("answer")
    answers = row.get("answers") or []
    if not isinstance(answers, list):
        raise InvalidDatasetError(f"{where}: answers must be a list of strings")
    return QAItem(
        qid=str(row.get("id") or where.rsplit(":", 1)[-1]),
        messages=messages,
        answer=str(answer) if answer is not None else None,
        relevant_doc_ids=frozenset(str(d) for d in relevant),
        answerable=answerable,
        metadata=dict(row.get("metadata") or {}),
        answers=tuple(str(a) for a in answers if str(a).strip()),
    )


def _messages(row: Mapping[str, Any], *, where: str) -> tuple[Turn, ...]:
    if isinstance(row.get("question"), str) and row["question"].strip():
        return (Turn("user", row["question"].strip()),)
    raw = row.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidDatasetError(f"{where}: needs a question or a non-empty messages list")
    turns: list[Turn] = []
    for message in raw:
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "user", "assistant") or not isinstance(
            message.get("content"), str
        ):
            raise InvalidDatasetError(f"{where}: each message needs a role and a content string")
        turns.append(Turn(role, message["content"]))
    if turns[-1].role != "user":
        raise InvalidDatasetError(f"{where}: the last message must be the user's question")
    return tuple(turns)


# --- PubMedQA (PQA-L as shipped in ../shared/datasets/pubmedqa) ----------------------------


def load_pubmedqa(path: Path, *, split: str = "test") -> QADataset:
    """PubMedQA PQA-L: every abstract is a document; questions of `split` (test|train_dev|all).

    Gold answer: the abstract's conclusion (``long_answer``); relevant: its own PMID.
    """
    rows = [row for _, row in _json_lines(_required(_in_folder(path, _PUBMEDQA_FILE)))]
    corpus = tuple(
        CorpusRecord(str(r["id"]), "", "\n\n".join(str(c) for c in r.get("contexts") or []))
        for r in rows
    )
    items = tuple(
        QAItem(
            qid=str(r["id"]),
            messages=(Turn("user", str(r["question"])),),
            answer=str(r.get("long_answer") or "") or None,
            relevant_doc_ids=frozenset({str(r["id"])}),
            answerable=True,
            metadata={"final_decision": r.get("final_decision"), "split": r.get("split")},
        )
        for r in rows
        if split == "all" or r.get("split") == split
    )
    if not items:
        raise InvalidDatasetError(f"PubMedQA has no questions in split {split!r}", param="split")
    return QADataset(name=f"pubmedqa-{split}", items=items, corpus=corpus)


def _in_folder(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


# --- MTRAG-UN (reference generation tasks as shipped in ../shared/datasets/mtrag-un) -------

_ANSWERABILITY: dict[str, bool | None] = {
    "ANSWERABLE": True,
    "PARTIAL": True,
    "UNANSWERABLE": False,
    "UNDERSPECIFIED": None,  # the right reply asks back: neither an answer nor a refusal
}
_SPEAKERS: dict[str, Role] = {"user": "user", "agent": "assistant"}


def load_mtrag(path: Path) -> QADataset:
    """MTRAG-UN tasks: the conversation so far, the reference answer, the reference passages.

    The full corpora are not shipped, so the corpus is every task's reference passages pooled
    (each passage once, by document_id): the other tasks' passages are the distractors.
    """
    rows = [row for _, row in _json_lines(_required(_in_folder(path, _MTRAG_FILE)))]
    corpus: dict[str, CorpusRecord] = {}
    for row in rows:
        for ctx in row.get("contexts") or []:
            doc_id = str(ctx["document_id"])
            corpus.setdefault(doc_id, CorpusRecord(doc_id, "", str(ctx.get("text") or "").strip()))
    items = tuple(_mtrag_item(row) for row in rows)
    return QADataset(name="mtrag-un", items=items, corpus=tuple(corpus.values()))


def _mtrag_item(row: Mapping[str, Any]) -> QAItem:
    turns = tuple(
        Turn(_SPEAKERS[t["speaker"]], str(t["text"]))
        for t in row["input"]
        if t.get("speaker") in _SPEAKERS
    )
    labels = row.get("answerability") or ["ANSWERABLE"]
    targets = row.get("targets") or []
    return QAItem(
        qid=str(row["task_id"]),
        messages=turns,
        answer=str(targets[0]["text"]) if targets else None,
        relevant_doc_ids=frozenset(str(c["document_id"]) for c in row.get("contexts") or []),
        answerable=_ANSWERABILITY.get(str(labels[0]), True),
        metadata={"collection": row.get("Collection"), "answerability": labels[0]},
    )
