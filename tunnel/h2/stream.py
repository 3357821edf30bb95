"""One HTTP/2 stream of a session: its head, its flow-controlled inbound body, and sending under
the peer's window. It knows its session only through :class:`StreamOwner`, the few calls a
stream makes (:class:`tunnel.h2.session.Session` is the one implementation).

Received DATA goes back to the connection window on arrival (the session does it), and to the
stream's window only when the consumer takes it, so a stream buffers at most its window and a slow
reader stops only its own sender; whatever is still unread when the stream ends is given back then,
by :meth:`Stream._give_back`, the one place every ending goes through (reset, peer reset, session
failure). ``send_now`` queues a whole small message at once (no task, no wait), so a request's
HEADERS and DATA leave in one write and the peer sees the body complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Protocol

import h2.exceptions
from h2.errors import ErrorCodes

from tunnel.errors import StreamResetError
from tunnel.h2.connection import Connection


class StreamOwner(Protocol):
    """What a stream needs from its session: the connection, the writer, flow-control credit."""

    @property
    def conn(self) -> Connection:
        """The sans-IO connection the stream's frames are queued on."""
        ...

    @property
    def alive(self) -> bool:
        """False once the session ended (nothing more is queued then)."""
        ...

    def ack(self, stream_id: int, nbytes: int) -> None:
        """Give ``nbytes`` of a stream's DATA back to its stream window."""
        ...

    def release(self, stream: Stream) -> None:
        """The stream ended both ways: forget it."""
        ...

    def wake_writer(self) -> None:
        """Have what the connection queued sent soon."""
        ...

    def congested(self) -> bool:
        """Whether the writer is behind (then ``send_now`` declines)."""
        ...

    def queued(self, nbytes: int) -> None:
        """``nbytes`` were queued without waiting: wake the writer."""
        ...

    async def sent(self, nbytes: int) -> None:
        """``nbytes`` were queued: wake the writer, wait while too much is queued."""
        ...


