"""The client's address: trusted proxy networks, ``X-Forwarded-For``, and the ASGI middleware
that applies them (:class:`ForwardedFor`, in front of every app, so the tunnel's WebSocket
endpoint sees the client too)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ASGIApp = Callable[..., Awaitable[None]]


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest
    address in ``X-Forwarded-For`` (read right to left) that is not itself a trusted proxy."""
    if not forwarded_for or not in_networks(peer, trusted):
        return peer
    nearest = peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return nearest  # garbage ("unknown", a port...): stop at the last address we trust
        if not in_networks(hop, trusted):
            return hop
        nearest = hop
    return nearest


def in_networks(address: str, networks: Sequence[Network]) -> bool:
    """Whether ``address`` is an IP address inside one of ``networks``."""
    if not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class ForwardedFor:
    """ASGI middleware: rewrites ``scope["client"]`` from ``X-Forwarded-For`` for trusted peers
    (the original peer stays in ``scope["gateway.peer"]``)."""

    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.trusted and scope["type"] in ("http", "websocket") and scope.get("client"):
            values = [v for k, v in scope["headers"] if k == b"x-forwarded-for"]
            if values:
                peer, port = scope["client"]
                header = b",".join(values).decode("latin-1")
                address = client_address(peer, header, self.trusted)
                if address != peer:
                    scope = {**scope, "client": (address, 0), "gateway.peer": (peer, port)}
        await self.app(scope, receive, send)
