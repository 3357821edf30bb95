"""The ``tls`` carrier + security layer: mutual TLS over an asyncio TCP connection.

``dial_tls(cfg)`` is the connector's dialer (TCP direct or CONNECT via proxy, then TLS);
the listener's side of the same handshake runs over ``ssl.MemoryBIO`` (see plainstream.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl

from tunnel.config import ConnectorConfig
from tunnel.errors import HandshakeError, InterceptedError
from tunnel.plainstream import close_writer, write_nowait
from tunnel.proxy import ProxySpec, open_tcp, select_proxy
from tunnel.stream import PeerIdentity
from tunnel.tlsconfig import (
    connector_context,
    issued_by,
    peer_identity,
    probe_context,
    subject_and_issuer,
)


class TcpSecureStream:
    """A :class:`tunnel.stream.SecureStream` over an asyncio TLS stream."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, description: str
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._description = description
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise HandshakeError("the peer presented no certificate")
        self._peer = peer_identity(der)
        self.tls_version: str = ssl_object.version() or "TLS"
        self._closed = False

    @property
    def peer(self) -> PeerIdentity:
        return self._peer

    @property
    def description(self) -> str:
        return self._description

    def set_description(self, description: str) -> None:
        self._description = description

    async def read(self, max_bytes: int) -> bytes:
        return await self._reader.read(max_bytes)

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    def write_nowait(self, data: bytes) -> bool:
        return write_nowait(self._writer, data)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await close_writer(self._writer)


def _verify_reason(exc: ssl.SSLCertVerificationError) -> str:
    message = exc.verify_message or str(exc)
    if "issuer" in message or "self-signed" in message or "self signed" in message:
        return f"certificate not from the deployment CA ({message})"
    return f"certificate rejected: {message}"


def _ssl_reason(exc: ssl.SSLError) -> str:
    reason = (exc.reason or str(exc)).replace("_", " ").lower()
    if reason.startswith("peer did not return a certificate"):
        return "the peer presented no client certificate"
    if "unknown ca" in reason or "certificate verify failed" in reason:
        return f"certificate not from the deployment CA ({reason})"
    return reason


def handshake_reason(exc: BaseException) -> str:
    """Plain words for a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _verify_reason(exc)
    if isinstance(exc, ssl.SSLError):
        return _ssl_reason(exc)
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    return str(exc) or type(exc).__name__


def _route(cfg: ConnectorConfig) -> tuple[ProxySpec | None, str]:
    proxy = select_proxy(cfg.proxy, cfg.host, os.environ)
    via = f" via proxy {proxy.address}" if proxy else ""
    return proxy, f"{cfg.address}{via}"


async def _probe_certificate(cfg: ConnectorConfig, proxy: ProxySpec | None) -> bytes | None:
    """Open a second, non-verifying handshake only to read the certificate we are shown."""
    with contextlib.suppress(Exception):
        _, writer = await open_tcp(cfg.host, cfg.port, proxy, cfg.connect_timeout_s)
        try:
            await writer.start_tls(
                probe_context(),
                server_hostname=cfg.server_name,
                ssl_handshake_timeout=cfg.connect_timeout_s,
            )
            ssl_object = writer.get_extra_info("ssl_object")
            der: bytes | None = ssl_object.getpeercert(binary_form=True)
            return der
        finally:
            writer.close()
    return None


async def explain_verify_failure(
    cfg: ConnectorConfig, proxy: ProxySpec | None, exc: ssl.SSLCertVerificationError
) -> HandshakeError:
    """InterceptedError when the certificate shown is not from our CA, else a HandshakeError."""
    der = await _probe_certificate(cfg, proxy)
    if der is not None and not issued_by(der, cfg.ca):
        subject, issuer = subject_and_issuer(der)
        return InterceptedError(subject, issuer)
    return HandshakeError(f"the gateway's certificate was rejected: {exc.verify_message}")


async def dial_tls(cfg: ConnectorConfig) -> TcpSecureStream:
    """The ``tls`` carrier: TCP (direct or CONNECT) then mutual TLS with SNI = server_name."""
    proxy, route = _route(cfg)
    ctx = connector_context(cfg.ca, cfg.cert, cfg.key)
    reader, writer = await open_tcp(cfg.host, cfg.port, proxy, cfg.connect_timeout_s)
    try:
        await writer.start_tls(
            ctx, server_hostname=cfg.server_name, ssl_handshake_timeout=cfg.connect_timeout_s
        )
    except ssl.SSLCertVerificationError as exc:
        writer.close()
        raise await explain_verify_failure(cfg, proxy, exc) from None
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        writer.close()
        reason = handshake_reason(exc)
        raise HandshakeError(f"TLS handshake with {route} failed: {reason}") from None
    stream = TcpSecureStream(reader, writer, route)
    stream.set_description(f"{route} (tls, {stream.tls_version})")
    return stream
