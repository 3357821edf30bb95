"""The gateway side: accepts connectors' tunnels and hands out streams (``TunnelPool``).

The listener is the HTTP/2 *client*. Every carrier ends in :meth:`Listener.serve_secure_stream`:
the TLS port calls it after its own handshake, the WebSocket carrier after the inner one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl
import time
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

import h2.config
import h2.connection
from cryptography import x509
from h2.errors import ErrorCodes

from tunnel.api import (
    DISCONNECT_REASONS,
    RECENT_DISCONNECTS,
    Disconnect,
    PoolStatus,
    TunnelInfo,
)
from tunnel.config import ListenerConfig
from tunnel.crl import CrlWatcher
from tunnel.errors import (
    BadAnswerError,
    HandshakeError,
    NoTunnelError,
    StreamResetError,
    TunnelError,
)
from tunnel.headers import filter_headers
from tunnel.memtls import MemoryTLSStream
from tunnel.plainstream import TcpByteStream
from tunnel.proxy import set_nodelay
from tunnel.session import Session, SessionSettings, Stream
from tunnel.stream import PeerIdentity, SecureStream
from tunnel.tlsconfig import listener_context

log = logging.getLogger("tunnel.listener")

HELLO_TIMEOUT_S = 10.0
MAX_HELLO_BYTES = 64 * 1024


def refusal_reason(peer: PeerIdentity, allowed: tuple[str, ...], crl: CrlWatcher) -> str | None:
    """The one identity check every carrier uses: a current CRL, not revoked, allowed name."""
    reason = crl.refusal(peer.serial)
    if reason is not None:
        return reason
    if peer.common_name not in allowed:
        return f"connector name {peer.common_name!r} is not in allowed_connectors"
    return None


async def _refuse(stream: SecureStream, reason: str) -> None:
    """Tell the connector why, as an HTTP/2 GOAWAY (ordinary frames), then close."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.close_connection(ErrorCodes.INADEQUATE_SECURITY, f"refused: {reason}".encode())
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2.0):
            await stream.write(conn.data_to_send())
    await stream.aclose()


HELLO_PATH = "/_tunnel/v1/hello"


def response_status(head: list[tuple[str, str]], stream_id: int) -> int:
    """The answer's ``:status``: three digits, 100-599 (RFC 9110 15), else BadAnswerError."""
    text = dict(head).get(":status", "")
    if len(text) != 3 or not text.isascii() or not text.isdigit() or not 100 <= int(text) <= 599:
        raise BadAnswerError(f"the connector answered with a bad :status {text!r}", stream_id)
    return int(text)


def request_head(method: str, authority: str, path: str) -> list[tuple[str, str]]:
    return [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path)]


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
            reason="shutdown" if shutdown else self._end_reason(detail),
            detail=detail,
        )

    def _end_reason(self, detail: str) -> str:
        """A label of ``DISCONNECT_REASONS`` from what is known of the end (see tunnel/api.py)."""
        if self.ended_by_listener is not None:
            return self.ended_by_listener
        if self.session.stalled is not None:
            return "stalled"
        if self.session.ping_timed_out:
            return "ping_timeout"
        if self.peer_goaway:
            return "goaway"
        if detail.endswith("closed the connection") or detail == "the connection was reset":
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


def certificate_not_after(cert_der: bytes) -> float | None:
    """Unix time a DER certificate expires (None if it cannot be read)."""
    try:
        return x509.load_der_x509_certificate(cert_der).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def _dropped(stream: Stream, sender: asyncio.Task[None] | None) -> None:
    """A response was dropped without ``aclose`` (a consumer's bug, e.g. an answer generator
    that never started because its client had gone): its stream still gives back what it
    holds, or the connection window would shrink for good."""
    log.debug("stream %d: the response was dropped unclosed; resetting it", stream.stream_id)
    stream.reset(ErrorCodes.CANCEL)
    if sender is not None and not sender.done():
        sender.cancel()


class _Response:
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
    ) -> _Response:
        head = [
            (":method", method),
            (":scheme", "https"),
            (":authority", upstream),
            (":path", path),
        ]
        head += filter_headers(headers)
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
    ) -> _Response:
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
        return _Response(status, filter_headers(response_head), stream, sender)


