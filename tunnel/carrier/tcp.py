"""A plain TCP :class:`tunnel.carrier.byte_stream.ByteStream`: the lower layer of the listener's
TLS.

The listener runs its TLS with ``ssl.MemoryBIO`` (:mod:`tunnel.security.memory_tls`) over this
stream rather than ``StreamWriter.start_tls``: uvloop's server-side ``start_tls`` stalls
handshakes after some dozens of connections (the connector then sees a 10 s timeout), while the
memory-BIO path behaves the same on every event loop and lets us log each refused handshake with
its reason.
"""

from __future__ import annotations

import asyncio

#: Bytes the transport may hold before ``write_nowait`` asks the caller to wait for a drain.
WRITE_HIGH_WATER = 256 * 1024


class TcpByteStream:
    """An accepted TCP connection as a ByteStream (no TLS)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._closed = False

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self._reader.read(max_bytes)
        except (ConnectionError, OSError):
            return b""  # a reset is an end of stream to the layers above

    async def write(self, data: bytes) -> None:
        if self._writer.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._writer.write(data)
        await self._writer.drain()

    def write_nowait(self, data: bytes) -> bool:
        return write_nowait(self._writer, data)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await close_writer(self._writer)


def write_nowait(writer: asyncio.StreamWriter, data: bytes) -> bool:
    """Hand ``data`` to the transport now (a session's fast path, no task switch); False once
    the transport holds more than WRITE_HIGH_WATER bytes, when the caller must wait to drain."""
    transport = writer.transport
    if transport.is_closing():
        raise ConnectionResetError("the connection is closed")
    transport.write(data)
    return transport.get_write_buffer_size() <= WRITE_HIGH_WATER


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection without waiting long on a peer that does not read."""
    writer.close()
    try:
        async with asyncio.timeout(2.0):
            await writer.wait_closed()
    except TimeoutError:  # the peer does not read: do not wait for it
        writer.transport.abort()
    except Exception:  # noqa: S110 - closing a broken connection: nothing to add
        pass
