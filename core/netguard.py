"""Which network addresses URL sources may reach: one policy, pure apart from the resolver.

The API's check at submission and every connection the URL fetcher makes (each page, each
redirect hop) ask this module. An address is refused when it is not publicly routable
(loopback, private, link-local, CGNAT, multicast, unspecified, reserved, documentation) or is
an IPv6 form embedding such an IPv4 address (IPv4-mapped, NAT64, 6to4), unless
jobs.url_allow names its host or a network holding it. Literal hosts are read the way the C
resolver reads them, so `2852039166`, `0177.1`, `0x7f.1` and `127.1` are addresses too.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from core.errors import AddressNotAllowedError, SourceUnavailableError

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> the addresses the host resolves to, as strings."""

ALLOW_SETTING = "jobs.url_allow"
# inet_aton's forms: one to four parts, each decimal, octal (leading 0) or hex (0x)
_INET_ATON = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)
_HOST_ENTRY = re.compile(
    r"^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$"
)

_V4_BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # 255.255.255.255 (broadcast) included
)
_V6_BLOCKED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("100::/64", "reserved"),
    ("2001::/23", "reserved"),  # Teredo and other protocol assignments
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # site-local, deprecated
    ("ff00::/8", "multicast"),
)
_BLOCKED: tuple[tuple[Network, str], ...] = tuple(
    (ip_network(net), reason) for net, reason in _V4_BLOCKED + _V6_BLOCKED
)
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED = IPv6Network("::ffff:0:0:0/96")


def parse_ip(host: str) -> Address | None:
    """The address a literal host names (brackets, IPv6 zones and inet_aton's short, octal,
    hex and decimal IPv4 forms understood), or None when the host is a name."""
    text = host.strip().strip("[]")
    if _INET_ATON.match(text):
        try:
            return IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    try:
        return ip_address(text)
    except ValueError:
        return None


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv4-mapped, IPv4-translated, NAT64 or 6to4 address carries."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def blocked_reason(address: Address) -> str | None:
    """Why the address is not publicly routable ("loopback", "private", ...), or None."""
    if isinstance(address, IPv6Address):
        if address.scope_id:
            return "scoped"
        inner = embedded_ipv4(address)
        if inner is not None:
            return blocked_reason(inner)
    for network, reason in _BLOCKED:
        if address.version == network.version and address in network:
            return reason
    if isinstance(address, IPv6Address) and address not in _GLOBAL_UNICAST:
        return "reserved"  # outside 2000::/3 nothing is assigned for public unicast
    return None


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA (so `ⓛocalhost` and `LOCALHOST.` are `localhost`)."""
    text = host.strip().strip("[]").rstrip(".").lower()
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError:
        return text


@dataclass(frozen=True)
class AddressPolicy:
    """What jobs.url_allow opens on top of public addresses: host names (`*.corp.example`
    for subdomains) and networks (an address is a /32 or /128)."""

    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AddressPolicy:
        """Read allow-list entries; ValueError names the first one that is neither."""
        hosts: set[str] = set()
        domains: list[str] = []
        networks: list[Network] = []
        for entry in entries:
            network = _network(entry)
            if network is not None:
                networks.append(network)
                continue
            name = normalize_host(entry)
            if not _HOST_ENTRY.match(name):
                raise ValueError(f"{ALLOW_SETTING}: {entry!r} is neither a host name nor a CIDR")
            if name.startswith("*."):
                domains.append(name[1:])
            else:
                hosts.add(name)
        return cls(frozenset(hosts), tuple(domains), tuple(networks))

    def allows_host(self, host: str) -> bool:
        name = normalize_host(host)
        return name in self.hosts or name.endswith(self.domains)

    def refusal(self, address: Address) -> str | None:
        """Why a connection to `address` is refused, or None when it is allowed."""
        reason = blocked_reason(address)
        if reason is None:
            return None
        plain = ip_address(str(address).split("%")[0])
        inner = embedded_ipv4(plain) if isinstance(plain, IPv6Address) else None
        candidates = [plain] if inner is None else [plain, inner]
        for candidate in candidates:
            if any(candidate.version == n.version and candidate in n for n in self.networks):
                return None
        return reason


def _network(entry: str) -> Network | None:
    text = entry.strip()
    literal = parse_ip(text) if "/" not in text else None
    if literal is not None:
        return ip_network(literal)
    try:
        return ip_network(text, strict=False)
    except ValueError:
        return None


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for host (TCP), in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(
    host: str, port: int, *, policy: AddressPolicy, resolve: Resolver = system_resolve
) -> list[Address]:
    """The addresses to connect to for host, every one allowed by the policy.

    AddressNotAllowedError when the host is (or resolves to, even among others) an address
    the policy refuses; SourceUnavailableError when it does not resolve.
    """
    literal = parse_ip(host)
    if literal is not None:
        _refuse_if_blocked(host, literal, policy, verb="is")
        return [literal]
    try:
        found = [ip_address(a.split("%")[0]) for a in resolve(normalize_host(host), port)]
    except (OSError, UnicodeError, ValueError) as exc:
        raise SourceUnavailableError(f"cannot resolve host {host!r}") from exc
    if not found:
        raise SourceUnavailableError(f"cannot resolve host {host!r}")
    if not policy.allows_host(host):
        for address in found:
            _refuse_if_blocked(host, address, policy, verb="resolves to")
    return found


def _refuse_if_blocked(host: str, address: Address, policy: AddressPolicy, *, verb: str) -> None:
    reason = policy.refusal(address)
    if reason is not None:
        article = "an" if reason[0] in "aeiou" else "a"
        raise AddressNotAllowedError(
            f"{host} {verb} {article} {reason} address; URL sources may not reach internal "
            f"addresses (an operator can open hosts or networks with {ALLOW_SETTING})",
            param="sources",
        )
