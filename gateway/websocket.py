"""The Quart view of the tunnel's ``websocket`` carrier, and Hypercorn's WebSocket limits.

The view accepts the upgrade and hands the binary messages, as a byte stream, to the tunnel
(:func:`tunnel.listener.serve_websocket`), which runs the inner mutual TLS and admits the
connector. Mount it with ``app.add_websocket(path, name, serve_quart_websocket(listener))``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from hypercorn.config import Config as HypercornConfig
from hypercorn.protocol import ws_stream
from hypercorn.protocol.ws_stream import FrameTooLargeError, WebsocketBuffer
from quart import websocket
from wsproto.events import Message
from wsproto.extensions import PerMessageDeflate

from tunnel.carrier.websocket_limits import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_UNSUPPORTED_DATA,
    MAX_MESSAGE_BYTES,
    MAX_RECEIVE_MESSAGE_BYTES,
)
from tunnel.listener import Listener, serve_websocket, server_context

__all__ = [
    "MAX_RECEIVE_MESSAGE_BYTES",
    "CappedWebsocketBuffer",
    "DeflateDeclined",
    "QuartWebSocketStream",
    "harden_websockets",
    "serve_quart_websocket",
]

RemoteOf = Callable[[Any], str]


class QuartWebSocketStream:
    """A :class:`tunnel.carrier.byte_stream.ByteStream` over Quart's ``websocket`` (binary
    messages only).

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


def serve_quart_websocket(
    listener: Listener, remote_of: RemoteOf = default_remote
) -> Callable[[], Awaitable[None]]:
    """A Quart websocket view running the ``websocket`` carrier into ``listener``.

    ``remote_of(websocket)`` names the peer for logs and status; the gateway passes one that
    honours ``X-Forwarded-For`` only from its configured fronts.
    """
    context = server_context(listener.cfg)  # built now: a bad certificate shows at start

    async def llm_tunnel_websocket() -> None:
        ws: Any = cast(Any, websocket)._get_current_object()  # the object, not the proxy
        await ws.accept()
        await serve_websocket(listener, QuartWebSocketStream(ws), context, remote_of(ws))

    return llm_tunnel_websocket
