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
import sqlite3
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from gateway.accesslog import AccessLog
from gateway.app import create_app, create_websocket_app
from gateway.auth.authenticator import Authenticator
from gateway.certificates import CertificateFact, certificate_facts
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from gateway.expiry_warnings import warn_expiring
from gateway.ledger import UsageLedger
from gateway.limits.connections import AddressLimit, LimitedConfig
from gateway.limits.connections import install as install_connection_limit
from gateway.limits.limiter import RateLimiter
from gateway.memdebug import install_from_env
from gateway.metrics import GatewayMetrics
from gateway.status.routes import create_status_admin_app
from gateway.websocket import harden_websockets
from tunnel.heap import freeze_startup_heap, pin_mmap_threshold
from tunnel.listener import Listener

log = logging.getLogger("gateway")


BACKLOG = 2048


def bind_socket(address: tuple[str, int]) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # SSE chunks leave at once
    sock.bind((host, port))
    # listening from here on: a client that connects as soon as ``--ready-file`` names the port
    # waits in the backlog until Hypercorn accepts, instead of being refused
    sock.listen(BACKLOG)
    return sock


def hypercorn_config(
    sock: socket.socket,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    graceful_s: float,
    header_timeout_s: float,
    address_limit: AddressLimit | None = None,
) -> tuple[HypercornConfig, int]:
    """A Hypercorn config serving on ``sock`` (taken over); returns it with the bound port."""
    port = int(sock.getsockname()[1])
    cfg = LimitedConfig()
    cfg.bind = [f"fd://{sock.detach()}"]
    if cert is not None and key is not None:
        cfg.certfile, cfg.keyfile = str(cert), str(key)  # Hypercorn: TLS >= 1.2, no compression
        cfg.alpn_protocols = ["h2", "http/1.1"]
    cfg.graceful_timeout = graceful_s
    # Hypercorn's idle timer runs from the accept (and after each answer) until a whole request
    # head is in, so it bounds a head dribbled byte by byte (slowloris) as well as an idle
    # kept-alive connection; the SDKs drop idle connections sooner themselves (httpx: 5 s).
    cfg.keep_alive_timeout = header_timeout_s
    cfg.ssl_handshake_timeout = header_timeout_s
    cfg.address_limit = address_limit
    cfg.keep_alive_max_requests = 1_000_000_000  # never close a busy kept-alive connection
    cfg.backlog = BACKLOG  # a burst of new connections waits instead of being refused
    cfg.max_app_queue_size = 64  # request body pieces buffered per request
    harden_websockets(cfg)  # the tunnel's WebSocket: 64 KiB, not 16 MiB per stranger
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


# Hypercorn stops only after the tunnels drained (every in-flight answer is complete by then),
# so its own grace period only covers writing the last bytes and closing idle connections.
HYPERCORN_GRACE_S = 2.0


def bind_all(config: GatewayConfig, public: Quart, admin: Quart, ws_app: Quart | None) -> Bound:
    graceful = min(float(config.tunnel.drain_timeout_s), HYPERCORN_GRACE_S)
    server = config.server
    header_s = server.header_timeout_s
    # one count per source address over both public listeners; the admin one is loopback
    limit = AddressLimit(server.max_connections_per_ip, server.trusted_proxies)
    install_connection_limit()
    cfg, port = hypercorn_config(
        bind_socket(server.listen), cert=server.cert, key=server.key, graceful_s=graceful,
        header_timeout_s=header_s, address_limit=limit,
    )  # fmt: skip
    bound = Bound([(public, cfg)], {"public": port})
    if config.admin.listen is not None:
        sock = bind_socket(config.admin.listen)
        cfg, port = hypercorn_config(sock, graceful_s=1.0, header_timeout_s=header_s)
        bound.servers.append((admin, cfg))
        bound.ports["admin"] = port
    if ws_app is not None and config.websocket_http_listen is not None:
        sock = bind_socket(config.websocket_http_listen)
        cfg, port = hypercorn_config(
            sock, graceful_s=graceful, header_timeout_s=header_s, address_limit=limit
        )
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
    install_from_env(loop)  # GATEWAY_TRACEMALLOC: allocation growth on SIGUSR1
    await serve(config, stop.wait, ready_file=ready_file)


@dataclass(slots=True)
class Parts:
    """What the API needs besides the tunnel listener; built before anything is started."""

    auth: Authenticator
    limiter: RateLimiter
    ledger: UsageLedger
    access_log: AccessLog

    async def aclose(self) -> None:
        await self.auth.aclose()
        await self.limiter.aclose()
        await self.ledger.aclose()  # its writer has committed every recorded request
        self.access_log.close()


