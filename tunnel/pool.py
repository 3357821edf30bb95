"""The gateway's pool of live tunnels (``TunnelPool``): each request becomes one HTTP/2 stream
on the usable tunnel with the fewest active streams, and its answer a ``TunnelResponse``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from h2.errors import ErrorCodes

from tunnel.api import (
    DISCONNECT_REASONS,
    RECENT_DISCONNECTS,
    Disconnect,
    PoolStatus,
    TunnelInfo,
)
from tunnel.errors import BadAnswerError, NoTunnelError, StreamResetError, TunnelError
from tunnel.h2.session import Session
from tunnel.h2.stream import Stream
from tunnel.headers import filter_headers, request_head
from tunnel.security.certificates import certificate_not_after
from tunnel.security.secure_stream import PeerIdentity

# The pool logs as the listener it belongs to (one logger for the gateway's tunnel side).
log = logging.getLogger("tunnel.listener")


def response_status(head: list[tuple[str, str]], stream_id: int) -> int:
    """The answer's ``:status``: three digits, 100-599 (RFC 9110 15), else BadAnswerError."""
    text = dict(head).get(":status", "")
    if len(text) != 3 or not text.isascii() or not text.isdigit() or not 100 <= int(text) <= 599:
        raise BadAnswerError(f"the connector answered with a bad :status {text!r}", stream_id)
    return int(text)


@dataclass(eq=False)
class Tunnel:
    """One live tunnel as the pool sees it."""

    tunnel_id: str
    peer: PeerIdentity
    carrier: str
    remote: str
    started: float
    upstreams: tuple[str, ...] = ()
    draining: bool = False
    session: Session = field(init=False)
    connected_at: float = field(default_factory=time.time)  # unix time, for people
    peer_goaway: bool = False  # the connector sent GOAWAY
    #: why the listener ended it, when it did (a reason of ``DISCONNECT_REASONS``)
    ended_by_listener: str | None = None
    cert_not_after: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.cert_not_after = certificate_not_after(self.peer.cert_der)

    def peer_draining(self) -> None:
        if not self.draining:
            log.info("tunnel %s is draining (the connector sent GOAWAY)", self.tunnel_id)
        self.draining = True
        self.peer_goaway = True

    def disconnect(self, detail: str, *, shutdown: bool) -> Disconnect:
        """The record of this tunnel's end; ``shutdown``: the listener is stopping."""
        return Disconnect(
            connector=self.peer.common_name,
            tunnel_id=self.tunnel_id,
            carrier=self.carrier,
            remote=self.remote,
            at=time.time(),
            reason="shutdown" if shutdown else self._end_reason(),
            detail=detail,
        )

    def _end_reason(self) -> str:
        """A label of ``DISCONNECT_REASONS`` from what is known of the end (see tunnel/api.py)."""
        if self.ended_by_listener is not None:
            return self.ended_by_listener
        if self.session.stalled is not None:
            return "stalled"
        if self.session.ping_timed_out:
            return "ping_timeout"
        if self.peer_goaway:
            return "goaway"
        if self.session.peer_closed:
            return "peer_closed"
        return "error"

    def usable_for(self, upstream: str) -> bool:
        return (
            not self.draining
            and self.session.stalled is None
            and upstream in self.upstreams
            and self.session.can_open()
        )

    def info(self, now: float) -> TunnelInfo:
        windows = self.session.window_state()
        return TunnelInfo(
            connector=self.peer.common_name,
            tunnel_id=self.tunnel_id,
            carrier=self.carrier,
            remote=self.remote,
            upstreams=self.upstreams,
            active_streams=self.session.active_streams,
            draining=self.draining or self.session.draining,
            connected_s=now - self.started,
            stalled=self.session.stalled,
            inbound_window=windows.inbound,
            inbound_held=windows.inbound_held,
            outbound_window=windows.outbound,
            inbound_buffered=windows.inbound_buffered,
            connected_at=self.connected_at,
            rtt_s=self.session.rtt_s,
            client_cert_not_after=self.cert_not_after,
        )


def _dropped(stream: Stream, sender: asyncio.Task[None] | None) -> None:
    """A response was dropped without ``aclose`` (a consumer's bug, e.g. an answer generator
    that never started because its client had gone): its stream still gives back what it
    holds, or the connection window would shrink for good."""
    log.debug("stream %d: the response was dropped unclosed; resetting it", stream.stream_id)
    stream.reset(ErrorCodes.CANCEL)
    if sender is not None and not sender.done():
        sender.cancel()


