"""The connector's side of the ``websocket`` carrier: an HTTP(S) upgrade, then binary messages.

The route follows the proxy's own rules: plain ``http://`` goes to the proxy as an absolute-form
``GET`` with the Upgrade headers; ``https://`` is ``CONNECT`` then an outer TLS that trusts the
system store plus ``proxy_ca`` (an inspecting proxy's CA). The outer layer proves nothing about
the gateway: the mutual TLS runs inside (:mod:`tunnel.security.memory_tls`). No subprotocol and
no header naming this tool are sent (RFC 6455 section 4.1 needs neither).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from tunnel.carrier.proxy import ProxySpec, open_tcp, parse_connect_response, select_proxy
from tunnel.errors import DialError, HandshakeError, ProxyRefusedError

#: An ordinary browser's User-Agent: the upgrade should look like any other page's WebSocket.
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
#: Largest binary message we send: the gateway takes no more (tunnel.carrier.websocket_limits).
#: Never raise it alone, or a new connector cannot talk to an older gateway.
MAX_MESSAGE_BYTES = 64 * 1024
READ_BYTES = 65536
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class WebSocketTarget:
    """Where the upgrade goes: ``http(s)://host[:port]/path`` (ws/wss accepted too)."""

    secure: bool
    host: str
    port: int
    path: str  # path and query, e.g. "/.well-known/llm-tunnel"

    @property
    def scheme(self) -> str:
        return "https" if self.secure else "http"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


def parse_websocket_url(url: str) -> WebSocketTarget:
    """``websocket_url`` -> target; ValueError naming what is wrong."""
    parts = urlsplit(url)
    schemes = {"http": False, "ws": False, "https": True, "wss": True}
    if parts.scheme not in schemes:
        raise ValueError(
            f"websocket URL {url!r} must start with http://, https://, ws:// or wss://"
        )
    if not parts.hostname:
        raise ValueError(f"websocket URL {url!r} has no host")
    secure = schemes[parts.scheme]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebSocketTarget(secure, parts.hostname, parts.port or (443 if secure else 80), path)


def plain_http_url(url: str) -> str:
    """The plain-HTTP twin of an https websocket URL (same host and path, port 80)."""
    target = parse_websocket_url(url)
    return WebSocketTarget(False, target.host, 80, target.path).url


def proxy_for(
    target: WebSocketTarget, configured: str, environ: Mapping[str, str]
) -> ProxySpec | None:
    """The configured proxy, else HTTPS_PROXY (https) / HTTP_PROXY (http), honouring NO_PROXY."""
    if configured or target.secure:
        return select_proxy(configured, target.host, environ)
    plain = environ.get("HTTP_PROXY") or environ.get("http_proxy") or ""
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    return select_proxy("", target.host, {"HTTPS_PROXY": plain, "NO_PROXY": no_proxy})


def upgrade_headers(target: WebSocketTarget, proxy: ProxySpec | None) -> list[tuple[bytes, bytes]]:
    """Extra request headers: a browser-like User-Agent, and Basic proxy auth on plain HTTP."""
    headers = [(b"User-Agent", USER_AGENT.encode()), (b"Cache-Control", b"no-cache")]
    if proxy is not None and proxy.username and not target.secure:
        token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode())
        headers.append((b"Proxy-Authorization", b"Basic " + token))
    return headers


def request_target(target: WebSocketTarget, proxy: ProxySpec | None) -> str:
    """Absolute-form for a plain-HTTP proxy (RFC 9112 section 3.2.2), origin-form otherwise."""
    return target.url if proxy is not None and not target.secure else target.path


