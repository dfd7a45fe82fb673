"""What may be ingested: upload names and types, folder roots, URLs, links, ZIP bombs."""

from __future__ import annotations

import resource
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from core.errors import (
    DecompressionBombError,
    InvalidRequestError,
    SourceNotAllowedError,
    UnsupportedFileTypeError,
)
from core.filetypes import FILE_TYPES, extension_for_mime
from core.ingestion import (
    SUPPORTED_UPLOAD_EXTENSIONS,
    check_folder_source,
    check_upload_type,
    check_url_source,
    inside_roots,
    new_upload_path,
    remove_stored_upload,
    safe_filename,
    upload_doc_id,
)
from core.settings import IngestSettings, JobsSettings, Settings
from ingest.filetypes import SUPPORTED_EXTENSIONS, FileType, check_unpacked_size, detect_file_type
from ingest.parse_pool import InlineParseRunner
from ingest.parsers import parse_file
from ingest.sources import discover_files
from ingest.web import same_host_links

MB = 1024 * 1024


@pytest.mark.parametrize(
    ("sent", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd.txt", "passwd.txt"),
        ("..\\..\\boot.ini.txt", "boot.ini.txt"),
        ("/abs/path/notes.md", "notes.md"),
        (".hidden.md", "hidden.md"),
        ("a\x00b\r\nc.txt", "a_b_c.txt"),
        ('inv<a>l:i"d|?*.csv', "inv_a_l_i_d.csv"),
        ("  spaced   out  .txt ", "spaced out.txt"),
        ("Cafe\u0301.md", "Caf\u00e9.md"),
        ("x" * 500 + ".docx", "x" * 195 + ".docx"),
        ("inv\u202egpj.exe.txt", "invgpj.exe.txt"),
        ("\u2066a\u2069\u200e\u200f\u200b\ufeff\u202a\u202c\x85b.md", "ab.md"),
        ("lone\ud800surrogate.txt", "lonesurrogate.txt"),
    ],
)
def test_safe_filename_keeps_names_inside_their_folder(sent: str, safe: str) -> None:
    assert safe_filename(sent) == safe


@pytest.mark.parametrize("sent", ["", "..", "/", "...", "\x00\x01", "\u202e\u2066.\u200f"])
def test_safe_filename_refuses_names_with_nothing_left(sent: str) -> None:
    with pytest.raises(InvalidRequestError):
        safe_filename(sent)


def test_upload_types_match_the_parsers() -> None:
    assert SUPPORTED_UPLOAD_EXTENSIONS == SUPPORTED_EXTENSIONS
    assert check_upload_type("A.DOCX") == ".docx"
    for name in ("tool.exe", "archive.zip", "noext"):
        with pytest.raises(UnsupportedFileTypeError):
            check_upload_type(name)


@pytest.mark.parametrize(
    ("name", "admitted"),
    [("notes.xyz", False), ("NOTES", False), ("tool.exe", False), ("a.MD", True), ("b.htm", True)],
)
def test_one_file_type_rule_for_uploads_the_cli_walk_and_parsing(
    tmp_path: Path, name: str, admitted: bool
) -> None:
    """Upload check, folder walk and the parser's detection all follow core/filetypes.py."""
    (tmp_path / name).write_text("The cafeteria opens at eight.\n", encoding="utf-8")
    walked = [p.name for p in discover_files([tmp_path])]
    assert (walked == [name]) is admitted
    if admitted:
        assert check_upload_type(name) == Path(name).suffix.lower()
        assert detect_file_type(tmp_path / name) in set(FileType)
        return
    with pytest.raises(UnsupportedFileTypeError) as upload:
        check_upload_type(name)
    with pytest.raises(UnsupportedFileTypeError) as parse:
        detect_file_type(tmp_path / name)
    assert upload.value.message == parse.value.message


def test_url_content_types_come_from_the_same_table() -> None:
    for spec in FILE_TYPES:
        for mime in spec.mime_types:
            ext = extension_for_mime(f"{mime.upper()}; charset=utf-8")
            assert ext is not None
            assert check_upload_type(f"page{ext}") == ext
    assert extension_for_mime("application/zip") is None


def test_upload_doc_id_is_per_index_and_name() -> None:
    assert upload_doc_id("hr", "a.md") == upload_doc_id("hr", "a.md")
    assert upload_doc_id("hr", "a.md") != upload_doc_id("it", "a.md")
    assert upload_doc_id("hr", "a.md").startswith("a-md-")


def test_uploads_never_share_a_folder_and_only_uploads_are_removed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    first = new_upload_path(settings, "hr", "a.md")
    second = new_upload_path(settings, "hr", "a.md")
    assert first != second
    first.write_text("x")
    outside = tmp_path / "keep.md"
    outside.write_text("y")
    assert not remove_stored_upload(settings, str(outside))
    assert remove_stored_upload(settings, str(first))
    assert outside.exists()
    assert not first.parent.exists()


