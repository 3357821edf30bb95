"""The office side: dial out, hold ``connections`` tunnels, serve each stream to an upstream.

The connector is the HTTP/2 *server*. The dialer for ``transport`` comes from one plain table
(:mod:`tunnel.dialers.table`); each admitted stream goes, if the allow-list lets it, to
:class:`tunnel.upstream_relay.UpstreamRelay`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Mapping

from tunnel.allowlist import refusal
from tunnel.backoff import Backoff
from tunnel.config import ConnectorConfig
from tunnel.dialers.table import BetterWatch, dialer_for
from tunnel.errors import TunnelError
from tunnel.h2.hello import HELLO_PATH, hello_body, respond
from tunnel.h2.session import Session, SessionSettings
from tunnel.h2.stream import Stream
from tunnel.security.secure_stream import SecureStream
from tunnel.upstream_relay import UpstreamRelay, openai_error

log = logging.getLogger("tunnel.connector")


class Connector:
    """``connections`` tunnels to the gateway, each redialled with backoff until ``stop``."""

    def __init__(
        self,
        cfg: ConnectorConfig,
        environ: Mapping[str, str] | None = None,
        *,
        settings: SessionSettings | None = None,
    ) -> None:
        """``settings`` replaces the HTTP/2 settings made from ``cfg`` (tests, benchmarks)."""
        self.cfg = cfg
        self._dial = dialer_for(cfg.transport)
        self._relay = UpstreamRelay(os.environ if environ is None else environ)
        self._sessions: set[Session] = set()
        self._retiring: set[asyncio.Task[None]] = set()  # tunnels left behind by a move
        self._better: BetterWatch | None = getattr(self._dial, "better_available", None)
        self._stopping = asyncio.Event()
        self._settings = settings or SessionSettings(
            ping_interval_s=cfg.ping_interval_s,
            ping_timeout_s=cfg.ping_timeout_s,
            max_concurrent_streams=cfg.max_concurrent_streams,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain every tunnel (GOAWAY) and return."""
        async with self._relay:
            loops = [asyncio.create_task(self._loop(i)) for i in range(self.cfg.connections)]
            await stop.wait()
            self._stopping.set()
            log.info("stopping: draining %d tunnel(s)", len(self._sessions))
            await asyncio.gather(
                *(s.drain(self.cfg.drain_timeout_s, "connector stopping") for s in self._sessions),
                return_exceptions=True,
            )
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, *self._retiring, return_exceptions=True)
        log.info("stopped")

    def sessions(self) -> tuple[Session, ...]:
        """The HTTP/2 sessions of the tunnels up now (for window checks)."""
        return tuple(self._sessions)

    def _label(self, index: int) -> str:
        return f"tunnel {index + 1}" if self.cfg.connections > 1 else "tunnel"

    async def _loop(self, index: int) -> None:
        cfg = self.cfg
        backoff = Backoff(
            base_s=cfg.reconnect_base_s,
            max_s=cfg.reconnect_max_s,
            healthy_reset_s=cfg.healthy_reset_s,
        )
        label = self._label(index)
        handover: SecureStream | None = None  # a tunnel already dialled on a better carrier
        while not self._stopping.is_set():
            if handover is None:
                try:
                    secure = await self._dial(cfg)
                except TunnelError as exc:
                    delay = backoff.next_delay()
                    log.warning("%s: cannot connect: %s; retrying in %.1fs", label, exc, delay)
                    await self._pause(delay)
                    continue
            else:
                secure, handover = handover, None
            log.info("%s: connected to %s, waiting for the gateway", label, secure.description)
            backoff.up(time.monotonic())
            reason, handover = await self._serve(secure, label)
            backoff.down(time.monotonic())
            if self._stopping.is_set():
                if handover is not None:
                    await handover.aclose()
                return
            if handover is not None:
                continue
            delay = backoff.next_delay()
            log.warning("%s lost: %s; reconnecting in %.1fs", label, reason, delay)
            await self._pause(delay)

    async def _pause(self, delay_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()

    async def _serve(self, secure: SecureStream, label: str) -> tuple[str, SecureStream | None]:
        """Serve one tunnel until it ends: ``(why, None)``; or until a better carrier took over:
        ``("moved", the new tunnel)``, the old one then draining in the background."""

        async def handle(stream: Stream) -> None:
            await self._handle(stream, secure, label)

        session = Session(
            secure, client_side=False, settings=self._settings, on_request=handle, name=label
        )
        self._sessions.add(session)
        run = asyncio.create_task(session.run())
        watcher = None
        if self._better is not None:
            watcher = asyncio.create_task(self._dial_better(self._better, label))
        try:
            await asyncio.wait([t for t in (run, watcher) if t], return_when=FIRST_COMPLETED)
        except asyncio.CancelledError:
            run.cancel()  # the connector is stopping: the session goes with us
            if watcher is not None:
                watcher.cancel()
            raise
        if watcher is not None and not watcher.done():
            watcher.cancel()
        elif watcher is not None:
            better, name = watcher.result()
            if not run.done():
                self._retire(session, run, name)
                return "moved", better
            await better.aclose()
        self._sessions.discard(session)
        return _why_it_ended(session, run), None

    async def _dial_better(self, better: BetterWatch, label: str) -> tuple[SecureStream, str]:
        """Wait for a better carrier, then dial the new tunnel before the old one goes."""
        while True:
            try:
                name = await better(self.cfg)
            except Exception as exc:  # a broken watch must not end the tunnel
                log.warning("%s: cannot look for a better carrier: %s", label, exc)
                await asyncio.Event().wait()  # until the tunnel ends and cancels us
            log.info("%s: %s is available; moving the tunnel to it", label, name)
            try:
                return await self._dial(self.cfg), name
            except TunnelError as exc:
                log.warning("%s: cannot move to %s: %s; staying", label, name, exc)

    def _retire(self, session: Session, run: asyncio.Task[str], name: str) -> None:
        """Drain the tunnel left behind: the gateway sends it nothing new (GOAWAY) and the
        requests in flight on it finish (up to the longest upstream timeout)."""
        limit_s = max(
            [self.cfg.drain_timeout_s, *(u.timeout_s for u in self.cfg.upstreams.values())]
        )

        async def retire() -> None:
            try:
                await session.drain(limit_s, f"moving to {name}")
                await run
            finally:
                self._sessions.discard(session)

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _handle(self, stream: Stream, secure: SecureStream, label: str) -> None:
        head = dict(stream.headers or [])
        method, path = head.get(":method", ""), head.get(":path", "")
        upstream = head.get(":authority", "")
        if path == HELLO_PATH:
            log.info("%s up to %s", label, secure.description)
            await respond(stream, 200, hello_body(self.cfg.upstreams))
            return
        refused = refusal(self.cfg.upstreams, upstream, method, path)
        if refused is not None:
            log.warning("refused %r %r for upstream %r: %s", method, path, upstream, refused.reason)
            body = openai_error(
                f"refused by the connector: {refused.reason}", "permission_error", "not_allowed"
            )
            await respond(stream, refused.status, body)
            return
        await self._relay.forward(stream, self.cfg.upstreams[upstream], method, path)


def _why_it_ended(session: Session, run: asyncio.Task[str]) -> str:
    refused = session.peer_goaway_data.decode("utf-8", "replace")
    if refused.startswith("refused: "):
        return f"the gateway refused this connector: {refused.removeprefix('refused: ')}"
    return "stopped" if run.cancelled() else run.result()
