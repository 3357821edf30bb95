"""The office side: dial out, hold ``connections`` tunnels, serve each stream to an upstream.

The connector is the HTTP/2 *server*. Carriers plug in through :data:`DIALERS`
(``transport`` -> dialer); ``tls`` is built in, other modules may register more.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import time
from asyncio import FIRST_COMPLETED
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
from h2.errors import ErrorCodes
from yarl import URL

from tunnel.allowlist import refusal
from tunnel.backoff import Backoff
from tunnel.config import ConnectorConfig, UpstreamConfig
from tunnel.errors import StreamResetError, TunnelError
from tunnel.headers import response_headers, upstream_request_headers
from tunnel.session import Session, SessionSettings, Stream
from tunnel.stream import SecureStream
from tunnel.tcpstream import dial_tls

log = logging.getLogger("tunnel.connector")

VERSION = "0.1.0"
HELLO_PATH = "/_tunnel/v1/hello"
#: aiohttp's buffer per upstream response (it pauses reading at twice this): bigger pieces mean
#: fewer DATA frames for bulk answers; SSE chunks still go one by one as they arrive.
READ_BUFSIZE = 256 * 1024

Dialer = Callable[[ConnectorConfig], Awaitable[SecureStream]]
#: ``dialer.better_available(cfg)`` when a dialer has it (``auto``): returns the name of a better
#: carrier once one answers; the connector then moves its tunnel there.
BetterWatch = Callable[[ConnectorConfig], Awaitable[str]]
DIALERS: dict[str, Dialer] = {"tls": dial_tls}


def register_dialer(transport: str, dialer: Dialer) -> None:
    """Let a carrier module offer ``transport`` (e.g. "websocket", "auto")."""
    DIALERS[transport] = dialer


def dialer_for(transport: str) -> Dialer:
    """The dialer for ``transport``; "auto" falls back to "tls" while no carrier offers it."""
    with contextlib.suppress(ImportError):
        importlib.import_module("tunnel.carriers")  # registers more dialers when present
    if transport in DIALERS:
        return DIALERS[transport]
    if transport == "auto":
        return DIALERS["tls"]
    raise TunnelError(f"transport {transport!r} is not available in this build")


def openai_error(message: str, error_type: str, code: str) -> bytes:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return json.dumps(body).encode()


async def respond(stream: Stream, status: int, body: bytes) -> None:
    """An answer of the connector's own (the gateway logs, and does not relay, its errors)."""
    head = [
        (":status", str(status)),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
        ("x-tunnel-answer", "connector"),
    ]
    await stream.send_headers(head)
    await stream.send_data(body, end_stream=True)


async def _request_body(stream: Stream) -> AsyncIterator[bytes]:
    while chunk := await stream.read():
        yield chunk