class PooledResponse:
    """``TunnelResponse``: the head, then the body as DATA frames arrive."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        stream: Stream,
        sender: asyncio.Task[None] | None,
    ) -> None:
        self.status = status
        self.headers = headers
        self._stream = stream
        self._sender = sender
        self._finalizer = weakref.finalize(self, _dropped, stream, sender)
        self._finalizer.atexit = False  # at exit the loop (and the tunnel) are gone

    async def read(self) -> bytes:
        return await self._stream.read()

    async def body(self) -> AsyncIterator[bytes]:
        while chunk := await self._stream.read():
            yield chunk

    async def aclose(self) -> None:
        self._finalizer.detach()
        self._stream.reset(ErrorCodes.CANCEL)
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()


async def _pump(stream: Stream, body: AsyncIterable[bytes] | bytes) -> None:
    """Send a request body; the stream's own error (reset, tunnel gone) ends it quietly."""
    with contextlib.suppress(StreamResetError):
        if isinstance(body, bytes | bytearray | memoryview):
            await stream.send_data(bytes(body), end_stream=True)
            return
        async for chunk in body:
            if chunk:
                await stream.send_data(bytes(chunk))
        await stream.end()


def _abandon(stream: Stream, sender: asyncio.Task[None] | None, code: int) -> None:
    stream.reset(code)
    if sender is not None:
        sender.cancel()


class Pool:
    """``TunnelPool``: each new stream goes to the usable tunnel with the fewest active streams."""

    def __init__(self) -> None:
        self._tunnels: dict[str, Tunnel] = {}
        self._turn = itertools.count()
        self.stalls_total = 0  # tunnels the stall watchdog closed
        self._ended: deque[Disconnect] = deque(maxlen=RECENT_DISCONNECTS)
        self._ended_by_reason: Counter[str] = Counter()

    def add(self, tunnel: Tunnel) -> None:
        self._tunnels[tunnel.tunnel_id] = tunnel

    def remove(self, tunnel: Tunnel) -> None:
        self._tunnels.pop(tunnel.tunnel_id, None)

    def ended(self, disconnect: Disconnect) -> None:
        """A tunnel ended (admitted to the pool or not): remembered and counted."""
        self._ended.append(disconnect)
        self._ended_by_reason[disconnect.reason] += 1

    def stalled(self, tunnel: Tunnel) -> None:
        """The tunnel's connection window stalled: count it; it is closing (and no longer
        picked, see ``Tunnel.usable_for``)."""
        self.stalls_total += 1

    def pick(self, upstream: str) -> Tunnel:
        """The usable tunnel with the fewest active streams; ties taken in turn, so that idle
        tunnels share short requests instead of the first one getting them all."""
        usable = [t for t in self._tunnels.values() if t.usable_for(upstream)]
        if not usable:
            raise NoTunnelError(upstream)
        fewest = min(t.session.active_streams for t in usable)
        tied = [t for t in usable if t.session.active_streams == fewest]
        return tied[next(self._turn) % len(tied)]

    def status(self) -> PoolStatus:
        now = time.monotonic()
        live = (t for t in self._tunnels.values() if t.session.alive)
        return PoolStatus(
            tuple(t.info(now) for t in live),
            self.stalls_total,
            recent_disconnects=tuple(reversed(self._ended)),
            disconnects_total=tuple((r, self._ended_by_reason[r]) for r in DISCONNECT_REASONS),
        )

    async def request(
        self,
        upstream: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
    ) -> PooledResponse:
        head = request_head(method, upstream, path) + filter_headers(headers)
        retry = isinstance(body, bytes | bytearray)
        for attempt in (1, 2):
            try:
                return await self._request_once(upstream, head, body)
            except StreamResetError as exc:
                if not (retry and exc.refused and attempt == 1):
                    raise
        raise AssertionError("unreachable")

    async def _request_once(
        self, upstream: str, head: list[tuple[str, str]], body: bytes | AsyncIterable[bytes]
    ) -> PooledResponse:
        tunnel = self.pick(upstream)
        empty = isinstance(body, bytes | bytearray) and not body
        try:
            stream = tunnel.session.open_stream(head, end_stream=empty)
        except Exception as exc:  # h2 refused to open it: the tunnel is not usable
            raise TunnelError(f"cannot open a stream on tunnel {tunnel.tunnel_id}: {exc}") from None
        sender = None
        if not empty and not (isinstance(body, bytes) and stream.send_now(body, end_stream=True)):
            sender = asyncio.create_task(_pump(stream, body))
        try:
            response_head = await stream.response_head()
            status = response_status(response_head, stream.stream_id)
        except BadAnswerError:
            _abandon(stream, sender, ErrorCodes.PROTOCOL_ERROR)  # RFC 9113 8.1.1: malformed
            raise
        except BaseException:
            _abandon(stream, sender, ErrorCodes.CANCEL)
            raise
        return PooledResponse(status, filter_headers(response_head), stream, sender)
