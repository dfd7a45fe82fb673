"""llama-index readers as sources: any installed `BaseReader` (`MODULE:CLASS`, its constructor
and load arguments) yields Documents that go through the normal pipeline.

Identity: a reader source is the hash of `MODULE:CLASS` and its arguments (`source_id`), and
each of its documents is that id plus the reader document's own key (`document_key`), so a
second run of the same source finds the same documents: unchanged ones do no work, changed ones
are re-ingested, and the ones the source no longer returns are removed (`sync_reader`), the
same lifecycle as a folder sync.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

from core.db import DocumentRecord
from core.errors import InvalidRequestError, OndataError
from core.models import Document, Element
from ingest.pipeline import FailedDocument, IngestPipeline, IngestReport, Progress

ORIGIN_PREFIX = "reader:"
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SLUG = re.compile(r"[^a-z0-9]+")
_TITLE_KEYS = ("title", "file_name", "filename", "name", "subject")
_URL_KEYS = ("url", "URL", "source_url", "link", "href")
_AUTHOR_KEYS = ("author", "authors", "creator", "owner")
_MODIFIED_KEYS = ("last_modified", "last_modified_date", "modified", "updated_at", "lastModified")
_PAGE_KEYS = ("page_label", "page", "page_number")
_PATH_KEYS = ("file_path", "filepath", "file_name")


class ReaderError(InvalidRequestError):
    """A reader cannot be loaded, or its arguments are not what it takes."""

    code = "invalid_reader"


@dataclass(frozen=True)
class ReaderSource:
    """One reader source: `target` is MODULE:CLASS; `reader_args` go to its constructor and
    `load_args` to `lazy_load_data`/`load_data`; `id_key` names the metadata field that
    identifies a document when the reader's own ids are random."""

    target: str
    reader_args: Mapping[str, Any] = field(default_factory=dict)
    load_args: Mapping[str, Any] = field(default_factory=dict)
    id_key: str | None = None

    @property
    def source_id(self) -> str:
        """Stable across runs: the same reader with the same arguments is the same source."""
        key = json.dumps(
            [self.target, dict(self.reader_args), dict(self.load_args), self.id_key],
            sort_keys=True,
            default=str,
        )
        return f"reader-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    @property
    def origin(self) -> str:
        """What the registry records as these documents' origin (for the sync)."""
        return ORIGIN_PREFIX + self.source_id


def parse_pairs(pairs: Sequence[str], *, option: str) -> dict[str, Any]:
    """`key=value` options as a dict; a value that is JSON (a number, list, object, true) is
    read as JSON, anything else is the string itself."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ReaderError(f"{option} {pair!r} is not key=value", param=option)
        try:
            parsed[key.strip()] = json.loads(value)
        except ValueError:
            parsed[key.strip()] = value
    return parsed


def load_reader(target: str) -> type[Any]:
    """The reader class `MODULE:CLASS` names (a llama-index BaseReader); ReaderError else."""
    from llama_index.core.readers.base import BaseReader

    if not _TARGET.match(target):
        raise ReaderError(f"reader {target!r} is not MODULE:CLASS", param="reader")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ReaderError(
            f"reader module {module_name!r} is not installed ({exc}); install its package, "
            "e.g. pip install llama-index-readers-<name>",
            param="reader",
        ) from exc
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseReader)):
        raise ReaderError(f"{target!r} is not a llama-index reader class", param="reader")
    return cls


def open_reader(source: ReaderSource) -> Iterable[Any]:
    """The llama-index Documents the reader returns (lazily when it can): ReaderError when
    the class or its arguments are wrong; the reader's own errors may surface while iterating."""
    cls = load_reader(source.target)
    try:
        reader = cls(**source.reader_args)
    except (TypeError, ValueError) as exc:
        raise ReaderError(f"{source.target}: {exc}", param="reader_args") from exc
    try:
        loaded: Iterable[Any] = reader.lazy_load_data(**source.load_args)
    except NotImplementedError:  # BaseReader's default lazy_load_data
        loaded = reader.load_data(**source.load_args)
    except TypeError as exc:
        raise ReaderError(f"{source.target}: {exc}", param="load_args") from exc
    return loaded


def document_key(doc: Any, *, id_key: str | None = None) -> str:
    """What identifies a reader document across runs: the metadata field `id_key`; else its
    file path (SimpleDirectoryReader's ids are random, and a PDF's pages share one path); else
    its own id unless that is a random UUID; else the hash of its text."""
    metadata: Mapping[str, Any] = doc.metadata or {}
    if id_key is not None:
        if metadata.get(id_key) is None:
            raise ReaderError(f"a document has no metadata field {id_key!r} (--id-key)")
        return f"{id_key}={metadata[id_key]}"
    for key in _PATH_KEYS:
        if metadata.get(key):
            return f"path={metadata[key]}"
    own = str(getattr(doc, "id_", "") or "")
    if own and not _is_random_uuid(own):
        return f"id={own}"
    return f"text={hashlib.sha256(doc.get_content().encode()).hexdigest()}"


