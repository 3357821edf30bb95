"""Mutual TLS on a socket: the security layer of the ``tls`` carrier on the connector's side.

The connector's ``tls`` dialer (:func:`tunnel.dialers.tls.dial_tls`) runs asyncio's
``start_tls`` on its TCP connection and wraps the result here; the listener's side of the same
handshake runs over ``ssl.MemoryBIO`` (:mod:`tunnel.security.memory_tls`, see
:mod:`tunnel.carrier.tcp` for why).
"""

from __future__ import annotations

import asyncio

from tunnel.carrier.tcp import close_writer, write_nowait
from tunnel.errors import HandshakeError
from tunnel.security.certificates import peer_identity
from tunnel.security.secure_stream import PeerIdentity


class TlsSocketStream:
    """A :class:`tunnel.security.secure_stream.SecureStream` over an asyncio TLS stream."""

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
