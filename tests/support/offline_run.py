"""Run the `ondata` CLI with every non-loopback network connection refused.

A Python audit hook (a public interpreter API, PEP 578) sees every socket connect and
name lookup before it happens and raises for anything that is not loopback or a local
Unix socket. Used by tests/integration/test_offline.py.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

ATTEMPTS: list[str] = []


def _is_local_host(host: Any) -> bool:
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guard(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        sock, address = args[0], args[1]
        if sock.family == socket.AF_UNIX:
            return
        host = address[0] if isinstance(address, tuple) else address
        if not _is_local_host(host):
            ATTEMPTS.append(f"connect {address}")
            raise ConnectionRefusedError(f"offline test: outbound connection to {address} blocked")
    elif event == "socket.getaddrinfo" and not _is_local_host(args[0]):
        ATTEMPTS.append(f"resolve {args[0]}")
        raise socket.gaierror(f"offline test: name lookup of {args[0]} blocked")


def main() -> None:
    sys.addaudithook(_guard)
    from core.cli import main as cli_main

    try:
        cli_main()
    finally:
        if ATTEMPTS:
            print(f"BLOCKED-NETWORK-ATTEMPTS: {ATTEMPTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
