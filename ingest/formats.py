"""Per-format extraction with unstructured (and pdfminer/tesseract for PDF), run in a worker.

Heavy imports live here so that `ingest.parsers` stays cheap to import; parser worker
processes preload this module.
"""

from __future__ import annotations

import email
import email.policy
import io
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from lxml import html as lxml_html
from unstructured.documents.elements import Element as UElement
from unstructured.errors import UnprocessableEntityError
from unstructured.partition.csv import partition_csv
from unstructured.partition.docx import partition_docx
from unstructured.partition.email import partition_email
from unstructured.partition.epub import partition_epub
from unstructured.partition.html import partition_html
from unstructured.partition.md import partition_md
from unstructured.partition.odt import partition_odt
from unstructured.partition.pptx import partition_pptx
from unstructured.partition.rtf import partition_rtf
from unstructured.partition.text import partition_text
from unstructured.partition.tsv import partition_tsv
from unstructured.partition.xlsx import partition_xlsx

from core.errors import DamagedDocumentError, DocumentParseError, OndataError
from core.models import Element
from core.settings import IngestSettings, disable_library_network
from ingest.elements import Block, build_elements, clean_metadata_title, merge_adjacent_tables
from ingest.filetypes import (
    EXTENSIONS,
    FileType,
    check_office_container,
    check_unpacked_size,
    decode_text,
    detect_file_type,
)
from ingest.parse_pool import memory_limit_error
from ingest.parsers import Extracted, ExtractRequest
from ingest.pdf import extract_pdf

logger = logging.getLogger(__name__)
# E-mail attachments are checked against the default unpack limits (an ExtractRequest does
# not carry the configured ones; the e-mail file itself was checked with those).
_ATTACHMENT_LIMITS = IngestSettings()

MAX_ATTACHMENT_DEPTH = 2


def warm_up_worker() -> None:
    """Run once in each parser worker: network switches off, spaCy loaded before any timeout."""
    disable_library_network()
    from unstructured.nlp.tokenize import pos_tag

    pos_tag("Warm up the tagger.")


def extract(request: ExtractRequest) -> Extracted:
    """Elements of one file. Library failures become DocumentParseError with a one-line reason."""
    path = Path(request.path)
    check_office_container(path, request.file_type)
    label = request.file_type.value.upper()
    try:
        return _EXTRACTORS[request.file_type](path, request)
    except OndataError:
        raise
    except MemoryError as exc:
        raise memory_limit_error() from exc
    except UnprocessableEntityError as exc:  # unstructured's own limits (cell counts, ...)
        raise DocumentParseError(f"cannot parse {label}: {_reason(exc)}") from exc
    except Exception as exc:  # the partitioners raise anything from KeyError to lxml errors
        if _out_of_memory(exc):
            raise memory_limit_error() from exc
        logger.info("parse failed for %s", path.name, exc_info=True)
        raise DamagedDocumentError(f"malformed {label}: {_reason(exc)}") from exc


# How a child process (pandoc, tesseract) or a C library (libxml2) reports a failed allocation
_OUT_OF_MEMORY = re.compile(
    r"out of memory|unable to commit|memory allocation failed|bad_alloc|cannot allocate memory",
    re.IGNORECASE,
)


