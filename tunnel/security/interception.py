"""Telling a TLS-inspecting proxy from a real mistake, after a certificate failed verification.

A second handshake that verifies nothing (:func:`tunnel.security.contexts.probe_context`) looks at
the certificate we were shown; when the deployment CA did not issue it, something in between
re-signed the connection (:class:`tunnel.errors.InterceptedError`). The probe never carries a
tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

from tunnel.carrier.proxy import ProxySpec, open_tcp
from tunnel.carrier.websocket_client import open_websocket
from tunnel.config import ConnectorConfig
from tunnel.errors import HandshakeError, InterceptedError
from tunnel.security.certificates import issued_by, subject_and_issuer
from tunnel.security.contexts import probe_context
from tunnel.security.memory_tls import MemoryTLSStream


def interception(cert_der: bytes | None, ca: Path) -> InterceptedError | None:
    """InterceptedError when the certificate shown (if any) was not issued by ``ca``."""
    if cert_der is None or issued_by(cert_der, ca):
        return None
    return InterceptedError(*subject_and_issuer(cert_der))


async def probe_socket_certificate(cfg: ConnectorConfig, proxy: ProxySpec | None) -> bytes | None:
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


async def probe_inner_certificate(cfg: ConnectorConfig, url: str) -> bytes | None:
    """A second, non-verifying inner handshake, only to see who answered inside the WebSocket."""
    with contextlib.suppress(Exception):
        carrier = await open_websocket(url, cfg.proxy, cfg.proxy_ca, cfg.connect_timeout_s)
        async with asyncio.timeout(cfg.connect_timeout_s):
            probe = await MemoryTLSStream.client(carrier, probe_context(), cfg.server_name, "probe")
        await probe.aclose()
        return probe.peer.cert_der
    return None


async def explain_verify_failure(
    cfg: ConnectorConfig, proxy: ProxySpec | None, exc: ssl.SSLCertVerificationError
) -> HandshakeError:
    """InterceptedError when the certificate shown is not from our CA, else a HandshakeError."""
    intercepted = interception(await probe_socket_certificate(cfg, proxy), cfg.ca)
    if intercepted is not None:
        return intercepted
    return HandshakeError(f"the gateway's certificate was rejected: {exc.verify_message}")
