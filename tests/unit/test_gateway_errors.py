"""OpenAI's error shape, the exception tree, and its one mapping to an answer."""

from __future__ import annotations

import json

from gateway.api.answer import error_answer, error_body, sse_error_event
from gateway.errors import (
    ApiError,
    AuthError,
    ConfigError,
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    TunnelUnavailableError,
    UpstreamFailedError,
)


def test_error_body_shape() -> None:
    assert error_body("m", "invalid_request_error", "model", "c") == {
        "error": {"message": "m", "type": "invalid_request_error", "param": "model", "code": "c"}
    }


def test_rate_limited_answer() -> None:
    answer = error_answer(RateLimitedError("slow down", 1.6, {"x-ratelimit-limit-requests": "1"}))
    assert answer.status == 429
    headers = dict(answer.headers)
    assert headers["retry-after"] == "2"
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["content-type"] == "application/json"
    assert isinstance(answer.body, bytes)
    error = json.loads(answer.body)["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")


def test_tree_statuses_and_codes() -> None:
    cases = [
        (InvalidRequestError("bad", param="messages"), 400, "invalid_request_error", None),
        (AuthError("no key"), 401, "invalid_request_error", "invalid_api_key"),
        (ModelNotFoundError("x"), 404, "invalid_request_error", "model_not_found"),
        (PayloadTooLargeError(10), 413, "invalid_request_error", "request_too_large"),
        (TunnelUnavailableError("none"), 503, "server_error", "tunnel_unavailable"),
        (UpstreamFailedError("gone"), 502, "server_error", "upstream_error"),
    ]
    for exc, status, kind, code in cases:
        assert isinstance(exc, GatewayError)
        answer = error_answer(exc, {"x-extra": "1"})
        assert answer.status == status
        assert dict(answer.headers)["x-extra"] == "1"
        assert isinstance(answer.body, bytes)
        error = json.loads(answer.body)["error"]
        assert (error["type"], error["code"]) == (kind, code)


def test_a_config_error_is_not_an_http_error() -> None:
    assert isinstance(ConfigError("server.listen: x"), GatewayError)
    assert not isinstance(ConfigError("server.listen: x"), ApiError)


def test_sse_error_event() -> None:
    event = sse_error_event(UpstreamFailedError("lost"))
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert json.loads(event[6:])["error"]["code"] == "upstream_error"
