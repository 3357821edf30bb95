"""The session's write side: whatever ``h2`` queued goes out in as few writes as possible.

Many sends in one loop turn coalesce into one write. When the secure stream can take bytes
without waiting (``write_nowait``), they are written at the end of the turn with no task switch;
otherwise, and whenever the transport is full, the writer task sends them and waits for it to
drain. A sender waits only when more than :data:`HIGH_WATER` bytes are queued in ``h2``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tunnel.h2.connection import Connection
from tunnel.security.secure_stream import SecureStream

HIGH_WATER = 1024 * 1024  # bytes queued in h2 before a sender waits for the writer


class FrameWriter:
    """Sends what the connection queued, over ``stream``; ``on_error`` gets the first failure
    of the direct path (the writer task's own failures end it, and the session guards it)."""

    def __init__(
        self,
        conn: Connection,
        stream: SecureStream,
        alive: Callable[[], bool],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._conn = conn
        self._stream = stream
        self._alive = alive
        self._on_error = on_error
        self._want_write = asyncio.Event()
        self._want_write.set()  # the connection preface
        self._direct: Callable[[bytes], bool] | None = getattr(stream, "write_nowait", None)
        self._loop = asyncio.get_running_loop()
        self._flush_pending = False
        self._blocked = False
        self._room = asyncio.Event()
        self._room.set()
        self._queued = 0
        #: Set whenever everything queued so far was handed to the stream.
        self.flushed = asyncio.Event()

    def wake(self) -> None:
        """Have what h2 queued sent at the end of this loop turn: written directly when the
        stream can take it without waiting (no task switch), else by the writer task."""
        if self._direct is None or self._blocked:
            self._want_write.set()
        elif not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush_now)

    def congested(self) -> bool:
        """Whether more than HIGH_WATER bytes wait in h2 for the writer."""
        return self._queued > HIGH_WATER

    def queued(self, nbytes: int) -> None:
        """After a stream queued ``nbytes`` without waiting: wake the writer."""
        self._queued += nbytes
        self.wake()

    async def sent(self, nbytes: int) -> None:
        """After a stream queued ``nbytes``: wake the writer; wait if too much is queued."""
        self._queued += nbytes
        self.wake()
        if self._queued > HIGH_WATER and self._alive():
            self._room.clear()
            await self._room.wait()

    def release_senders(self) -> None:
        """The session ended: no sender waits for room any more."""
        self._room.set()

    def _flush_now(self) -> None:
        self._flush_pending = False
        if self._direct is None or self._blocked:  # (a last GOAWAY still goes when not alive)
            self._want_write.set()
            return
        data = self._conn.data_to_send()
        self._queued = 0
        self._room.set()
        if data:
            try:
                has_room = self._direct(data)
            except Exception as exc:
                self._on_error(exc)
                return
            if not has_room:  # the writer task waits for the transport to drain
                self._blocked = True
                self._want_write.set()
                return
        self.flushed.set()

    async def run(self) -> None:
        """The writer task: send whatever is queued each time it is woken."""
        while True:
            await self._want_write.wait()
            self._want_write.clear()
            data = self._conn.data_to_send()
            self._queued = 0
            self._room.set()
            if data or self._blocked:
                await self._stream.write(data)  # b"" only waits for the transport to drain
            self._blocked = False
            if not self._want_write.is_set():
                self.flushed.set()
