"""The stall watchdog's arithmetic, free of I/O: is a connection window stuck at zero?

HTTP/2 flow control (RFC 9113 6.9) lets a peer that never gives credit back stop a connection
for good while PINGs still pass. Two ways this shows, one per direction:

- inbound: the window we advertise is used up (the peer cannot send) and nothing we received
  has been given back for ``timeout_s`` (our own readers hold it, or it leaked);
- outbound: a stream waits to send, the peer's connection window is used up, and no
  connection-level WINDOW_UPDATE came for ``timeout_s`` (what a leaking peer produces).

A stream blocked by its own stream window (a slow reader) is backpressure, not a stall.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowSample:
    """What the session knows at one moment."""

    now: float  # time.monotonic()
    inbound: int  # what the peer may still send on the connection
    given_back: int  # bytes acknowledged so far (a counter that only grows)
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
        stuck_in = self._inbound.held_for(sample.now, sample.inbound <= 0, sample.given_back)
        stuck_out = self._outbound.held_for(
            sample.now, sample.senders_waiting and sample.outbound <= 0, sample.window_updates
        )
        if stuck_in >= self.timeout_s:
            return (
                f"inbound: our connection receive window has been used up for {stuck_in:.0f}s "
                "with nothing given back; the peer cannot send"
            )
        if stuck_out >= self.timeout_s:
            return (
                f"outbound: the peer's connection window has been used up for {stuck_out:.0f}s "
                "with no WINDOW_UPDATE while streams wait to send"
            )
        return None
