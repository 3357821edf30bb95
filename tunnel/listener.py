"""The gateway side: accepts connectors' tunnels and puts them in the pool (:mod:`tunnel.pool`).

The listener is the HTTP/2 *client*. Every carrier ends in :meth:`Listener.serve_secure_stream`:
the TLS port calls it after its own handshake, the WebSocket carrier (whatever serves the
WebSocket: :mod:`gateway.websocket`) through :func:`serve_websocket` after the inner one. The
WebSocket proves nothing: a connector is admitted only by the mutual TLS, then by the same
identity, CRL and allow-list checks whatever its carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import ssl
import time

import h2.config
import h2.connection
from h2.errors import ErrorCodes

from tunnel.api import PoolStatus
from tunnel.carrier.byte_stream import ByteStream
from tunnel.carrier.proxy import set_nodelay
from tunnel.carrier.tcp import TcpByteStream
from tunnel.config import ListenerConfig
from tunnel.errors import HandshakeError
from tunnel.h2.hello import ask_hello
from tunnel.h2.session import Session, SessionSettings
from tunnel.pool import Pool, Tunnel
from tunnel.security.contexts import listener_context
from tunnel.security.crl import CrlWatcher
from tunnel.security.memory_tls import MemoryTLSStream
from tunnel.security.secure_stream import PeerIdentity, SecureStream

log = logging.getLogger("tunnel.listener")

HELLO_TIMEOUT_S = 10.0


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
        """Server side of the mutual-TLS handshake (see tunnel/carrier/tcp.py for why BIO)."""
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
                session.abort("the listener stopped")
            reason = await runner
            self._pool.ended(tunnel.disconnect(reason, shutdown=self._closing))
        log.info("tunnel %s from %s closed: %s", tunnel_id, remote, reason)

    async def _admit(self, tunnel: Tunnel, stream: SecureStream) -> None:
        session = tunnel.session
        try:
            async with asyncio.timeout(HELLO_TIMEOUT_S):
                hello = await ask_hello(session)
        except Exception as exc:  # the tunnel is useless without its announcement
            if session.alive:
                tunnel.ended_by_listener = "no_hello"
            session.abort(f"no hello from the connector ({exc})")
            return
        upstreams = hello.get("upstreams")
        if not isinstance(upstreams, list) or not all(isinstance(u, str) for u in upstreams):
            tunnel.ended_by_listener = "no_hello"
            session.abort("the connector's hello carried no upstream list")
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


async def serve_websocket(
    listener: Listener, carrier: ByteStream, context: ssl.SSLContext, remote: str
) -> None:
    """Run the inner TLS server side (``context``: :func:`server_context`) over an accepted
    WebSocket's ``carrier``, then hand the result to the listener."""
    try:
        async with asyncio.timeout(listener.cfg.handshake_timeout_s):
            secure = await MemoryTLSStream.server(carrier, context, f"websocket from {remote}")
    except (HandshakeError, TimeoutError, OSError) as exc:
        reason = str(exc) or "handshake timed out"
        log.warning(
            "refused a tunnel from %s (websocket): TLS handshake failed: %s", remote, reason
        )
        await carrier.aclose()
        return
    await listener.serve_secure_stream(secure, remote, "websocket")


@functools.lru_cache(maxsize=8)
def server_context(cfg: ListenerConfig) -> ssl.SSLContext:
    """The tunnel port's own context (same certificate, CA, ALPN), built once per config."""
    return listener_context(cfg.cert, cfg.key, cfg.ca)
