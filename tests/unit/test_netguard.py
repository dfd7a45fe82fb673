"""URL sources cannot reach inside: the address policy (pure, literal addresses and a resolver
passed in), the transport that connects only to checked addresses, and redirect hops.

Traffic only ever goes to a loopback server; every refusal is checked without connecting."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from pydantic import ValidationError

from core.errors import AddressNotAllowedError, SourceNotAllowedError, SourceUnavailableError
from core.ingestion import check_url_address, check_url_source
from core.netguard import (
    AddressPolicy,
    Resolver,
    blocked_reason,
    checked_addresses,
    embedded_ipv4,
    parse_ip,
)
from core.settings import JobsSettings, Settings
from ingest.guarded_http import GuardedTransport
from ingest.web import crawl
from tests.fakes.threaded import ThreadedServer

OPEN = AddressPolicy()
LOOPBACK_ALLOWED = AddressPolicy.from_entries(["127.0.0.1/32"])


def _resolver(table: dict[str, list[str]], calls: list[str] | None = None) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


# --- spelling -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2852039166", "169.254.169.254"),
        ("0177.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("[fe80::1%25eth0]", "fe80::1%25eth0"),
        ("10.1", "10.0.0.1"),
        ("[::ffff:169.254.169.254]", "::ffff:a9fe:a9fe"),
        ("::1", "::1"),
        ("93.184.216.34", "93.184.216.34"),
    ],
)
def test_parse_ip_reads_every_spelling_the_c_resolver_reads(host: str, address: str) -> None:
    assert parse_ip(host) == ip_address(address)


@pytest.mark.parametrize("host", ["example.org", "intranet", "127.0.0.1.evil.example", "1.2.3.4.5"])
def test_parse_ip_leaves_names_alone(host: str) -> None:
    assert parse_ip(host) is None


# --- classification -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("192.0.2.7", "documentation"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "scoped"),  # a zone only makes sense inside
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:0:a9fe:a9fe", "link-local"),  # IPv4-translated
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64
        ("64:ff9b::10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
        ("2001:db8::1", "documentation"),
        ("2001:0:4136:e378::1", "reserved"),  # Teredo
        ("4000::1", "reserved"),  # outside global unicast
    ],
)
def test_blocked_reason_names_internal_addresses(address: str, reason: str) -> None:
    assert blocked_reason(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::",
    ],
)
def test_blocked_reason_lets_public_addresses_through(address: str) -> None:
    assert blocked_reason(ip_address(address)) is None


def test_embedded_ipv4_of_each_transition_form() -> None:
    for form in ("::ffff:10.1.2.3", "64:ff9b::a01:203", "2002:a01:203::", "::ffff:0:a01:203"):
        assert embedded_ipv4(IPv6Address(form)) == IPv4Address("10.1.2.3")
    assert embedded_ipv4(IPv6Address("2606:4700::1111")) is None


# --- the allow-list -------------------------------------------------------------------------


def test_allow_list_opens_named_hosts_networks_and_subdomains() -> None:
    policy = AddressPolicy.from_entries(["10.1.0.0/16", "127.0.0.1", "Wiki.Corp", "*.corp.example"])
    assert policy.refusal(ip_address("10.1.2.3")) is None
    assert policy.refusal(ip_address("::ffff:10.1.2.3")) is None  # the same address, mapped
    assert policy.refusal(ip_address("10.2.0.1")) == "private"
    assert policy.refusal(ip_address("127.0.0.2")) == "loopback"
    assert policy.allows_host("wiki.corp.")
    assert policy.allows_host("docs.corp.example")
    assert not policy.allows_host("corp.example")
    assert not policy.allows_host("wiki.corp.evil")


@pytest.mark.parametrize("entry", ["http://wiki", "10.0.0.0/33", "wiki corp", ""])
def test_allow_list_entries_fail_fast_in_settings(entry: str) -> None:
    with pytest.raises(ValidationError, match=r"jobs\.url_allow"):
        JobsSettings(url_allow=(entry,))


# --- resolution -----------------------------------------------------------------------------


def test_checked_addresses_refuses_literals_in_any_spelling_without_resolving() -> None:
    calls: list[str] = []
    resolve = _resolver({}, calls)
    for host in ("2852039166", "0177.1", "0x7f.1", "127.1", "::ffff:169.254.169.254", "[::1]"):
        with pytest.raises(AddressNotAllowedError, match=r"jobs\.url_allow"):
            checked_addresses(host, 80, policy=OPEN, resolve=resolve)
    assert calls == []


def test_checked_addresses_reads_trailing_dots_and_zones_as_internal() -> None:
    # "127.0.0.1." is a name to the URL parser; the system resolver reads it numerically
    for host in ("127.0.0.1.", "localhost", "LOCALHOST.", "fe80::1%25eth0"):
        with pytest.raises(AddressNotAllowedError):
            checked_addresses(host, 80, policy=OPEN)


def test_checked_addresses_refuses_a_name_if_any_answer_is_internal() -> None:
    resolve = _resolver(
        {
            "www.example.org": ["93.184.216.34"],
            "mixed.example.org": ["93.184.216.34", "10.0.0.7"],
            "meta.example.org": ["169.254.169.254"],
        }
    )
    found = checked_addresses("www.example.org", 443, policy=OPEN, resolve=resolve)
    assert found == [ip_address("93.184.216.34")]
    with pytest.raises(AddressNotAllowedError, match="resolves to a private address"):
        checked_addresses("mixed.example.org", 443, policy=OPEN, resolve=resolve)
    with pytest.raises(AddressNotAllowedError, match="link-local") as refused:
        checked_addresses("meta.example.org", 80, policy=OPEN, resolve=resolve)
    assert "169.254" not in refused.value.message  # internal DNS answers are not echoed
    with pytest.raises(SourceUnavailableError, match="cannot resolve"):
        checked_addresses("nowhere.example.org", 80, policy=OPEN, resolve=resolve)


def test_checked_addresses_allows_what_the_list_opens() -> None:
    resolve = _resolver({"wiki.corp": ["10.9.9.9"], "db.corp": ["10.9.9.10"]})
    policy = AddressPolicy.from_entries(["wiki.corp"])
    assert checked_addresses("WIKI.corp", 80, policy=policy, resolve=resolve) == [
        ip_address("10.9.9.9")
    ]
    with pytest.raises(AddressNotAllowedError):
        checked_addresses("db.corp", 80, policy=policy, resolve=resolve)


# --- URL syntax and the API's check ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://user:pw@example.org/", "http://example.org@127.0.0.1/", "http://example.org:99999/"],
)
def test_url_sources_refuse_user_info_and_bad_ports(url: str) -> None:
    with pytest.raises(SourceNotAllowedError):
        check_url_source(url)


def test_check_url_address_decides_literals_and_leaves_unresolvable_names(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    resolve = _resolver({"localhost": ["127.0.0.1"]})
    for url in (
        "http://2852039166/latest",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost/",
    ):
        with pytest.raises(AddressNotAllowedError):
            check_url_address(settings, url, resolve=resolve)
    check_url_address(settings, "http://not-resolvable-now.example/", resolve=resolve)
    opened = Settings(data_dir=tmp_path, jobs=JobsSettings(url_allow=("127.0.0.0/8",)))
    check_url_address(opened, "http://0177.1:8080/", resolve=resolve)


# --- the transport and redirect hops (a loopback site) ---------------------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    app = FastAPI()

    @app.get("/{path:path}")
    def page(path: str, request: Request) -> object:
        seen.append((request.headers["host"], f"/{path}"))
        targets = {
            "to-metadata": "http://169.254.169.254/latest/meta-data/",
            "to-decimal": "http://2852039166/latest/meta-data/",
            "to-v6-loopback": f"http://[::1]:{request.url.port}/page.txt",
            "to-other-loopback": f"http://127.0.0.2:{request.url.port}/page.txt",
            "to-file": "file:///etc/passwd",
            "to-loopback": f"http://127.0.0.1:{request.url.port}/page.txt",
            "to-page": "/page.txt",
            "loop": "/loop",
        }
        if path in targets:
            return RedirectResponse(targets[path], status_code=302)
        return PlainTextResponse("The cafeteria opens at eight.")

    server = ThreadedServer(app, name="netguard-site")
    port = server.start()
    yield f"127.0.0.1:{port}", seen
    server.stop()


def test_transport_connects_to_the_checked_address_keeping_the_name(
    site: tuple[str, list[tuple[str, str]]],
) -> None:
    address, seen = site
    port = address.rsplit(":", 1)[1]
    calls: list[str] = []
    resolve = _resolver({"intranet.example": ["127.0.0.1"]}, calls)
    transport = GuardedTransport(policy=LOOPBACK_ALLOWED, resolve=resolve)
    with httpx.Client(transport=transport) as client:
        response = client.get(f"http://intranet.example:{port}/page.txt")
    assert response.text == "The cafeteria opens at eight."
    assert seen[-1] == (f"intranet.example:{port}", "/page.txt")
    assert calls == ["intranet.example"]  # resolved once: what was checked is what is used


def test_transport_refuses_before_connecting_when_dns_turns_internal(
    site: tuple[str, list[tuple[str, str]]],
) -> None:
    address, seen = site
    port = address.rsplit(":", 1)[1]
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # rebinding: public first, then inside
    submitted = "http://rebind.example/"
    check_url_address(Settings(), submitted, resolve=lambda h, p: next(answers))
    transport = GuardedTransport(policy=OPEN, resolve=lambda h, p: next(answers))
    before = len(seen)
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(AddressNotAllowedError, match="loopback"),
    ):
        client.get(f"http://rebind.example:{port}/page.txt")
    assert len(seen) == before


def _crawl(url: str, tmp_path: Path, *, allow: tuple[str, ...]) -> dict[str, str]:
    settings = JobsSettings(url_allow=allow, url_timeout_s=10)
    result = crawl(url, dest=tmp_path, settings=settings, depth=0)
    return {**{p.url: "ok" for p in result.pages}, **result.failed}


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("to-metadata", "link-local"),
        ("to-decimal", "link-local"),
        ("to-v6-loopback", "loopback"),
        ("to-other-loopback", "loopback"),
        ("to-file", "not an http(s) URL"),
        ("loop", "more than 5 times"),
    ],
)
def test_crawl_checks_every_redirect_hop(
    site: tuple[str, list[tuple[str, str]]], tmp_path: Path, path: str, reason: str
) -> None:
    address, seen = site
    url = f"http://{address}/{path}"
    before = len(seen)
    outcome = _crawl(url, tmp_path, allow=("127.0.0.1",))
    assert reason in outcome[url]
    assert "redirect" in outcome[url]
    hops = seen[before:]
    assert all(host == address for host, _ in hops)  # nothing but the allowed loopback site
    assert len(hops) == (6 if path == "loop" else 1)


def test_crawl_follows_allowed_hops_and_refuses_loopback_unless_allowed(
    site: tuple[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    address, seen = site
    url = f"http://{address}/to-page"
    assert _crawl(url, tmp_path, allow=("127.0.0.1",)) == {url: "ok"}
    before = len(seen)
    refused = _crawl(url, tmp_path, allow=())
    assert "127.0.0.1 is a loopback address" in refused[url]
    assert len(seen) == before


def test_crawl_refuses_a_hop_from_an_allowed_name_to_loopback(
    site: tuple[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    """www.example.test stands for a public site (opened by name only because this test serves
    it on loopback); its redirect to 127.0.0.1 is refused at the hop, before connecting."""
    address, seen = site
    port = address.rsplit(":", 1)[1]
    settings = JobsSettings(url_allow=("www.example.test",), url_timeout_s=10)
    resolve = _resolver({"www.example.test": ["127.0.0.1"]})
    url = f"http://www.example.test:{port}/to-loopback"
    before = len(seen)
    result = crawl(url, dest=tmp_path, settings=settings, depth=0, resolve=resolve)
    assert result.pages == []
    assert result.failed[url] == (
        f"{url} redirected to 'http://127.0.0.1:{port}/page.txt': 127.0.0.1 is a loopback "
        "address; URL sources may not reach internal addresses (an operator can open hosts or "
        "networks with jobs.url_allow)"
    )
    assert seen[before:] == [(f"www.example.test:{port}", "/to-loopback")]


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A certificate for `name` (and the key), its own CA."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        return


def test_transport_pins_https_keeping_the_tls_name(tmp_path: Path) -> None:
    """Connecting to the checked address must not break TLS: SNI and the certificate check
    use the URL's name, so a certificate for another name is still refused."""
    cert, key = _self_signed(tmp_path, "intranet.example")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    trust = ssl.create_default_context(cafile=str(cert))
    resolve = _resolver({"intranet.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    try:
        for host, ok in (("intranet.example", True), ("other.example", False)):
            transport = GuardedTransport(policy=LOOPBACK_ALLOWED, resolve=resolve, verify=trust)
            with httpx.Client(transport=transport) as client:
                if ok:
                    assert client.get(f"https://{host}:{port}/").text == "hello"
                else:
                    with pytest.raises(httpx.ConnectError, match="certificate"):
                        client.get(f"https://{host}:{port}/")
    finally:
        server.shutdown()
        server.server_close()
    assert names[:2] == ["intranet.example", "other.example"]
