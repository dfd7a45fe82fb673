"""PDF text extraction: pdfminer's text layer, tesseract OCR for pages without one.

unstructured's partition_pdf needs unstructured-inference (and so torchvision) even for its
"fast" strategy, so this module does the fast and OCR paths directly with pdfminer, pdf2image
and unstructured.pytesseract, and uses unstructured's text classifier for element categories.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pdfminer.converter import PDFPageAggregator
from pdfminer.layout import LAParams, LTChar, LTPage, LTTextContainer, LTTextLine
from pdfminer.pdfdocument import PDFDocument, PDFEncryptionError, PDFPasswordIncorrect
from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
from pdfminer.pdfpage import PDFPage
from pdfminer.pdfparser import PDFParser
from pdfminer.pdftypes import resolve1
from pdfminer.utils import decode_text

from core.errors import (
    ConfigurationError,
    DamagedDocumentError,
    EncryptedDocumentError,
    NoExtractableTextError,
)
from ingest.elements import Block, clean_metadata_title

logger = logging.getLogger(__name__)

OCR_DPI = 300
_CID_RE = re.compile(r"\(cid:\d+\)")
_PAGE_NUMBER_RE = re.compile(r"^\s*(page\s+)?\d{1,4}\s*$", re.IGNORECASE)
_LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)


@dataclass(frozen=True)
class _TextBox:
    page: int
    text: str
    size: float


@dataclass
class PdfContent:
    """What a PDF yielded: blocks in reading order, its metadata title, which pages were OCR'd."""

    blocks: list[Block]
    title: str | None
    page_count: int
    ocr_pages: list[int] = field(default_factory=list)


def extract_pdf(path: Path, *, ocr_languages: str) -> PdfContent:
    """Blocks from the text layer; pages without text are OCR'd. Raises when nothing is found."""
    source: Path | bytes = path
    try:
        boxes, pages, title = _read_text_layer(path)
    except DamagedDocumentError:
        source = _repair(path)
        boxes, pages, title = _read_text_layer(io.BytesIO(source))
    if pages == 0:
        raise DamagedDocumentError("damaged PDF: it has no pages")
    blank = sorted(set(range(1, pages + 1)) - {box.page for box in boxes})
    ocr_boxes = _ocr(source, blank, ocr_languages) if blank else []
    if not boxes and not ocr_boxes:
        raise NoExtractableTextError(_no_text_reason(blank))
    blocks = _to_blocks(boxes) + _ocr_blocks(ocr_boxes)
    blocks.sort(key=lambda b: b.page or 0)  # stable: reading order within each page is kept
    ocr_pages = sorted({b.page for b in ocr_boxes})
    return PdfContent(blocks=blocks, title=title, page_count=pages, ocr_pages=ocr_pages)


def _read_text_layer(source: Path | BinaryIO) -> tuple[list[_TextBox], int, str | None]:
    """Text boxes with their page and font size, the page count and the /Title metadata."""
    opened = source.open("rb") if isinstance(source, Path) else contextlib.nullcontext(source)
    with opened as fh:
        document = _open_document(fh)
        title = _info_title(document)
        boxes: list[_TextBox] = []
        pages = 0
        for number, layout in _layouts(document):
            pages = number
            if layout is not None:
                boxes.extend(_page_boxes(layout, number))
    return boxes, pages, title


def _open_document(fh: BinaryIO) -> PDFDocument:
    try:
        return PDFDocument(PDFParser(fh))
    except PDFPasswordIncorrect as exc:
        raise EncryptedDocumentError("password-protected PDF") from exc
    except PDFEncryptionError as exc:
        raise EncryptedDocumentError(f"encrypted PDF ({exc})") from exc
    except Exception as exc:  # pdfminer raises many types (PSEOF, PDFSyntaxError, KeyError...)
        raise DamagedDocumentError(f"damaged PDF: {_reason(exc)}") from exc


def _layouts(document: PDFDocument) -> Iterator[tuple[int, LTPage | None]]:
    """Each page's layout; a page whose content cannot be interpreted yields None (OCR tries it)."""
    manager = PDFResourceManager(caching=True)
    device = PDFPageAggregator(manager, laparams=LAParams())
    interpreter = PDFPageInterpreter(manager, device)
    try:
        pages = list(PDFPage.create_pages(document))
    except Exception as exc:  # a broken page tree
        raise DamagedDocumentError(f"damaged PDF: {_reason(exc)}") from exc
    for number, page in enumerate(pages, start=1):
        try:
            interpreter.process_page(page)
            yield number, device.get_result()
        except Exception as exc:  # one bad content stream should not lose the other pages
            logger.warning("pdf page %d unreadable: %s", number, _reason(exc))
            yield number, None


def _page_boxes(layout: LTPage, number: int) -> Iterator[_TextBox]:
    for item in layout:
        if not isinstance(item, LTTextContainer):
            continue
        lines = [line.get_text() for line in item if isinstance(line, LTTextLine)] or [
            item.get_text()
        ]
        if _is_vertical(lines):
            continue
        text = join_lines(lines)
        if text and not _PAGE_NUMBER_RE.match(text):
            yield _TextBox(page=number, text=text, size=_font_size(item))


def _is_vertical(lines: list[str]) -> bool:
    """Rotated margin text (arXiv stamps) comes out one character per line."""
    stripped = [line.strip() for line in lines if line.strip()]
    return len(stripped) >= 3 and sum(len(s) for s in stripped) <= 2 * len(stripped)


