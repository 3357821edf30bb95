"""The ``websocket`` dialer: upgrade the configured URL (through the proxy as its rules say),
then mutual TLS inside the WebSocket with the same certificates and CA as ``tls``."""

from __future__ import annotations

import asyncio
import ssl

from tunnel.carrier.websocket_client import open_websocket
from tunnel.config import ConnectorConfig
from tunnel.errors import DialError, HandshakeError
from tunnel.security.contexts import connector_context
from tunnel.security.interception import interception, probe_inner_certificate
from tunnel.security.memory_tls import MemoryTLSStream
from tunnel.security.secure_stream import SecureStream


async def dial_websocket(cfg: ConnectorConfig, url: str = "") -> SecureStream:
    """The ``websocket`` carrier: upgrade ``url`` (default ``websocket_url``), then mutual TLS
    inside with the same certificates and CA as ``tls``."""
    url = url or cfg.websocket_url
    if not url:
        raise DialError("transport websocket needs gateway.websocket_url in the config")
    ctx = connector_context(cfg.ca, cfg.cert, cfg.key)
    carrier = await open_websocket(url, cfg.proxy, cfg.proxy_ca, cfg.connect_timeout_s)
    try:
        async with asyncio.timeout(cfg.connect_timeout_s):
            stream = await MemoryTLSStream.client(
                carrier, ctx, cfg.server_name, carrier.description
            )
    except TimeoutError:
        raise HandshakeError(f"{carrier.description}: the inner TLS handshake timed out") from None
    except HandshakeError as exc:
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError):  # who answered inside?
            intercepted = interception(await probe_inner_certificate(cfg, url), cfg.ca)
            if intercepted is not None:
                raise intercepted from None
        raise HandshakeError(f"{carrier.description}: inner TLS: {exc}") from None
    version = stream.tls_version or "TLS"
    stream.set_description(f"{carrier.description}, inner {version}")
    return stream