def _out_of_memory(exc: BaseException) -> bool:
    """Whether the failure, or one it came from, was a failed allocation."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; a cycle must not loop forever
        if seen is None:
            return False
        if isinstance(seen, MemoryError) or _OUT_OF_MEMORY.search(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _pdf(path: Path, request: ExtractRequest) -> Extracted:
    content = extract_pdf(path, ocr_languages=request.ocr_languages)
    metadata: dict[str, Any] = {"page_count": content.page_count}
    if content.ocr_pages:
        metadata["ocr_pages"] = content.ocr_pages
    return Extracted(tuple(build_elements(content.blocks)), content.title, metadata)


def _docx(path: Path, request: ExtractRequest) -> Extracted:
    import docx

    title = docx.Document(str(path)).core_properties.title
    elements = partition_docx(filename=str(path), infer_table_structure=True)
    return _extracted(elements, title=title)


def _pptx(path: Path, request: ExtractRequest) -> Extracted:
    import pptx

    title = pptx.Presentation(str(path)).core_properties.title
    elements = partition_pptx(
        filename=str(path), include_slide_notes=True, infer_table_structure=True
    )
    return _extracted(elements, title=title, pages="slide_count")


def _xlsx(path: Path, request: ExtractRequest) -> Extracted:
    """Each sheet is a top-level section named after it; its tables keep their titles."""
    elements = partition_xlsx(filename=str(path), infer_table_structure=True, include_header=False)
    by_sheet: dict[str, list[UElement]] = {}
    for element in elements:
        by_sheet.setdefault(element.metadata.page_name or "", []).append(element)
    out: list[Element] = []
    for sheet, sheet_elements in by_sheet.items():
        root = (sheet,) if sheet else ()
        out.extend(build_elements(merge_adjacent_tables(_blocks(sheet_elements)), root=root))
    metadata = {"sheet_count": len(by_sheet)}
    return Extracted(tuple(out), _xlsx_title(path), metadata)


def _xlsx_title(path: Path) -> str | None:
    import openpyxl

    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        return clean_metadata_title(workbook.properties.title)
    finally:
        workbook.close()


def _html(path: Path, request: ExtractRequest) -> Extracted:
    text, encoding = decode_text(path.read_bytes(), file_type=FileType.HTML)
    elements = partition_html(text=text) if text.strip() else []
    return _extracted(elements, title=_html_title(text), encoding=encoding)


def _html_title(text: str) -> str | None:
    try:
        title = lxml_html.document_fromstring(text.encode("utf-8")).findtext(".//title")
    except (ValueError, lxml_html.etree.ParserError):
        return None
    return clean_metadata_title(title)


def _markdown(path: Path, request: ExtractRequest) -> Extracted:
    text, encoding = decode_text(path.read_bytes())
    elements = partition_md(text=text) if text.strip() else []
    return _extracted(elements, encoding=encoding)


def _text(path: Path, request: ExtractRequest) -> Extracted:
    text, encoding = decode_text(path.read_bytes())
    elements = partition_text(text=text) if text.strip() else []
    return _extracted(elements, encoding=encoding)


def _delimited(
    partition: Callable[..., list[UElement]],
) -> Callable[[Path, ExtractRequest], Extracted]:
    """CSV/TSV: decoded here (any encoding), handed on as UTF-8; the whole file is one table."""

    def run(path: Path, request: ExtractRequest) -> Extracted:
        text, encoding = decode_text(path.read_bytes())
        if not text.strip():
            return Extracted(())
        elements = partition(file=io.BytesIO(text.encode("utf-8")), include_header=False)
        return _extracted(elements, encoding=encoding)

    return run


def _eml(path: Path, request: ExtractRequest) -> Extracted:
    """The message body, a header line (from, to, date, subject), then supported attachments."""
    with path.open("rb") as fh:
        message = email.message_from_binary_file(fh, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    subject = clean_metadata_title(str(message.get("subject") or ""))
    body = partition_email(filename=str(path), process_attachments=False)
    header = Block(text=_header_line(message), category="UncategorizedText")
    elements = build_elements([header, *_blocks(body)])
    elements.extend(_attachments(message, request))
    return Extracted(tuple(elements), subject, {"attachments": _attachment_names(message)})


def _header_line(message: EmailMessage) -> str:
    fields = (
        ("From", "from"),
        ("To", "to"),
        ("Cc", "cc"),
        ("Date", "date"),
        ("Subject", "subject"),
    )
    parts = [f"{label}: {message[key]}" for label, key in fields if message.get(key)]
    return " | ".join(parts)


def _attachment_names(message: EmailMessage) -> list[str]:
    return [part.get_filename() or "" for part in message.iter_attachments()]


def _attachments(message: EmailMessage, request: ExtractRequest) -> list[Element]:
    """Elements of each attachment ondata can parse, under a section named after it."""
    if request.depth >= MAX_ATTACHMENT_DEPTH:
        return []
    out: list[Element] = []
    with tempfile.TemporaryDirectory(prefix="ondata-eml-") as tmp:
        for index, part in enumerate(message.iter_attachments()):
            name = Path(part.get_filename() or f"attachment-{index}").name
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes) or Path(name).suffix.lower() not in EXTENSIONS:
                continue
            target = Path(tmp) / f"{index}-{name}"
            target.write_bytes(payload)
            out.extend(_attachment_elements(target, name, request))
    return out


def _attachment_elements(target: Path, name: str, request: ExtractRequest) -> list[Element]:
    try:
        file_type = detect_file_type(target)
        check_unpacked_size(
            target,
            file_type,
            max_bytes=_ATTACHMENT_LIMITS.max_unpacked_bytes,
            max_ratio=_ATTACHMENT_LIMITS.max_compression_ratio,
        )
        nested = ExtractRequest(str(target), file_type, request.ocr_languages, request.depth + 1)
        elements = extract(nested).elements
    except OndataError as exc:
        logger.warning("skipped attachment %s: %s", name, exc.message)
        return []
    root = (f"Attachment: {name}",)
    return [e.model_copy(update={"section_path": root + e.section_path}) for e in elements]


def _pandoc(
    partition: Callable[..., list[UElement]],
) -> Callable[[Path, ExtractRequest], Extracted]:
    """EPUB, RTF and ODT: unstructured converts them with pandoc, then partitions the HTML."""

    def run(path: Path, request: ExtractRequest) -> Extracted:
        return _extracted(partition(filename=str(path)))

    return run


def _blocks(elements: Iterable[UElement]) -> list[Block]:
    return [_block(element) for element in elements]


def _block(element: UElement) -> Block:
    meta = element.metadata
    return Block(
        text=str(element.text or ""),
        category=str(element.category),
        page=meta.page_number,
        depth=meta.category_depth if element.category == "Title" else None,
        html=meta.text_as_html if element.category == "Table" else None,
        block_id=str(element.id),
        parent_id=meta.parent_id,
    )


def _extracted(
    elements: Sequence[UElement],
    *,
    title: str | None = None,
    encoding: str | None = None,
    pages: str = "page_count",
) -> Extracted:
    metadata: dict[str, Any] = {}
    numbers = [e.metadata.page_number for e in elements if e.metadata.page_number]
    if numbers:
        metadata[pages] = max(numbers)
    if encoding:
        metadata["encoding"] = encoding
    return Extracted(
        tuple(build_elements(_blocks(elements))), clean_metadata_title(title), metadata
    )


def _reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


_EXTRACTORS: dict[FileType, Callable[[Path, ExtractRequest], Extracted]] = {
    FileType.PDF: _pdf,
    FileType.DOCX: _docx,
    FileType.PPTX: _pptx,
    FileType.XLSX: _xlsx,
    FileType.HTML: _html,
    FileType.MD: _markdown,
    FileType.TXT: _text,
    FileType.CSV: _delimited(partition_csv),
    FileType.TSV: _delimited(partition_tsv),
    FileType.EML: _eml,
    FileType.EPUB: _pandoc(partition_epub),
    FileType.RTF: _pandoc(partition_rtf),
    FileType.ODT: _pandoc(partition_odt),
}
