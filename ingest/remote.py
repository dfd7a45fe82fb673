"""`ondata ingest --url`: upload files through a running server's upload API and wait for its jobs.

An embedded (Edge) index is opened by one process at a time, so while `ondata serve` holds it
the CLI hands the files to the server (POST /v1/indexes/{name}/documents), follows each job
(GET /v1/ingestion/jobs/{id}) and reports per file, as the local path does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.filetypes import is_supported, unsupported_message
from core.remote import send_json, server_client
from ingest.pipeline import FailedDocument, IngestReport

BATCH_FILES = 50
BATCH_BYTES = 64 * 1024 * 1024
POLL_S = 0.5
_DONE = frozenset({"succeeded", "partially_succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class UploadTarget:
    """Where the files go and how the CLI is known there."""

    url: str
    index: str
    api_key: str | None = None
    acl_groups: tuple[str, ...] = ()
    timeout_s: float = 300.0


def upload_files(
    paths: Sequence[Path], target: UploadTarget, *, progress: Callable[[int], None]
) -> IngestReport:
    """Upload paths to the server, wait for their jobs, and report like a local run."""
    started = time.monotonic()
    report = IngestReport()
    batches = _batches(_admitted(paths, report, progress))
    with server_client(target.url, target.api_key, timeout_s=target.timeout_s) as client:
        _ensure_index(client, target)
        for batch in batches:
            job, names = _upload(client, target, batch)
            _follow(client, target, job, names, report, progress)
    report.seconds = time.monotonic() - started
    return report


def _admitted(
    paths: Sequence[Path], report: IngestReport, progress: Callable[[int], None]
) -> list[Path]:
    """The paths the upload API takes; the others fail here with the API's own reason."""
    kept: list[Path] = []
    names: dict[str, Path] = {}
    for path in paths:
        reason = _refusal(path, names)
        if reason is None:
            names[path.name] = path
            kept.append(path)
            continue
        report.documents_failed.append(FailedDocument(source=str(path), error=reason))
        progress(1)
    return kept


def _refusal(path: Path, names: dict[str, Path]) -> str | None:
    if not is_supported(path):
        return unsupported_message(path.name)
    if path.name in names:
        # an uploaded document is (index, file name): the second would replace the first
        return f"same file name as {names[path.name]} (uploads are identified by name)"
    return None


def _batches(paths: list[Path]) -> Iterator[list[Path]]:
    """Requests of at most BATCH_FILES files and BATCH_BYTES (the server's limits are larger)."""
    batch: list[Path] = []
    size = 0
    for path in paths:
        length = path.stat().st_size
        if batch and (len(batch) >= BATCH_FILES or size + length > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def _ensure_index(client: httpx.Client, target: UploadTarget) -> None:
    """Create the index when the server has none of that name (as the local path does)."""
    found = _send(client, target, "GET", f"/v1/indexes/{target.index}", missing_ok=True)
    if found is None:
        _send(client, target, "POST", "/v1/indexes", json={"name": target.index})


def _upload(
    client: httpx.Client, target: UploadTarget, batch: list[Path]
) -> tuple[str, dict[str, Path]]:
    """POST one batch; the job id and, per document id, the local file it came from."""
    with ExitStack() as stack:
        files = [("files", (p.name, stack.enter_context(p.open("rb")))) for p in batch]
        data = {"acl_groups": ",".join(target.acl_groups)}
        path = f"/v1/indexes/{target.index}/documents"
        accepted = _send(client, target, "POST", path, files=files, data=data)
    assert accepted is not None
    by_name = {p.name: p for p in batch}
    names = {
        d["doc_id"]: by_name.get(d["filename"], Path(d["filename"])) for d in accepted["documents"]
    }
    return str(accepted["job_id"]), names


def _follow(
    client: httpx.Client,
    target: UploadTarget,
    job_id: str,
    names: dict[str, Path],
    report: IngestReport,
    progress: Callable[[int], None],
) -> None:
    """Poll the job until it ends, moving the progress bar; then add its outcome."""
    seen = 0
    while True:
        job = _send(client, target, "GET", f"/v1/ingestion/jobs/{job_id}")
        assert job is not None
        processed = int(job["progress"]["processed"])
        progress(processed - seen)
        seen = processed
        if job["status"] in _DONE:
            break
        time.sleep(POLL_S)
    progress(len(names) - seen)
    _add_outcome(job, names, report)


def _add_outcome(job: dict[str, Any], names: dict[str, Path], report: IngestReport) -> None:
    counts = job["progress"]
    report.documents_ingested += int(counts["indexed"])
    report.documents_unchanged += int(counts["unchanged"])
    report.chunks_written += int(counts["chunks_written"])
    failed = {e["doc_id"]: e["error"] for e in job["errors"]}
    if job["status"] in {"failed", "cancelled"} and not failed:
        # the job itself stopped: every file it held is lost with it
        reason = job["error"] or f"the ingestion job was {job['status']}"
        failed = dict.fromkeys(names, reason)
    for doc_id, error in failed.items():
        source = names.get(doc_id, Path(doc_id))
        report.documents_failed.append(
            FailedDocument(source=str(source), error=error, doc_id=doc_id)
        )


def _send(
    client: httpx.Client, target: UploadTarget, method: str, path: str, **kwargs: Any
) -> dict[str, Any] | None:
    return send_json(client, method, path, sent_key=target.api_key is not None, **kwargs)