class Listener:
    """Accepts tunnels on ``cfg.listen`` (mutual TLS) and from other carriers."""

    def __init__(self, cfg: ListenerConfig, *, settings: SessionSettings | None = None) -> None:
        """``settings`` replaces the HTTP/2 settings made from ``cfg`` (tests, benchmarks)."""
        self.cfg = cfg
        self._pool = Pool()
        self._crl = CrlWatcher(cfg.crl, cfg.ca)
        self._ctx = listener_context(cfg.cert, cfg.key, cfg.ca)
        self._server: asyncio.Server | None = None
        self._live: dict[str, Tunnel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._crl_task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._closing = False
        self._settings = settings or SessionSettings(
            ping_interval_s=cfg.ping_interval_s, ping_timeout_s=cfg.ping_timeout_s
        )

    @property
    def pool(self) -> Pool:
        return self._pool

    @property
    def tls_context(self) -> ssl.SSLContext:
        """The server-side mutual-TLS context (for carriers that run TLS themselves)."""
        return self._ctx

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def status(self) -> PoolStatus:
        return self._pool.status()

    def sessions(self) -> tuple[Session, ...]:
        """The HTTP/2 sessions of the tunnels up now (for window checks)."""
        return tuple(t.session for t in self._live.values())

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_tcp, self.cfg.host, self.cfg.port)
        self._crl_task = asyncio.create_task(self._watch_crl())
        log.info("tunnel listener on %s:%d (mutual TLS, ALPN h2)", self.cfg.host, self.port)

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            peer = writer.get_extra_info("peername") or ("?", 0)
            remote = f"{peer[0]}:{peer[1]}"
            set_nodelay(writer)
            try:
                stream = await self._handshake(TcpByteStream(reader, writer))
            except HandshakeError as exc:
                log.warning("refused a tunnel from %s: TLS handshake failed: %s", remote, exc)
                return
            await self.serve_secure_stream(stream, remote, "tls")
        except asyncio.CancelledError:
            pass  # the listener is closing; asyncio would log a cancelled connection task
        finally:
            self._tasks.discard(task)

    async def _handshake(self, lower: TcpByteStream) -> MemoryTLSStream:
        """Server side of the mutual-TLS handshake (see tunnel/plainstream.py for why BIO)."""
        try:
            async with asyncio.timeout(self.cfg.handshake_timeout_s):
                stream = await MemoryTLSStream.server(lower, self._ctx, "tls")
        except TimeoutError:
            await lower.aclose()
            raise HandshakeError("handshake timed out") from None
        except OSError as exc:
            await lower.aclose()
            raise HandshakeError(str(exc) or type(exc).__name__) from None
        stream.set_description(f"tls, {stream.tls_version}")
        return stream

    def check_identity(self, peer: PeerIdentity) -> str | None:
        return refusal_reason(peer, self.cfg.allowed_connectors, self._crl)

    async def serve_secure_stream(self, stream: SecureStream, remote: str, carrier: str) -> None:
        """Run one tunnel on an already-secured stream; returns when it ends."""
        peer = stream.peer
        reason = "the listener is stopping" if self._closing else self.check_identity(peer)
        if reason is not None:
            log.warning(
                "refused connector %r from %s (%s): %s", peer.common_name, remote, carrier, reason
            )
            await _refuse(stream, reason)
            return
        tunnel_id = f"{peer.common_name}#{next(self._ids)}"
        tunnel = Tunnel(tunnel_id, peer, carrier, remote, time.monotonic())
        session = Session(
            stream,
            client_side=True,
            settings=self._settings,
            on_goaway=tunnel.peer_draining,
            on_stall=lambda _reason: self._pool.stalled(tunnel),
            name=f"tunnel {tunnel_id}",
        )
        tunnel.session = session
        self._live[tunnel_id] = tunnel
        runner = asyncio.create_task(session.run())
        try:
            await self._admit(tunnel, stream)
            reason = await asyncio.shield(runner)
        finally:
            self._live.pop(tunnel_id, None)
            self._pool.remove(tunnel)
            if not runner.done():
                session.finish("the listener stopped")
            reason = await runner
            self._pool.ended(tunnel.disconnect(reason, shutdown=self._closing))
        log.info("tunnel %s from %s closed: %s", tunnel_id, remote, reason)

    async def _admit(self, tunnel: Tunnel, stream: SecureStream) -> None:
        session = tunnel.session
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = await _hello(session)
        except Exception as exc:  # the tunnel is useless without its announcement
            if session.alive:
                tunnel.ended_by_listener = "no_hello"
            session.finish(f"no hello from the connector ({exc})")
            return
        upstreams = hello.get("upstreams")
        if not isinstance(upstreams, list) or not all(isinstance(u, str) for u in upstreams):
            tunnel.ended_by_listener = "no_hello"
            session.finish("the connector's hello carried no upstream list")
            return
        tunnel.upstreams = tuple(upstreams)
        if session.alive:
            self._pool.add(tunnel)
            log.info(
                "tunnel %s up from %s (%s), upstreams: %s, connector version %s",
                tunnel.tunnel_id,
                tunnel.remote,
                stream.description,
                ", ".join(upstreams) or "(none)",
                hello.get("version", "?"),
            )

    async def _watch_crl(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.crl_poll_s)
            if self._crl.poll():
                self._close_revoked()

    def _close_revoked(self) -> None:
        for tunnel in list(self._live.values()):
            if self._crl.is_revoked(tunnel.peer.serial):
                log.warning(
                    "closing tunnel %s from %s: its certificate (serial %x) was just revoked",
                    tunnel.tunnel_id,
                    tunnel.remote,
                    tunnel.peer.serial,
                )
                tunnel.ended_by_listener = "revoked"
                tunnel.session.goaway(ErrorCodes.INADEQUATE_SECURITY, "certificate revoked")
                self._pool.remove(tunnel)
                task = asyncio.create_task(tunnel.session.close("certificate revoked"))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def aclose(self, drain_timeout_s: float = 10.0) -> None:
        """Stop accepting, GOAWAY every tunnel, let streams finish up to the timeout, close."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._crl_task is not None:
            self._crl_task.cancel()
        for tunnel in self._live.values():
            tunnel.draining = True
        sessions = [t.session for t in self._live.values()]
        await asyncio.gather(
            *(s.drain(drain_timeout_s, "gateway stopping") for s in sessions),
            return_exceptions=True,
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("tunnel listener stopped")


async def _hello(session: Session) -> dict[str, object]:
    stream = session.open_stream(
        [
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "_tunnel"),
            (":path", HELLO_PATH),
        ],
        end_stream=True,
    )
    head = dict(await stream.response_head())
    if head.get(":status") != "200":
        raise HandshakeError(f"hello answered {head.get(':status')}")
    body = b""
    while chunk := await stream.read():
        body += chunk
        if len(body) > MAX_HELLO_BYTES:
            stream.reset()
            raise HandshakeError("hello too large")
    data = json.loads(body)
    if not isinstance(data, dict):
        raise HandshakeError("hello is not an object")
    return data
