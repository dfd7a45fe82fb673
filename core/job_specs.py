"""What an ingestion job does: one pydantic model per job kind, written by the API when the
job is created and read by the worker that runs it (the job record's `spec` column).

Specs stored before these models (no `kind`, no `submitter_groups`) still read: the kind
comes from the job record, and a missing `submitter_groups` is read as unrestricted, which is
what such jobs were run as.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.access import Scope

KIND_UPLOAD = "upload"
KIND_SOURCES = "sources"
KIND_READER = "reader"


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class StoredUpload(_Spec):
    """One stored upload: where its bytes are, its safe name, the document it becomes."""

    path: str
    filename: str
    doc_id: str


class FolderSource(_Spec):
    type: Literal["folder"] = "folder"
    path: str


class UrlSource(_Spec):
    type: Literal["url"] = "url"
    url: str
    crawl_depth: int = 0


class _JobSpec(_Spec):
    acl_groups: list[str] = Field(default_factory=list)
    """The ACL groups every document of the job gets (none: public)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    submitter_groups: list[str] | None = None
    """The submitting caller's read groups (None: every document): which documents the job
    may replace, report on and delete (`scope`)."""

    @property
    def scope(self) -> Scope:
        """What the job may write over: the documents its submitter may read."""
        groups = None if self.submitter_groups is None else tuple(self.submitter_groups)
        return Scope(role="contributor", groups=groups)


class UploadSpec(_JobSpec):
    """Files uploaded through the API, stored under <data_dir>/uploads."""

    kind: Literal["upload"] = "upload"
    files: list[StoredUpload] = Field(default_factory=list)


class SourcesSpec(_JobSpec):
    """Folders inside jobs.source_roots and http(s) URLs, synced on every run."""

    kind: Literal["sources"] = "sources"
    sources: list[Annotated[FolderSource | UrlSource, Field(discriminator="type")]] = Field(
        default_factory=list
    )


class ReaderSpec(_JobSpec):
    """A llama-index reader (MODULE:CLASS in jobs.reader_allow) and its arguments, synced on
    every run (ingest/readers.py)."""

    kind: Literal["reader"] = "reader"
    reader: str
    reader_args: dict[str, Any] = Field(default_factory=dict)
    load_args: dict[str, Any] = Field(default_factory=dict)
    id_key: str | None = None


JobSpec = UploadSpec | SourcesSpec | ReaderSpec


def read_spec(kind: str, stored: Mapping[str, Any] | None) -> JobSpec:
    """The spec a job record stores (`kind` is the record's, for specs stored without one)."""
    data = dict(stored or {})
    if kind == KIND_UPLOAD:
        return UploadSpec.model_validate(data | {"kind": KIND_UPLOAD})
    if kind == KIND_READER:
        return ReaderSpec.model_validate(data | {"kind": KIND_READER})
    return SourcesSpec.model_validate(data | {"kind": KIND_SOURCES})
