"""Wire models of /v1/indexes, /v1/indexes/{name}/documents and /v1/ingestion/jobs.

Times are Unix seconds (as OpenAI's files and batches APIs give them), null when not yet.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

INDEX_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"

MAX_REFRESH_INTERVAL_S = 366 * 24 * 3600


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IndexCreateBody(_Body):
    """POST /v1/indexes. Omitted settings take the server's defaults; all but `description`
    are fixed once the index exists."""

    name: str = Field(pattern=INDEX_NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    embedding_model: str | None = None
    chunk_size: int | None = Field(default=None, ge=32, le=4096)
    chunk_overlap: int | None = Field(default=None, ge=0, le=1024)


class IndexUpdateBody(_Body):
    """PATCH /v1/indexes/{name}: only `description` may change; the others must equal the
    index's (409 index_setting_immutable otherwise)."""

    description: str | None = Field(default=None, max_length=2000)
    embedding_model: str | None = None
    chunk_size: int | None = None
    chunk_overlap: int | None = None


class IndexOut(BaseModel):
    object: Literal["index"] = "index"
    name: str
    description: str
    embedding_model: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    created_at: int
    document_count: int
    chunk_count: int
    vector_count: int | None = None


class IndexList(BaseModel):
    object: Literal["list"] = "list"
    data: list[IndexOut]


class IndexDeleted(BaseModel):
    object: Literal["index.deleted"] = "index.deleted"
    name: str
    deleted: bool = True


class DocumentOut(BaseModel):
    object: Literal["document"] = "document"
    doc_id: str
    title: str
    filename: str
    source: str
    status: str
    chunk_count: int
    error: str | None
    acl_groups: list[str]
    metadata: dict[str, Any]
    origin: str | None
    updated_at: int | None


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentOut]
    total: int


class DocumentDeleted(BaseModel):
    object: Literal["document.deleted"] = "document.deleted"
    doc_id: str
    deleted: bool = True
    chunks_removed: int


class UploadedFile(BaseModel):
    filename: str
    doc_id: str
    bytes: int


class UploadAccepted(BaseModel):
    """202 of POST /v1/indexes/{name}/documents."""

    object: Literal["ingestion.job"] = "ingestion.job"
    job_id: str
    status: str
    documents: list[UploadedFile]


class FolderSource(_Body):
    type: Literal["folder"]
    path: str = Field(min_length=1, max_length=4096)


class UrlSource(_Body):
    type: Literal["url"]
    url: str = Field(min_length=1, max_length=4096)
    crawl_depth: Literal[0, 1] = 0


class ReaderSource(_Body):
    """A llama-index reader named in jobs.reader_allow (admins only; the job's only source)."""

    type: Literal["reader"]
    reader: str = Field(min_length=3, max_length=300, description="MODULE:CLASS")
    reader_args: dict[str, Any] = Field(default_factory=dict)
    load_args: dict[str, Any] = Field(default_factory=dict)
    id_key: str | None = Field(default=None, max_length=200)


Source = Annotated[FolderSource | UrlSource | ReaderSource, Field(discriminator="type")]


class JobCreateBody(_Body):
    """POST /v1/ingestion/jobs."""

    index_name: str = Field(pattern=INDEX_NAME_PATTERN)
    sources: list[Source] = Field(min_length=1, max_length=100)
    acl_groups: list[str] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # at most a year: the next run's time must stay a date (a larger value was a 500)
    refresh_interval_s: int | None = Field(default=None, ge=1, le=MAX_REFRESH_INTERVAL_S)


class JobProgress(BaseModel):
    total: int
    processed: int
    pending: int
    indexed: int
    unchanged: int
    failed: int
    deleted: int
    chunks_written: int


class JobError(BaseModel):
    doc_id: str
    source: str
    error: str


class JobOut(BaseModel):
    object: Literal["ingestion.job"] = "ingestion.job"
    id: str
    index_name: str
    kind: Literal["upload", "sources", "reader"]
    status: str
    sources: list[dict[str, Any]]
    files: list[dict[str, str]]
    acl_groups: list[str]
    metadata: dict[str, Any]
    refresh_interval_s: int | None
    next_run_at: int | None
    run: int
    attempts: int
    cancel_requested: bool
    created_at: int
    started_at: int | None
    finished_at: int | None
    error: str | None
    progress: JobProgress
    errors: list[JobError]


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
