"""``gateway serve``: the tunnel listener, the public HTTPS API and the admin app in one process.

Hypercorn serves the public app over TLS (HTTP/2 and HTTP/1.1, TLS 1.2 minimum, no compression),
the admin app on plain HTTP on loopback, and optionally the WebSocket-only app on plain HTTP.
Sockets are bound here (port 0 works; the bound ports go to ``--ready-file``) and handed to
Hypercorn as ``fd://`` binds. SIGTERM / SIGINT: stop accepting, drain the tunnels, stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from gateway.accesslog import AccessLog
from gateway.app import create_admin_app, create_app, create_websocket_app
from gateway.auth import Authenticator
from gateway.config import GatewayConfig
from gateway.ledger import UsageLedger
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from tunnel.listener import Listener

log = logging.getLogger("gateway")


def bind_socket(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # SSE chunks leave at once
    sock.bind((host, port))
    return sock


def hypercorn_config(
    sock: socket.socket, *, cert: Path | None = None, key: Path | None = None, graceful_s: float
) -> tuple[HypercornConfig, int]:
    """A Hypercorn config serving on ``sock`` (taken over); returns it with the bound port."""
    port = int(sock.getsockname()[1])
    cfg = HypercornConfig()
    cfg.bind = [f"fd://{sock.detach()}"]
    if cert is not None and key is not None:
        cfg.certfile, cfg.keyfile = str(cert), str(key)  # Hypercorn: TLS >= 1.2, no compression
        cfg.alpn_protocols = ["h2", "http/1.1"]
    cfg.graceful_timeout = graceful_s
    cfg.keep_alive_timeout = 75.0  # SDK connection pools reuse connections
    cfg.h2_max_concurrent_streams = 256
    cfg.accesslog = None  # our own access log, one JSON line per API request
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.include_server_header = False
    return cfg, port


@dataclass(slots=True)
class Bound:
    """The servers to run and the ports they got."""

    servers: list[tuple[Quart, HypercornConfig]]
    ports: dict[str, int]


def bind_all(config: GatewayConfig, public: Quart, admin: Quart, ws_app: Quart | None) -> Bound:
    graceful = float(config.tunnel.drain_timeout_s)
    server = config.server
    cfg, port = hypercorn_config(
        bind_socket(server.listen), cert=server.cert, key=server.key, graceful_s=graceful
    )
    bound = Bound([(public, cfg)], {"public": port})
    if config.admin.listen is not None:
        cfg, port = hypercorn_config(bind_socket(config.admin.listen), graceful_s=1.0)
        bound.servers.append((admin, cfg))
        bound.ports["admin"] = port
    if ws_app is not None and config.websocket_http_listen is not None:
        cfg, port = hypercorn_config(bind_socket(config.websocket_http_listen), graceful_s=graceful)
        bound.servers.append((ws_app, cfg))
        bound.ports["websocket_http"] = port
    return bound


async def run(config: GatewayConfig, *, ready_file: Path | None = None) -> None:
    """Serve until SIGTERM / SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    await serve(config, stop.wait, ready_file=ready_file)


async def serve(
    config: GatewayConfig,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    *,
    ready_file: Path | None = None,
) -> None:
    drain_s = float(config.tunnel.drain_timeout_s)
    listener = Listener(config.tunnel)
    await listener.start()
    auth = Authenticator.from_config(config)
    limiter = RateLimiter.from_config(config)
    ledger = UsageLedger.from_config(config)
    access_log = AccessLog(config.log.access_log, log_prompts=config.log.log_prompts)
    try:
        metrics = GatewayMetrics(listener.pool)
        public = create_app(
            config,
            listener.pool,
            auth,
            limiter,
            ledger,
            metrics,
            access_log=access_log,
            listener=listener,
        )
        ws_app = create_websocket_app(config, listener) if config.websocket_http_listen else None
        bound = bind_all(config, public, create_admin_app(listener.pool, metrics), ws_app)
        bound.ports["tunnel"] = listener.port
        await _serve_until(bound, shutdown_trigger, ready_file, listener, drain_s)
    finally:
        await listener.aclose(drain_timeout_s=drain_s)  # idempotent; here for early failures
        await auth.aclose()
        await limiter.aclose()
        await ledger.aclose()
        access_log.close()


async def _serve_until(
    bound: Bound,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    ready_file: Path | None,
    listener: Listener,
    drain_s: float,
) -> None:
    stopping = asyncio.Event()

    async def trigger() -> None:
        await stopping.wait()

    tasks = [
        asyncio.create_task(hypercorn_serve(app, cfg, shutdown_trigger=trigger))
        for app, cfg in bound.servers
    ]
    _announce(bound.ports, ready_file)
    watcher: asyncio.Future[Any] = asyncio.ensure_future(shutdown_trigger())
    try:
        await asyncio.wait([watcher, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("gateway: shutting down (draining tunnels)")
        stopping.set()
        watcher.cancel()
        # the tunnels drain while Hypercorn lets in-flight requests finish
        drain = asyncio.create_task(listener.aclose(drain_timeout_s=drain_s))
        await asyncio.gather(*tasks, drain, return_exceptions=True)
        for task in tasks:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error


def _announce(ports: dict[str, int], ready_file: Path | None) -> None:
    for name, port in ports.items():
        print(f"gateway: {name} listening on port {port}", file=sys.stderr, flush=True)
    if ready_file is not None:
        tmp = ready_file.with_suffix(ready_file.suffix + ".tmp")
        tmp.write_text(json.dumps(ports), encoding="utf-8")
        tmp.replace(ready_file)


def main_serve(config: GatewayConfig, ready_file: Path | None = None) -> None:
    """Run the gateway on uvloop (where it exists) until a signal stops it."""
    try:
        import uvloop  # noqa: PLC0415 (optional: not on Windows)
    except ImportError:
        asyncio.run(run(config, ready_file=ready_file))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(config, ready_file=ready_file))
