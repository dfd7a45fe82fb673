"""Parsing under hard limits: ZIP members are inflated with a byte cap (declared sizes are not
trusted), and parser processes, with what they start, run under a memory limit."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from core.errors import (
    DamagedDocumentError,
    DecompressionBombError,
    DocumentParseError,
    ParseMemoryLimitError,
)
from core.settings import IngestSettings
from ingest.filetypes import FileType, check_unpacked_size
from ingest.parse_pool import ParserPool
from ingest.parsers import WORKER_ENV, parse_file
from tests.support.bombs import MB, forged_docx, forged_epub

LIMITS = IngestSettings()
A = TypeVar("A")
R = TypeVar("R")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "build", "file_type"),
    [("book.epub", forged_epub, FileType.EPUB), ("memo.docx", forged_docx, FileType.DOCX)],
)
def test_forged_sizes_are_caught_by_inflating(
    tmp_path: Path, name: str, build: Callable[..., bytes], file_type: FileType
) -> None:
    data = build(real_mb=30)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sum(i.file_size for i in archive.infolist()) < 6000  # the headers say ~5 KB
    assert archive.testzip() is None  # and the CRCs agree with them
    path = _write(tmp_path, name, data)
    with pytest.raises(DecompressionBombError, match=r"ingest\.max_compression_ratio"):
        check_unpacked_size(path, file_type, max_bytes=512 * MB, max_ratio=200)
    with pytest.raises(DecompressionBombError, match=r"inflates to at least \d+ bytes.*20971520"):
        check_unpacked_size(path, file_type, max_bytes=20 * MB, max_ratio=10_000)


def test_a_forged_size_under_every_cap_is_still_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "small.epub", forged_epub(real_mb=2, declared=1000))
    with pytest.raises(DecompressionBombError, match=r"declares 1000 bytes but inflates to \d+"):
        check_unpacked_size(path, FileType.EPUB, max_bytes=512 * MB, max_ratio=10_000)


class _NoParsing:
    def run(self, func: Callable[[A], R], arg: A, *, timeout_s: float) -> R:
        raise AssertionError("the bomb reached a parser")


def test_forged_bomb_fails_alone_in_parse_file_before_any_parser_runs(tmp_path: Path) -> None:
    path = _write(tmp_path, "book.epub", forged_epub(real_mb=30))
    with pytest.raises(DecompressionBombError, match="inflates"):
        parse_file(path, settings=LIMITS, runner=_NoParsing())


def test_truncated_deflate_stream_is_damaged(tmp_path: Path) -> None:
    data = bytearray(forged_docx(real_mb=1, declared=1000))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10 : start + 40] = b"\xff" * 30  # garbage inside the deflate stream
    path = _write(tmp_path, "broken.docx", bytes(data))
    with pytest.raises((DamagedDocumentError, DecompressionBombError)):
        check_unpacked_size(path, FileType.DOCX, max_bytes=512 * MB, max_ratio=200)


# --- the memory limit -----------------------------------------------------------------------


def allocate(megabytes: int) -> int:
    """A job that needs `megabytes` MB at once."""
    return len(bytearray(megabytes * MB))


def child_allocates(megabytes: int) -> str:
    """A job whose child process needs `megabytes` MB (as pandoc or tesseract would)."""
    code = f"bytearray({megabytes * MB}); print('allocated')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout + done.stderr


def test_pool_memory_limit_fails_the_job_alone_and_recovers() -> None:
    with ParserPool(max_workers=1, memory_limit_mb=300) as pool:
        assert pool.run(allocate, 50, timeout_s=60) == 50 * MB
        with pytest.raises(ParseMemoryLimitError, match=r"exceeds the memory limit \(300 MB"):
            pool.run(allocate, 600, timeout_s=60)
        assert pool.run(allocate, 50, timeout_s=60) == 50 * MB


def test_pool_memory_limit_holds_for_the_processes_a_worker_starts() -> None:
    with ParserPool(max_workers=1, memory_limit_mb=300) as pool:
        assert "allocated" in pool.run(child_allocates, 50, timeout_s=60)
        assert "MemoryError" in pool.run(child_allocates, 600, timeout_s=60)


def test_pool_without_a_limit_allocates_freely() -> None:
    with ParserPool(max_workers=1) as pool:
        assert pool.run(allocate, 600, timeout_s=60) == 600 * MB


def test_a_limit_too_small_to_start_a_parser_says_so() -> None:
    with (
        ParserPool(
            max_workers=1, warmup="ingest.formats:warm_up_worker", memory_limit_mb=150
        ) as pool,
        pytest.raises(DocumentParseError, match=r"\(150 MB, ingest\.parse_memory_mb\): too little"),
    ):
        pool.run(len, "x", timeout_s=60)


def loaded(prefixes: tuple[str, ...]) -> list[str]:
    """The modules this process has imported whose names start with one of `prefixes`."""
    return sorted(name for name in sys.modules if name.startswith(prefixes))


_EMBEDDING_STACK = ("onnxruntime", "retrieval", "fastembed", "sentence_transformers", "qdrant")


def test_documents_parse_under_the_default_limit_without_the_embedding_stack() -> None:
    """The default ingest.parse_memory_mb fits ordinary documents (pandoc for ODT and RTF,
    OCR-free PDF, DOCX); and the model and index never load in the limited processes."""
    settings = IngestSettings(file_timeout_s=120)
    samples = Path(__file__).resolve().parents[2] / "data" / "samples"
    names = ("fake-memo.pdf", "trustee-handbook-chapter4.docx", "simple.odt", "fake-doc.rtf")
    with ParserPool(
        max_workers=1,
        warmup="ingest.formats:warm_up_worker",
        env=WORKER_ENV,
        memory_limit_mb=settings.parse_memory_mb,
    ) as pool:
        for name in names:
            assert parse_file(samples / name, settings=settings, runner=pool).elements
        assert pool.run(loaded, _EMBEDDING_STACK, timeout_s=60) == []