class Stream:
    """One HTTP/2 stream: the head, a flow-controlled inbound body, and sending."""

    def __init__(
        self, session: StreamOwner, stream_id: int, headers: list[tuple[str, str]] | None
    ) -> None:
        self.session = session
        self.stream_id = stream_id
        self.headers = headers
        self.handler: asyncio.Task[None] | None = None
        self.local_closed = False
        self.remote_closed = False
        self.error: StreamResetError | None = None
        self.waiting_for_window = False  # in send_data, for the peer's window (stall watchdog)
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._readable = asyncio.Event()
        self._head = asyncio.Event()
        self._window = asyncio.Event()

    def has_data(self) -> bool:
        return bool(self._chunks)

    @property
    def buffered(self) -> int:
        """Flow-controlled bytes received and not read yet (at most the stream window)."""
        return sum(flow for _, flow in self._chunks)

    def take_complete_body(self) -> bytes | None:
        """The whole request body when it has already arrived (END_STREAM seen), else None."""
        if not self.remote_closed or self.error is not None:
            return None
        body = b"".join(chunk for chunk, _ in self._chunks)
        self._give_back()
        return body

    @property
    def closed_both_ways(self) -> bool:
        """Both ends sent END_STREAM (or a reset closed it)."""
        return self.local_closed and self.remote_closed

    # --------------------------------------------------------- from the session
    def on_headers(self, headers: list[tuple[str, str]]) -> None:
        self.headers = headers
        self._head.set()

    def on_data(self, data: bytes, flow_size: int) -> None:
        if not data:  # an empty frame (e.g. END_STREAM alone): nothing for the reader
            self.session.ack(self.stream_id, flow_size)
            return
        self._chunks.append((data, flow_size))
        self._readable.set()

    def on_end(self) -> None:
        self.remote_closed = True
        self._readable.set()
        self._head.set()
        self._maybe_release()

    def on_reset(self, message: str, *, refused: bool = False) -> None:
        self.error = StreamResetError(message, self.stream_id, refused=refused)
        self._close_both()
        if self.handler is not None:
            self.handler.cancel()

    def on_stop_sending(self) -> None:
        """RST_STREAM(NO_ERROR) after a complete answer (RFC 9113 8.1): the peer wants no more of
        the request body, and the answer must not be discarded; it stays readable (and what is
        not read is given back when the stream is reset or closed)."""
        self.local_closed = True
        self._window.set()
        self._maybe_release()

    def fail(self, message: str) -> None:
        """The whole session ended (giving back is moot then, but goes the same way)."""
        if self.error is None:
            self.error = StreamResetError(message, self.stream_id)
        self.local_closed = self.remote_closed = True
        self._give_back()
        for event in (self._readable, self._head, self._window):
            event.set()

    def window_opened(self) -> None:
        self._window.set()

    def _give_back(self) -> None:
        """Drop what is still buffered and give it back to the stream window (the connection
        window had it back on arrival); for a stream that goes on, e.g. a half-closed one
        whose consumer took the whole body at once, the peer may then send more."""
        size = self.buffered
        self._chunks.clear()
        self.session.ack(self.stream_id, size)

    def _close_both(self) -> None:
        self.local_closed = self.remote_closed = True
        self._give_back()
        for event in (self._readable, self._head, self._window):
            event.set()
        self.session.release(self)

    def _maybe_release(self) -> None:
        if self.local_closed and self.remote_closed:
            self.session.release(self)

    # --------------------------------------------------------- reading
    async def response_head(self) -> list[tuple[str, str]]:
        """The response headers (h2 client role), pseudo-headers included."""
        await self._head.wait()
        if self.headers is None:
            raise self.error or StreamResetError("the stream ended without a response")
        return self.headers

    async def read(self) -> bytes:
        """The next DATA payload; ``b""`` at the end of the body. Acknowledges it (flow control)."""
        while True:
            if self._chunks:
                data, size = self._chunks.popleft()
                self.session.ack(self.stream_id, size)
                return data
            if self.error is not None:
                raise self.error
            if self.remote_closed:
                return b""
            self._readable.clear()
            await self._readable.wait()

    # --------------------------------------------------------- sending
    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.local_closed:
            raise StreamResetError("the stream is already closed", self.stream_id)

    async def send_headers(self, headers: list[tuple[str, str]], end_stream: bool = False) -> None:
        self._check()
        try:
            self.session.conn.send_headers(self.stream_id, headers, end_stream=end_stream)
        except h2.exceptions.H2Error as exc:
            raise StreamResetError(f"cannot send headers: {exc}", self.stream_id) from None
        if end_stream:
            self.local_closed = True
            self._maybe_release()
        await self.session.sent(0)

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        """Send ``data`` as DATA frames, waiting for flow-control window as needed."""
        view = memoryview(data)
        while True:
            self._check()
            conn = self.session.conn
            try:
                room = min(conn.local_flow_control_window(self.stream_id), len(view))
                room = min(room, conn.max_outbound_frame_size)
                if room <= 0 and view:
                    self._window.clear()
                    self.waiting_for_window = True
                    try:
                        await self._window.wait()
                    finally:
                        self.waiting_for_window = False
                    continue
                last = room == len(view)
                chunk = data if room == len(data) else bytes(view[:room])
                conn.send_data(self.stream_id, chunk, end_stream=end_stream and last)
            except h2.exceptions.H2Error as exc:
                raise StreamResetError(f"cannot send data: {exc}", self.stream_id) from None
            view = view[room:]
            if end_stream and last:
                self.local_closed = True
                self._maybe_release()
            await self.session.sent(room)
            if last:
                return

    def send_now(self, data: bytes, end_stream: bool = False) -> bool:
        """Queue all of ``data`` at once, without waiting, when the peer's window and frame size
        take it and the writer is not behind; False (nothing queued) means use ``send_data``."""
        session = self.session
        conn = session.conn
        if self.error is not None or self.local_closed or session.congested():
            return False
        room = min(conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size)
        if len(data) > room:
            return False
        try:
            conn.send_data(self.stream_id, data, end_stream=end_stream)
        except h2.exceptions.H2Error:
            return False
        if end_stream:
            self.local_closed = True
            self._maybe_release()
        session.queued(len(data))
        return True

    async def end(self) -> None:
        await self.send_data(b"", end_stream=True)

    def reset(self, code: int = ErrorCodes.CANCEL) -> None:
        """RST_STREAM unless the stream already finished both ways; either way, what was
        received and not read is given back to the connection window."""
        if self.closed_both_ways:
            self._give_back()  # ended both ways, maybe with an answer nobody read
            return
        if self.session.alive:
            with contextlib.suppress(h2.exceptions.H2Error):
                self.session.conn.reset_stream(self.stream_id, code)
            self.session.wake_writer()
        if self.error is None:
            self.error = StreamResetError("the stream was cancelled", self.stream_id)
        self._close_both()