def outer_context(proxy_ca: Path | None) -> ssl.SSLContext:
    """The outer HTTPS: the system store, plus the inspecting proxy's CA when given."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if proxy_ca is not None:
        try:
            ctx.load_verify_locations(cafile=proxy_ca)
        except (OSError, ssl.SSLError) as exc:
            raise DialError(f"cannot load proxy_ca {proxy_ca}: {exc}") from None
    return ctx


class WebSocketStream:
    """A :class:`tunnel.carrier.byte_stream.ByteStream` whose bytes travel as binary WebSocket
    messages."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ws: WSConnection,
        pending: list[Event],
        description: str,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = ws
        self._pending = pending
        self._buffer = bytearray()
        self._eof = False
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self.description = description

    async def read(self, max_bytes: int) -> bytes:
        async with self._read_lock:
            while not self._buffer and not self._eof:
                if not self._pending:
                    data = await self._read_socket()
                    self._ws.receive_data(data or None)
                    self._pending.extend(self._ws.events())
                    continue
                await self._handle(self._pending.pop(0))
            chunk = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return chunk

    async def _read_socket(self) -> bytes:
        try:
            return await self._reader.read(READ_BYTES)
        except OSError:
            return b""

    async def _handle(self, event: Event) -> None:
        if isinstance(event, BytesMessage):
            self._buffer += event.data
        elif isinstance(event, Ping):
            await self._send(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send(self._ws.send(event.response()))
            self._eof = True
        elif isinstance(event, TextMessage):
            await self._close(1003, "binary only")  # RFC 6455 section 7.4.1
            self._eof = True

    async def write(self, data: bytes) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            raise ConnectionResetError("the WebSocket is closed")
        view = memoryview(data)
        for start in range(0, len(view), MAX_MESSAGE_BYTES):
            chunk = bytes(view[start : start + MAX_MESSAGE_BYTES])
            await self._send(self._ws.send(Message(data=chunk)))

    async def _send(self, data: bytes) -> None:
        async with self._write_lock:
            self._writer.write(data)
            await self._writer.drain()

    async def _close(self, code: int, reason: str) -> None:
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(
                    self._send(self._ws.send(CloseConnection(code=code, reason=reason))), 1.0
                )

    async def aclose(self) -> None:
        if self._writer.is_closing():
            return
        await self._close(1000, "")
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        except (OSError, TimeoutError, ssl.SSLError):
            self._writer.transport.abort()


async def _open_route(
    target: WebSocketTarget, proxy: ProxySpec | None, proxy_ca: Path | None, timeout_s: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (direct / CONNECT / to the proxy for absolute-form), then the outer TLS for https."""
    if proxy is not None and not target.secure:
        try:
            return await open_tcp(proxy.host, proxy.port, None, timeout_s)
        except DialError as exc:  # open_tcp words it for a gateway; here it is the proxy
            reason = str(exc).split(": ", 1)[-1]
            raise DialError(f"cannot reach the proxy at {proxy.address}: {reason}") from None
    reader, writer = await open_tcp(target.host, target.port, proxy, timeout_s)
    if target.secure:
        try:
            await writer.start_tls(
                outer_context(proxy_ca),
                server_hostname=target.host,
                ssl_handshake_timeout=timeout_s,
            )
        except ssl.SSLCertVerificationError as exc:
            writer.close()
            raise HandshakeError(
                f"the outer HTTPS to {target.host} was not trusted ({exc.verify_message}); "
                "if the proxy inspects TLS, set proxy_ca to its CA certificate"
            ) from None
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            writer.close()
            raise DialError(f"the outer HTTPS to {target.host} failed: {exc}") from None
    return reader, writer


async def _upgrade(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    target: WebSocketTarget,
    proxy: ProxySpec | None,
) -> tuple[WSConnection, list[Event]]:
    ws = WSConnection(ConnectionType.CLIENT)
    request = Request(
        host=target.host_header,
        target=request_target(target, proxy),
        extra_headers=upgrade_headers(target, proxy),
    )
    writer.write(ws.send(request))
    await writer.drain()
    head = b""
    while True:
        data = await reader.read(READ_BYTES)
        if not data:
            raise DialError(f"{target.url}: the connection closed during the WebSocket upgrade")
        head = (head + data)[:MAX_HEAD_BYTES]
        ws.receive_data(data)
        events = list(ws.events())
        for index, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return ws, events[index + 1 :]
            if isinstance(event, RejectConnection):
                _, line = parse_connect_response(head)
                if proxy is not None:
                    raise ProxyRefusedError(line)
                raise DialError(f"{target.url} refused the WebSocket upgrade: {line}")


async def open_websocket(
    url: str,
    proxy_url: str,
    proxy_ca: Path | None,
    timeout_s: float,
    environ: Mapping[str, str] | None = None,
) -> WebSocketStream:
    """Open the WebSocket at ``url`` (directly or through the proxy); raises DialError."""
    try:
        target = parse_websocket_url(url)
        proxy = proxy_for(target, proxy_url, os.environ if environ is None else environ)
    except ValueError as exc:
        raise DialError(str(exc)) from None
    reader, writer = await _open_route(target, proxy, proxy_ca, timeout_s)
    try:
        async with asyncio.timeout(timeout_s):
            ws, pending = await _upgrade(reader, writer, target, proxy)
    except TimeoutError:
        writer.close()
        raise DialError(f"{target.url}: no answer to the WebSocket upgrade in time") from None
    except (OSError, ssl.SSLError) as exc:
        writer.close()
        raise DialError(f"{target.url}: the WebSocket upgrade failed: {exc}") from None
    except DialError:
        writer.close()
        raise
    via = f" via proxy {proxy.address}" if proxy else ""
    return WebSocketStream(reader, writer, ws, pending, f"websocket {target.url}{via}")
