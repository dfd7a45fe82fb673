"""The one table of the file types ondata ingests: each type's extensions and MIME types.

Upload checks, the CLI's folder walk, folder jobs, URL content types and content sniffing
(ingest/filetypes.py) all derive from FILE_TYPES; the extractor of each type is chosen by
ingest/formats.py. The rule every path follows: a file is ingested when its extension is in
the table; its content may then correct which of these types it is (a PDF named .txt).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath


class FileType(StrEnum):
    """The formats ondata parses; the value is the canonical extension without the dot."""

    PDF = "pdf"
    DOCX = "docx"
    PPTX = "pptx"
    XLSX = "xlsx"
    HTML = "html"
    MD = "md"
    TXT = "txt"
    CSV = "csv"
    TSV = "tsv"
    EML = "eml"
    EPUB = "epub"
    RTF = "rtf"
    ODT = "odt"


@dataclass(frozen=True)
class FileTypeSpec:
    """One row of the table: the extensions a type is named with, the MIME types it is sent as."""

    type: FileType
    extensions: tuple[str, ...]
    mime_types: tuple[str, ...]


_OOXML = "application/vnd.openxmlformats-officedocument"

FILE_TYPES: tuple[FileTypeSpec, ...] = (
    FileTypeSpec(FileType.PDF, (".pdf",), ("application/pdf",)),
    FileTypeSpec(FileType.DOCX, (".docx",), (f"{_OOXML}.wordprocessingml.document",)),
    FileTypeSpec(FileType.PPTX, (".pptx",), (f"{_OOXML}.presentationml.presentation",)),
    FileTypeSpec(FileType.XLSX, (".xlsx",), (f"{_OOXML}.spreadsheetml.sheet",)),
    FileTypeSpec(FileType.HTML, (".html", ".htm"), ("text/html", "application/xhtml+xml")),
    FileTypeSpec(FileType.MD, (".md", ".markdown"), ("text/markdown",)),
    FileTypeSpec(FileType.TXT, (".txt",), ("text/plain",)),
    FileTypeSpec(FileType.CSV, (".csv",), ("text/csv",)),
    FileTypeSpec(FileType.TSV, (".tsv",), ("text/tab-separated-values",)),
    FileTypeSpec(FileType.EML, (".eml",), ("message/rfc822",)),
    FileTypeSpec(FileType.EPUB, (".epub",), ("application/epub+zip",)),
    FileTypeSpec(FileType.RTF, (".rtf",), ("application/rtf", "text/rtf")),
    FileTypeSpec(FileType.ODT, (".odt",), ("application/vnd.oasis.opendocument.text",)),
)

EXTENSIONS: dict[str, FileType] = {ext: s.type for s in FILE_TYPES for ext in s.extensions}
"""Lower-case extension (with the dot) -> type."""
MIME_TYPES: dict[str, FileType] = {mime: s.type for s in FILE_TYPES for mime in s.mime_types}
"""MIME type -> type (what a URL's Content-Type or libmagic says)."""
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(EXTENSIONS)


def extension_for_mime(mime: str) -> str | None:
    """The canonical extension (".html") of a MIME type in the table, or None."""
    found = MIME_TYPES.get(mime.split(";")[0].strip().lower())
    return None if found is None else f".{found.value}"


def is_supported(name: str | PurePath) -> bool:
    """Whether a file with this name is ingested (its extension is in the table)."""
    return PurePath(name).suffix.lower() in EXTENSIONS


def unsupported_message(name: str) -> str:
    """The one sentence every path gives for a file whose type is not in the table."""
    ext = PurePath(name).suffix.lower() or "(none)"
    supported = " ".join(sorted(SUPPORTED_EXTENSIONS))
    return f"{name!r}: unsupported file type {ext}; supported: {supported}"
