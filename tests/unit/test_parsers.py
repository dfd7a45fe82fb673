"""ingest.parsers on real documents: every format, the awkward files, limits, isolation, offline."""

# ruff: noqa: RUF001  (en dashes are part of the documents' real headings)

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import (
    DamagedDocumentError,
    DocumentParseError,
    EncryptedDocumentError,
    FileTooLargeError,
    NoExtractableTextError,
    NotFoundError,
    ParseTimeoutError,
    UnsupportedFileTypeError,
)
from core.models import Document, Element
from core.settings import IngestSettings
from ingest.elements import (
    Block,
    build_elements,
    clean_metadata_title,
    html_table_to_rows,
    merge_adjacent_tables,
)
from ingest.filetypes import FileType, decode_text, detect_file_type
from ingest.parse_pool import ParserPool
from ingest.parsers import SUPPORTED_EXTENSIONS, WORKER_ENV, doc_id_for, file_sha256, parse_file

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "data" / "samples"
AWKWARD = REPO / "data" / "awkward"
HAS_OCR = shutil.which("tesseract") is not None and shutil.which("pdftoppm") is not None


@pytest.fixture(scope="module")
def pool() -> Iterator[ParserPool]:
    with ParserPool(
        max_workers=2, warmup="ingest.formats:warm_up_worker", env=WORKER_ENV
    ) as workers:
        yield workers


@pytest.fixture
def ingest_settings() -> IngestSettings:
    return IngestSettings(file_timeout_s=120)


def _parse(path: Path, pool: ParserPool, settings: IngestSettings | None = None) -> Document:
    return parse_file(path, settings=settings or IngestSettings(file_timeout_s=120), runner=pool)


def _texts(doc: Document) -> str:
    return "\n".join(e.text for e in doc.elements)


def _first(doc: Document, needle: str) -> Element:
    return next(e for e in doc.elements if needle in e.text)


# -- identity -------------------------------------------------------------------------------


def test_doc_id_for_is_a_stable_slug_plus_hash(tmp_path: Path) -> None:
    target = tmp_path / "HR Handbook 2024.pdf"
    doc_id = doc_id_for(str(target))
    assert re.fullmatch(r"hr-handbook-2024-pdf-[0-9a-f]{12}", doc_id)
    assert doc_id_for(str(target)) == doc_id
    assert doc_id_for(os.path.relpath(target)) == doc_id
    assert doc_id_for(str(tmp_path / "other.pdf")) != doc_id


def test_doc_id_for_url_keeps_the_url_as_key() -> None:
    doc_id = doc_id_for("https://intranet.example/policies/travel.html")
    assert re.fullmatch(r"travel-html-[0-9a-f]{12}", doc_id)
    assert doc_id != doc_id_for("https://intranet.example/policies/travel.html?v=2")


def test_supported_extensions_cover_the_promised_formats() -> None:
    promised = ".pdf .docx .pptx .html .htm .md .markdown .txt .csv .tsv .xlsx .eml .epub .rtf .odt"
    assert set(promised.split()) == SUPPORTED_EXTENSIONS


# -- pure mapping ---------------------------------------------------------------------------


def test_build_elements_nests_headings_by_depth() -> None:
    blocks = [
        Block("Handbook", "Title", depth=0),
        Block("Travel", "Title", depth=1),
        Block("Hotels", "Title", depth=2),
        Block("Up to 180 euros.", page=3),
        Block("Leave", "Title", depth=1),
        Block("Four weeks.", page=4),
    ]
    elements = build_elements(blocks)
    paths = {e.text: e.section_path for e in elements}
    assert paths["Up to 180 euros."] == ("Handbook", "Travel", "Hotels")
    assert paths["Hotels"] == ("Handbook", "Travel", "Hotels")
    assert paths["Four weeks."] == ("Handbook", "Leave")
    assert [e.page for e in elements if e.category != "Title"] == [3, 4]


