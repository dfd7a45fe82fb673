"""No fragment in an extractive answer: questions over every sample document, through the real
pipeline and AnswerService, and every quoted sentence checked (issue 13)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from api.services import open_services
from core.errors import OndataError
from core.settings import Settings
from ingest.parsers import doc_id_for
from ingest.pipeline import SourceFile
from ingest.service import open_pipeline, parser_for
from ingest.sources import source_files
from retrieval.answer import AnswerRequest
from retrieval.chat import ChatMessage
from retrieval.citations import NOT_FOUND_MESSAGE
from retrieval.evidence import OUTSIDE_SUPPORT_NOTE

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
SHARED_MAX_BYTES = 600_000
"""Shared documents above this (a 400-page PDF, a 2 MB 10-K) are left out: minutes to ingest."""

ENUMERATOR = re.compile(r"^(\(?(\d{1,3}|[a-z]|[ivx]{1,4})[.)]|[\u2022\u25cf\u25aa\u25e6*-])(\s|$)")
SEPARATOR_ROW = re.compile(r"\|\s*:?-{3,}:?\s*\|")
QUOTED = re.compile(r"(.+?)\s*(?:\[doc\d+\])+[.!?]?(?=\s|$)")


def quoted_sentences(answer: str) -> list[str]:
    """The sentences an extractive answer quotes (each ends with its [docN] marker)."""
    body = answer.removeprefix(OUTSIDE_SUPPORT_NOTE).strip()
    return [m.group(1).strip() for m in QUOTED.finditer(body)]


def fragments(answer: str) -> list[str]:
    """Quoted sentences no reader should get: under four words, an enumerator, a separator."""
    return [
        s
        for s in quoted_sentences(answer)
        if len(s.split()) < 4 or ENUMERATOR.match(s) or SEPARATOR_ROW.search(s) or "---" in s
    ]


def test_fragments_are_recognised() -> None:
    answer = (
        "Whenever possible [doc1]. d [doc2]. Team: Blues, Location: STL [doc1]. "
        "| --- | --- | [doc3]. a. General Ledger entries are kept [doc1]."
    )
    assert fragments(answer) == [
        "Whenever possible",
        "d",
        "| --- | --- |",
        "a. General Ledger entries are kept",
    ]
    assert quoted_sentences(f"{OUTSIDE_SUPPORT_NOTE} It opens at eight [doc1].") == [
        "It opens at eight"
    ]


def _questions(files: list[SourceFile], settings: Settings, chunker_size: int) -> list[str]:
    """One question per chunk of every file: its opening words, asked back."""
    from ingest.chunking import Chunker

    parse, chunker = parser_for(settings), Chunker(chunk_size=chunker_size, chunk_overlap=32)
    questions = []
    for src in files:
        try:
            document = parse(src)
        except OndataError:  # ingestion reports it (empty, password-protected, ...)
            continue
        for chunk in chunker.chunk(document):
            words = chunk.content.split()[:12]
            if len(words) >= 3:
                questions.append("What about " + " ".join(words) + "?")
    return questions


async def _ask_everything(files: list[SourceFile], settings: Settings) -> dict[str, list[str]]:
    with open_pipeline(settings, "quotes") as pipeline:
        report = pipeline.ingest_files(files, parse=parser_for(settings))
        size = pipeline.chunker.chunk_size
    assert report.chunks_written > 0
    bad: dict[str, list[str]] = {}
    async with open_services(settings) as services:
        for question in _questions(files, settings, size):
            for in_scope in (True, False):
                request = AnswerRequest(
                    messages=(ChatMessage("user", question),),
                    index_name="quotes",
                    strictness=1,
                    in_scope=in_scope,
                )
                answer = await services.answers.answer(request)
                if answer.content != NOT_FOUND_MESSAGE and fragments(answer.content):
                    bad[question] = fragments(answer.content)
    return bad


@pytest.mark.slow
async def test_no_answer_over_the_samples_quotes_a_fragment(settings: Settings) -> None:
    files = source_files([SAMPLES], doc_id_for=doc_id_for)
    assert len(files) == len(list(SAMPLES.iterdir()))
    assert await _ask_everything(files, settings) == {}


@pytest.mark.slow
@pytest.mark.dataset
async def test_no_answer_over_the_shared_documents_quotes_a_fragment(
    settings: Settings, shared_datasets: Path
) -> None:
    files = [
        f
        for f in source_files([shared_datasets / "documents"], doc_id_for=doc_id_for)
        if f.path.stat().st_size <= SHARED_MAX_BYTES
    ]
    assert await _ask_everything(files, settings) == {}
