"""Hypercorn's answer to an HTTP/1.1 request it cannot parse, as OpenAI's error JSON.

Hypercorn (0.18.0) answers a request head that h11 refuses (a header without a colon, a head
over ``h11_max_incomplete_size``) itself, before any app runs, with a bare ``400`` or ``431`` and
an empty body: a client shows a status and nothing to go on. The ``_send_error_response``
installed here sends the same status with a body that names the problem, as every other error
of the gateway does (OpenAI's shape: the request's route is unknown, as it could not be read).
"""

from __future__ import annotations

import json
import logging
from itertools import chain
from typing import Any, Final

import h11
from hypercorn.protocol import h11 as hypercorn_h11

from gateway.api.answer import error_body

log = logging.getLogger("gateway.hypercorn")
MESSAGES: Final = {
    400: "The request is not valid HTTP/1.1 and could not be read (a malformed request line or "
    "header).",
    431: "The request's header section is too large (at most 16 KiB on HTTP/1.1).",
}
_installed = False


def error_json(status: int) -> bytes:
    message = MESSAGES.get(status, f"The request could not be read (HTTP {status}).")
    return json.dumps(error_body(message, "invalid_request_error", None, None)).encode()


async def _send_error_response(self: Any, status_code: int) -> None:
    """As Hypercorn's, with a JSON body (and its length) instead of an empty one."""
    body = error_json(status_code)
    own = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers = list(chain(own, self.config.response_headers("h11")))
    await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


def install() -> bool:
    """Patch ``H11Protocol._send_error_response`` once; False (and a warning) if Hypercorn's
    changed shape (its empty answers then stay)."""
    global _installed  # noqa: PLW0603 (one process-wide patch, installed once)
    if _installed:
        return True
    protocol = getattr(hypercorn_h11, "H11Protocol", None)
    if protocol is None or not all(
        callable(getattr(protocol, name, None))
        for name in ("_send_error_response", "_send_h11_event")
    ):
        log.warning("hypercorn's HTTP/1.1 protocol changed: its parse errors keep empty bodies")
        return False
    setattr(protocol, "_send_error_response", _send_error_response)  # noqa: B010
    _installed = True
    return True
