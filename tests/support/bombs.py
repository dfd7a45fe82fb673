"""Hostile documents built in the tests: ZIP bombs whose headers lie, and a DOCX that is honest
but needs far more memory to parse than its size suggests."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

MB = 1024 * 1024
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
_CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
    'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
    'officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
    'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)
_CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:'
    'xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" media-type='
    '"application/oebps-package+xml"/></rootfiles></container>'
)


def _docx(document_xml: bytes) -> dict[str, bytes]:
    return {
        "[Content_Types].xml": _CONTENT_TYPES.encode(),
        "_rels/.rels": _RELS.encode(),
        "word/document.xml": document_xml,
    }


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            stored = name == "mimetype"  # EPUB: first, uncompressed
            zf.writestr(name, data, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def forge_declared_size(archive: bytes, member: str, real: bytes, declared: int) -> bytes:
    """The archive with `member`'s local and central headers claiming `declared` bytes and the
    CRC of the first `declared` bytes of `real`: every header check (and zipfile's CRC test)
    passes, while the deflate stream still inflates to len(real) bytes."""
    data = bytearray(archive)
    crc = zlib.crc32(real[:declared])
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 14, crc)
    struct.pack_into("<I", data, info.header_offset + 22, declared)
    end = data.rfind(b"PK\x05\x06")
    central = struct.unpack_from("<I", data, end + 16)[0]  # where the central directory starts
    while data[central : central + 4] == b"PK\x01\x02":
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, central + 28)
        if bytes(data[central + 46 : central + 46 + name_length]) == member.encode():
            struct.pack_into("<I", data, central + 16, crc)
            struct.pack_into("<I", data, central + 24, declared)
            return bytes(data)
        central += 46 + name_length + extra_length + comment_length
    raise AssertionError(f"no central directory entry for {member}")


def xhtml(megabytes: int) -> bytes:
    """Valid XHTML of about `megabytes` MB (compresses ~100x)."""
    para = b"<p>The quarterly report lists travel, hotels and the cafeteria budget.</p>\n"
    body = para * (megabytes * MB // len(para))
    return b'<html xmlns="http://www.w3.org/1999/xhtml"><body>' + body + b"</body></html>"


def forged_epub(real_mb: int = 30, declared: int = 4600) -> bytes:
    """An EPUB whose chapter declares `declared` bytes but inflates to ~real_mb MB (the shape
    of the security probe's 83 KB EPUB that took pandoc to 4.1 GB)."""
    chapter = xhtml(real_mb)
    members = {
        "mimetype": b"application/epub+zip",
        "META-INF/container.xml": _CONTAINER.encode(),
        "OEBPS/content.xhtml": chapter,
    }
    return forge_declared_size(_zip(members), "OEBPS/content.xhtml", chapter, declared)


def forged_docx(real_mb: int = 30, declared: int = 4600) -> bytes:
    """A DOCX whose document.xml declares `declared` bytes but inflates to ~real_mb MB."""
    document = f'<w:document xmlns:w="{_W}"><w:body>'.encode() + xhtml(real_mb)
    return forge_declared_size(_zip(_docx(document)), "word/document.xml", document, declared)


def memory_hog_docx(xml_mb: int = 100) -> bytes:
    """An honest DOCX (~150 KB, true sizes) whose document.xml holds xml_mb MB of empty
    paragraphs: parsing it takes more than 1 GB (libxml2 nodes), far past its size."""
    body = b"<w:p/>" * (xml_mb * MB // 6)
    document = f'<w:document xmlns:w="{_W}"><w:body>'.encode() + body + b"</w:body></w:document>"
    return _zip(_docx(b'<?xml version="1.0"?>' + document))
