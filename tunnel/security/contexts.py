"""One TLS-context factory per role: TLS 1.2 minimum, ALPN h2, no compression, CERT_REQUIRED."""

from __future__ import annotations

import ssl
from pathlib import Path

from tunnel.errors import ConfigError

ALPN = ["h2"]


def _base(purpose: int) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.set_alpn_protocols(ALPN)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"cannot read {exc.filename}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load certificate {cert} with key {key}: {exc}") from None


def _load_ca(ctx: ssl.SSLContext, ca: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=ca)
    except FileNotFoundError:
        raise ConfigError(f"cannot read CA certificate {ca}: no such file") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA certificate {ca}: {exc}") from None


def listener_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The gateway's tunnel port: its server certificate, a client certificate from ``ca``."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER)
    _load_chain(ctx, cert, key)
    _load_ca(ctx, ca)
    return ctx


def connector_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """The connector: trusts ONLY the deployment CA (no system store), checks the host name,
    presents its client certificate."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = True
    _load_ca(ctx, ca)
    _load_chain(ctx, cert, key)
    return ctx


def probe_context() -> ssl.SSLContext:
    """Verifies nothing: used only to look at a certificate that failed verification, to tell
    an intercepting proxy from a real mistake. Never used to carry a tunnel."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(ALPN)
    return ctx
