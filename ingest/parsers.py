"""Real documents in, structured Documents out: limits, type detection, isolated extraction.

    doc = parse_file(Path("handbook.pdf"), settings=settings.ingest)

Extraction runs in a reusable worker process (see ingest.parse_pool) that is killed when a
file exceeds settings.file_timeout_s. Importing this module is cheap; the parsers (unstructured,
pdfminer, spaCy) load in the worker.
"""

from __future__ import annotations

import atexit
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from core.errors import FileTooLargeError, NoExtractableTextError, NotFoundError
from core.models import Document, Element
from core.settings import IngestSettings
from ingest.elements import first_title
from ingest.filetypes import (
    SUPPORTED_EXTENSIONS,
    FileType,
    check_unpacked_size,
    detect_file_type,
)
from ingest.parse_pool import ParserPool, ParseRunner

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "ExtractRequest",
    "Extracted",
    "default_pool",
    "doc_id_for",
    "parse_file",
]

DEFAULT_POOL_WORKERS = 2
# One thread per worker: BLAS (spaCy) and OpenMP (tesseract) threads fighting over a few cores
# made parsing 2-5x slower on a 2-core machine; parallelism comes from workers instead.
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OMP_THREAD_LIMIT": "1",
}
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class ExtractRequest:
    """One file for a worker to extract (the path travels as a string)."""

    path: str
    file_type: FileType
    ocr_languages: str = "eng"
    depth: int = 0


@dataclass(frozen=True)
class Extracted:
    """A file's elements, the title its metadata gives (if any), and facts about the parse."""

    elements: tuple[Element, ...]
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_file(
    path: Path,
    *,
    settings: IngestSettings,
    doc_id: str | None = None,
    url: str | None = None,
    acl_groups: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    runner: ParseRunner | None = None,
) -> Document:
    """Parse one file into a Document with structured elements.

    Raises NotFoundError, FileTooLargeError, UnsupportedFileTypeError (415), or a
    DocumentParseError subclass (422) with a one-line reason: EncryptedDocumentError,
    DamagedDocumentError, NoExtractableTextError, ParseTimeoutError.
    `runner` defaults to the process-wide worker pool; pass InlineParseRunner() to parse
    in the calling process (no timeout).
    """
    path = Path(path)
    size = _checked_size(path, settings)
    file_type = detect_file_type(path)
    check_unpacked_size(
        path,
        file_type,
        max_bytes=settings.max_unpacked_bytes,
        max_ratio=settings.max_compression_ratio,
    )
    request = ExtractRequest(str(path.resolve()), file_type, settings.ocr_languages)
    extracted = (runner or default_pool(settings.parse_memory_mb)).run(
        _extract_job, request, timeout_s=settings.file_timeout_s
    )
    elements = tuple(e for e in extracted.elements if e.text.strip())
    if not elements:
        raise NoExtractableTextError("no extractable text")
    source = url or str(path.resolve())
    facts = {"file_type": file_type.value, "size_bytes": size, **extracted.metadata}
    return Document(
        doc_id=doc_id or doc_id_for(source),
        source=source,
        title=extracted.title or first_title(elements) or path.stem,
        filepath=path.name,
        url=url,
        content_hash=file_sha256(path),
        elements=elements,
        acl_groups=tuple(acl_groups),
        metadata={**facts, **(metadata or {})},
    )


def _extract_job(request: ExtractRequest) -> Extracted:
    """The job sent to a worker; a trampoline so the parent need not import the parsers."""
    from ingest.formats import extract

    return extract(request)


def _checked_size(path: Path, settings: IngestSettings) -> int:
    if not path.is_file():
        raise NotFoundError(f"no such file: {path}")
    size = path.stat().st_size
    if size > settings.max_file_bytes:
        raise FileTooLargeError(
            f"file is {size} bytes; the limit is {settings.max_file_bytes} (ingest.max_file_bytes)"
        )
    if size == 0:
        raise NoExtractableTextError("no extractable text: the file is empty")
    return size


def file_sha256(path: Path) -> str:
    """sha256 of the file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def doc_id_for(source: str) -> str:
    """A stable id for a file path (made absolute) or URL: readable slug + 12 hex of its hash.

    doc_id_for("/data/HR Handbook.pdf") -> "hr-handbook-pdf-3c1f0e9a7b2d"
    """
    key = (
        source.strip()
        if _URL_RE.match(source.strip())
        else str(Path(source).expanduser().resolve())
    )
    name = key.rstrip("/").rsplit("/", 1)[-1] or key
    slug = _SLUG_RE.sub("-", name.lower()).strip("-")[:48].strip("-") or "doc"
    return f"{slug}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}"


@cache
def default_pool(memory_limit_mb: int = 0) -> ParserPool:
    """The process-wide parser pool for a memory limit (ingest.parse_memory_mb; one limit in
    practice): workers start on first use and stop at interpreter exit. They only parse: the
    embedding model and the index stay in the calling process."""
    pool = ParserPool(
        max_workers=DEFAULT_POOL_WORKERS,
        warmup="ingest.formats:warm_up_worker",
        env=WORKER_ENV,
        memory_limit_mb=memory_limit_mb,
    )
    atexit.register(pool.close)
    return pool
