"""The gateway's exceptions, and errors in OpenAI's shape.

Every error a client sees is ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's own
``type``/``code`` values, so that the official SDKs map it to their exception classes
(``BadRequestError``, ``NotFoundError``, ...). Library exceptions are mapped at the boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from quart import Response


class GatewayError(Exception):
    """Base class: anything the gateway itself refuses or fails, as the client will see it."""

    status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_response(self, headers: Mapping[str, str] | None = None) -> Response:
        return openai_error(
            self.status, self.message, self.error_type, self.param, self.code, headers=headers
        )


class ConfigError(GatewayError):
    """``gateway.toml`` is wrong; the message names the key (``server.listen: ...``)."""


class InvalidRequestError(GatewayError):
    """400: the body is not JSON, or a required field is missing or of the wrong type."""

    status = 400
    error_type = "invalid_request_error"


class ModelNotFoundError(GatewayError):
    """404: unknown model, or one the caller may not use (OpenAI does not tell them apart)."""

    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )
        self.model = model


class PayloadTooLargeError(GatewayError):
    """413: the request body is over ``[server] max_body_bytes``."""

    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is too large: the limit is {limit} bytes.")
        self.limit = limit


class TunnelUnavailableError(GatewayError):
    """503: no connector is serving the upstream the model lives on."""

    status = 503
    error_type = "server_error"
    code = "tunnel_unavailable"


class UpstreamFailedError(GatewayError):
    """502: the tunnel or the upstream failed while handling the request."""

    status = 502
    error_type = "server_error"
    code = "upstream_error"


def upstream_failed_message(request_id: str) -> str:
    """What a client is told when the tunnel or the upstream failed: the cause (an exception's
    text, a connector's error naming an office address) goes to the gateway's log only."""
    return f"The upstream failed: see the gateway's log, request id {request_id}."


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    """The JSON object OpenAI sends for an error."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_bytes(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> bytes:
    return json.dumps(error_body(message, error_type, param, code)).encode()


def sse_error_event(
    message: str, error_type: str = "server_error", code: str | None = None
) -> bytes:
    """An SSE event carrying an error: how a stream that already started reports a failure
    (the OpenAI SDKs raise ``APIError`` on a ``data`` object with an ``error`` key)."""
    return b"data: " + error_bytes(message, error_type, None, code) + b"\n\n"


def openai_error(
    status: int,
    message: str,
    type: str,  # the field is called "type" in OpenAI's error object
    param: str | None = None,
    code: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A Quart response with OpenAI's error shape."""
    response = Response(
        error_bytes(message, type, param, code), status=status, content_type="application/json"
    )
    if headers:
        response.headers.update(headers)
    return response