async def build_parts(config: GatewayConfig) -> Parts:
    """Authenticator, limiter, ledger and access log; a problem with any of them (a bad JWKS
    setting, a limits storage URI, a keys database that cannot be opened) is a ConfigError."""
    opened: list[Callable[[], Awaitable[None]]] = []
    try:
        auth = Authenticator.from_config(config)
        opened.append(auth.aclose)
        limiter = RateLimiter.from_config(config)
        opened.append(limiter.aclose)
        ledger = UsageLedger.from_config(config)
        opened.append(ledger.aclose)
        access_log = AccessLog(config.log.access_log, log_prompts=config.log.log_prompts)
    except (ValueError, OSError, sqlite3.Error) as exc:
        for close in reversed(opened):
            with contextlib.suppress(Exception):
                await close()
        raise ConfigError(f"cannot start: {exc}") from None
    return Parts(auth, limiter, ledger, access_log)


async def serve(
    config: GatewayConfig,
    shutdown_trigger: Callable[[], Awaitable[Any]],
    *,
    ready_file: Path | None = None,
) -> None:
    drain_s = float(config.tunnel.drain_timeout_s)
    parts = await build_parts(config)
    listener = Listener(config.tunnel)
    warner: asyncio.Task[None] | None = None
    try:
        await listener.start()

        def facts() -> tuple[CertificateFact, ...]:
            return certificate_facts(config, listener.pool.status())

        upstreams = {route.upstream for route in config.models.values()}
        metrics = GatewayMetrics(listener.pool, upstreams=upstreams)
        metrics.watch_certificates(facts)
        warner = asyncio.create_task(warn_expiring(facts))
        public = create_app(
            config,
            listener.pool,
            parts.auth,
            parts.limiter,
            parts.ledger,
            metrics,
            access_log=parts.access_log,
            listener=listener,
        )
        ws_app = create_websocket_app(config, listener) if config.websocket_http_listen else None
        admin = create_status_admin_app(config, listener.pool, metrics, parts.auth)
        bound = bind_all(config, public, admin, ws_app)
        bound.ports["tunnel"] = listener.port
        await _serve_until(bound, shutdown_trigger, ready_file, listener, drain_s)
    finally:
        if warner is not None:
            warner.cancel()
        await listener.aclose(drain_timeout_s=drain_s)  # idempotent; here for early failures
        await parts.aclose()


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
    freeze_startup_heap()
    pin_mmap_threshold()
    _announce(bound.ports, ready_file)
    watcher: asyncio.Future[Any] = asyncio.ensure_future(shutdown_trigger())
    try:
        await asyncio.wait([watcher, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        failed_early = {task for task in tasks if task.done()}  # not of our stopping
        log.info("gateway: shutting down (draining tunnels)")
        watcher.cancel()
        # In-flight requests finish through the draining tunnels first; only then does
        # Hypercorn stop (stopping it under a connector that still sends breaks its TLS).
        with contextlib.suppress(Exception):
            await listener.aclose(drain_timeout_s=drain_s)
        stopping.set()
        interrupted = await _stop_servers(tasks, HYPERCORN_GRACE_S + 1.0)
        for task in tasks:
            if task in interrupted or task.cancelled():
                continue
            error = task.exception()
            if error is None:
                continue
            if task not in failed_early and _shutdown_noise(error):
                log.info("gateway: ignored at shutdown: %s", error)
                continue
            raise error


async def _stop_servers(
    tasks: list[asyncio.Task[None]], within_s: float
) -> set[asyncio.Task[None]]:
    """Wait for Hypercorn to stop, bounded: it waits for every TLS connection to close, and an
    idle kept-alive client that never answers our close_notify would hold it for 30 s. Returns
    the tasks that had to be cancelled (their errors are Hypercorn being interrupted)."""
    _, pending = await asyncio.wait(tasks, timeout=within_s)
    if pending:
        log.info("gateway: closing %d server(s) with connections still open", len(pending))
        # what Hypercorn leaves behind when interrupted is reported, not raised: only noise now
        asyncio.get_running_loop().set_exception_handler(_quiet_at_shutdown)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    return pending


def _quiet_at_shutdown(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    log.debug("gateway: at shutdown: %s", context.get("message"))


def _shutdown_noise(error: BaseException) -> bool:
    """Errors a peer can cause while we close (e.g. ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``
    when a connector still sends after our TLS close_notify): harmless once we are stopping."""
    return isinstance(error, ssl.SSLError | ConnectionError)


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
