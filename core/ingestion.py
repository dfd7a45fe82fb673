"""What may be ingested: upload file names and types, folder roots, URLs.

Checked by the API when a request arrives and again by the worker when the job runs (a folder
may have become a symlink since). Uploads are stored as
<data_dir>/uploads/<index>/<unique>/<safe name>, so no name can reach outside that folder and
two uploads never overwrite each other's bytes; a document's identity is (index, safe name).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shutil
import unicodedata
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from core.errors import (
    InvalidRequestError,
    SourceNotAllowedError,
    SourceUnavailableError,
    UnsupportedFileTypeError,
)
from core.filetypes import SUPPORTED_EXTENSIONS, is_supported, unsupported_message
from core.netguard import AddressPolicy, Resolver, checked_addresses, system_resolve
from core.settings import Settings
from core.text import without_invisible

SUPPORTED_UPLOAD_EXTENSIONS: frozenset[str] = SUPPORTED_EXTENSIONS
"""The table's extensions (core/filetypes.py): uploads follow the same rule as every path."""
MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f<>:\"|?*\\/]+")
_SPACES = re.compile(r"\s+")
_SLUG = re.compile(r"[^a-z0-9]+")


def safe_filename(name: str) -> str:
    """A file name that is safe on any filesystem: the last path segment of what the client
    sent, normalised (NFC), without reserved characters (ASCII controls become `_`), without
    invisible ones (bidi overrides and marks, zero-width, C1 controls), no leading dots, at most
    MAX_NAME_BYTES bytes (extension kept). Raises InvalidRequestError if nothing is left."""
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name))[-1]
    base = _SPACES.sub(" ", without_invisible(_UNSAFE.sub("_", base))).strip(" ._")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext[:16]
    budget = MAX_NAME_BYTES - len(ext.encode()) - 1
    stem = stem.encode()[:budget].decode(errors="ignore").rstrip(" ._")
    safe = f"{stem}.{ext}" if stem and ext else stem or ""
    if not safe:
        raise InvalidRequestError(f"file name {name!r} has no usable characters", param="files")
    return safe


def check_upload_type(name: str) -> str:
    """The lower-case extension of a supported file name; UnsupportedFileTypeError (415) else."""
    if not is_supported(name):
        raise UnsupportedFileTypeError(unsupported_message(name), param="files")
    return Path(name).suffix.lower()


def upload_doc_id(index_name: str, safe_name: str) -> str:
    """The document an upload becomes: the same name in the same index is the same document."""
    key = f"upload://{index_name}/{safe_name}"
    slug = _SLUG.sub("-", safe_name.lower()).strip("-")[:48].strip("-") or "doc"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def uploads_root(settings: Settings, index_name: str | None = None) -> Path:
    root = settings.data_dir.resolve() / "uploads"
    return root / index_name if index_name else root


def new_upload_path(settings: Settings, index_name: str, safe_name: str) -> Path:
    """A fresh folder for one uploaded file (never shared), and the file's path in it."""
    folder = uploads_root(settings, index_name) / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder / safe_name


def remove_stored_upload(settings: Settings, source: str | None) -> bool:
    """Delete an uploaded file's folder when `source` is one (anything else is left alone)."""
    if not source:
        return False
    path = Path(source)
    root = uploads_root(settings)
    if not path.is_absolute() or path.parent.parent.parent != root:
        return False
    shutil.rmtree(path.parent, ignore_errors=True)
    return True


def check_folder_source(settings: Settings, folder: str) -> Path:
    """The resolved folder if it lies inside one of jobs.source_roots (relative paths are
    taken from the first root); SourceNotAllowedError otherwise."""
    roots = [r.expanduser().resolve() for r in settings.jobs.source_roots]
    if not roots:
        raise SourceNotAllowedError(
            "folder sources are disabled: set ONDATA_JOBS__SOURCE_ROOTS (a JSON list of folders)",
            param="sources",
        )
    candidate = Path(folder).expanduser()
    resolved = (candidate if candidate.is_absolute() else roots[0] / candidate).resolve()
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise SourceNotAllowedError(
            f"folder {folder!r} is outside the allowed roots (jobs.source_roots)", param="sources"
        )
    return resolved


def inside_roots(settings: Settings, path: Path) -> bool:
    """Whether a discovered file really lies in an allowed root (after resolving symlinks)."""
    resolved = path.resolve()
    return any(
        resolved.is_relative_to(r.expanduser().resolve()) for r in settings.jobs.source_roots
    )


def check_reader_allowed(settings: Settings, reader: str) -> str:
    """The reader (MODULE:CLASS) if jobs.reader_allow lists it; SourceNotAllowedError else:
    an API caller never names an arbitrary import path."""
    if reader not in settings.jobs.reader_allow:
        raise SourceNotAllowedError(
            f"reader {reader!r} is not allowed: an operator lists the readers jobs may run in "
            "ONDATA_JOBS__READER_ALLOW (a JSON list of MODULE:CLASS)",
            param="sources",
        )
    return reader


def check_url_source(url: str) -> str:
    """The URL without its fragment if it is http(s) with a host, a valid port and no user
    info; SourceNotAllowedError else. (Where it may connect: check_url_address.)"""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise SourceNotAllowedError(f"{url!r} is not an http(s) URL", param="sources")
    if "@" in parts.netloc:
        raise SourceNotAllowedError(
            f"{url!r} carries user info (user:password@); URL sources may not", param="sources"
        )
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
    except ValueError as exc:
        raise SourceNotAllowedError(f"{url!r} has an invalid port", param="sources") from exc
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path or "/", parts.query, ""))


def check_url_address(settings: Settings, url: str, *, resolve: Resolver = system_resolve) -> None:
    """AddressNotAllowedError when the URL's host is, or now resolves to, an address that
    jobs.url_allow does not open (core/netguard.py). A host that does not resolve now is left
    to the fetch, which checks every connection again (DNS may answer differently then)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    policy = AddressPolicy.from_entries(settings.jobs.url_allow)
    with contextlib.suppress(SourceUnavailableError):
        checked_addresses(parts.hostname or "", port, policy=policy, resolve=resolve)
