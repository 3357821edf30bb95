"""The HTTP/2 layer both roles share, over a :class:`tunnel.stream.SecureStream`.

One reader task feeds bytes to the ``h2`` state machine and acts on its events; one writer task
sends whatever ``h2`` has queued (so many events or sends coalesce into one write, and the reader
never blocks on a full socket); one pinger task sends PINGs and declares the peer dead when no
answer comes. The first failure is sticky: every stream on the session fails with
:class:`StreamResetError` at once. Per-stream bodies are bounded by flow control: received DATA is
given back to the connection window as soon as it lands in a live stream's buffer, and to the
stream's window only when the consumer takes it: a slow reader stops its own sender and no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.stream import StreamClosedBy
from h2.utilities import SizeLimitDict
from hyperframe.frame import DataFrame, GoAwayFrame, WindowUpdateFrame

from tunnel.h2stream import Stream
from tunnel.stall import StallWatch, WindowSample
from tunnel.stream import SecureStream

__all__ = [
    "RequestHandler",
    "Session",
    "SessionSettings",
    "Stream",
    "WindowState",
    "describe_error",
]

log = logging.getLogger("tunnel.session")

READ_SIZE = 256 * 1024
HIGH_WATER = 1024 * 1024  # bytes queued in h2 before a sender waits for the writer
#: How many streams closed by RST_STREAM a connection remembers (see ``_ResetStreams``).
RESET_MEMORY = 4096
_BY_RESET = (StreamClosedBy.SEND_RST_STREAM, StreamClosedBy.RECV_RST_STREAM)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    max_concurrent_streams: int = 1000
    stream_window: int = 4 * 1024 * 1024
    connection_window: int = 16 * 1024 * 1024
    max_frame_size: int = 1024 * 1024
    #: A connection window used up this long with nothing given back (or no WINDOW_UPDATE
    #: while streams wait to send) ends the tunnel: see tunnel/stall.py.
    stall_timeout_s: float = 30.0
    #: How often the windows are looked at: the stall check, and a WINDOW_UPDATE for what was
    #: given back but not announced yet (h2 waits for half the window before it tells the peer).
    window_check_s: float = 1.0


@dataclass(frozen=True, slots=True)
class WindowState:
    """The connection-level flow-control windows of one session (RFC 9113 6.9), in bytes."""

    inbound: int  # what the peer may still send us before our next WINDOW_UPDATE
    #: received and not given back to the connection window: 0 at rest and also while streams
    #: hold unread DATA (given back on arrival); more, for long, is lost credit (a leak)
    inbound_held: int
    inbound_full: int  # the connection window we advertise
    outbound: int  # what we may still send before the peer's next WINDOW_UPDATE
    #: received into live streams and not read yet (each at most its stream window)
    inbound_buffered: int = 0

    @property
    def full(self) -> bool:
        """Nothing received is held: every byte the peer sent was given back (or is owed)."""
        return self.inbound_held == 0


class _ResetStreams(SizeLimitDict):
    """h2's record of how closed streams ended, keeping only the streams closed by RST_STREAM.

    h2 remembers every closed stream (up to 65,536 per connection, ~150 bytes each): the one
    piece of memory that grew with the number of requests, by ~10 MB per tunnel on each side.
    Only a reset changes how h2 treats a late frame (a DATA frame still in flight when we sent
    RST_STREAM is answered with RST_STREAM instead of ending the connection); for a stream that
    ended with END_STREAM, an entry and no entry lead to the same outcome (a late DATA or
    HEADERS frame is a connection error either way; WINDOW_UPDATE and RST_STREAM are ignored).
    So only resets are kept, the last ``RESET_MEMORY`` of them (late frames come within a round
    trip)."""

    def __init__(self) -> None:
        super().__init__(size_limit=RESET_MEMORY)

    def __setitem__(self, key: int, value: object) -> None:
        if value in _BY_RESET:
            super().__setitem__(key, value)


class _Connection(h2.connection.H2Connection):
    """h2 treats GOAWAY as the end of everything; HTTP/2 (RFC 9113 6.8) lets streams up to
    ``last_stream_id`` finish. These two overrides keep the state machine open so they can.
    Its closed-stream bookkeeping keeps only what matters (``_ResetStreams``)."""

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self._closed_streams = _ResetStreams()

    def _receive_goaway_frame(  # type: ignore[override]
        self, frame: GoAwayFrame
    ) -> tuple[list[object], list[h2.events.Event]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    # Flow-control credit, one level at a time. h2's ``acknowledge_received_data`` gives both
    # levels back at once; we give the connection level back when DATA lands in a live stream's
    # buffer and the stream level when the consumer reads it (docs/tunnel.md, *Flow control*).
    # These methods, ``window_state`` and ``announce_given_back`` are the only code that touches
    # h2's window managers (private in h2 4.x: ``_inbound_flow_control_window_manager`` for the
    # connection; ``H2Stream._inbound_window_manager``, reached through the stream's
    # ``acknowledge_received_data``) and ``_prepare_for_sending``, which queues the WINDOW_UPDATE
    # frames they produce.
    def credit_connection(self, nbytes: int) -> None:
        """Give ``nbytes`` back to the connection window only (WINDOW_UPDATE on stream 0, sent
        by h2's rule: once half the window is given back, or at once when it is shut)."""
        increment = self._inbound_flow_control_window_manager.process_bytes(nbytes)
        if increment:
            frame = WindowUpdateFrame(0)
            frame.window_increment = increment
            self._prepare_for_sending([frame])

    def credit_stream(self, stream_id: int, nbytes: int) -> None:
        """Give ``nbytes`` back to one stream's window only (nothing for a closed stream)."""
        stream = self.streams.get(stream_id)
        if stream is not None and stream.open:
            self._prepare_for_sending(stream.acknowledge_received_data(nbytes))

    def window_state(self) -> WindowState:
        manager = self._inbound_flow_control_window_manager
        current, full = manager.current_window_size, manager.max_window_size
        return WindowState(
            inbound=current,
            inbound_held=full - current - manager._bytes_processed,
            inbound_full=full,
            outbound=self.outbound_flow_control_window,
        )

    def announce_given_back(self) -> int:
        """A connection WINDOW_UPDATE now for the bytes acknowledged but not announced yet
        (h2's manager holds them back until half the window is used); returns how many."""
        manager = self._inbound_flow_control_window_manager
        pending = manager._bytes_processed
        if pending:
            manager._bytes_processed = 0
            self.increment_flow_control_window(pending)
        return pending

    def send_goaway(self, error_code: int = 0, additional_data: bytes = b"") -> None:
        frame = GoAwayFrame(
            stream_id=0,
            last_stream_id=self.highest_inbound_stream_id,
            error_code=error_code,
            additional_data=additional_data,
        )
        self._prepare_for_sending([frame])


def _data_frame_repr(frame: DataFrame) -> str:
    return f"<{len(frame.data)} bytes>"


# h2 formats every frame it receives for its trace log, eagerly, even with logging off; for DATA
# that is a hex dump of the whole payload (1.6 ms per 1 MiB frame). Only that text changes here.
DataFrame._body_repr = _data_frame_repr  # type: ignore[method-assign,assignment]


def _new_connection(client_side: bool, settings: SessionSettings) -> _Connection:
    # Our heads are built by us from filtered headers (tunnel.headers): h2's re-validation of what
    # we send costs more than it protects.
    # What we receive comes from the mutually authenticated peer, which built it the same way;
    # re-validating and re-normalizing it costs ~25 us per request and side. Outbound headers are
    # still normalized (h2 marks ``authorization`` never-indexed in HPACK).
    config = h2.config.H2Configuration(
        client_side=client_side,
        header_encoding="utf-8",
        validate_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
    conn = _Connection(config=config)
    codes = h2.settings.SettingCodes
    values: dict[h2.settings.SettingCodes | int, int] = {
        codes.INITIAL_WINDOW_SIZE: settings.stream_window,
        codes.MAX_FRAME_SIZE: settings.max_frame_size,
        codes.MAX_CONCURRENT_STREAMS: settings.max_concurrent_streams,
    }
    if client_side:
        values[codes.ENABLE_PUSH] = 0
    conn.initiate_connection()
    conn.update_settings(values)  # applied the h2 way: when the peer ACKs them
    # ...except the frame size: h2 sizes its frame parser before it reads the ACK that arrives
    # in the same read as the first big frame; accepting big frames from the start is harmless.
    conn.max_inbound_frame_size = settings.max_frame_size
    if settings.connection_window > 65535:  # the RFC's initial connection window
        conn.increment_flow_control_window(settings.connection_window - 65535)
    return conn


def describe_error(exc: BaseException) -> str:
    """Plain words for what broke a session."""
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).replace("_", " ").lower()
        if "alert" in reason:
            return f"the peer ended TLS with an alert ({reason})"
        return f"TLS error ({reason})"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, h2.exceptions.ProtocolError):
        return f"HTTP/2 protocol error ({exc})"
    if isinstance(exc, OSError):
        return f"network error ({exc.strerror or exc})"
    return f"{type(exc).__name__}: {exc}"


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
        self.conn = _new_connection(client_side, settings)
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
        self._want_write = asyncio.Event()
        self._want_write.set()  # the connection preface
        self._direct: Callable[[bytes], bool] | None = getattr(stream, "write_nowait", None)
        self._loop = asyncio.get_running_loop()
        self._flush_pending = False
        self._blocked = False
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._done = asyncio.Event()
        self._queued = 0
        self._last_rx = time.monotonic()
        self._ping_ack = asyncio.Event()
        self._ping_count = 0
        #: the round trip of the last answered PING (None before the first answer)
        self.rtt_s: float | None = None
        self.ping_timed_out = False  # the session ended because a PING went unanswered
        self._flushed = asyncio.Event()
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
        self.wake_writer()

    async def sent(self, nbytes: int) -> None:
        """After a stream queued ``nbytes``: wake the writer; wait if too much is queued."""
        self._queued += nbytes
        self.wake_writer()
        if self._queued > HIGH_WATER and self.alive:
            self._room.clear()
            await self._room.wait()

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
            asyncio.create_task(self._guard(self._write_loop(), "write")),
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

    def finish(self, reason: str) -> None:
        """Mark the session ended (first reason wins); ``run`` then tears it down."""
        if self.closed_reason is None:
            self.closed_reason = reason
            self._room.set()
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
            self._flushed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._flushed.wait()
        self.finish(reason)

    async def _guard(self, coro: Awaitable[None], what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.finish(describe_error(exc))

    # ----------------------------------------------------------------- loops
    async def _read_loop(self) -> None:
        while self.alive:
            data = await self.stream.read(READ_SIZE)
            if not data:
                self.finish(f"{self.peer_name} closed the connection")
                return
            self._last_rx = time.monotonic()
            try:
                events = self.conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                self.conn.send_goaway(ErrorCodes.PROTOCOL_ERROR)
                self.wake_writer()
                self.finish(describe_error(exc))
                return
            for event in events:
                self._dispatch(event)
            self.wake_writer()

    def _flush_now(self) -> None:
        self._flush_pending = False
        if self._direct is None or self._blocked:  # (a last GOAWAY still goes when not alive)
            self._want_write.set()
            return
        data = self.conn.data_to_send()
        self._queued = 0
        self._room.set()
        if data:
            try:
                has_room = self._direct(data)
            except Exception as exc:
                self.finish(describe_error(exc))
                return
            if not has_room:  # the writer task waits for the transport to drain
                self._blocked = True
                self._want_write.set()
                return
        self._flushed.set()

    async def _write_loop(self) -> None:
        while True:
            await self._want_write.wait()
            self._want_write.clear()
            data = self.conn.data_to_send()
            self._queued = 0
            self._room.set()
            if data or self._blocked:
                await self.stream.write(data)  # b"" only waits for the transport to drain
            self._blocked = False
            if not self._want_write.is_set():
                self._flushed.set()

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
                    self.ping_timed_out = True
                    self.finish(f"no PING answer within {timeout:g}s")
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
            stream = self._streams.get(event.stream_id or 0)
            if stream is not None:
                stream.on_headers(list(event.headers or []))  # type: ignore[arg-type]
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id or 0)
            if stream is not None:
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
            self.finish(f"{self.peer_name} closed the tunnel ({name}{': ' + text if text else ''})")
        elif not self._streams:
            self.finish(
                f"{self.peer_name} sent GOAWAY"
                + (f" ({self.peer_goaway_data.decode()})" if self.peer_goaway_data else "")
            )
