"""Hypercorn's HTTP/2 stream buffer, made to hold the app back while the client's window is shut.

``hypercorn.protocol.h2.StreamBuffer`` (0.18.0, the latest release) pauses the app's ``send``
once 32 KiB wait for the client, and its ``pop`` lets the app go on whenever the piece it *took*
is under the low-water mark. When the client grants no flow-control credit the sender takes zero
bytes, which is under the mark, so every ``send`` goes through and the buffer grows by the whole
answer: a client that reads nothing made the gateway hold a 25 MB stream in memory, and the
upstream ran at full speed (``tests/integration/test_gateway_exchange_end.py``). The ``pop``
installed here lets the app go on by what is *left* in the buffer, which is what the marks mean
(RFC 9113 section 5.2: the receiver's window is the sender's limit).
"""

from __future__ import annotations

import logging
from typing import Any

from hypercorn.asyncio.worker_context import EventWrapper
from hypercorn.protocol import h2 as hypercorn_h2

log = logging.getLogger("gateway.hypercorn")
_installed = False


async def _pop(self: Any, max_length: int) -> bytes:
    """As Hypercorn's, except that the writer resumes on the bytes left, not those taken."""
    length = min(len(self.buffer), max_length)
    data = bytes(self.buffer[:length])
    del self.buffer[:length]
    if len(self.buffer) < hypercorn_h2.BUFFER_LOW_WATER:
        await self._paused.set()
    if not self.buffer:
        await self._is_empty.set()
    return data


def install() -> bool:
    """Patch ``StreamBuffer.pop`` once; False (and a warning) if Hypercorn's changed shape."""
    global _installed  # noqa: PLW0603 (one process-wide patch, installed once)
    if _installed:
        return True
    buffer_class = getattr(hypercorn_h2, "StreamBuffer", None)
    fields = ("buffer", "_paused", "_is_empty")
    if buffer_class is None or not hasattr(hypercorn_h2, "BUFFER_LOW_WATER"):
        log.warning("hypercorn's HTTP/2 stream buffer changed: HTTP/2 backpressure not patched")
        return False
    probe = buffer_class(EventWrapper)
    if not all(hasattr(probe, name) for name in fields):
        log.warning("hypercorn's HTTP/2 stream buffer changed: HTTP/2 backpressure not patched")
        return False
    setattr(buffer_class, "pop", _pop)  # noqa: B010 (mypy refuses assigning to a method)
    _installed = True
    return True