def _is_random_uuid(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def reader_doc_id(source: ReaderSource, key: str) -> str:
    """The ondata doc id of a reader document: a readable slug + a hash of source and key."""
    tail = key.partition("=")[2].rstrip("/").rsplit("/", 1)[-1]
    slug = _SLUG.sub("-", tail.lower()).strip("-")[:40].strip("-") or "doc"
    digest = hashlib.sha256(f"{source.source_id}\x00{key}".encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def to_documents(
    source: ReaderSource,
    docs: Iterable[Any],
    *,
    acl_groups: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[Document]:
    """ondata Documents from reader documents; consecutive ones with the same key (the pages
    of one file) become one document with an element per page."""
    keyed = ((document_key(d, id_key=source.id_key), d) for d in docs)
    for key, group in itertools.groupby(keyed, key=lambda pair: pair[0]):
        parts = [d for _, d in group]
        yield _document(
            reader_doc_id(source, key), parts, acl_groups=acl_groups, extra=metadata or {}
        )


def _document(
    doc_id: str, parts: Sequence[Any], *, acl_groups: Sequence[str], extra: Mapping[str, Any]
) -> Document:
    meta = _plain(dict(parts[0].metadata or {}))
    elements = tuple(
        Element(text=p.get_content().strip(), page=_page(p.metadata or {}))
        for p in parts
        if p.get_content().strip()
    )
    body = "\x00".join(e.text for e in elements)
    path = next((str(meta[k]) for k in _PATH_KEYS if meta.get(k)), None)
    title = _first(meta, _TITLE_KEYS) or (PurePath(path).name if path else None)
    kept = {k: v for k, v in meta.items() if k not in _PATH_KEYS}
    for name, keys in (("author", _AUTHOR_KEYS), ("last_modified", _MODIFIED_KEYS)):
        if (value := _first(meta, keys)) is not None:
            kept[name] = value
    return Document(
        doc_id=doc_id,
        source=_first(meta, _URL_KEYS) or (PurePath(path).name if path else doc_id),
        title=str(title or _first_line(body) or doc_id),
        filepath=PurePath(path).name if path else None,
        url=_first(meta, _URL_KEYS),
        content_hash=hashlib.sha256(
            json.dumps([body, kept], sort_keys=True, default=str).encode()
        ).hexdigest(),
        elements=elements,
        acl_groups=tuple(acl_groups),
        metadata={**kept, **extra},
    )


def _first(meta: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((meta[k] for k in keys if meta.get(k) not in (None, "")), None)


def _first_line(body: str) -> str:
    return body.strip().split("\n", 1)[0][:120]


def _page(meta: Mapping[str, Any]) -> int | None:
    value = _first(meta, _PAGE_KEYS)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _plain(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata as JSON values (database rows carry dates, decimals...)."""

    def default(value: Any) -> str:
        return value.isoformat() if isinstance(value, datetime | date) else str(value)

    plain: dict[str, Any] = json.loads(json.dumps(meta, default=default))
    return plain


@dataclass
class _Listing:
    present: list[str] = field(default_factory=list)
    error: str | None = None


def ingest_reader(
    pipeline: IngestPipeline,
    source: ReaderSource,
    *,
    acl_groups: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    owned: Callable[[str], str] = str,
    may_delete: Callable[[DocumentRecord], bool] = lambda record: True,
    loaded: Iterable[Any] | None = None,
) -> tuple[IngestReport, list[DocumentRecord]]:
    """Ingest what the reader returns (`loaded`, from `open_reader`, or opened here), then
    remove the source's documents it no longer returns (only after a complete listing).
    `owned` maps a doc id to the writer's own (Scope.owned_id); `may_delete` guards the
    removal. Returns the report and the removed records."""
    loaded = open_reader(source) if loaded is None else loaded
    listing = _Listing()
    docs = to_documents(source, loaded, acl_groups=acl_groups, metadata=metadata)
    report = pipeline.ingest_documents(_listed(docs, listing, owned=owned), progress=progress)
    pipeline.store.set_origin(pipeline.index_name, listing.present, source.origin)
    if listing.error is not None:
        report.documents_failed.append(FailedDocument(source=source.target, error=listing.error))
        return report, []
    removed = [
        record
        for record in pipeline.store.documents_with_origin(pipeline.index_name, source.origin)
        if record.doc_id not in set(listing.present) and may_delete(record)
    ]
    for record in removed:
        pipeline.delete_document(record.doc_id)
    return report, removed


def _listed(
    docs: Iterator[Document], listing: _Listing, *, owned: Callable[[str], str]
) -> Iterator[Document]:
    """The documents, each noted as present; a reader failing part-way ends the listing with
    its error (third-party code: any exception) instead of losing the pipeline's batch."""
    try:
        for doc in docs:
            doc_id = owned(doc.doc_id)
            listing.present.append(doc_id)
            yield doc if doc_id == doc.doc_id else doc.model_copy(update={"doc_id": doc_id})
    except OndataError as exc:
        listing.error = exc.message
    except Exception as exc:
        listing.error = f"the reader failed: {type(exc).__name__}: {exc}"
