"""The gateway's side of the ``websocket`` carrier: a Quart WebSocket handler.

The WebSocket (over the public HTTPS port, a plain-HTTP listener, or a TLS-terminating front such
as nginx or Cloudflare Tunnel) proves nothing: the connector is admitted only by the mutual TLS
run inside it, then by the same identity/CRL/allow-list checks as the ``tls`` carrier
(:meth:`tunnel.listener.Listener.serve_secure_stream`).

Mount it with ``app.websocket(cfg.websocket_path)(serve_quart_websocket(listener))``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol import ws_stream
from hypercorn.protocol.ws_stream import FrameTooLargeError, WebsocketBuffer
from wsproto.events import Message
from wsproto.extensions import PerMessageDeflate

from tunnel.config import ListenerConfig
from tunnel.errors import HandshakeError
from tunnel.listener import Listener
from tunnel.memtls import MemoryTLSStream
from tunnel.tlsconfig import listener_context

# Refusals are the listener's, whatever the carrier: one logger for all of them.
log = logging.getLogger("tunnel.listener")

#: Largest binary message we send (the connector's wsproto takes any size; proxies may not).
MAX_MESSAGE_BYTES = 64 * 1024
#: Largest message we take, before and after admission: the connector never sends more
#: (``tunnel.ws_client.MAX_MESSAGE_BYTES``) and a TLS ClientHello flight fits many times over.
#: The server must apply it (Hypercorn's ``websocket_max_message_size``, 16 MiB by default):
#: Hypercorn holds a whole message before the app sees any of it, and closes with 1009 above it.
MAX_RECEIVE_MESSAGE_BYTES = 64 * 1024
#: RFC 6455 section 7.4.1: 1003 "cannot accept this type of data", 1009 "message too big".
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009

RemoteOf = Callable[[Any], str]


class QuartWebSocketStream:
    """A :class:`tunnel.stream.ByteStream` over Quart's ``websocket`` (binary messages only).

    ``send`` waits for Hypercorn to write (its transport drains). Incoming messages are bounded
    by the server (``MAX_RECEIVE_MESSAGE_BYTES``) and checked again here, so at most one message
    is held; the HTTP/2 flow-control windows of the tunnel above bound how many follow.
    """

    def __init__(self, websocket: Any) -> None:
        self._ws = websocket
        self._buffer = bytearray()
        self._closed = False

    async def read(self, max_bytes: int) -> bytes:
        while not self._buffer:
            if self._closed:
                return b""
            message = await self._ws.receive()
            if isinstance(message, str):
                await self.aclose(CLOSE_UNSUPPORTED_DATA)  # text is not ours
                return b""
            if len(message) > MAX_RECEIVE_MESSAGE_BYTES:  # a server that did not apply the cap
                await self.aclose(CLOSE_MESSAGE_TOO_BIG)
                return b""
            self._buffer += message
        chunk = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return chunk

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise ConnectionResetError("the WebSocket is closed")
        view = memoryview(data)
        for start in range(0, len(view), MAX_MESSAGE_BYTES):
            await self._ws.send(bytes(view[start : start + MAX_MESSAGE_BYTES]))

    async def aclose(self, code: int = 1000) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # the peer may be gone already
            await self._ws.close(code)


class CappedWebsocketBuffer(WebsocketBuffer):
    """Hypercorn's message buffer, checking the size before it stores, and storing nothing
    more once it has refused (see :func:`harden_websockets`)."""

    def extend(self, event: Message[Any]) -> None:
        if self.length + len(event.data) > self.max_length:
            self.clear()
            self.length = self.max_length + 1  # every later piece is refused too
            raise FrameTooLargeError
        super().extend(event)


class DeflateDeclined(PerMessageDeflate):
    """permessage-deflate (RFC 7692), never agreed: a compressed frame is inflated whole before
    any size check (256 KiB on the wire made 256 MiB), and TLS records do not compress anyway."""

    def accept(self, offer: str) -> None:
        return None


def harden_websockets(config: HypercornConfig) -> None:
    """Bound what a stranger's WebSocket costs a Hypercorn server (before anyone is admitted).

    Messages: at most ``MAX_RECEIVE_MESSAGE_BYTES``. Hypercorn (0.18.0 read) answers a bigger one
    with 1009 but keeps the connection until the app ends, appending whatever else the peer sends
    to the refused message, so its buffer class is swapped for one that holds nothing more after
    a refusal; the app ends the connection at its handshake timeout. Compression: declined. Both
    swaps are process-wide (every Hypercorn server of the gateway carries only our WebSocket).
    """
    config.websocket_max_message_size = MAX_RECEIVE_MESSAGE_BYTES
    ws_stream.WebsocketBuffer = CappedWebsocketBuffer  # type: ignore[misc]
    ws_stream.PerMessageDeflate = DeflateDeclined  # type: ignore[attr-defined]


def default_remote(websocket: Any) -> str:
    """The peer address Hypercorn saw (a front's address when one is in between)."""
    return str(websocket.remote_addr or "?")


async def serve_websocket(listener: Listener, websocket: Any, context: Any, remote: str) -> None:
    """Accept the upgrade, run the inner TLS server side, hand the result to the listener."""
    await websocket.accept()
    carrier = QuartWebSocketStream(websocket)
    try:
        async with asyncio.timeout(listener.cfg.handshake_timeout_s):
            secure = await MemoryTLSStream.server(carrier, context, f"websocket from {remote}")
    except (HandshakeError, TimeoutError, OSError) as exc:
        reason = str(exc) or "handshake timed out"
        log.warning(
            "refused a tunnel from %s (websocket): TLS handshake failed: %s", remote, reason
        )
        await carrier.aclose()
        return
    await listener.serve_secure_stream(secure, remote, "websocket")


@functools.lru_cache(maxsize=8)
def _server_context(cfg: ListenerConfig) -> ssl.SSLContext:
    """The tunnel port's own context (same certificate, CA, ALPN), built once per config."""
    return listener_context(cfg.cert, cfg.key, cfg.ca)


def serve_quart_websocket(
    listener: Listener, remote_of: RemoteOf = default_remote
) -> Callable[[], Awaitable[None]]:
    """A Quart websocket view running the ``websocket`` carrier into ``listener``.

    ``remote_of(websocket)`` names the peer for logs and status; the gateway passes one that
    honours ``X-Forwarded-For`` only from its configured fronts.
    """
    context = _server_context(listener.cfg)

    async def llm_tunnel_websocket() -> None:
        from quart import websocket  # noqa: PLC0415 - tunnel/ does not need quart otherwise

        ws: Any = cast(Any, websocket)._get_current_object()  # the object, not the proxy
        await serve_websocket(listener, ws, context, remote_of(ws))

    return llm_tunnel_websocket
