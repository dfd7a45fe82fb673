"""An httpx transport that connects only where core.netguard allows, with no DNS-rebinding window.

Each request's host is resolved once here; every address it resolves to is checked, and the
connection goes to the checked address itself (the URL's host swapped for it), while the
Host header and the TLS server name (SNI, and so certificate checks) keep the name. The
resolver is never asked twice, so a second, different DNS answer cannot slip in between the
check and the connect. No keep-alive: a pooled connection is keyed by address, and must never
carry a request for another host.
"""

from __future__ import annotations

import ssl

import httpx

from core.netguard import AddressPolicy, Resolver, checked_addresses, system_resolve

_DEFAULT_PORTS = {"http": 80, "https": 443}


class GuardedTransport(httpx.BaseTransport):
    """Sends each request to an address the policy allows (AddressNotAllowedError else)."""

    def __init__(
        self,
        *,
        policy: AddressPolicy,
        resolve: Resolver = system_resolve,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpx.HTTPTransport(
            verify=verify, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
        address = checked_addresses(url.host, port, policy=self._policy, resolve=self._resolve)[0]
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=str(address)),
            headers=request.headers,  # Host was set from the name when the request was built
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": url.host},
        )
        return self._inner.handle_request(pinned)

    def close(self) -> None:
        self._inner.close()