def test_folder_sources_stay_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    (root / "hr").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret")
    settings = Settings(data_dir=tmp_path / "d", jobs=JobsSettings(source_roots=(root,)))
    assert check_folder_source(settings, "hr") == (root / "hr").resolve()
    assert check_folder_source(settings, str(root / "hr")) == (root / "hr").resolve()
    for bad in ("../secret", str(tmp_path / "secret"), "escape", "/etc"):
        with pytest.raises(SourceNotAllowedError):
            check_folder_source(settings, bad)
    assert not inside_roots(settings, root / "escape" / "file.txt")
    with pytest.raises(SourceNotAllowedError, match="ONDATA_JOBS__SOURCE_ROOTS"):
        check_folder_source(Settings(data_dir=tmp_path / "d"), "hr")


def test_url_sources_are_http_only() -> None:
    assert check_url_source("HTTPS://example.org/a#frag") == "https://example.org/a"
    for bad in ("file:///etc/passwd", "ftp://x/y", "http://", "javascript:alert(1)"):
        with pytest.raises(SourceNotAllowedError):
            check_url_source(bad)


def test_same_host_links_one_level() -> None:
    html = b"""<a href="/a.html#top">a</a> <a href="b.txt">b</a> <a href="/a.html">again</a>
    <a href="https://elsewhere.org/x">x</a> <a href="mailto:x@y">m</a> <a href="/">self</a>"""
    links = same_host_links("http://h:8080/", html)
    assert links == ("http://h:8080/a.html", "http://h:8080/b.txt")


def _bomb(path: Path, *, unpacked: int) -> Path:
    """A DOCX-shaped ZIP whose one big member is zeros (compresses ~1000x)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
        with zf.open("word/media/zeros.bin", "w") as member:
            block = bytes(MB)
            for _ in range(unpacked // MB):
                member.write(block)
    return path


def test_zip_bomb_refused_from_its_directory_without_unpacking(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "bomb.docx", unpacked=300 * MB)
    assert bomb.stat().st_size < 2 * MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DecompressionBombError, match=r"ingest\.max_compression_ratio"):
        check_unpacked_size(bomb, FileType.DOCX, max_bytes=512 * MB, max_ratio=200)
    with pytest.raises(DecompressionBombError, match=r"ingest\.max_unpacked_bytes"):
        check_unpacked_size(bomb, FileType.DOCX, max_bytes=100 * MB, max_ratio=10_000)
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50 * 1024  # peak memory did not grow by the unpacked size


def test_zip_check_passes_ordinary_documents() -> None:
    sample = (
        Path(__file__).resolve().parents[2] / "data" / "samples" / "trustee-handbook-chapter4.docx"
    )
    check_unpacked_size(sample, FileType.DOCX, max_bytes=512 * MB, max_ratio=200)
    check_unpacked_size(sample, FileType.PDF, max_bytes=1, max_ratio=2)  # not a ZIP type


def _docx_with_padding(path: Path, text: str, *, padding: int) -> Path:
    """A real DOCX saying `text`, with a member of `padding` zero bytes added (a bomb when big)."""
    import docx

    document = docx.Document()
    document.add_paragraph(text)
    document.save(str(path))
    with (
        zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("word/media/zeros.bin", "w") as member,
    ):
        for _ in range(padding // MB):
            member.write(bytes(MB))
    return path


def _email_with(attachment: Path, path: Path) -> Path:
    message = EmailMessage()
    message["Subject"] = "Quarterly figures"
    message["From"] = "a@example.org"
    message["To"] = "b@example.org"
    message.set_content("The quarterly figures are attached. Revenue grew by four percent.")
    message.add_attachment(
        attachment.read_bytes(),
        maintype="application",
        subtype="octet-stream",
        filename=attachment.name,
    )
    path.write_bytes(message.as_bytes())
    return path


@pytest.mark.parametrize(("padding", "attached"), [(0, True), (20 * MB, False)])
def test_zip_bomb_attachment_is_skipped_and_the_email_kept(
    tmp_path: Path, padding: int, attached: bool
) -> None:
    docx = _docx_with_padding(
        tmp_path / "figures.docx", "Margins held at twelve percent.", padding=padding
    )
    eml = _email_with(docx, tmp_path / "mail.eml")
    doc = parse_file(eml, settings=IngestSettings(), runner=InlineParseRunner())
    text = " ".join(e.text for e in doc.elements)
    assert "Revenue grew by four percent" in text
    assert ("Margins held at twelve percent" in text) is attached