def test_build_elements_uses_parent_ids_when_depth_is_unknown() -> None:
    blocks = [
        Block("Policies", "Title", depth=0, block_id="a"),
        Block("Expenses", "Title", block_id="b", parent_id="a"),
        Block("Keep receipts.", parent_id="b"),
        Block("Security", "Title", block_id="c"),
    ]
    paths = {e.text: e.section_path for e in build_elements(blocks)}
    assert paths["Keep receipts."] == ("Policies", "Expenses")
    assert paths["Security"] == ("Security",)


def test_build_elements_keeps_a_table_whole_with_its_caption() -> None:
    html = "<table><tr><th>Item</th><th>Price</th></tr><tr><td>Tea</td><td>2.10</td></tr></table>"
    blocks = [
        Block("Prices", "Title", depth=0),
        Block("Table 2: Drinks at the cafeteria", "UncategorizedText", page=1),
        Block("Item Price Tea 2.10", "Table", page=1, html=html),
        Block("Prices change in May.", page=1),
    ]
    elements = build_elements(blocks)
    tables = [e for e in elements if e.is_table]
    assert len(tables) == 1
    table = tables[0]
    assert table.text == (
        "Table 2: Drinks at the cafeteria\n\n| Item | Price |\n| --- | --- |\n| Tea | 2.10 |"
    )
    assert table.section_path == ("Prices",)
    assert table.page == 1
    assert "Table 2: Drinks at the cafeteria" not in [e.text for e in elements if not e.is_table]


def test_build_elements_leaves_long_narrative_before_a_table_alone() -> None:
    narrative = "The committee reviewed the numbers below and found them acceptable."
    blocks = [
        Block(narrative),
        Block("a b", "Table", html="<table><tr><td>a</td><td>b</td></tr></table>"),
    ]
    elements = build_elements(blocks)
    assert [e.text for e in elements] == [narrative, "| a | b |\n| --- | --- |"]


def test_build_elements_drops_page_furniture_and_empty_text() -> None:
    blocks = [
        Block("Confidential", "Header"),
        Block("  \u00a0 ", "NarrativeText"),
        Block("", "PageBreak"),
        Block("Body  text\u00a0here.", "NarrativeText"),
        Block("Page 3", "Footer"),
    ]
    assert [e.text for e in build_elements(blocks)] == ["Body text here."]


def test_html_table_to_rows_fills_row_and_column_spans() -> None:
    html = (
        "<table><tr><td rowspan='2'>a</td><td colspan='2'>b</td></tr>"
        "<tr><td>c</td><td rowspan='2'>d</td></tr><tr><td colspan='2'>e|f</td></tr></table>"
    )
    assert html_table_to_rows(html).splitlines() == [
        "| a | b | b |",
        "| --- | --- | --- |",
        "| a | c | d |",
        "| e\\|f | e\\|f | d |",
    ]


def test_merge_adjacent_tables_joins_header_and_body_subtables() -> None:
    head = Block(
        "Zone Sales", "Table", page=1, html="<table><tr><td>Zone</td><td>Sales</td></tr></table>"
    )
    body = Block(
        "NA 12553", "Table", page=1, html="<table><tr><td>NA</td><td>12553</td></tr></table>"
    )
    merged = merge_adjacent_tables([head, body])
    assert len(merged) == 1
    assert html_table_to_rows(merged[0].html or "").splitlines()[-1] == "| NA | 12553 |"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Microsoft Word - Travel Policy", "Travel Policy"),
        ("PowerPoint Presentation", None),
        ("scan0001.pdf", None),
        ("  ", None),
        ("Annual Report 2023", "Annual Report 2023"),
    ],
)
def test_clean_metadata_title(raw: str, expected: str | None) -> None:
    assert clean_metadata_title(raw) == expected


# -- type detection and decoding -----------------------------------------------------------


