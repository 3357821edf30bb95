"""The connector's dialers, one per ``transport``, in one plain table.

A dialer opens a carrier and runs the mutual TLS on it, and returns the secure stream the HTTP/2
session runs on; a new carrier is one new dialer module and one row here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from tunnel.config import ConnectorConfig
from tunnel.dialers.auto import AutoDialer
from tunnel.dialers.tls import dial_tls
from tunnel.dialers.websocket import dial_websocket
from tunnel.errors import TunnelError
from tunnel.security.secure_stream import SecureStream

Dialer = Callable[[ConnectorConfig], Awaitable[SecureStream]]
#: ``dialer.better_available(cfg)`` when a dialer has it (``auto``): returns the name of a better
#: carrier once one answers; the connector then moves its tunnel there.
BetterWatch = Callable[[ConnectorConfig], Awaitable[str]]

#: ``transport`` -> dialer. ``auto`` is one ladder for the whole process: every tunnel of a
#: connector shares what it learnt about which carrier works.
DIALERS: Mapping[str, Dialer] = {
    "tls": dial_tls,
    "websocket": dial_websocket,
    "auto": AutoDialer(),
}


def dialer_for(transport: str) -> Dialer:
    """The dialer for ``transport`` (the config allows only the names above)."""
    try:
        return DIALERS[transport]
    except KeyError:
        raise TunnelError(f"transport {transport!r} is not available in this build") from None
