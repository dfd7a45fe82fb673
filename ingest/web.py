"""URL sources: fetch a page (size-limited, streamed to disk) and, one level deep, its links.

Like Azure's URL ingestion, a URL job crawls at most one level of links: the pages the given
page links to on the same host. A page answering 404/410 is gone (sync removes its document);
any other failure is a per-page error that leaves an existing document alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from core.errors import (
    FileTooLargeError,
    SourceNotAllowedError,
    SourceUnavailableError,
    UnsupportedFileTypeError,
)
from core.filetypes import SUPPORTED_EXTENSIONS, extension_for_mime
from core.ingestion import check_url_source
from core.netguard import AddressPolicy, Resolver, system_resolve
from core.settings import JobsSettings
from ingest.guarded_http import GuardedTransport

GONE_STATUSES = frozenset({404, 410})
MAX_REDIRECTS = 5
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class FetchedPage:
    url: str
    path: Path
    links: tuple[str, ...] = ()


@dataclass
class Crawl:
    """What one URL source yielded: pages on disk, pages that are gone, pages that failed."""

    pages: list[FetchedPage] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


class PageGoneError(SourceUnavailableError):
    """The page answered 404 or 410."""


def crawl(
    url: str,
    *,
    dest: Path,
    settings: JobsSettings,
    depth: int,
    resolve: Resolver = system_resolve,
) -> Crawl:
    """Fetch `url` and, when depth is 1 and it is HTML, the same-host pages it links to.

    Every connection (page, link, redirect hop) goes through GuardedTransport: only to
    addresses core.netguard allows with settings.url_allow.
    """
    result = Crawl()
    transport = GuardedTransport(
        policy=AddressPolicy.from_entries(settings.url_allow), resolve=resolve
    )
    with httpx.Client(
        transport=transport,
        timeout=settings.url_timeout_s,
        follow_redirects=False,  # followed by _follow, which checks each hop's URL
        trust_env=False,  # an environment proxy would connect where we cannot check
        headers={"User-Agent": "ondata-ingest/0.1"},
    ) as client:
        root = _fetch_into(client, url, dest=dest, settings=settings, result=result)
        if root is None or depth < 1:
            return result
        for link in root.links[: settings.max_linked_pages]:
            _fetch_into(client, link, dest=dest, settings=settings, result=result)
    return result


def _fetch_into(
    client: httpx.Client, url: str, *, dest: Path, settings: JobsSettings, result: Crawl
) -> FetchedPage | None:
    try:
        page = fetch(client, url, dest=dest, max_bytes=settings.max_url_bytes)
    except PageGoneError:
        result.gone.append(url)
        return None
    except (
        SourceUnavailableError,
        SourceNotAllowedError,
        FileTooLargeError,
        UnsupportedFileTypeError,
    ) as exc:
        result.failed[url] = exc.message
        return None
    result.pages.append(page)
    return page


def fetch(client: httpx.Client, url: str, *, dest: Path, max_bytes: int) -> FetchedPage:
    """Download one URL to dest/<hash>/<name><ext>, refusing more than max_bytes."""
    try:
        with _follow(client, url) as response:
            if response.status_code in GONE_STATUSES:
                raise PageGoneError(f"{url} answered {response.status_code}")
            if response.status_code >= 400:
                raise SourceUnavailableError(f"{url} answered HTTP {response.status_code}")
            path = _target(dest, url, _extension(url, response.headers.get("content-type")))
            _save(response, path, max_bytes=max_bytes, url=url)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise SourceUnavailableError(f"cannot fetch {url}: {type(exc).__name__}") from exc
    links = same_host_links(url, path.read_bytes()) if path.suffix == ".html" else ()
    return FetchedPage(url=url, path=path, links=links)


@contextmanager
def _follow(client: httpx.Client, url: str) -> Iterator[httpx.Response]:
    """The streamed response at the end of url's redirects (closed on leaving)."""
    response = _final_response(client, url)
    try:
        yield response
    finally:
        response.close()


def _final_response(client: httpx.Client, url: str) -> httpx.Response:
    """Follow at most MAX_REDIRECTS hops, each hop's URL checked like a source's (http(s), no
    user info) before the transport checks the address it would connect to."""
    target, location = url, None
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = client.send(client.build_request("GET", target), stream=True)
        except SourceNotAllowedError as exc:
            if location is None:
                raise
            raise _refused_hop(url, location, exc) from exc
        if not response.is_redirect:
            return response
        response.close()
        location = urljoin(target, response.headers["location"])
        try:
            target = check_url_source(location)
        except SourceNotAllowedError as exc:
            raise _refused_hop(url, location, exc) from exc
    raise SourceUnavailableError(f"{url} redirected more than {MAX_REDIRECTS} times")


def _refused_hop(url: str, location: str, exc: SourceNotAllowedError) -> SourceNotAllowedError:
    return type(exc)(f"{url} redirected to {location!r}: {exc.message}", param=exc.param)


def _save(response: httpx.Response, path: Path, *, max_bytes: int, url: str) -> None:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FileTooLargeError(
            f"{url} is {declared} bytes; the limit is {max_bytes} (jobs.max_url_bytes)"
        )
    seen = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for block in response.iter_bytes():
            seen += len(block)
            if seen > max_bytes:
                fh.close()
                path.unlink(missing_ok=True)
                raise FileTooLargeError(
                    f"{url} is larger than {max_bytes} bytes (jobs.max_url_bytes)"
                )
            fh.write(block)


def _extension(url: str, content_type: str | None) -> str:
    mime = (content_type or "").split(";")[0].strip().lower()
    from_mime = extension_for_mime(mime)
    if from_mime is not None:
        return from_mime
    suffix = Path(urlsplit(url).path).suffix.lower()
    if suffix in SUPPORTED_EXTENSIONS:
        return suffix
    raise UnsupportedFileTypeError(f"{url}: unsupported content type {mime or '(none)'}")


def _target(dest: Path, url: str, ext: str) -> Path:
    name = Path(urlsplit(url).path).stem or urlsplit(url).hostname or "page"
    safe = _SLUG.sub("_", name)[:80].strip("._") or "page"
    return dest / hashlib.sha256(url.encode()).hexdigest()[:16] / f"{safe}{ext}"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for key, value in attrs if key == "href" and value)


def same_host_links(base: str, html: bytes) -> tuple[str, ...]:
    """Absolute http(s) links of the page on the page's host, without fragments, in order,
    each once, not the page itself."""
    parser = _Links()
    parser.feed(html.decode("utf-8", errors="replace"))
    host = urlsplit(base).netloc.lower()
    seen: dict[str, None] = {}
    for href in parser.hrefs:
        parts = urlsplit(urljoin(base, href.strip()))
        if parts.scheme not in {"http", "https"} or parts.netloc.lower() != host:
            continue
        url = urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))
        if url != base:
            seen[url] = None
    return tuple(seen)