def test_detect_file_type_trusts_content_over_a_wrong_extension(tmp_path: Path) -> None:
    pdf_as_txt = tmp_path / "report.txt"
    pdf_as_txt.write_bytes((SAMPLES / "fake-memo.pdf").read_bytes())
    docx_as_csv = tmp_path / "upload.csv"
    docx_as_csv.write_bytes((SAMPLES / "trustee-handbook-chapter4.docx").read_bytes())
    assert detect_file_type(pdf_as_txt) is FileType.PDF
    assert detect_file_type(docx_as_csv) is FileType.DOCX
    assert detect_file_type(SAMPLES / "stanley-cups.csv") is FileType.CSV


def test_detect_file_type_reads_a_saved_web_page_named_txt_as_html(tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text("<!DOCTYPE html><html><body><p>Hello</p></body></html>", encoding="utf-8")
    notes = tmp_path / "notes.md"
    notes.write_text("<html><body>inline html in markdown</body></html>", encoding="utf-8")
    assert detect_file_type(page) is FileType.HTML
    assert detect_file_type(notes) is FileType.MD


@pytest.mark.parametrize("name", ["NOTES", "notes.xyz"])
def test_detect_file_type_refuses_text_under_an_unknown_extension(
    tmp_path: Path, name: str
) -> None:
    notes = tmp_path / name
    notes.write_text("The cafeteria opens at eight.\n", encoding="utf-8")
    with pytest.raises(UnsupportedFileTypeError, match="unsupported file type"):
        detect_file_type(notes)


def test_detect_file_type_names_an_unsupported_type(tmp_path: Path) -> None:
    blob = tmp_path / "tool.bin"
    blob.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(200))
    with pytest.raises(
        UnsupportedFileTypeError, match=r"'tool\.bin': unsupported file type \.bin; supported: "
    ) as err:
        detect_file_type(blob)
    assert err.value.status_code == 415


@pytest.mark.parametrize(
    ("data", "encoding", "text"),
    [
        ("Grüße aus Köln".encode(), "utf-8", "Grüße aus Köln"),
        ("Grüße aus Köln".encode("utf-16"), "utf-16", "Grüße aus Köln"),
        (
            "Grüße aus Köln, l'été très chaud, 15,50 €".encode("cp1252"),
            "cp1252",
            "l'été très chaud, 15,50 €",
        ),
        ("## können\n\näöüß\n".encode("latin-1"), "cp1252", "äöüß"),
        ("Привет, мир! Это тестовый текст на русском языке.".encode("cp1251"), "cp1251", "Привет"),
    ],
)
def test_decode_text_handles_boms_utf8_and_legacy_code_pages(
    data: bytes, encoding: str, text: str
) -> None:
    decoded, used = decode_text(data)
    assert _codec(used) == _codec(encoding)
    assert text in decoded


