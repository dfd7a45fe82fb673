"""What kind of file is this, and how are its bytes decoded: extension plus content sniffing."""

from __future__ import annotations

import codecs
import logging
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charset_normalizer import from_bytes

from core.errors import (
    DamagedDocumentError,
    DecompressionBombError,
    DocumentParseError,
    EncryptedDocumentError,
    UnsupportedFileTypeError,
)
from core.filetypes import EXTENSIONS as EXTENSIONS
from core.filetypes import SUPPORTED_EXTENSIONS as SUPPORTED_EXTENSIONS
from core.filetypes import FileType as FileType
from core.filetypes import unsupported_message

logger = logging.getLogger(__name__)

SNIFF_BYTES = 8192
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_HTML_RE = re.compile(rb"^\s*(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.IGNORECASE)
_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
_COMMON_ENCODINGS = re.compile(
    r"^(cp125\d|iso8859_\d+|latin_1|koi8_[ru]|cp866|shift_jis|cp932|euc_jp|euc_kr|cp949"
    r"|gb2312|gbk|gb18030|big5|big5hkscs|tis_620|cp874)$"
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


_OOXML_MAIN_PART = {
    FileType.DOCX: "word/document.xml",
    FileType.PPTX: "ppt/presentation.xml",
    FileType.XLSX: "xl/workbook.xml",
}
_ZIP_MIMETYPES = {
    b"application/epub+zip": FileType.EPUB,
    b"application/vnd.oasis.opendocument.text": FileType.ODT,
}
_ZIP_TYPES = frozenset({*_OOXML_MAIN_PART, FileType.EPUB, FileType.ODT})
_TEXT_TYPES = frozenset(
    {FileType.HTML, FileType.MD, FileType.TXT, FileType.CSV, FileType.TSV, FileType.EML}
)


def detect_file_type(path: Path) -> FileType:
    """The file's type from its extension, corrected by what its first bytes say it is.

    Raises UnsupportedFileTypeError when the extension is not in the table (core/filetypes.py):
    the same rule as uploads, whatever the content.
    """
    claimed = EXTENSIONS.get(path.suffix.lower())
    if claimed is None:
        raise UnsupportedFileTypeError(unsupported_message(path.name))
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    sniffed = _sniff_magic(path, head)
    if sniffed is not None and sniffed != claimed and _content_wins(claimed, sniffed):
        logger.warning(
            "%s looks like %s, not %s; parsing it as %s", path.name, sniffed, claimed, sniffed
        )
        return sniffed
    return claimed


def _sniff_magic(path: Path, head: bytes) -> FileType | None:
    """A type from unambiguous magic bytes, or None."""
    if b"%PDF-" in head[:1024]:
        return FileType.PDF
    if head.startswith(_ZIP_MAGIC):
        return _sniff_zip(path)
    if head.startswith(b"{\\rtf"):
        return FileType.RTF
    if _HTML_RE.match(_strip_bom(head)):
        return FileType.HTML
    return None


def _sniff_zip(path: Path) -> FileType | None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            mimetype = zf.read("mimetype").strip() if "mimetype" in names else b""
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    for file_type, part in _OOXML_MAIN_PART.items():
        if part in names:
            return file_type
    return _ZIP_MIMETYPES.get(mimetype)


def _content_wins(claimed: FileType, sniffed: FileType) -> bool:
    """Content overrides the extension only where the extension cannot be right.

    A .txt that starts like an HTML document is HTML; Markdown may hold HTML and stays
    Markdown; a .csv that is a PDF is a PDF.
    """
    if claimed is FileType.TXT and sniffed is FileType.HTML:
        return True
    if claimed in _TEXT_TYPES:
        return sniffed not in _TEXT_TYPES
    return True


def check_office_container(path: Path, file_type: FileType) -> None:
    """Fail with a clear reason when an Office/ODF/EPUB file is encrypted or not a valid package."""
    if file_type not in _ZIP_TYPES:
        return
    label = file_type.value.upper()
    with path.open("rb") as fh:
        head = fh.read(len(_OLE2_MAGIC))
    if head.startswith(_OLE2_MAGIC):
        if _is_encrypted_ole(path):
            raise EncryptedDocumentError(f"password-protected {label}")
        raise DamagedDocumentError(
            f"malformed {label}: a legacy binary Office file, not a ZIP package"
        )
    if not zipfile.is_zipfile(path):
        raise DamagedDocumentError(f"malformed {label}: not a ZIP package")
    _check_zip_members(path, file_type, label)


RATIO_FLOOR_BYTES = 10 * 1024 * 1024
"""Below this many unpacked bytes the compression ratio is not checked (it cannot hurt)."""
MAX_ZIP_MEMBERS = 100_000


def check_unpacked_size(
    path: Path, file_type: FileType, *, max_bytes: int, max_ratio: float
) -> None:
    """Refuse a ZIP-based document (a decompression bomb) whose members inflate to more than
    `max_bytes`, or to more than `max_ratio` times the file once past RATIO_FLOOR_BYTES, or
    whose headers misstate what a member inflates to.

    The declared sizes are checked first (cheap), then every member is really inflated with
    a byte cap, counting what its deflate stream produces: a forged header stops Python's
    zipfile early, but pandoc reads the stream to its end, so only real bytes are trusted.
    """
    if file_type not in _ZIP_TYPES or not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return  # check_office_container names the damage when the file is parsed
    label = file_type.value.upper()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DecompressionBombError(
            f"{label} has {len(infos)} parts; the limit is {MAX_ZIP_MEMBERS}"
        )
    limits = _UnpackLimits(label, path.stat().st_size, max_bytes, max_ratio)
    limits.check(sum(info.file_size for info in infos), verb="would unpack to")
    _check_inflated(path, infos, limits)


@dataclass(frozen=True)
class _UnpackLimits:
    label: str
    file_size: int
    max_bytes: int
    max_ratio: float

    @property
    def cap(self) -> int:
        """The most bytes a document may unpack to."""
        by_ratio = max(RATIO_FLOOR_BYTES, int(self.max_ratio * max(self.file_size, 1)))
        return min(self.max_bytes, by_ratio)

    def check(self, unpacked: int, *, verb: str) -> None:
        if unpacked > self.max_bytes:
            raise DecompressionBombError(
                f"{self.label} {verb} {unpacked} bytes; the limit is {self.max_bytes} "
                "(ingest.max_unpacked_bytes)"
            )
        ratio = unpacked / max(self.file_size, 1)
        if unpacked > RATIO_FLOOR_BYTES and ratio > self.max_ratio:
            raise DecompressionBombError(
                f"{self.label} {verb} {ratio:.0f}x its size; the limit is {self.max_ratio:g}x "
                "(ingest.max_compression_ratio)"
            )


def _check_inflated(path: Path, infos: list[zipfile.ZipInfo], limits: _UnpackLimits) -> None:
    """Inflate every member, counting real bytes; stop as soon as the total passes the cap."""
    total = 0
    with path.open("rb") as fh:
        for info in infos:
            real = _inflated_size(fh, info, limit=limits.cap - total, label=limits.label)
            total += real
            limits.check(total, verb="inflates to at least")
            if real != info.file_size:
                raise DecompressionBombError(
                    f"{limits.label} part {info.filename!r} declares {info.file_size} bytes "
                    f"but inflates to {real} (forged sizes)"
                )


_LOCAL_HEADER = struct.Struct("<4s22xHH")
_INFLATE_BLOCK = 1 << 20


def _inflated_size(fh: BinaryIO, info: zipfile.ZipInfo, *, limit: int, label: str) -> int:
    """What the member's data really inflates to, counted up to just past `limit` bytes."""
    fh.seek(info.header_offset)
    raw = fh.read(_LOCAL_HEADER.size)
    if len(raw) < _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise DamagedDocumentError(f"malformed {label}: bad header for {info.filename!r}")
    _, name_length, extra_length = _LOCAL_HEADER.unpack(raw)
    fh.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
    if info.compress_type == zipfile.ZIP_STORED:
        return info.compress_size
    if info.compress_type != zipfile.ZIP_DEFLATED:
        return info.file_size  # only Python's zipfile reads these, and it stops there
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = 0
    try:
        while not inflater.eof and produced <= limit:
            data = inflater.unconsumed_tail or fh.read(_INFLATE_BLOCK)
            if not data:
                break
            produced += len(inflater.decompress(data, _INFLATE_BLOCK))
    except zlib.error as exc:
        raise DamagedDocumentError(f"malformed {label}: {info.filename!r}: {exc}") from exc
    return produced


def _check_zip_members(path: Path, file_type: FileType, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            broken = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DamagedDocumentError(f"malformed {label}: {exc}") from exc
    if broken is not None:
        raise DamagedDocumentError(f"malformed {label}: corrupt member {broken}")
    part = _OOXML_MAIN_PART.get(file_type)
    if part is not None and part not in names:
        raise DamagedDocumentError(f"malformed {label}: {part} is missing")


def _is_encrypted_ole(path: Path) -> bool:
    try:
        import msoffcrypto

        with path.open("rb") as fh:
            return bool(msoffcrypto.OfficeFile(fh).is_encrypted())
    except Exception:  # msoffcrypto raises bare Exceptions for files it does not know
        return False


def decode_text(data: bytes, *, file_type: FileType | None = None) -> tuple[str, str]:
    """Text and the encoding it was read with: BOM, UTF-16/32 without BOM, UTF-8, a declared
    HTML charset, then detection (preferring cp1252 among equally plausible code pages)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding), encoding
    if b"\x00" in data:
        return _decode_wide(data)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    declared = _declared_charset(data) if file_type is FileType.HTML else None
    if declared:
        try:
            return data.decode(declared), declared
        except (UnicodeDecodeError, LookupError):
            logger.info("declared charset %s does not fit; detecting", declared)
    encoding = _detect_encoding(data)
    return data.decode(encoding), encoding


def _decode_wide(data: bytes) -> tuple[str, str]:
    """UTF-16/32 without a BOM, or not text at all."""
    best = from_bytes(data).best()
    if best is not None and str(best.encoding).startswith(("utf_16", "utf_32")):
        return str(best), str(best.encoding)
    raise DocumentParseError("not text: the file holds binary data")


def _declared_charset(data: bytes) -> str | None:
    match = _META_CHARSET_RE.search(data[:SNIFF_BYTES])
    return match.group(1).decode("ascii") if match else None


def _detect_encoding(data: bytes) -> str:
    """The most plausible legacy encoding of non-UTF-8 bytes.

    Short Western texts (umlauts, accents) fit many code pages equally well and detection then
    picks one arbitrarily (cp1250, which turns è into č, or even cp1006). cp1252 wins whenever
    it reads the bytes as cleanly as the best guess; an exotic guess falls back to cp1252.
    """
    best = from_bytes(data).best()
    western = from_bytes(data, cp_isolation=["cp1252"]).best()
    if western is not None and (best is None or western.chaos <= best.chaos + 0.05):
        return "cp1252"
    if best is not None and _COMMON_ENCODINGS.match(str(best.encoding)):
        return str(best.encoding)
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return "latin-1"
    return "cp1252"


def _strip_bom(head: bytes) -> bytes:
    for bom, _ in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :]
    return head
