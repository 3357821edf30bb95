"""OpenAI's error shape and the exception tree."""

from __future__ import annotations

import json

from gateway.errors import (
    GatewayError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    TunnelUnavailableError,
    UpstreamFailedError,
    error_body,
    openai_error,
    sse_error_event,
)


def test_error_body_shape() -> None:
    assert error_body("m", "invalid_request_error", "model", "c") == {
        "error": {"message": "m", "type": "invalid_request_error", "param": "model", "code": "c"}
    }


async def test_openai_error_response() -> None:
    resp = openai_error(
        429, "slow down", "requests", None, "rate_limit_exceeded", headers={"retry-after": "2"}
    )
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "2"
    assert resp.content_type == "application/json"
    assert json.loads(await resp.get_data())["error"]["code"] == "rate_limit_exceeded"


async def test_tree_statuses_and_codes() -> None:
    cases = [
        (InvalidRequestError("bad", param="messages"), 400, "invalid_request_error", None),
        (ModelNotFoundError("x"), 404, "invalid_request_error", "model_not_found"),
        (PayloadTooLargeError(10), 413, "invalid_request_error", "request_too_large"),
        (TunnelUnavailableError("none"), 503, "server_error", "tunnel_unavailable"),
        (UpstreamFailedError("gone"), 502, "server_error", "upstream_error"),
    ]
    for exc, status, kind, code in cases:
        assert isinstance(exc, GatewayError)
        resp = exc.to_response()
        assert resp.status_code == status
        error = json.loads(await resp.get_data())["error"]
        assert (error["type"], error["code"]) == (kind, code)


def test_sse_error_event() -> None:
    event = sse_error_event("lost", code="upstream_error")
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert json.loads(event[6:])["error"]["code"] == "upstream_error"
