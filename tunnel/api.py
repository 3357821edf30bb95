"""The small async interface the gateway uses to send requests through the tunnels.

The gateway depends on this module only (plus :mod:`tunnel.errors`); the listener implements it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Protocol


@dataclass(frozen=True, slots=True)
class TunnelInfo:
    """One live tunnel, for ``/readyz`` and metrics."""

    connector: str  # certificate CN of the connector
    tunnel_id: str  # unique per connection
    carrier: str  # "tls" | "websocket"
    remote: str  # peer address as seen by the listener
    upstreams: tuple[str, ...]  # upstream names the connector announced
    active_streams: int
    draining: bool
    connected_s: float  # seconds since the tunnel came up
    # why its HTTP/2 connection window stalled (the tunnel is then being closed), or None
    stalled: str | None = None
    # the connection-level flow-control windows (RFC 9113 6.9), in bytes, seen from the gateway
    inbound_window: int = 0  # what the connector may still send
    inbound_held: int = 0  # received from the connector, not given back (lost credit if it stays)
    outbound_window: int = 0  # what the gateway may still send to the connector
    inbound_buffered: int = 0  # answers received and not read yet (at most 4 MiB per stream)
    connected_at: float = 0.0  # unix time the tunnel came up
    rtt_s: float | None = None  # round trip of the last answered PING; None before the first
    #: unix time the connector's client certificate, as presented on this tunnel, expires
    client_cert_not_after: float | None = None


#: Why a tunnel ended, as a short label (bounded: metrics use it); ``Disconnect.detail`` has the
#: plain words. In the order the listener decides them: the first that applies is the reason.
DISCONNECT_REASONS: Final = (
    "shutdown",  # the gateway is stopping (it drained its tunnels)
    "revoked",  # the connector's certificate was revoked (crl.pem changed)
    "no_hello",  # the connector never announced its upstreams (or not in time)
    "stalled",  # the HTTP/2 connection window stalled; the gateway closed the tunnel
    "ping_timeout",  # no PING answer within ping_timeout_s (a dead or frozen peer, a lost route)
    "goaway",  # the connector sent GOAWAY: it is stopping or restarting
    "peer_closed",  # the connection ended without GOAWAY (connector killed, connection reset)
    "error",  # a TLS, HTTP/2 protocol or network error
)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """One tunnel that ended, for the status page, ``/readyz`` and metrics."""

    connector: str  # certificate CN of the connector
    tunnel_id: str
    carrier: str  # "tls" | "websocket"
    remote: str
    at: float  # unix time it ended
    reason: str  # one of DISCONNECT_REASONS
    detail: str  # plain words, e.g. "no PING answer within 10s"


RECENT_DISCONNECTS: Final = 50


@dataclass(frozen=True, slots=True)
class PoolStatus:
    tunnels: tuple[TunnelInfo, ...] = field(default_factory=tuple)
    stalls_total: int = 0  # tunnels closed by the stall watchdog since the listener started
    #: the last tunnels that ended (at most ``RECENT_DISCONNECTS``), most recent first
    recent_disconnects: tuple[Disconnect, ...] = ()
    #: tunnels ended since the listener started, per reason: every one of DISCONNECT_REASONS
    disconnects_total: tuple[tuple[str, int], ...] = ()

    @property
    def ready(self) -> bool:
        return any(not t.draining and t.stalled is None for t in self.tunnels)


class TunnelResponse(Protocol):
    """The response head of one stream, and its body as it arrives."""

    status: int
    headers: list[tuple[str, str]]  # lower-case names, hop-by-hop already removed

    def body(self) -> AsyncIterator[bytes]:
        """Yield body chunks as the upstream sends them (each DATA frame's payload)."""
        ...

    async def read(self) -> bytes:
        """The next body chunk, ``b""`` at the end. Cancelling a waiting ``read`` loses nothing
        (the next call returns the same chunk), so it may be awaited under a timeout."""
        ...

    async def aclose(self) -> None:
        """Finish with this response. If the body was not read to its end, the stream is
        reset (RST_STREAM CANCEL) so that the connector aborts the upstream request."""
        ...


class TunnelPool(Protocol):
    """All tunnels the listener holds, spread by least active streams."""

    async def request(
        self,
        upstream: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
    ) -> TunnelResponse:
        """Open one stream to ``upstream`` and return once the response head arrives.

        Raises :class:`tunnel.errors.NoTunnelError` when no healthy tunnel serves ``upstream``
        (the gateway answers 503), :class:`tunnel.errors.TunnelError` for a tunnel that failed
        or a stream that was reset (502). Cancelling the awaiting task resets the stream.
        """
        ...

    def status(self) -> PoolStatus: ...
