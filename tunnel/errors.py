"""The tunnel's exceptions, by cause; library exceptions are mapped to these at the boundary."""

from __future__ import annotations


class TunnelError(Exception):
    """Base class: something in the tunnel failed (the gateway answers 502)."""


class ConfigError(TunnelError):
    """A config file or value is wrong; the message names the key."""


class NoTunnelError(TunnelError):
    """No healthy tunnel serves the requested upstream (the gateway answers 503)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(f"no connector is serving upstream {upstream!r}")
        self.upstream = upstream


class StreamResetError(TunnelError):
    """The peer reset the stream, or the tunnel it ran on died."""

    def __init__(
        self, message: str, stream_id: int | None = None, *, refused: bool = False
    ) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        # True when the peer refused the stream before doing anything with it (REFUSED_STREAM,
        # or above a GOAWAY's last stream id): safe to retry on another tunnel.
        self.refused = refused


class BadAnswerError(TunnelError):
    """The connector's answer broke HTTP's rules (e.g. a ``:status`` that is no status code);
    its stream is reset and the gateway answers 502."""

    def __init__(self, message: str, stream_id: int | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class DialError(TunnelError):
    """Opening the carrier failed (TCP connect, proxy CONNECT, WebSocket upgrade)."""


class ProxyRefusedError(DialError):
    """The HTTP proxy answered something other than 2xx to CONNECT / the upgrade."""

    def __init__(self, status_line: str) -> None:
        super().__init__(f"the proxy refused: {status_line}")
        self.status_line = status_line


class HandshakeError(TunnelError):
    """The mutual-TLS handshake failed (bad certificate, wrong CA, revoked, interception)."""


class InterceptedError(HandshakeError):
    """The certificate we were shown was not from the deployment CA: a TLS-inspecting proxy."""

    def __init__(self, subject: str, issuer: str) -> None:
        super().__init__(
            f"the TLS connection is intercepted: the certificate shown was {subject!r} "
            f"issued by {issuer!r}, not by the deployment CA"
        )
        self.subject = subject
        self.issuer = issuer
