"""Where documents come from: files and folders (URLs arrive with the service issue)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.filetypes import is_supported
from core.models import Document, Element
from ingest.pipeline import SourceFile


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def discover_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus every visible file of a supported type (core/filetypes.py)
    below named folders (sorted, no duplicates). A named file of another type stays in the
    list, so that ingesting it fails with the same reason an upload gets."""
    return list(named_files(paths))


def named_files(paths: Iterable[Path]) -> dict[Path, str]:
    """`discover_files` (resolved paths), each with the name the user gave it: its path
    relative to the named folder, or a named file's own name (never the server's path)."""
    found: dict[Path, str] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and _visible(child, path) and is_supported(child):
                    found.setdefault(child.resolve(), child.relative_to(path).as_posix())
        else:
            found.setdefault(path.resolve(), path.name)
    return found


def source_files(
    paths: Iterable[Path],
    *,
    doc_id_for: Any,
    acl_groups: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> list[SourceFile]:
    """SourceFiles for paths; doc_id derives from the absolute path so re-runs find the same doc.
    The metadata `filename` is the name the user gave (see `named_files`), as an upload's."""
    return [
        SourceFile(
            path=p,
            doc_id=doc_id_for(str(p)),
            acl_groups=tuple(acl_groups),
            metadata={"filename": name, **(metadata or {})},
        )
        for p, name in named_files(paths).items()
    ]


def document_from_record(
    doc_id: str,
    *,
    title: str,
    text: str,
    source: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Document:
    """A Document from a text record (a BEIR corpus line, an API payload): one body element."""
    import hashlib

    body = text.strip()
    digest = hashlib.sha256(f"{title}\x00{body}".encode()).hexdigest()
    elements = (Element(text=body),) if body else ()
    return Document(
        doc_id=doc_id,
        source=source or doc_id,
        title=title.strip() or doc_id,
        content_hash=digest,
        elements=elements,
        metadata=dict(metadata or {}),
    )
