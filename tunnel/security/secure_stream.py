"""What the security layer hands to the HTTP/2 session: a byte stream that knows its peer.

The peer's identity comes from the mutual-TLS handshake, never from the carrier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tunnel.carrier.byte_stream import ByteStream


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who is on the other end, as proven by the mutual-TLS handshake (never by the carrier)."""

    common_name: str
    serial: int
    cert_der: bytes


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
