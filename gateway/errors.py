"""The gateway's exceptions: one tree, by cause, carrying data.

``ApiError`` and its subclasses are what a client is told: each carries the HTTP ``status`` and
OpenAI's ``type`` / ``code`` / ``param`` (so the official SDKs map it to their exception classes,
``BadRequestError``, ``NotFoundError``...) and any headers of its own (a 429's ``retry-after``).
They become an answer in one place, :func:`gateway.api.answer.error_answer`, at the boundary.
The other branches never reach a client as such: a bad config (the CLI's exit code 2), a key
store refusal, a JWT refused (the authenticator turns it into :class:`AuthError`), an answer cut
off or a client gone (the adapter stops sending).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal


class GatewayError(Exception):
    """Base class: anything the gateway itself refuses or fails; ``message`` says what."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- not HTTP


class ConfigError(GatewayError):
    """``gateway.toml`` (or a file it names) is wrong; the message names the key
    (``server.listen: ...``)."""


class UsageError(GatewayError):
    """A command-line mistake (``gateway keys ...``): one line, exit code 2."""


class KeyStoreError(GatewayError):
    """A key operation that cannot be done (duplicate name, unknown name)."""


class TokenError(GatewayError):
    """A JWT refused; ``reason`` is safe to show to the client (it never echoes the token)."""

    @property
    def reason(self) -> str:
        return self.message


class AnswerCutError(GatewayError):
    """The upstream broke off a JSON answer already under way: the adapter stops sending, so
    the connection is closed and the client cannot take a truncated answer for a whole one."""

    def __init__(self, message: str = "the answer broke off") -> None:
        super().__init__(message)


class ClientGoneError(GatewayError):
    """The client went away before its request was complete."""

    def __init__(self, message: str = "the client went away") -> None:
        super().__init__(message)


# --------------------------------------------------------------------------- what a client sees


class ApiError(GatewayError):
    """A refusal or failure answered to the client: ``status``, OpenAI's ``error_type`` and
    ``code``, the ``param`` at fault, and ``headers`` of its own."""

    status = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.param = param
        self.headers: Mapping[str, str] = headers or {}


class InvalidRequestError(ApiError):
    """400: the body is not JSON, or a required field is missing or of the wrong type."""

    status = 400
    error_type = "invalid_request_error"


class TranslationError(InvalidRequestError):
    """400: a Messages request that cannot be expressed as a chat completions request."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message, param=param)


class AuthError(ApiError):
    """401: no key, a bad key, a refused token; ``message`` is safe to return (never the
    token)."""

    status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class RouteNotFoundError(ApiError):
    """404: a path the gateway does not serve (OpenAI's words: ``Invalid URL (POST /x)``)."""

    status = 404
    error_type = "invalid_request_error"

    def __init__(self, target: str) -> None:
        super().__init__(f"Invalid URL ({target})")


class ModelNotFoundError(ApiError):
    """404: unknown model, or one the caller may not use (OpenAI does not tell them apart)."""

    status = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str, message: str | None = None) -> None:
        default = f"The model `{model}` does not exist or you do not have access to it."
        super().__init__(message or default, param="model")
        self.model = model


class MethodNotAllowedError(ApiError):
    """405: a route the gateway serves, with another method."""

    status = 405
    error_type = "invalid_request_error"

    def __init__(self, target: str) -> None:
        super().__init__(f"Invalid method for URL ({target})")


class RequestTimeoutError(ApiError):
    """408: the request body did not arrive in time."""

    status = 408
    error_type = "invalid_request_error"


class PayloadTooLargeError(ApiError):
    """413: the request body is over ``[server] max_body_bytes``."""

    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is too large: the limit is {limit} bytes.")
        self.limit = limit


class HttpError(ApiError):
    """Any other 4xx the web server or framework decided (a malformed request)."""

    error_type = "invalid_request_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UpstreamAnswerError(ApiError):
    """An upstream's own error, passed on in the client's shape (after a stream's 200)."""

    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class RateLimitedError(ApiError):
    """429: ``kind`` says which limit; ``headers`` carry ``retry-after`` and the
    ``x-ratelimit-*`` state. OpenAI's error ``type`` is ``requests`` or ``tokens``."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        retry_after_s: float,
        headers: Mapping[str, str],
        kind: Literal["requests", "tokens", "concurrency"] = "requests",
    ) -> None:
        with_retry = {**headers}
        with_retry.setdefault("retry-after", str(max(1, round(retry_after_s))))
        super().__init__(message, headers=with_retry)
        self.retry_after_s = retry_after_s
        self.kind = kind
        self.error_type = "tokens" if kind == "tokens" else "requests"


class InternalError(ApiError):
    """500: the gateway failed (the cause is in its log)."""

    def __init__(self, message: str = "The gateway failed to handle the request.") -> None:
        super().__init__(message)


class UpstreamFailedError(ApiError):
    """502: the tunnel or the upstream failed while handling the request."""

    status = 502
    code = "upstream_error"


class TokensUncountableError(ApiError):
    """404: ``count_tokens`` for a model in translate mode whose upstream has no ``/tokenize``.
    A 4xx, not a 5xx: nothing is wrong that a retry would mend (the SDKs retry a 5xx)."""

    status = 404
    error_type = "invalid_request_error"
    code = "not_supported"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` cannot count tokens: the gateway translates its Messages"
            " requests to chat completions, and its upstream has no /tokenize endpoint"
            " (vLLM's) to count them with."
        )


class TunnelUnavailableError(ApiError):
    """503: no connector is serving the upstream the model lives on."""

    status = 503
    code = "tunnel_unavailable"


def upstream_failed_message(request_id: str) -> str:
    """What a client is told when the tunnel or the upstream failed: the cause (an exception's
    text, a connector's error naming an office address) goes to the gateway's log only."""
    return f"The upstream failed: see the gateway's log, request id {request_id}."
