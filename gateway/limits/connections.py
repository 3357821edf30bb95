"""Connections per source address on the public listeners, counted where Hypercorn accepts them.

Hypercorn has no limit of its own. :class:`AddressLimit` is the pure counter; :func:`install`
makes Hypercorn's asyncio worker build every connection with :class:`LimitedTCPServer`, which
asks the limit of its listener's config (:class:`LimitedConfig`; other configs: no limit) before
serving the connection, and closes it at once when its address already holds ``limit``. On the
TLS port that is after the handshake (asyncio does it before the connection is handed over),
which ``[server] header_timeout_s`` bounds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import hypercorn.asyncio.run as hypercorn_run
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.config import Config as HypercornConfig

from gateway.client_address import Network, in_networks

log = logging.getLogger("gateway.connlimit")


class AddressLimit:
    """At most ``limit`` open connections per source address (0: no limit); addresses in
    ``exempt`` (trusted proxies: every client behind them shares their address) are not
    counted."""

    def __init__(self, limit: int, exempt: Sequence[Network] = ()) -> None:
        self.limit = limit
        self.exempt = tuple(exempt)
        self.open: dict[str, int] = {}
        self.refused = 0

    def acquire(self, address: str) -> bool:
        """Count a new connection from ``address``; False (not counted) when it is over."""
        if self.limit <= 0 or self._exempt(address):
            return True
        count = self.open.get(address, 0)
        if count >= self.limit:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:  # a flood logs a line, not one each
                log.warning(
                    "refused a connection from %s: it holds %d ([server] max_connections_per_ip)"
                    " (%d refused so far)",
                    address, count, self.refused,
                )  # fmt: skip
            return False
        self.open[address] = count + 1
        return True

    def release(self, address: str) -> None:
        if self.limit <= 0 or self._exempt(address):
            return
        count = self.open.get(address, 0) - 1
        if count > 0:
            self.open[address] = count
        else:
            self.open.pop(address, None)

    def _exempt(self, address: str) -> bool:
        return in_networks(address, self.exempt)


class LimitedConfig(HypercornConfig):
    """A Hypercorn config that carries its listener's :class:`AddressLimit`."""

    address_limit: AddressLimit | None = None


class LimitedTCPServer(TCPServer):
    """Hypercorn's connection, refused at once when its address is over the limit."""

    async def run(self) -> None:
        limit: AddressLimit | None = getattr(self.config, "address_limit", None)
        if limit is None:
            await super().run()
            return
        peer = self.writer.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        if not limit.acquire(address):
            self.writer.transport.abort()  # no answer: it costs the least
            return
        try:
            await super().run()
        finally:
            limit.release(address)


def install() -> None:
    """Make Hypercorn's asyncio worker use :class:`LimitedTCPServer` (idempotent). Hypercorn
    (0.17, 0.18) builds each connection as ``TCPServer(...)`` looked up in its ``run`` module."""
    run: Any = hypercorn_run
    if run.TCPServer is not LimitedTCPServer:
        if run.TCPServer is not TCPServer:
            raise RuntimeError("hypercorn.asyncio.run.TCPServer is not Hypercorn's own")
        run.TCPServer = LimitedTCPServer
