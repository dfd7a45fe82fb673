"""uvicorn in a daemon thread on 127.0.0.1, for the loopback stand-ins in tests/fakes."""

from __future__ import annotations

import threading
import time
from typing import Self

import uvicorn
from fastapi import FastAPI


class ThreadedServer:
    """Serves one app on a free loopback port until `stop`."""

    def __init__(self, app: FastAPI, *, name: str) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._name = name
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)

    def start(self) -> int:
        """Start serving; returns the port once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self._name} did not start")
            time.sleep(0.01)
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class LoopbackFake:
    """start/stop and the context manager of a stand-in served by a ThreadedServer: a subclass
    names its thread and builds its app."""

    _name = "fake"
    _server: ThreadedServer | None = None
    _port = 0

    def _app(self) -> FastAPI:
        raise NotImplementedError

    def start(self) -> Self:
        self._server = ThreadedServer(self._app(), name=self._name)
        self._port = self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
