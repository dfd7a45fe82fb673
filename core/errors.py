"""The OndataError tree: each error names what happened and carries its HTTP status."""

from __future__ import annotations


class OndataError(Exception):
    """Base of every error ondata raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigurationError(OndataError):
    """Settings are missing or contradict each other."""

    status_code = 500
    error_type = "configuration_error"
    code = "configuration_error"


class EmbeddingModelMismatchError(ConfigurationError):
    """An index was built by another embedding model (or precision) than the configured one."""

    status_code = 409
    code = "embedding_model_mismatch"


class InvalidRequestError(OndataError):
    """The request is malformed or asks for something impossible."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class InvalidFilterError(InvalidRequestError):
    """A search filter is not in the supported syntax."""

    code = "invalid_filter"


class AuthenticationError(OndataError):
    """The request carried no API key, or one that is wrong or revoked."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(OndataError):
    """The caller's key is valid but its role or index scope does not allow this."""

    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class RateLimitedError(OndataError):
    """The caller's key used up its requests or tokens per minute."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestTooLargeError(InvalidRequestError):
    """The request body or its messages exceed the configured limits."""

    status_code = 413
    code = "request_too_large"


class NotFoundError(OndataError):
    """The named resource does not exist."""

    status_code = 404
    error_type = "not_found_error"
    code = "not_found"


class IndexNotFoundError(NotFoundError):
    """No index has that name."""

    code = "index_not_found"

    @classmethod
    def named(cls, name: str, *, param: str = "index_name") -> IndexNotFoundError:
        """The one sentence every path (API, search, ask, documents) gives for a missing index."""
        return cls(f"index {name!r} does not exist", param=param)


class ModelNotFoundError(NotFoundError):
    """No model has that id."""

    code = "model_not_found"


class EvaluationNotFoundError(NotFoundError):
    """No evaluation run has that id."""

    code = "evaluation_not_found"


class ApiKeyNotFoundError(NotFoundError):
    """No API key has that id."""

    code = "api_key_not_found"


class LastAdminKeyError(OndataError):
    """Revoking this key would leave no admin key that reaches every index and document."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "last_admin_key"


class DocumentNotFoundError(NotFoundError):
    """No document has that id in the index."""

    code = "document_not_found"


class ConversationNotFoundError(NotFoundError):
    """The caller has no conversation with that id."""

    code = "conversation_not_found"


class MessageNotFoundError(NotFoundError):
    """The conversation has no message with that id."""

    code = "message_not_found"


class ConversationExistsError(InvalidRequestError):
    """The caller already has a conversation with that id."""

    status_code = 409
    code = "conversation_exists"


class InvalidDatasetError(InvalidRequestError):
    """An evaluation dataset is missing a file or holds a malformed record."""

    code = "invalid_dataset"


class UnsupportedFileTypeError(OndataError):
    """The file's type is not one ondata can parse."""

    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_file_type"


class FileTooLargeError(OndataError):
    """The file or request exceeds a configured size limit."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "file_too_large"


class DecompressionBombError(FileTooLargeError):
    """A compressed document (DOCX, XLSX, PPTX, ODT, EPUB) would unpack past the limits."""

    code = "decompression_bomb"


class IngestionJobNotFoundError(NotFoundError):
    """No ingestion job has that id."""

    code = "job_not_found"


class JobNotCancellableError(OndataError):
    """The ingestion job has already finished."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "job_not_cancellable"


class IndexExistsError(OndataError):
    """An index with that name already exists."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "index_exists"


class IndexSettingImmutableError(OndataError):
    """A setting fixed when the index was created was asked to change."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "index_setting_immutable"


