"""Mutual TLS run over another byte stream (``ssl.MemoryBIO`` + ``SSLObject``).

This is the security layer of the ``websocket`` carrier: the TLS session is end to end between
connector and gateway, inside the WebSocket, so whatever a proxy decrypts is only the outer layer.
The same contexts, certificates and CA as the ``tls`` carrier are used; only the I/O differs.

Nothing is queued here beyond one TLS read and one ``write()``'s records: ``write`` returns only
after the lower stream accepted the bytes, and ``read`` pulls from the lower stream on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from typing import TypeVar

from tunnel.carrier.byte_stream import ByteStream
from tunnel.describe import describe
from tunnel.errors import HandshakeError
from tunnel.security.certificates import peer_identity
from tunnel.security.secure_stream import PeerIdentity

_T = TypeVar("_T")

#: How much to ask the lower stream for at a time (a few TLS records).
LOWER_READ_BYTES = 65536


class MemoryTLSStream:
    """A :class:`tunnel.security.secure_stream.SecureStream` of TLS records carried by ``lower``."""

    def __init__(
        self,
        lower: ByteStream,
        sslobj: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        description: str,
    ) -> None:
        self._lower = lower
        self._ssl = sslobj
        self._incoming = incoming
        self._outgoing = outgoing
        self._description = description
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._peer: PeerIdentity | None = None
        self._closed = False
        self._fills = 0
        self._lower_nowait: Callable[[bytes], bool] | None = getattr(lower, "write_nowait", None)

    @classmethod
    async def client(
        cls, lower: ByteStream, context: ssl.SSLContext, server_hostname: str, description: str
    ) -> MemoryTLSStream:
        """Run the client side of the handshake over ``lower`` (closing it on failure)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = context.wrap_bio(
            incoming, outgoing, server_side=False, server_hostname=server_hostname
        )
        return await cls._handshake(cls(lower, sslobj, incoming, outgoing, description))

    @classmethod
    async def server(
        cls, lower: ByteStream, context: ssl.SSLContext, description: str
    ) -> MemoryTLSStream:
        """Run the server side of the handshake over ``lower`` (closing it on failure)."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        sslobj = context.wrap_bio(incoming, outgoing, server_side=True)
        return await cls._handshake(cls(lower, sslobj, incoming, outgoing, description))

    @staticmethod
    async def _handshake(stream: MemoryTLSStream) -> MemoryTLSStream:
        try:
            await stream._run(stream._ssl.do_handshake)
            stream._peer = stream._verified_peer()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    def _verified_peer(self) -> PeerIdentity:
        der = self._ssl.getpeercert(binary_form=True)
        if der is None:
            raise HandshakeError("the peer presented no certificate")
        return peer_identity(der)

    @property
    def peer(self) -> PeerIdentity:
        assert self._peer is not None
        return self._peer

    @property
    def description(self) -> str:
        return self._description

    def set_description(self, description: str) -> None:
        self._description = description

    @property
    def tls_version(self) -> str | None:
        return self._ssl.version()

    @property
    def alpn_protocol(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self._run(lambda: self._ssl.read(max_bytes), writing=False)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""  # close_notify, or the carrier closed (HTTP/2 frames are self-delimiting)

    async def write(self, data: bytes) -> None:
        if data:
            await self._run(lambda: self._ssl.write(data))
            return
        await self._flush()  # b"": after write_nowait said wait, send what it left in the BIO
        if self._lower_nowait is not None:
            await self._lower.write(b"")  # and wait for the transport to drain

    def write_nowait(self, data: bytes) -> bool:
        """Encrypt ``data`` and hand the records to the lower stream now (the session's fast
        path, no task switch); False when the caller should wait for the lower stream to drain.

        When a ``_flush`` is under way its loop sends these records after its own, in order.
        A lower stream without ``write_nowait`` gets them from the next ``write`` or ``_flush``.
        """
        try:
            self._ssl.write(data)
        except ssl.SSLWantReadError:  # TLS 1.3 writes never wait for input once connected
            raise ConnectionError("TLS wanted to read while writing") from None
        if self._lower_nowait is None or self._write_lock.locked():
            return False
        records = self._outgoing.read()
        return self._lower_nowait(records) if records else True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._peer is not None:
            # unwrap wants the peer's close_notify too; ours is in the BIO by then
            with contextlib.suppress(ssl.SSLError):
                self._ssl.unwrap()
            with contextlib.suppress(Exception):  # closing: best effort
                await asyncio.wait_for(self._flush(), timeout=1.0)
        await self._lower.aclose()

    async def _run(self, operation: Callable[[], _T], writing: bool = True) -> _T:
        """Call ``operation`` until the TLS state machine stops asking for more input."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                await self._flush(wait=writing)
                await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise
            except ssl.SSLError as error:  # the same words as the tls carrier's
                await self._flush_quietly()
                raise HandshakeError(describe(error, "handshake")) from error
            await self._flush(wait=writing)
            return result

    async def _fill(self) -> None:
        """Feed the TLS object from the lower stream; one reader at a time."""
        fills = self._fills
        async with self._read_lock:
            if self._fills != fills or self._incoming.eof:
                return  # another task fed it while we waited
            self._fills += 1
            data = await self._lower.read(LOWER_READ_BYTES)
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()

    async def _flush(self, wait: bool = True) -> None:
        """Hand every pending TLS record to the lower stream, in order.

        A reader passes ``wait=False``: when a writer is busy it must not queue behind it (both
        ends would wait on each other's reader); the busy writer sends what is left before it
        lets go of the lock.
        """
        if not wait and self._write_lock.locked():
            return
        if not self._outgoing.pending and not self._write_lock.locked():
            return  # nothing to send and nobody sending (every read passes here)
        async with self._write_lock:
            while data := self._outgoing.read():
                await self._lower.write(data)

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the alert is a courtesy
            await self._flush()
