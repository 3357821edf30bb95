"""The gateway's answer type, and the one mapping of an error to what the client is told.

Everything in the core that answers (the route handlers, the forwarder, the model listing)
returns an :class:`Answer`: status, headers, and a body that is either whole (``bytes``) or an
async iterator of pieces sent as they come. Only the ASGI adapter (:mod:`gateway.api.asgi`) and
the Quart app's error handlers turn one into messages for a server. (hypercorn's ``protocol/``
never imports an app framework either.)

:func:`error_answer` is the only place an :class:`~gateway.errors.ApiError` becomes an answer;
its ``shape`` says how the error object is written (OpenAI's today; Anthropic's routes will pass
theirs). Every error a client sees in OpenAI's shape is
``{"error": {"message", "type", "param", "code"}}`` with OpenAI's own ``type``/``code`` values.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Final

from gateway.api.messages_translate import error_type
from gateway.errors import ApiError

Body = bytes | AsyncIterator[bytes]
Headers = tuple[tuple[str, str], ...]
ErrorShape = Callable[[ApiError], bytes]
JSON_TYPE: Final = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer: header names in lower case; ``body`` whole, or pieces to send in turn."""

    status: int
    headers: Headers
    body: Body = b""

    def with_headers(self, extra: Mapping[str, str]) -> Answer:
        """The same answer with ``extra`` headers appended (the ``x-ratelimit-*`` state)."""
        if not extra:
            return self
        return Answer(self.status, (*self.headers, *extra.items()), self.body)


def bytes_answer(status: int, data: bytes, content_type: str = JSON_TYPE) -> Answer:
    return Answer(status, (("content-type", content_type),), data)


def json_answer(obj: object, status: int = 200) -> Answer:
    """``obj`` as compact JSON ending in a newline (what Quart's ``jsonify`` wrote)."""
    data = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
    return bytes_answer(status, data)


# --------------------------------------------------------------------------- errors


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    """The JSON object OpenAI sends for an error."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_shape(exc: ApiError) -> bytes:
    """``exc`` written as OpenAI's error object."""
    return json.dumps(error_body(exc.message, exc.error_type, exc.param, exc.code)).encode()


def anthropic_shape(exc: ApiError) -> bytes:
    """``exc`` written as Anthropic's error object, with Anthropic's ``type`` for its status."""
    kind = error_type(exc.status)
    return json.dumps({"type": "error", "error": {"type": kind, "message": exc.message}}).encode()


def error_answer(
    exc: ApiError, headers: Mapping[str, str] | None = None, shape: ErrorShape = openai_shape
) -> Answer:
    """What the client is told for ``exc``: its status, the error in ``shape``, the error's own
    headers (a 429's ``retry-after``), then ``headers``."""
    answer = bytes_answer(exc.status, shape(exc)).with_headers(exc.headers)
    return answer.with_headers(headers or {})


def sse_error_event(exc: ApiError, shape: ErrorShape = openai_shape) -> bytes:
    """An SSE event carrying an error: how a stream that already started reports a failure.
    The OpenAI SDKs raise ``APIError`` on a ``data`` object with an ``error`` key; Anthropic's
    streams name the event (``event: error``), as its SDKs expect."""
    head = b"event: error\n" if shape is anthropic_shape else b""
    return head + b"data: " + shape(exc) + b"\n\n"
