"""The stall watchdog's arithmetic, free of I/O: is a connection window stuck at zero?

HTTP/2 flow control (RFC 9113 6.9) lets a peer that never gives credit back stop a connection
for good while PINGs still pass. Two ways this shows, one per direction:

- inbound: the window we advertise is used up (the peer cannot send), part of it is held
  (received and not given back to the connection window), and nothing was given back for
  ``timeout_s``. DATA for a live stream is given back to the connection window on arrival (its
  stream window bounds what it buffers), so held bytes are never a slow reader's: they are
  credit our own code lost;
- outbound: a stream waits to send, the peer's connection window is used up, and no
  connection-level WINDOW_UPDATE came for ``timeout_s``. A peer that gives connection credit
  back on arrival (ours does) never leaves its window shut for long, whatever its readers do,
  so this too is lost credit (a leaking peer).

A stream blocked by its own stream window (a slow reader) is backpressure, not a stall: it
never shows here, at either end.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSample:
    """What the session knows at one moment."""

    now: float  # time.monotonic()
    inbound: int  # what the peer may still send on the connection
    inbound_held: int  # received and not given back to the connection window
    given_back: int  # bytes given back to the connection window so far (only grows)
    outbound: int  # what we may still send on the connection
    senders_waiting: bool  # a stream waits for window to send
    window_updates: int  # connection-level WINDOW_UPDATEs received so far (only grows)


class _Condition:
    """How long a condition has held with its progress counter unchanged."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.mark = 0

    def held_for(self, now: float, holds: bool, progress: int) -> float:
        if not holds:
            self.since = None
            return 0.0
        if self.since is None or progress != self.mark:
            self.since, self.mark = now, progress
        return now - self.since


class StallWatch:
    """Feed it a :class:`WindowSample` now and then; it names a stall once one lasts."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._inbound = _Condition()
        self._outbound = _Condition()

    def check(self, sample: WindowSample) -> str | None:
        """Why the connection is stalled, or None."""
        stuck_in = self._inbound.held_for(
            sample.now, sample.inbound <= 0 and sample.inbound_held > 0, sample.given_back
        )
        stuck_out = self._outbound.held_for(
            sample.now, sample.senders_waiting and sample.outbound <= 0, sample.window_updates
        )
        if stuck_in >= self.timeout_s:
            return (
                f"inbound: our connection receive window has been used up for {stuck_in:.0f}s "
                "by bytes no live stream holds, with nothing given back; the peer cannot send"
            )
        if stuck_out >= self.timeout_s:
            return (
                f"outbound: the peer's connection window has been used up for {stuck_out:.0f}s "
                "with no WINDOW_UPDATE while streams wait to send"
            )
        return None
