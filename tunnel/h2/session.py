"""The HTTP/2 session both roles share, over a :class:`tunnel.security.secure_stream.SecureStream`.

One reader task feeds the sans-IO connection (:mod:`tunnel.h2.connection`) and acts on its
events; the writer (:mod:`tunnel.h2.writer`) sends what ``h2`` queued; one pinger task declares
the peer dead when a PING goes unanswered; one watchdog looks at the connection windows
(:mod:`tunnel.h2.stall`). The first failure is sticky: every stream fails at once with
:class:`StreamResetError`. Flow control: docs/tunnel.md, *Flow control end to end, per stream*.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import h2.events
import h2.exceptions
from h2.errors import ErrorCodes

from tunnel.describe import describe
from tunnel.h2.connection import SessionSettings, WindowState, new_connection
from tunnel.h2.stall import StallWatch, WindowSample
from tunnel.h2.stream import Stream
from tunnel.h2.writer import FrameWriter
from tunnel.security.secure_stream import SecureStream

__all__ = ["RequestHandler", "Session", "SessionSettings", "Stream", "WindowState"]

# The logger keeps the name it had before the tunnel had folders (operators filter on it).
log = logging.getLogger("tunnel.session")

READ_SIZE = 256 * 1024


RequestHandler = Callable[[Stream], Awaitable[None]]


class Session:
    """One HTTP/2 connection over a secure stream, either role."""

    def __init__(
        self,
        stream: SecureStream,
        *,
        client_side: bool,
        settings: SessionSettings,
        on_request: RequestHandler | None = None,
        on_goaway: Callable[[], None] | None = None,
        on_stall: Callable[[str], None] | None = None,
        name: str = "tunnel",
    ) -> None:
        self.stream = stream
        self.name = name
        self.settings = settings
        self.conn = new_connection(client_side, settings)
        self.peer_name = "the connector" if client_side else "the gateway"
        self.closed_reason: str | None = None
        self.draining = False
        self.peer_goaway_data = b""
        #: Why the connection window stalled (then the session is being replaced), or None.
        self.stalled: str | None = None
        self._on_request = on_request
        self._on_goaway = on_goaway
        self._on_stall = on_stall
        self._stall_watch = StallWatch(settings.stall_timeout_s)
        self._given_back = 0
        self._window_updates = 0
        self._streams: dict[int, Stream] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._writer = FrameWriter(
            self.conn, stream, lambda: self.alive, lambda exc: self.abort(describe(exc, "session"))
        )
        self._idle = asyncio.Event()
        self._idle.set()
        self._done = asyncio.Event()
        self._last_rx = time.monotonic()
        self._ping_ack = asyncio.Event()
        self._ping_count = 0
        #: the round trip of the last answered PING (None before the first answer)
        self.rtt_s: float | None = None
        # why the session ended, where the session itself saw it (the listener labels the end)
        self.ping_timed_out = False  # a PING went unanswered
        self.peer_closed = False  # the peer closed or reset the connection
        self._closer: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- bookkeeping
    @property
    def active_streams(self) -> int:
        return len(self._streams)

    def state_sizes(self) -> dict[str, int]:
        """How much per-stream state this session holds (for leak checks). With no request in
        flight ``streams`` and ``handlers`` are 0; ``h2_streams`` (h2 drops its closed streams
        when the next one opens) is at most the last burst; ``h2_reset`` is bounded by
        ``RESET_MEMORY``."""
        return {
            "streams": len(self._streams),
            "handlers": len(self._handlers),
            "h2_streams": len(self.conn.streams),
            "h2_reset": len(self.conn._closed_streams),
        }

    def window_state(self) -> WindowState:
        """The connection windows both ways, and what live streams hold unread (for leak
        checks, the stall watchdog, metrics)."""
        buffered = sum(stream.buffered for stream in self._streams.values())
        return replace(self.conn.window_state(), inbound_buffered=buffered)

    @property
    def alive(self) -> bool:
        return self.closed_reason is None

    def can_open(self) -> bool:
        limit = self.conn.remote_settings.max_concurrent_streams
        return self.alive and not self.draining and self.conn.open_outbound_streams < limit

    def wake_writer(self) -> None:
        """Have what h2 queued sent at the end of this loop turn (see :mod:`tunnel.h2.writer`)."""
        self._writer.wake()

    def congested(self) -> bool:
        """Whether more than HIGH_WATER bytes wait in h2 for the writer."""
        return self._writer.congested()

    def queued(self, nbytes: int) -> None:
        """After a stream queued ``nbytes`` without waiting: wake the writer."""
        self._writer.queued(nbytes)

    async def sent(self, nbytes: int) -> None:
        """After a stream queued ``nbytes``: wake the writer; wait if too much is queued."""
        await self._writer.sent(nbytes)

    def ack(self, stream_id: int, nbytes: int) -> None:
        """The consumer took (or dropped) ``nbytes`` of a stream's DATA: its stream window gets
        them back. The connection window got them back on arrival (``_on_data``)."""
        if nbytes and self.alive:
            self.conn.credit_stream(stream_id, nbytes)
            self.wake_writer()

    def release(self, stream: Stream) -> None:
        self._streams.pop(stream.stream_id, None)
        if not self._streams:
            self._idle.set()
            if self.draining and self.alive and self._closer is None:
                self._closer = asyncio.create_task(self.close("drained"))

    def _track(self, stream: Stream) -> None:
        self._streams[stream.stream_id] = stream
        self._idle.clear()

    # ----------------------------------------------------------------- client side
    def open_stream(self, headers: list[tuple[str, str]], end_stream: bool) -> Stream:
        """Start a request (h2 client role); the caller then sends the body and reads."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, headers, end_stream=end_stream)
        stream = Stream(self, sid, None)
        stream.local_closed = end_stream
        self._track(stream)
        self.wake_writer()
        return stream

    # ----------------------------------------------------------------- lifecycle
    async def run(self) -> str:
        """Drive the session until it ends; returns why it ended."""
        tasks = [
            asyncio.create_task(self._guard(self._read_loop(), "read")),
            asyncio.create_task(self._guard(self._writer.run(), "write")),
            asyncio.create_task(self._guard(self._ping_loop(), "ping")),
            asyncio.create_task(self._guard(self._window_loop(), "window")),
        ]
        try:
            await self._done.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._teardown()
        return self.closed_reason or "closed"

    def abort(self, reason: str) -> None:
        """End the session now, without flushing (first reason wins); ``run`` then tears it
        down. ``close`` flushes first, ``drain`` lets the streams in flight finish first."""
        if self.closed_reason is None:
            self.closed_reason = reason
            self._writer.release_senders()
            self._done.set()

    async def _teardown(self) -> None:
        reason = self.closed_reason or "closed"
        for stream in list(self._streams.values()):
            stream.fail(f"the tunnel closed: {reason}")
        self._streams.clear()
        self._idle.set()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        await self.stream.aclose()

    def goaway(self, error_code: int = 0, message: str = "") -> None:
        """Send GOAWAY: no new streams, in-flight ones go on. The session ends when idle."""
        if not self.alive:
            return
        self.conn.send_goaway(error_code, message.encode())
        self.wake_writer()
        self.draining = True
        if not self._streams:
            self._idle.set()

    async def drain(self, timeout_s: float, message: str = "") -> None:
        """GOAWAY, wait up to ``timeout_s`` for in-flight streams, then close."""
        self.goaway(0, message)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        await self.close("drained" if not self._streams else "drain timeout")

    async def close(self, reason: str) -> None:
        """Flush what is queued (briefly), then end the session."""
        if self.alive:
            self.wake_writer()
            self._writer.flushed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._writer.flushed.wait()
        self.abort(reason)

    async def _guard(self, coro: Awaitable[None], what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, ConnectionResetError) and self.alive:
                self.peer_closed = True
            self.abort(describe(exc, "session"))

    # ----------------------------------------------------------------- loops
    async def _read_loop(self) -> None:
        while self.alive:
            data = await self.stream.read(READ_SIZE)
            if not data:
                self.peer_closed = self.alive
                self.abort(f"{self.peer_name} closed the connection")
                return
            self._last_rx = time.monotonic()
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.conn.send_goaway(ErrorCodes.PROTOCOL_ERROR)
                self.wake_writer()
                self.abort(describe(exc, "session"))
                return
            for event in events:
                self._dispatch(event)
            self.wake_writer()

    async def _ping_loop(self) -> None:
        interval, timeout = self.settings.ping_interval_s, self.settings.ping_timeout_s
        while self.alive:
            await asyncio.sleep(interval)
            self._ping_count += 1
            self._ping_ack.clear()
            self.conn.ping(self._ping_count.to_bytes(8, "big"))
            self.wake_writer()
            sent = time.monotonic()
            while not self._ping_ack.is_set():
                remaining = max(sent, self._last_rx) + timeout - time.monotonic()
                if remaining <= 0:
                    self.ping_timed_out = self.alive
                    self.abort(f"no PING answer within {timeout:g}s")
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._ping_ack.wait()
            self.rtt_s = time.monotonic() - sent

    async def _window_loop(self) -> None:
        while self.alive:
            await asyncio.sleep(self.settings.window_check_s)
            with contextlib.suppress(h2.exceptions.ProtocolError):  # h2 closed: ending anyway
                if self.conn.announce_given_back():
                    self.wake_writer()
            reason = self._stall_watch.check(self._window_sample())
            if reason is not None:
                await self._replace_stalled(reason)
                return

    def _window_sample(self) -> WindowSample:
        state = self.conn.window_state()
        return WindowSample(
            now=time.monotonic(),
            inbound=state.inbound,
            inbound_held=state.inbound_held,
            given_back=self._given_back,
            outbound=state.outbound,
            senders_waiting=any(s.waiting_for_window for s in self._streams.values()),
            window_updates=self._window_updates,
        )

    async def _replace_stalled(self, reason: str) -> None:
        """GOAWAY with an error code (the peer ends the tunnel at once; a connector redials),
        then close: a tunnel whose window is gone carries no body, even though PINGs pass."""
        self.stalled = reason
        log.warning("%s: the HTTP/2 connection window stalled (%s); closing it", self.name, reason)
        if self._on_stall is not None:
            self._on_stall(reason)
        ours = reason.startswith("inbound")
        code = ErrorCodes.INTERNAL_ERROR if ours else ErrorCodes.FLOW_CONTROL_ERROR
        self.goaway(code, "connection window stalled")
        await self.close(f"the connection window stalled ({reason})")

    # ----------------------------------------------------------------- events
    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.RequestReceived):
            self._on_request_received(event)
        elif isinstance(event, h2.events.ResponseReceived):
            if stream := self._streams.get(event.stream_id or 0):
                stream.on_headers(list(event.headers or []))  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamEnded):
            if stream := self._streams.get(event.stream_id or 0):
                stream.on_end()
        elif isinstance(event, h2.events.StreamReset):
            self._on_reset(event)
        elif isinstance(event, h2.events.WindowUpdated):
            if not event.stream_id:
                self._window_updates += 1
            self._on_window(event.stream_id or 0)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._on_window(0)
        elif isinstance(event, h2.events.PingAckReceived):
            self._ping_ack.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_peer_goaway(event)

    def _on_data(self, event: h2.events.DataReceived) -> None:
        """Connection credit goes back at once: a live stream's own window bounds what it
        buffers, so a slow reader holds back only its stream (as Go's x/net/http2 and nghttp2
        do). Stream credit goes back when the consumer reads (``Stream.read``)."""
        sid = event.stream_id or 0
        size = event.flow_controlled_length or 0
        self.conn.credit_connection(size)
        self._given_back += size
        stream = self._streams.get(sid)
        if stream is None:  # released already (ended both ways): nobody will read it
            self.ack(sid, size)
            return
        stream.on_data(event.data or b"", size)

    def _on_request_received(self, event: h2.events.RequestReceived) -> None:
        sid = event.stream_id or 0
        headers: list[tuple[str, str]] = list(event.headers or [])  # type: ignore[arg-type]
        if self.draining or self._on_request is None:
            self.conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        stream = Stream(self, sid, headers)
        self._track(stream)
        task = asyncio.create_task(self._run_handler(stream))
        stream.handler = task
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _run_handler(self, stream: Stream) -> None:
        assert self._on_request is not None
        try:
            await self._on_request(stream)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("stream %d failed", stream.stream_id)
        finally:  # answered but the request body not read to its end: RST_STREAM(NO_ERROR)
            stream.reset(ErrorCodes.NO_ERROR if stream.local_closed else ErrorCodes.INTERNAL_ERROR)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self._streams.get(event.stream_id or 0)
        if stream is None:
            return
        code = event.error_code
        if code == ErrorCodes.NO_ERROR and stream.remote_closed and self.conn.config.client_side:
            stream.on_stop_sending()
            return
        name = code.name if isinstance(code, ErrorCodes) else str(code)
        stream.on_reset(f"the peer reset the stream ({name})", refused=name == "REFUSED_STREAM")

    def _on_window(self, stream_id: int) -> None:
        if stream_id:
            stream = self._streams.get(stream_id)
            if stream is not None:
                stream.window_opened()
            return
        for stream in self._streams.values():
            stream.window_opened()

    def _on_peer_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.draining = True
        self.peer_goaway_data = event.additional_data or b""
        last = event.last_stream_id or 0
        for stream in list(self._streams.values()):
            if self.conn.config.client_side and stream.stream_id > last:
                stream.on_reset("the tunnel is draining", refused=True)
        if self._on_goaway is not None:
            self._on_goaway()
        code = event.error_code
        if code not in (ErrorCodes.NO_ERROR, 0):
            text = self.peer_goaway_data.decode("utf-8", "replace")
            name = code.name if isinstance(code, ErrorCodes) else str(code)
            self.abort(f"{self.peer_name} closed the tunnel ({name}{': ' + text if text else ''})")
        elif not self._streams:
            self.abort(
                f"{self.peer_name} sent GOAWAY"
                + (f" ({self.peer_goaway_data.decode()})" if self.peer_goaway_data else "")
            )