def _codec(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def test_decode_text_honours_a_declared_html_charset() -> None:
    page = '<html><head><meta charset="iso-8859-7"></head><body>Καλημέρα</body></html>'
    decoded, used = decode_text(page.encode("iso-8859-7"), file_type=FileType.HTML)
    assert "Καλημέρα" in decoded
    assert used == "iso-8859-7"


# -- every format, through the worker pool --------------------------------------------------


def test_parse_pdf_keeps_pages_title_and_sections(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "layout-parser-paper-fast.pdf", pool)
    assert doc.title.startswith("LayoutParser: A Unified Toolkit")
    assert {e.page for e in doc.elements} == {1, 2}
    assert doc.metadata["page_count"] == 2
    intro = _first(doc, "Deep Learning(DL)-based approaches")
    assert intro.section_path[-1] == "Introduction"
    assert "Uniﬁed" not in _texts(doc)  # ligatures spelled out


def test_parse_pdf_document_identity(pool: ParserPool) -> None:
    path = SAMPLES / "fake-memo.pdf"
    doc = parse_file(
        path,
        settings=IngestSettings(),
        runner=pool,
        url="https://files.example/memo.pdf",
        acl_groups=["finance"],
        metadata={"department": "logistics"},
    )
    assert doc.content_hash == file_sha256(path)
    assert doc.source == doc.url == "https://files.example/memo.pdf"
    assert doc.doc_id == doc_id_for("https://files.example/memo.pdf")
    assert doc.filepath == "fake-memo.pdf"
    assert doc.acl_groups == ("finance",)
    assert doc.metadata["department"] == "logistics"
    assert doc.metadata["file_type"] == "pdf"
    assert "10,000 blankets" in _texts(doc)


def test_parse_docx_builds_the_heading_hierarchy(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "trustee-handbook-chapter4.docx", pool)
    assert doc.title == "Handbook for Chapter 13 Standing Trustees, Chapter 4 (excerpt)"
    vacation = _first(doc, "vacation policy")
    assert vacation.section_path == (
        "CHAPTER 4 – FINANCIAL AND OPERATIONAL POLICIES, PROCEDURES AND REPORTING REQUIREMENTS",
        "D. INTERNAL FINANCIAL CONTROLS",
        "1. PERSONNEL MANAGEMENT",
    )


def test_parse_pptx_keeps_the_slide_table_whole(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "fake-power-point-table.pptx", pool)
    (table,) = [e for e in doc.elements if e.is_table]
    assert table.page == 1
    assert table.text.startswith("A Slide with a Table\n\n| Column 1 | Column 2 | Column 3 |")
    assert "| Red | Green | Blue |" in table.text
    assert table.section_path == ("A Slide with a Table",)


def test_parse_html_title_and_captioned_tables(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "example-steelJIS-datasheet.html", pool)
    assert doc.title.startswith("SNB22-3 - SteelJIS - Datasheet")
    table = _first(doc, "Chemical composition 成分 % of grade SNB22-3")
    assert table.is_table
    assert "| C | Si | Mn | P | S | Cr | Mo |" in table.text
    assert table.section_path == ("SNB22-3 Chemical composition, standards and properties",)


def test_parse_markdown_table_and_text(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "simple-table.md", pool)
    (table,) = doc.elements
    assert table.is_table
    assert table.text.splitlines()[0] == "| Item | Price | # In stock |"
    assert "| Bananas | 1.89 | 6 |" in table.text


def test_parse_txt_paragraphs_under_their_heading(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "book-war-and-peace-1p.txt", pool)
    assert doc.title == "CHAPTER I"
    assert doc.metadata["encoding"] == "utf-8"
    prince = _first(doc, "Well, Prince, so Genoa and Lucca")
    assert prince.category == "NarrativeText"
    assert prince.section_path == ("CHAPTER I",)


def test_parse_csv_is_one_table(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "stanley-cups.csv", pool)
    (table,) = doc.elements
    assert table.is_table
    assert "| Maple Leafs | TOR | 13 |" in table.text


def test_parse_tsv_in_a_legacy_encoding(pool: ParserPool, tmp_path: Path) -> None:
    people = tmp_path / "people.tsv"
    people.write_bytes("Name\tCity\tNote\nJürgen\tKöln\tgroß\nRenée\tParis\tété\n".encode("cp1252"))
    doc = _parse(people, pool)
    (table,) = doc.elements
    assert table.text.splitlines() == [
        "| Name | City | Note |",
        "| --- | --- | --- |",
        "| Jürgen | Köln | groß |",
        "| Renée | Paris | été |",
    ]
    assert doc.metadata["encoding"] == "cp1252"


def test_parse_xlsx_sections_are_sheets_and_header_stays_with_body(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "2023-half-year-analyses-by-segment.xlsx", pool)
    assert doc.metadata["sheet_count"] == 5
    table = _first(doc, "| Zone NA | 12553 |")
    assert table.is_table
    assert "In millions of CHF" in table.text
    assert "January–June 2023" in table.text
    assert table.section_path[0] == "OS-Rev.and results 30 06 2023"
    assert table.page == 1


def test_parse_eml_subject_headers_and_attachments(pool: ParserPool) -> None:
    doc = _parse(SAMPLES / "fake-email-attachment.eml", pool)
    assert doc.title == "Fake email with attachment"
    assert doc.elements[0].text.startswith("From: Mallori Harrell <mallori@unstructured.io>")
    attached = _first(doc, "Hey this is a fake attachment!")
    assert attached.section_path == ("Attachment: fake-attachment.txt",)
    assert doc.metadata["attachments"] == ["fake-attachment.txt"]


@pytest.mark.parametrize(
    ("name", "title", "needle"),
    [
        ("fake-doc.rtf", "My First Heading", "| Column 1 | Column 2 |"),
        ("simple.odt", "These are a few of my favorite things:", "This is my third thought."),
    ],
)
def test_parse_pandoc_formats(pool: ParserPool, name: str, title: str, needle: str) -> None:
    doc = _parse(SAMPLES / name, pool)
    assert doc.title == title
    assert needle in _texts(doc)


def test_every_sample_parses(pool: ParserPool) -> None:
    samples = sorted(p for p in SAMPLES.iterdir() if p.name != "SOURCES.md")
    assert {p.suffix for p in samples} >= {".pdf", ".docx", ".pptx", ".html", ".md", ".txt", ".csv"}
    for path in samples:
        doc = _parse(path, pool)
        assert doc.elements, path.name
        assert all(e.text.strip() for e in doc.elements), path.name


# -- awkward files ----------------------------------------------------------------------------

AWKWARD_FAILURES = {
    "empty.txt": (NoExtractableTextError, "no extractable text"),
    "fake-text-all-whitespace.txt": (NoExtractableTextError, "no extractable text"),
    "password.pdf": (EncryptedDocumentError, "password-protected PDF"),
    "password_protected.xlsx": (EncryptedDocumentError, "password-protected XLSX"),
}
AWKWARD_TEXTS = {
    "copy-protected.pdf": ["LayoutParser", "document image analysis"],
    "fake-html-cp1252.html": ["Die schöne Frau", "köstlich", "15,50 €", "L'été était très chaud"],
    "fake-power-point-malformed.pptx": ["Test Slide"],
    "fake-text-utf-16.txt": [
        "This is a test document to use for unit tests.",
        "Hamburgers are delicious",
    ],
    "umlauts-non-utf8.md": ["können", "äöüß"],
}


def test_awkward_folder_is_fully_covered() -> None:
    names = {p.name for p in AWKWARD.iterdir()}
    assert names == set(AWKWARD_FAILURES) | set(AWKWARD_TEXTS) | {"single_table.pdf"}


@pytest.mark.parametrize("name", sorted(AWKWARD_FAILURES))
def test_awkward_file_fails_with_a_clear_reason(pool: ParserPool, name: str) -> None:
    error, message = AWKWARD_FAILURES[name]
    with pytest.raises(error, match=re.escape(message)) as err:
        _parse(AWKWARD / name, pool)
    assert err.value.status_code == 422
    assert "\n" not in err.value.message


@pytest.mark.parametrize("name", sorted(AWKWARD_TEXTS))
def test_awkward_file_ingests(pool: ParserPool, name: str) -> None:
    text = _texts(_parse(AWKWARD / name, pool))
    for needle in AWKWARD_TEXTS[name]:
        assert needle in text


@pytest.mark.skipif(not HAS_OCR, reason="tesseract-ocr / poppler-utils not installed")
def test_image_only_pdf_is_ocred(pool: ParserPool) -> None:
    doc = _parse(AWKWARD / "single_table.pdf", pool)
    assert doc.metadata["ocr_pages"] == [1]
    assert {e.page for e in doc.elements} == {1}
    text = _texts(doc).lower()
    assert "chunks" in text
    assert "mean" in text


def test_garbage_pdf_is_reported_damaged(pool: ParserPool, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 20)
    with pytest.raises(DamagedDocumentError, match=r"^damaged PDF: ") as err:
        _parse(broken, pool)
    assert str(tmp_path) not in err.value.message


def test_truncated_pdf_is_repaired(pool: ParserPool, tmp_path: Path) -> None:
    data = (SAMPLES / "fake-memo.pdf").read_bytes()
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(data[: len(data) // 2])
    assert "10,000 blankets" in _texts(_parse(truncated, pool))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.docx", b"this is not a word document", "malformed DOCX: not a ZIP package"),
        ("deck.pptx", None, "malformed PPTX: ppt/presentation.xml is missing"),
    ],
)
def test_malformed_office_files_fail_clearly(
    pool: ParserPool, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("[Content_Types].xml", "<Types/>")
    else:
        path.write_bytes(content)
    with pytest.raises(DamagedDocumentError, match=re.escape(message)):
        _parse(path, pool)


# -- limits -------------------------------------------------------------------------------------


def test_file_over_the_size_limit_is_refused(pool: ParserPool) -> None:
    with pytest.raises(FileTooLargeError, match=r"ingest\.max_file_bytes") as err:
        _parse(SAMPLES / "fake-memo.pdf", pool, IngestSettings(max_file_bytes=1000))
    assert err.value.status_code == 413


def test_missing_file_is_not_found(pool: ParserPool, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        _parse(tmp_path / "gone.pdf", pool)


def test_unknown_type_is_415(pool: ParserPool, tmp_path: Path) -> None:
    blob = tmp_path / "archive.xyz"
    blob.write_bytes(b"\x00\x01binary")
    with pytest.raises(UnsupportedFileTypeError, match="unsupported file type"):
        _parse(blob, pool)


# -- isolation: timeouts, crashes, threads --------------------------------------------------------

# Catastrophic backtracking: the regex engine spins in C, where no Python signal reaches it.
_HANG_IN_C = functools.partial(re.fullmatch, r"(a+)+$")


def test_pool_kills_a_job_hanging_in_c_code_and_recovers() -> None:
    with ParserPool(max_workers=1) as isolated:
        assert isolated.run(len, "warm", timeout_s=60) == 4
        with pytest.raises(ParseTimeoutError, match=r"longer than 0\.5s"):
            isolated.run(_HANG_IN_C, "a" * 64 + "b", timeout_s=0.5)
        assert isolated.run(len, "abc", timeout_s=60) == 3


def test_pool_reports_a_dead_worker_and_recovers() -> None:
    with ParserPool(max_workers=1) as isolated:
        with pytest.raises(DocumentParseError, match=r"parser process died \(exit code 3\)"):
            isolated.run(os._exit, 3, timeout_s=60)
        assert isolated.run(len, "abc", timeout_s=60) == 3


def test_pool_passes_job_exceptions_through_and_keeps_the_worker() -> None:
    with ParserPool(max_workers=1) as isolated:
        with pytest.raises(ValueError, match="invalid literal"):
            isolated.run(int, "not a number", timeout_s=60)
        assert isolated.run(int, "42", timeout_s=60) == 42


def test_parse_file_from_many_threads(pool: ParserPool) -> None:
    names = [
        "fake-memo.pdf",
        "stanley-cups.csv",
        "simple-table.md",
        "book-war-and-peace-1p.txt",
    ] * 2
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(index: int, name: str) -> None:
        try:
            results[index] = _parse(SAMPLES / name, pool).filepath or ""
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert [results[i] for i in range(len(names))] == names


# -- offline ------------------------------------------------------------------------------------

_NETWORK_SWITCHES = (
    "DO_NOT_TRACK",
    "SCARF_NO_ANALYTICS",
    "UNSTRUCTURED_DISABLE_NOTICE",
    "HF_HUB_OFFLINE",
)
_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import socket, sys
    from pathlib import Path

    attempts = []

    def guard(event, args):
        if event == "socket.connect" and args[0].family != socket.AF_UNIX:
            attempts.append(f"connect {args[1]}")
            raise ConnectionRefusedError("offline test")
        if event == "socket.getaddrinfo":
            attempts.append(f"resolve {args[0]}")
            raise socket.gaierror("offline test")

    from ingest.formats import warm_up_worker
    from ingest.parse_pool import InlineParseRunner
    from ingest.parsers import parse_file
    from core.settings import IngestSettings

    warm_up_worker()  # exactly what a parser worker does before its first job
    sys.addaudithook(guard)
    for name in sys.argv[1:]:
        parse_file(Path(name), settings=IngestSettings(), runner=InlineParseRunner())
    print("ATTEMPTS", attempts)
    """
)


def test_parser_worker_makes_no_network_attempt() -> None:
    env = {k: v for k, v in os.environ.items() if k not in _NETWORK_SWITCHES}
    names = ["fake-memo.pdf", "trustee-handbook-chapter4.docx", "example-steelJIS-datasheet.html"]
    names += [
        "fake-email-attachment.eml",
        "2023-half-year-analyses-by-segment.xlsx",
        "fake-doc.rtf",
    ]
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, *(str(SAMPLES / n) for n in names)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ATTEMPTS []" in done.stdout, done.stdout[-3000:]
    assert "Thank you for using Unstructured" not in done.stdout + done.stderr


# -- the shared corpus (skipped without ../shared/datasets) -------------------------------------


@pytest.mark.dataset
@pytest.mark.skipif(not HAS_OCR, reason="tesseract-ocr / poppler-utils not installed")
def test_scanned_lorem_ipsum_is_ocred(pool: ParserPool, shared_datasets: Path) -> None:
    doc = _parse(shared_datasets / "documents" / "awkward" / "loremipsum-flat.pdf", pool)
    assert doc.metadata["ocr_pages"] == [1]
    assert "Lorem ipsum dolor sit amet" in _texts(doc)


@pytest.mark.dataset
@pytest.mark.slow
def test_damaged_booklet_is_parsed(pool: ParserPool, shared_datasets: Path) -> None:
    doc = _parse(shared_datasets / "documents" / "awkward" / "failure-after-repair.pdf", pool)
    assert doc.title == "Understanding Breast Cancer"
    assert doc.metadata["page_count"] == 76


@pytest.mark.dataset
@pytest.mark.slow
def test_every_shared_document_ingests_or_fails_clearly(
    pool: ParserPool, shared_datasets: Path
) -> None:
    skip = {
        "failure-after-repair.pdf",
        "pdf2image-memory-error-test-400p.pdf",
        "handbook-872p.docx",
    }
    skip |= {
        "example-10k.html",
        "winter-sports.epub",
        "multi-column.pdf",
        "fr_olap.pdf",
    }  # slow ones
    outcomes: dict[str, str] = {}
    for path in sorted((shared_datasets / "documents").rglob("*")):
        if not path.is_file() or path.name in skip:
            continue
        try:
            outcomes[path.name] = f"ok {len(_parse(path, pool).elements)}"
        except (DocumentParseError, UnsupportedFileTypeError) as exc:
            outcomes[path.name] = f"{type(exc).__name__}: {exc.message}"
    failed = {k: v for k, v in outcomes.items() if not v.startswith("ok")}
    assert set(failed) == {
        "empty.txt",
        "fake-text-all-whitespace.txt",
        "password.pdf",
        "password_protected.xlsx",
    }


def test_parse_file_times_out_on_a_real_file(pool: ParserPool) -> None:
    # Last in the file: the pool replaces the killed worker only when it is next used.
    tiny = IngestSettings(file_timeout_s=0.01)
    with pytest.raises(ParseTimeoutError, match=r"ingest\.file_timeout_s"):
        _parse(SAMPLES / "layout-parser-paper-fast.pdf", pool, tiny)
