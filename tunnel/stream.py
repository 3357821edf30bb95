"""The byte-stream interface that every layer of the tunnel hands to the one above it.

carrier (TCP / CONNECT, WebSocket) -> security (mutual TLS) -> HTTP/2 session.
The HTTP/2 session only ever sees a :class:`SecureStream`; a new carrier is one new module
that produces one (see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is on the other end, as proven by the mutual-TLS handshake (never by the carrier)."""

    common_name: str
    serial: int
    cert_der: bytes


class ByteStream(Protocol):
    """An ordered, reliable byte stream with backpressure (TCP, TLS, TLS-in-WebSocket...)."""

    async def read(self, max_bytes: int) -> bytes:
        """Return up to ``max_bytes``; ``b""`` means the peer closed its side."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data``; returns once the lower layer has room again (backpressure)."""
        ...

    async def aclose(self) -> None:
        """Close the stream; safe to call more than once."""
        ...


class SecureStream(ByteStream, Protocol):
    """A :class:`ByteStream` after the mutual-TLS handshake: it knows its peer."""

    @property
    def peer(self) -> PeerIdentity:
        """The certificate identity the peer presented and we verified."""
        ...

    @property
    def description(self) -> str:
        """Plain words for logs, e.g. ``"tls via proxy 127.0.0.1:3128"``."""
        ...
