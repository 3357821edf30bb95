"""The byte-stream interface that every layer of the tunnel hands to the one above it.

carrier (TCP / CONNECT, WebSocket) -> security (mutual TLS) -> HTTP/2 session.
A carrier produces a :class:`ByteStream`; the security layer turns one into a
:class:`tunnel.security.secure_stream.SecureStream`, the only thing the HTTP/2 session sees; a new
carrier is one new module that produces a ByteStream (see docs/architecture.md).
"""

from __future__ import annotations

from typing import Protocol


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
