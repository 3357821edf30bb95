"""Plain words for what failed: the one describer of the tunnel's failures, for logs and reasons.

``during`` says what was going on, because the same exception reads differently there: a TLS
error in a handshake is usually a certificate problem, in a running session a broken connection;
a dial attempt of the ``auto`` ladder says whether the network refused it or it failed.
"""

from __future__ import annotations

import ssl
from typing import Literal

import h2.exceptions

from tunnel.errors import InterceptedError, ProxyRefusedError

During = Literal["handshake", "session", "dial"]


def describe(exc: BaseException, during: During) -> str:
    """Plain words for ``exc``, raised ``during`` a TLS handshake, a running HTTP/2 session, or
    one dial attempt of the ``auto`` ladder (the log line after ``<carrier>:``)."""
    if during == "dial":
        return _dial_attempt(exc)
    if during == "handshake":
        return _handshake(exc)
    return _session(exc)


def _ssl_text(exc: ssl.SSLError) -> str:
    return (exc.reason or str(exc)).replace("_", " ").lower()


def _handshake(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
        if "issuer" in message or "self-signed" in message or "self signed" in message:
            return f"certificate not from the deployment CA ({message})"
        return f"certificate rejected: {message}"
    if isinstance(exc, ssl.SSLError):
        return _refused_handshake(_ssl_text(exc))
    if isinstance(exc, TimeoutError):
        return "handshake timed out"
    return str(exc) or type(exc).__name__


def _refused_handshake(reason: str) -> str:
    if reason.startswith("peer did not return a certificate"):
        return "the peer presented no client certificate"
    if "unknown ca" in reason or "certificate verify failed" in reason:
        return f"certificate not from the deployment CA ({reason})"
    return reason


def _session(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        reason = _ssl_text(exc)
        if "alert" in reason:
            return f"the peer ended TLS with an alert ({reason})"
        return f"TLS error ({reason})"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, h2.exceptions.ProtocolError):
        return f"HTTP/2 protocol error ({exc})"
    if isinstance(exc, OSError):
        return f"network error ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"


def _dial_attempt(exc: BaseException) -> str:
    if isinstance(exc, InterceptedError):
        return f"refused — the proxy intercepts TLS (certificate issued by {exc.issuer!r})"
    if isinstance(exc, ProxyRefusedError):
        return f"refused — the proxy answered {exc.status_line!r}"
    return f"failed — {exc}"
