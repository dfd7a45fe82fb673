"""The one typed settings root of ondata (env prefix ONDATA_, nested with __)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.netguard import AddressPolicy

PREFIX = "ONDATA_"
# ONDATA_ variables that are not settings: docker-compose's host-side knobs (ONDATA_PORT,
# ONDATA_SOURCES, often in the same .env), the eval CLI's --api-key and the tests' database
NOT_SETTINGS = frozenset(
    {"ONDATA_PORT", "ONDATA_SOURCES", "ONDATA_EVAL_API_KEY", "ONDATA_TEST_POSTGRES"}
)


class Section(BaseModel):
    """A settings section: an unknown key is an error, not a silently ignored typo."""

    model_config = ConfigDict(extra="forbid")


class EmbeddingSettings(Section):
    """Which embedder turns text into dense vectors."""

    backend: Literal["onnx", "sentence-transformers", "openai"] = "onnx"
    model: str = "all-MiniLM-L6-v2"
    base_url: str | None = None
    api_key: SecretStr | None = None
    dimensions: int | None = None
    batch_size: int = Field(default=64, ge=1, le=2048)
    max_seq_length: int = Field(default=256, ge=8, le=8192)
    # onnx backend only: int8 runs the dynamically quantised export (a distinct model name, so
    # an index built with one precision refuses the other). See README "Performance".
    precision: Literal["fp32", "int8"] = "fp32"
    # Remote (openai backend) only.
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    # Local backends: CPU threads for one embedding call (None: all cores this process may use).
    threads: int | None = Field(default=None, ge=1, le=256)

    @model_validator(mode="after")
    def _remote_needs_model(self) -> EmbeddingSettings:
        if self.backend == "openai" and not self.base_url and not self.api_key:
            raise ValueError(
                "embedding.backend=openai needs ONDATA_EMBEDDING__BASE_URL or "
                "ONDATA_EMBEDDING__API_KEY"
            )
        return self


class IndexSettings(Section):
    """Where vectors live: Qdrant Edge in-process, or a Qdrant server/cluster."""

    backend: Literal["edge", "server"] = "edge"
    url: str | None = None
    api_key: SecretStr | None = None
    collection_prefix: str = "ondata_"
    # metadata keys that get a keyword payload index (filters on other keys still work)
    filterable_metadata: tuple[str, ...] = ()
    # Edge: from this many points on, optimise a copy of the shard in a child process while
    # queries go on (the engine's own optimise holds the GIL, so queries in this process would
    # wait for it: minutes at 1M chunks); needs free disk for one copy. Above the index's size:
    # in place. Measured in README "The embedded index at scale".
    optimize_apart_from: int = Field(default=20_000, ge=0)
    # Edge: queries the engine runs at once; the others wait their turn in arrival order (the
    # engine runs one query at a time on a shard anyway: a query's parallelism is the shard's
    # segments, below). 0: half the cores, at least one. An optimise apart runs on the cores
    # past the first query_slots (all of them on one core).
    query_slots: int = Field(default=0, ge=0)
    # Edge: indexed segments a shard keeps; the engine searches them in parallel, one core
    # each, so a query uses that many cores (it runs one query at a time). 0: one per core.
    segments: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _server_needs_url(self) -> IndexSettings:
        if self.backend == "server" and not self.url:
            raise ValueError(
                "index.backend=server needs ONDATA_INDEX__URL (e.g. http://qdrant:6333)"
            )
        return self


class ChunkingSettings(Section):
    """Token-aware chunking; defaults picked by measurement on SciFact (bench/chunking.py)."""

    chunk_size: int = Field(default=200, ge=32, le=4096)
    chunk_overlap: int = Field(default=32, ge=0, le=1024)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunking.chunk_overlap must be smaller than chunking.chunk_size")
        return self


class IngestSettings(Section):
    """Limits that keep one bad file from hurting a batch."""

    file_timeout_s: float = Field(default=300.0, gt=0)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    ocr_languages: str = "eng"
    # ZIP-based documents (DOCX, XLSX, PPTX, ODT, EPUB): refused before parsing when their
    # members would unpack past this many bytes, or past this ratio once over 10 MB.
    max_unpacked_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_compression_ratio: float = Field(default=200.0, gt=1)
    # Writable memory of each parser process and of what it starts (pandoc, tesseract,
    # pdftoppm): a file needing more fails alone. The idle worker holds ~0.5 GB. 0: no limit.
    parse_memory_mb: int = Field(default=2048, ge=0)
    # documents parsed ahead (in the parser pool) while the previous ones are embedded; 0: none
    parse_ahead: int = Field(default=2, ge=0, le=64)


class JobsSettings(Section):
    """Ingestion jobs: the task queue, workers and recovery, and what uploads and sources may be.

    queue=sqlite (default): Huey on a SQLite file in data_dir, consumed by threads inside
    `ondata serve`. queue=redis: Huey on Redis, consumed by `ondata worker` processes.
    """

    queue: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = None
    queue_name: str = "ondata"
    # consumer threads inside `ondata serve` (None: 1 with the sqlite queue, 0 with redis)
    embedded_workers: int | None = Field(default=None, ge=0, le=16)
    heartbeat_s: float = Field(default=5.0, gt=0)
    stale_after_s: float = Field(default=60.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    busy_retry_s: float = Field(default=2.0, gt=0)
    poll_s: float = Field(default=0.5, gt=0)
    batch_documents: int = Field(default=16, ge=1)
    # folders that folder sources may name (a source must resolve inside one of them)
    source_roots: tuple[Path, ...] = ()
    min_refresh_interval_s: int = Field(default=300, ge=1)
    max_upload_file_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    max_upload_files: int = Field(default=100, ge=1)
    max_url_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    url_timeout_s: float = Field(default=30.0, gt=0)
    max_linked_pages: int = Field(default=50, ge=0)
    # URL sources reach public addresses only; this opens internal hosts ("wiki.corp",
    # "*.corp.example") or networks ("10.1.2.0/24", "127.0.0.1") to them (core/netguard.py)
    url_allow: tuple[str, ...] = ()
    # llama-index readers (MODULE:CLASS) an admin may run as an ingestion job; none by default:
    # an API caller never names an arbitrary import path (ingest/readers.py)
    reader_allow: tuple[str, ...] = ()

    @field_validator("url_allow")
    @classmethod
    def _allow_list_parses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        AddressPolicy.from_entries(value)
        return value

    @model_validator(mode="after")
    def _redis_needs_url(self) -> JobsSettings:
        if self.queue == "redis" and not self.redis_url:
            raise ValueError(
                "jobs.queue=redis needs ONDATA_JOBS__REDIS_URL (e.g. redis://redis:6379/0)"
            )
        if self.stale_after_s <= 2 * self.heartbeat_s:
            raise ValueError("jobs.stale_after_s must be more than twice jobs.heartbeat_s")
        return self

    @property
    def consumer_threads(self) -> int:
        """Consumer threads `ondata serve` runs itself."""
        if self.embedded_workers is not None:
            return self.embedded_workers
        return 1 if self.queue == "sqlite" else 0


class ChatSettings(Section):
    """The chat model; provider none means the built-in extractive answerer."""

    provider: Literal["none", "openai", "azure", "compatible"] = "none"
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: SecretStr | None = None
    azure_endpoint: str | None = None
    azure_deployment: str | None = None
    api_version: str = "2024-10-21"
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    context_window: int = Field(default=128_000, ge=1024)
    max_response_tokens: int = Field(default=1024, ge=16)

    @model_validator(mode="after")
    def _provider_needs_endpoint(self) -> ChatSettings:
        if self.provider == "compatible" and not self.base_url:
            raise ValueError("chat.provider=compatible needs ONDATA_CHAT__BASE_URL")
        if self.provider == "azure" and not self.azure_endpoint:
            raise ValueError("chat.provider=azure needs ONDATA_CHAT__AZURE_ENDPOINT")
        return self


class RerankSettings(Section):
    """The optional reranker behind query_type semantic and vector_semantic_hybrid.

    remote: any server with the Cohere-style rerank API (`POST {base_url}/rerank`: Cohere,
    Jina, Voyage, vLLM, Infinity; api=tei for Hugging Face TEI's own shape). local: a
    sentence-transformers CrossEncoder in the directory `path`, never fetched from a hub.
    """

    backend: Literal["none", "remote", "local"] = "none"
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str | None = None
    api: Literal["cohere", "tei"] = "cohere"
    path: Path | None = None
    # candidates reranked per search query (the index is asked for this many)
    candidates: int = Field(default=50, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=1024)
    max_length: int = Field(default=512, ge=16, le=8192)
    # local: onnx runs an ONNX Runtime export of the model (made on first load), torch the
    # model itself; auto is onnx, or torch with a warning when the model does not export
    runtime: Literal["auto", "onnx", "torch"] = "auto"
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _backend_needs_target(self) -> RerankSettings:
        if self.backend == "remote" and not self.base_url:
            raise ValueError(
                "rerank.backend=remote needs ONDATA_RERANK__BASE_URL (e.g. http://tei:8080)"
            )
        if self.backend == "local" and self.path is None:
            raise ValueError(
                "rerank.backend=local needs ONDATA_RERANK__PATH (a cross-encoder model directory)"
            )
        return self


class RetrievalSettings(Section):
    """How search ranks: fusion, candidate depth, and BM25 (chosen on SciFact train and by
    rules that hold off it; docs/evaluation.md has the evidence).

    bm25_* shape what an index stores: an index encoded otherwise is re-encoded from its
    chunks' text after the next write (retrieval/corpus_bm25.py; no embedding model run).
    """

    fusion: Literal["rrf", "dbsf"] = "dbsf"
    rrf_k: int = Field(default=60, ge=1, le=1000)
    # candidates each side (dense, BM25) brings to a hybrid fusion
    candidates: int = Field(default=100, ge=1, le=1000)
    bm25_k1: float = Field(default=1.2, ge=0.0, le=10.0)
    bm25_b: float = Field(default=0.75, ge=0.0, le=1.0)
    # corpus: the mean chunk length follows each index; fixed: always bm25_avg_len
    bm25_statistics: Literal["corpus", "fixed"] = "corpus"
    bm25_avg_len: float = Field(default=256.0, gt=0.0)
    # relative drift of an index's mean chunk length tolerated before it is re-encoded
    bm25_tolerance: float = Field(default=0.1, ge=0.0, le=1.0)


class ApiSettings(Section):
    """The HTTP API: where `ondata serve` listens and what a request may carry."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # the operator's key: admin on every index and document (keys made with `ondata keys`
    # are the usual way; see api/README.md "Keys and roles")
    api_key: SecretStr | None = None
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_messages: int = Field(default=100, ge=1)
    # auth is on once any key exists or on a non-loopback bind; this turns it on regardless
    auth_required: bool = False
    # a gateway in front of ondata names the caller's ACL groups in this header (comma-separated);
    # only honoured when set, so never set it when clients can reach ondata directly
    trusted_groups_header: str | None = None
    # and the end user's id in this one (history and limits are then per user, not per key)
    trusted_user_header: str | None = None
    # per-key limits (a key may override them); None: unlimited
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    # Redis shared by every API process for the limits above; None: per-process counters
    rate_limit_redis_url: str | None = None
    # Swagger UI at /docs, its files from the fastapi-offline package (never a CDN); off by
    # default. /openapi.json is always served.
    docs: bool = False


class EvaluationSettings(Section):
    """The optional LLM judge of `ondata eval answers` (any OpenAI-compatible endpoint)."""

    judge_base_url: str | None = None
    judge_model: str | None = None
    judge_api_key: SecretStr | None = None
    judge_timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _judge_needs_model(self) -> EvaluationSettings:
        if self.judge_base_url and not self.judge_model:
            raise ValueError(
                "evaluation.judge_base_url is set: also set ONDATA_EVALUATION__JUDGE_MODEL"
            )
        return self

    @property
    def judge_configured(self) -> bool:
        return bool(self.judge_base_url and self.judge_model)


class ClientSettings(Section):
    """What the CLI sends to a running `ondata serve` (`ask --url`, `ingest --url`)."""

    # the key for --url when --api-key is not given (ONDATA_CLIENT__API_KEY); without either,
    # the operator's api.api_key when this machine has it
    api_key: SecretStr | None = None


class Settings(BaseSettings):
    """Everything ondata can be configured with; only entrypoints load it."""

    model_config = SettingsConfigDict(
        env_prefix="ONDATA_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Path(".ondata")
    log_format: Literal["text", "json"] = "text"
    database_url: str | None = None
    default_index: str = "default"
    embedding: EmbeddingSettings = EmbeddingSettings()
    index: IndexSettings = IndexSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    ingest: IngestSettings = IngestSettings()
    jobs: JobsSettings = JobsSettings()
    chat: ChatSettings = ChatSettings()
    rerank: RerankSettings = RerankSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    api: ApiSettings = ApiSettings()
    evaluation: EvaluationSettings = EvaluationSettings()
    client: ClientSettings = ClientSettings()

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_variables(cls, data: Any) -> Any:
        """Fail on an ONDATA_ variable that names no setting, naming it (and a near miss)."""
        env_file = cls.model_config.get("env_file")
        names = [*os.environ, *(dotenv_values(env_file) if isinstance(env_file, str) else {})]
        unknown = unknown_setting_variables(names)
        if unknown:
            raise ValueError("; ".join(_unknown_message(name) for name in unknown))
        return data

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ondata.db'}"


def setting_variables() -> frozenset[str]:
    """Every environment variable that names a setting: ONDATA_<FIELD> for the root's fields
    (a whole section as JSON too), ONDATA_<SECTION>__<FIELD> for each section's."""
    names = {PREFIX + name.upper() for name in Settings.model_fields}
    for name, field in Settings.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, Section):
            section = PREFIX + name.upper() + "__"
            names.update(section + key.upper() for key in field.annotation.model_fields)
    return frozenset(names)


def unknown_setting_variables(names: Iterable[str]) -> list[str]:
    """The ONDATA_ variables among `names` that name no setting (matched case-insensitively)."""
    known = setting_variables() | NOT_SETTINGS
    return sorted({n for n in names if n.upper().startswith(PREFIX) and n.upper() not in known})


def _unknown_message(name: str) -> str:
    near = difflib.get_close_matches(name.upper(), sorted(setting_variables()), n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    return f"{name} is not an ondata setting{hint}; unset it or fix its name"


def configure_offline_environment() -> None:
    """Point third-party libraries at bundled files so nothing is fetched at run time.

    tiktoken, huggingface and unstructured read their switches from the process
    environment, so this is the one place that sets them.
    """
    import llama_index.core

    cache = Path(llama_index.core.__file__).parent / "_static" / "tiktoken_cache"
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache))
    disable_library_network()


def disable_library_network() -> None:
    """The switches that keep hub downloads, telemetry pings and banners off (no imports, cheap:
    parser worker processes call this without loading llama-index)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "false")
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")


def load_settings() -> Settings:
    """Build settings from the environment, failing fast with what to set."""
    configure_offline_environment()
    return Settings()
