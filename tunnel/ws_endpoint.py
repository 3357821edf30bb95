"""The gateway's side of the ``websocket`` carrier, whatever serves the WebSocket.

The WebSocket (over the public HTTPS port, a plain-HTTP listener, or a TLS-terminating front such
as nginx or Cloudflare Tunnel) proves nothing: the connector is admitted only by the mutual TLS
run inside it (:class:`tunnel.memtls.MemoryTLSStream`), then by the same identity/CRL/allow-list
checks as the ``tls`` carrier (:meth:`tunnel.listener.Listener.serve_secure_stream`). The web
server's side (the Quart view, Hypercorn's limits) is the gateway's: :mod:`gateway.websocket`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl

from tunnel.config import ListenerConfig
from tunnel.errors import HandshakeError
from tunnel.listener import Listener
from tunnel.memtls import MemoryTLSStream
from tunnel.stream import ByteStream
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


async def serve_websocket(
    listener: Listener, carrier: ByteStream, context: ssl.SSLContext, remote: str
) -> None:
    """Run the inner TLS server side (``context``: :func:`server_context`) over an accepted
    WebSocket's ``carrier``, then hand the result to the listener."""
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
def server_context(cfg: ListenerConfig) -> ssl.SSLContext:
    """The tunnel port's own context (same certificate, CA, ALPN), built once per config."""
    return listener_context(cfg.cert, cfg.key, cfg.ca)
