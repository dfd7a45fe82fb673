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
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and _visible(child, path) and is_supported(child):
                    found[child.resolve()] = None
        else:
            found[path.resolve()] = None
    return list(found)


def source_files(
    paths: Iterable[Path],
    *,
    doc_id_for: Any,
    acl_groups: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> list[SourceFile]:
    """SourceFiles for paths; doc_id derives from the absolute path so re-runs find the same doc."""
    return [
        SourceFile(
            path=p,
            doc_id=doc_id_for(str(p)),
            acl_groups=tuple(acl_groups),
            metadata=dict(metadata or {}),
        )
        for p in discover_files(paths)
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