def join_lines(lines: list[str]) -> str:
    """Lines of one paragraph as one string, re-joining words hyphenated at line ends."""
    text = ""
    for raw in lines:
        line = _CID_RE.sub("", raw).translate(_LIGATURES).strip()
        if not line:
            continue
        if text.endswith("-") and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return " ".join(text.split())


def _font_size(item: LTTextContainer[Any]) -> float:
    sizes: Counter[float] = Counter()
    for line in item:
        if isinstance(line, LTTextLine):
            sizes.update(round(ch.size * 2) / 2 for ch in line if isinstance(ch, LTChar))
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _info_title(document: PDFDocument) -> str | None:
    for info in document.info:
        value = resolve1(info.get("Title"))
        if isinstance(value, bytes):
            value = decode_text(value)
        if isinstance(value, str) and (title := clean_metadata_title(value)):
            return title
    return None


def _repair(path: Path) -> bytes:
    """qpdf (through pikepdf) rebuilds broken cross-reference tables and streams."""
    import pikepdf

    try:
        with pikepdf.open(path) as pdf:
            out = io.BytesIO()
            pdf.save(out)
    except pikepdf.PasswordError as exc:
        raise EncryptedDocumentError("password-protected PDF") from exc
    except Exception as exc:  # qpdf gave up: the file is beyond repair
        reason = _reason(exc).replace(f"{path}: ", "")
        raise DamagedDocumentError(f"damaged PDF: {reason}") from exc
    logger.info("repaired damaged pdf %s", path.name)
    return out.getvalue()


def _to_blocks(boxes: list[_TextBox]) -> list[Block]:
    """Classify text boxes; heading depth comes from font size (bigger = higher level).

    "Titles" in a smaller font than the body are table headers or figure labels, not headings.
    """
    categories = [_category(box.text) for box in boxes]
    body_size = _body_size(boxes, categories)
    levels = sorted(
        {
            b.size
            for b, c in zip(boxes, categories, strict=True)
            if c == "Title" and b.size > body_size
        },
        reverse=True,
    )
    blocks: list[Block] = []
    for box, category in zip(boxes, categories, strict=True):
        depth = None
        if category == "Title" and box.size < body_size - 0.5:
            category = "UncategorizedText"
        elif category == "Title":
            depth = levels.index(box.size) if box.size in levels else len(levels)
        blocks.append(Block(text=box.text, category=category, page=box.page, depth=depth))
    return blocks


def _body_size(boxes: list[_TextBox], categories: list[str]) -> float:
    """The font size most body text is set in (weighted by characters)."""
    sizes: Counter[float] = Counter()
    for box, category in zip(boxes, categories, strict=True):
        if category != "Title":
            sizes[box.size] += len(box.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _category(text: str) -> str:
    from unstructured.partition.text import element_from_text

    return str(element_from_text(text).category)


def _ocr(source: Path | bytes, pages: list[int], languages: str) -> list[_TextBox]:
    """OCR the given pages (1-based), one page image in memory at a time."""
    missing = [tool for tool in ("tesseract", "pdftoppm") if shutil.which(tool) is None]
    if missing:
        logger.warning("cannot OCR %d page(s): %s not installed", len(pages), ", ".join(missing))
        return []
    _check_languages(languages)
    boxes: list[_TextBox] = []
    for number in pages:
        text = _ocr_page(source, number, languages)
        boxes.extend(_TextBox(page=number, text=p, size=0.0) for p in _paragraphs(text))
    return boxes


def _ocr_page(source: Path | bytes, number: int, languages: str) -> str:
    import pdf2image
    import unstructured_pytesseract as tesseract

    options: dict[str, Any] = {"dpi": OCR_DPI, "first_page": number, "last_page": number}
    try:
        if isinstance(source, Path):
            images = pdf2image.convert_from_path(source, **options)
        else:
            images = pdf2image.convert_from_bytes(source, **options)
        return "\n\n".join(
            str(tesseract.image_to_string(image, lang=languages)) for image in images
        )
    except Exception as exc:  # poppler or tesseract failed on this page: keep the others
        logger.warning("ocr of page %d failed: %s", number, _reason(exc))
        return ""


def _check_languages(languages: str) -> None:
    import unstructured_pytesseract as tesseract

    wanted = {lang for lang in languages.split("+") if lang}
    installed = set(tesseract.get_languages(config=""))
    if missing := wanted - installed:
        raise ConfigurationError(
            f"ingest.ocr_languages asks for {'+'.join(sorted(missing))} but tesseract has only "
            f"{', '.join(sorted(installed))} (install tesseract-ocr-<lang>)"
        )


def _paragraphs(text: str) -> list[str]:
    chunks = re.split(r"\n\s*\n", text)
    joined = (join_lines(chunk.splitlines()) for chunk in chunks)
    return [p for p in joined if p and not _PAGE_NUMBER_RE.match(p)]


def _ocr_blocks(boxes: list[_TextBox]) -> list[Block]:
    return [Block(text=box.text, category=_category(box.text), page=box.page) for box in boxes]


def _no_text_reason(blank_pages: list[int]) -> str:
    if shutil.which("tesseract") is None or shutil.which("pdftoppm") is None:
        return "no extractable text: no text layer, and OCR is unavailable (no tesseract/poppler)"
    return f"no extractable text: no text layer, and OCR found none on {len(blank_pages)} page(s)"


def _reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