class IndexBusyError(OndataError):
    """An ingestion job is writing the index right now."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "index_busy"


class SourceNotAllowedError(InvalidRequestError):
    """An ingestion source is outside the allowed folders or not an http(s) URL."""

    code = "source_not_allowed"


class AddressNotAllowedError(SourceNotAllowedError):
    """A URL source names or resolves to an internal address that jobs.url_allow does not open."""

    code = "address_not_allowed"


class JobQueueUnavailableError(OndataError):
    """The task queue (SQLite file or Redis) could not take the job."""

    status_code = 503
    error_type = "server_error"
    code = "queue_unavailable"


class SourceUnavailableError(OndataError):
    """An ingestion source (folder, URL) could not be read when the job ran."""

    status_code = 422
    error_type = "invalid_request_error"
    code = "source_unavailable"


class DocumentParseError(OndataError):
    """A document could not be parsed (damaged, encrypted, malformed)."""

    status_code = 422
    error_type = "invalid_request_error"
    code = "parse_failed"


class EncryptedDocumentError(DocumentParseError):
    """The document is password-protected and cannot be read without the password."""

    code = "encrypted_document"


class DamagedDocumentError(DocumentParseError):
    """The document is damaged or malformed beyond what the parser can repair."""

    code = "damaged_document"


class NoExtractableTextError(DocumentParseError):
    """Parsing and OCR found no text in the document."""

    code = "no_extractable_text"


class ParseTimeoutError(DocumentParseError):
    """Parsing took longer than the per-file limit."""

    code = "parse_timeout"


class ParseMemoryLimitError(DocumentParseError):
    """Parsing needed more memory than the per-process limit (ingest.parse_memory_mb)."""

    code = "parse_memory_limit"


class EmbeddingError(OndataError):
    """The embedding backend failed."""

    status_code = 502
    error_type = "upstream_error"
    code = "embedding_failed"


class EmbeddingRateLimitError(EmbeddingError):
    """The remote embedding backend is rate limiting us."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EmbeddingModelError(EmbeddingError):
    """The local embedding model is missing, unusable or could not be exported to ONNX."""

    status_code = 500
    error_type = "server_error"
    code = "embedding_model_unavailable"


class IndexBackendError(OndataError):
    """The vector index engine failed."""

    status_code = 503
    error_type = "server_error"
    code = "index_unavailable"


class IndexLockedError(IndexBackendError):
    """An embedded index is held by another process (most often a running `ondata serve`)."""

    code = "index_locked"


class ChatModelError(OndataError):
    """The chat model failed in a way the caller cannot fix."""

    status_code = 502
    error_type = "upstream_error"
    code = "chat_model_failed"


class ChatModelRateLimitError(ChatModelError):
    """The chat model is rate limiting us."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ChatModelTimeoutError(ChatModelError):
    """The chat model did not answer in time."""

    status_code = 504
    code = "chat_model_timeout"


class RerankerError(OndataError):
    """The reranker failed in a way the caller cannot fix."""

    status_code = 502
    error_type = "upstream_error"
    code = "reranker_failed"


class RerankerRateLimitError(RerankerError):
    """The remote reranker is rate limiting us."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RerankerTimeoutError(RerankerError):
    """The remote reranker did not answer in time."""

    status_code = 504
    code = "reranker_timeout"


class RerankerModelError(RerankerError):
    """The local reranking model is missing or unusable."""

    status_code = 500
    error_type = "server_error"
    code = "reranker_model_unavailable"


class ChatModelNotConfiguredError(InvalidRequestError):
    """A request needs a chat model and none is configured."""

    code = "chat_model_not_configured"


class ContextLengthExceededError(InvalidRequestError):
    """The input does not fit the model's context window, even after trimming."""

    code = "context_length_exceeded"


class MissingUserMessageError(InvalidRequestError):
    """The conversation has no user turn with text to answer."""

    code = "missing_user_message"


class UnsupportedParameterError(InvalidRequestError):
    """The request uses a feature ondata does not offer (tools with data_sources, n > 1)."""

    code = "unsupported_parameter"


class MissingApiVersionError(InvalidRequestError):
    """An Azure-style route was called without the api-version query parameter."""

    code = "missing_api_version"


class UnsupportedApiVersionError(InvalidRequestError):
    """An Azure-style route was called with an api-version that is not an Azure OpenAI one."""

    code = "unsupported_api_version"