class Forwarder:
    """Sends one stream's request to its upstream over a shared aiohttp session."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._http: aiohttp.ClientSession | None = None
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}

    async def __aenter__(self) -> Forwarder:
        connector = aiohttp.TCPConnector(limit=0, enable_cleanup_closed=False)
        self._http = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
            cookie_jar=aiohttp.DummyCookieJar(),  # never carry one client's cookies to another
            read_bufsize=READ_BUFSIZE,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def forward(self, stream: Stream, up: UpstreamConfig, method: str, path: str) -> None:
        assert self._http is not None
        headers = [(n, v) for n, v in stream.headers or [] if not n.startswith(":")]
        timeout = self._timeouts.get(up.name)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None, connect=up.connect_timeout_s, sock_read=up.timeout_s
            )
            self._timeouts[up.name] = timeout
        complete = stream.take_complete_body()  # small bodies: sent with a Content-Length
        body = _request_body(stream) if complete is None else complete or None
        try:
            resp = await self._http.request(
                method,
                URL(up.url + path, encoded=True),
                headers=upstream_request_headers(headers, up.credential(self._environ)),
                data=body,
                timeout=timeout,
                allow_redirects=False,
            )
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            message = f"upstream {up.name} unreachable: {exc or type(exc).__name__}"
            log.warning("%s %s: %s", method, path, message)
            await respond(stream, 502, openai_error(message, "server_error", "upstream_error"))
            return
        await self._relay(stream, resp, up.name)

    async def _relay(self, stream: Stream, resp: aiohttp.ClientResponse, name: str) -> None:
        try:
            head = [(":status", str(resp.status)), *response_headers(resp.headers.items())]
            await stream.send_headers(head)
            content = resp.content
            async for chunk in content.iter_any():
                last = content.at_eof()  # a Content-Length body: END_STREAM on its last DATA
                if not stream.send_now(chunk, end_stream=last):
                    await stream.send_data(chunk, end_stream=last)
                if last:
                    return
            await stream.end()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream %s broke off its answer: %s", name, exc or type(exc).__name__)
            stream.reset(ErrorCodes.INTERNAL_ERROR)
        except StreamResetError:
            pass  # the gateway went away; close the upstream request below
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()  # the upstream sees its request closed: generation stops


class Connector:
    """``connections`` tunnels to the gateway, each redialled with backoff until ``stop``."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        environ: Mapping[str, str] | None = None,
        *,
        settings: SessionSettings | None = None,
    ) -> None:
        """``settings`` replaces the HTTP/2 settings made from ``cfg`` (tests, benchmarks)."""
        self.cfg = cfg
        self._dial = dialer_for(cfg.transport)
        self._forwarder = Forwarder(os.environ if environ is None else environ)
        self._sessions: set[Session] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # tunnels left behind by a move
        self._better: BetterWatch | None = getattr(self._dial, "better_available", None)
        self._stopping = asyncio.Event()
        self._settings = settings or SessionSettings(
            ping_interval_s=cfg.ping_interval_s,
            ping_timeout_s=cfg.ping_timeout_s,
            max_concurrent_streams=cfg.max_concurrent_streams,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain every tunnel (GOAWAY) and return."""
        async with self._forwarder:
            loops = [asyncio.create_task(self._loop(i)) for i in range(self.cfg.connections)]
            await stop.wait()
            self._stopping.set()
            log.info("stopping: draining %d tunnel(s)", len(self._sessions))
            await asyncio.gather(
                *(s.drain(self.cfg.drain_timeout_s, "connector stopping") for s in self._sessions),
                return_exceptions=True,
            )
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, *self._retiring, return_exceptions=True)
        log.info("stopped")

    def sessions(self) -> tuple[Session, ...]:
        """The HTTP/2 sessions of the tunnels up now (for window checks)."""
        return tuple(self._sessions)

    def _label(self, index: int) -> str:
        return f"tunnel {index + 1}" if self.cfg.connections > 1 else "tunnel"

    async def _loop(self, index: int) -> None:
        cfg = self.cfg
        backoff = Backoff(
            base_s=cfg.reconnect_base_s,
            max_s=cfg.reconnect_max_s,
            healthy_reset_s=cfg.healthy_reset_s,
        )
        label = self._label(index)
        handover: SecureStream | None = None  # a tunnel already dialled on a better carrier
        while not self._stopping.is_set():
            if handover is None:
                try:
                    secure = await self._dial(cfg)
                except TunnelError as exc:
                    delay = backoff.next_delay()
                    log.warning("%s: cannot connect: %s; retrying in %.1fs", label, exc, delay)
                    await self._pause(delay)
                    continue
            else:
                secure, handover = handover, None
            log.info("%s: connected to %s, waiting for the gateway", label, secure.description)
            backoff.up(time.monotonic())
            reason, handover = await self._serve(secure, label)
            backoff.down(time.monotonic())
            if self._stopping.is_set():
                if handover is not None:
                    await handover.aclose()
                return
            if handover is not None:
                continue
            delay = backoff.next_delay()
            log.warning("%s lost: %s; reconnecting in %.1fs", label, reason, delay)
            await self._pause(delay)

    async def _pause(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()

    async def _serve(self, secure: SecureStream, label: str) -> tuple[str, SecureStream | None]:
        """Serve one tunnel until it ends: ``(why, None)``; or until a better carrier took over:
        ``("moved", the new tunnel)``, the old one then draining in the background."""

        async def handle(stream: Stream) -> None:
            await self._handle(stream, secure, label)

        session = Session(
            secure, client_side=False, settings=self._settings, on_request=handle, name=label
        )
        self._sessions.add(session)
        run = asyncio.create_task(session.run())
        watcher = None
        if self._better is not None:
            watcher = asyncio.create_task(self._dial_better(self._better, label))
        try:
            await asyncio.wait([t for t in (run, watcher) if t], return_when=FIRST_COMPLETED)
        except asyncio.CancelledError:
            run.cancel()  # the connector is stopping: the session goes with us
            if watcher is not None:
                watcher.cancel()
            raise
        if watcher is not None and not watcher.done():
            watcher.cancel()
        elif watcher is not None:
            better, name = watcher.result()
            if not run.done():
                self._retire(session, run, name)
                return "moved", better
            await better.aclose()
        self._sessions.discard(session)
        return _why_it_ended(session, run), None

    async def _dial_better(self, better: BetterWatch, label: str) -> tuple[SecureStream, str]:
        """Wait for a better carrier, then dial the new tunnel before the old one goes."""
        while True:
            try:
                name = await better(self.cfg)
            except Exception as exc:  # a broken watch must not end the tunnel
                log.warning("%s: cannot look for a better carrier: %s", label, exc)
                await asyncio.Event().wait()  # until the tunnel ends and cancels us
            log.info("%s: %s is available; moving the tunnel to it", label, name)
            try:
                return await self._dial(self.cfg), name
            except TunnelError as exc:
                log.warning("%s: cannot move to %s: %s; staying", label, name, exc)

    def _retire(self, session: Session, run: asyncio.Task[str], name: str) -> None:
        """Drain the tunnel left behind: the gateway sends it nothing new (GOAWAY) and the
        requests in flight on it finish (up to the longest upstream timeout)."""
        limit_s = max(
            [self.cfg.drain_timeout_s, *(u.timeout_s for u in self.cfg.upstreams.values())]
        )

        async def retire() -> None:
            try:
                await session.drain(limit_s, f"moving to {name}")
                await run
            finally:
                self._sessions.discard(session)

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _handle(self, stream: Stream, secure: SecureStream, label: str) -> None:
        head = dict(stream.headers or [])
        method, path = head.get(":method", ""), head.get(":path", "")
        upstream = head.get(":authority", "")
        if path == HELLO_PATH:
            log.info("%s up to %s", label, secure.description)
            await respond(stream, 200, self._hello())
            return
        refused = refusal(self.cfg.upstreams, upstream, method, path)
        if refused is not None:
            log.warning("refused %r %r for upstream %r: %s", method, path, upstream, refused.reason)
            body = openai_error(
                f"refused by the connector: {refused.reason}", "permission_error", "not_allowed"
            )
            await respond(stream, refused.status, body)
            return
        await self._forwarder.forward(stream, self.cfg.upstreams[upstream], method, path)

    def _hello(self) -> bytes:
        return json.dumps({"version": VERSION, "upstreams": sorted(self.cfg.upstreams)}).encode()


def _why_it_ended(session: Session, run: asyncio.Task[str]) -> str:
    refused = session.peer_goaway_data.decode("utf-8", "replace")
    if refused.startswith("refused: "):
        return f"the gateway refused this connector: {refused.removeprefix('refused: ')}"
    return "stopped" if run.cancelled() else run.result()
