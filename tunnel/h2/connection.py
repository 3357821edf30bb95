"""The HTTP/2 connection of a tunnel, sans-IO: ``h2``'s state machine with the tunnel's rules.

Bytes in (``receive_data``), events out, bytes to send (``data_to_send``); no asyncio here. The
subclass of ``h2.connection.H2Connection`` lets streams finish after GOAWAY (RFC 9113 6.8), gives
flow-control credit back one level at a time, and remembers only the streams that were reset;
:class:`SessionSettings` are what each side announces and how its session loops behave.
"""

from __future__ import annotations

from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
from h2.stream import StreamClosedBy
from h2.utilities import SizeLimitDict
from hyperframe.frame import DataFrame, GoAwayFrame, WindowUpdateFrame

__all__ = ["RESET_MEMORY", "Connection", "SessionSettings", "WindowState", "new_connection"]

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
    #: while streams wait to send) ends the tunnel: see tunnel/h2/stall.py.
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


class Connection(h2.connection.H2Connection):
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


def new_connection(client_side: bool, settings: SessionSettings) -> Connection:
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
    conn = Connection(config=config)
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
