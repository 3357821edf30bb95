"""The ``tls`` dialer: TCP (direct, or ``CONNECT`` through the proxy), then mutual TLS with
SNI = ``server_name`` on the socket itself."""

from __future__ import annotations

import os
import ssl

from tunnel.carrier.proxy import ProxySpec, open_tcp, select_proxy
from tunnel.config import ConnectorConfig
from tunnel.describe import describe
from tunnel.errors import HandshakeError
from tunnel.security.contexts import connector_context
from tunnel.security.interception import explain_verify_failure
from tunnel.security.tls_socket import TlsSocketStream


def _route(cfg: ConnectorConfig) -> tuple[ProxySpec | None, str]:
    proxy = select_proxy(cfg.proxy, cfg.host, os.environ)
    via = f" via proxy {proxy.address}" if proxy else ""
    return proxy, f"{cfg.address}{via}"


async def dial_tls(cfg: ConnectorConfig) -> TlsSocketStream:
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
        reason = describe(exc, "handshake")
        raise HandshakeError(f"TLS handshake with {route} failed: {reason}") from None
    stream = TlsSocketStream(reader, writer, route)
    stream.set_description(f"{route} (tls, {stream.tls_version})")
    return stream
