"""Shared pieces of the websocket-carrier tests (this module holds no tests itself).

``ws_front(listener)`` serves ``gateway.websocket`` from a real Hypercorn/Quart app in the test's
event loop, on plain HTTP or (with ``cert``/``key``) HTTPS, at :data:`WS_PATH`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from gateway.websocket import serve_quart_websocket
from tests.support.procs import async_wait_for_port
from tunnel.listener import Listener

WS_PATH = "/.well-known/llm-tunnel"


@dataclass(frozen=True)
class Front:
    port: int
    secure: bool

    def url(self, host: str = "127.0.0.1") -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{host}:{self.port}{WS_PATH}"


def tunnel_app(listener: Listener) -> Quart:
    app = Quart("ws-front")
    app.add_websocket(WS_PATH, "tunnel", serve_quart_websocket(listener))

    async def other() -> tuple[str, int]:
        return "not here", 404

    app.add_url_rule("/v1/models", "models", other)
    return app


@contextlib.asynccontextmanager
async def ws_front(
    listener: Listener, cert: Path | None = None, key: Path | None = None
) -> AsyncIterator[Front]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    if cert is not None and key is not None:
        config.certfile, config.keyfile = str(cert), str(key)
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    task = asyncio.create_task(serve(tunnel_app(listener), config, shutdown_trigger=stop.wait))
    try:
        await async_wait_for_port("127.0.0.1", port, timeout=10.0)
        yield Front(port, cert is not None)
    finally:
        stop.set()
        # Hypercorn's shutdown raises APPLICATION_DATA_AFTER_CLOSE_NOTIFY when a connector still
        # sends (a ping) after its close_notify: a race of the teardown, not of the carrier.
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, ssl.SSLError):
            await asyncio.wait_for(task, 5.0)
