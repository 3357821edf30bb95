"""The request body checks: each route's required field and its type, NaN refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequestError
from gateway.request_body import json_kind, parse_body

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("route", "body", "param", "code", "message"),
    [
        (CHAT, {"model": "m", "messages": "hi"}, "messages", "invalid_type",
         "Invalid type for 'messages': expected an array of objects, but got a string instead."),
        (CHAT, {"model": "m", "messages": {"role": "user"}}, "messages", "invalid_type",
         "but got an object instead"),
        (CHAT, {"model": "m", "messages": []}, "messages", "empty_array", "empty array"),
        (CHAT, {"model": "m", "messages": [MESSAGES[0], "hi"]}, "messages[1]", "invalid_type",
         "Invalid type for 'messages[1]': expected an object, but got a string instead."),
        (CHAT, {"model": "m", "messages": MESSAGES, "stream_options": "yes"}, "stream_options",
         "invalid_type", "expected an object, but got a string"),
        (CHAT, {"model": "m", "messages": MESSAGES, "stream": "true"}, "stream", "invalid_type",
         "expected a boolean"),
        (CHAT, {"model": True, "messages": MESSAGES}, "model", "invalid_type",
         "expected a string, but got a boolean instead"),
        ("/v1/completions", {"model": "m", "prompt": 3}, "prompt", "invalid_type",
         "Invalid type for 'prompt': expected a string or an array, but got a number instead."),
        ("/v1/completions", {"model": "m", "prompt": {}}, "prompt", "invalid_type", "an object"),
        ("/v1/embeddings", {"model": "m", "input": True}, "input", "invalid_type", "a boolean"),
        ("/v1/embeddings", {"model": "m"}, "input", "missing_required_parameter", "'input'"),
        ("/v1/responses", {"model": "m", "input": {"x": 1}}, "input", "invalid_type",
         "expected a string or an array"),
        ("/v1/responses", {"model": "m", "input": "hi", "stream": 1}, "stream", "invalid_type",
         "a boolean"),
    ],
)  # fmt: skip
def test_wrong_types_name_the_param(
    route: str, body: dict[str, Any], param: str, code: str, message: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_body(raw(body), route)
    assert (info.value.status, info.value.param, info.value.code) == (400, param, code)
    assert info.value.error_type == "invalid_request_error"
    assert message in info.value.message


@pytest.mark.parametrize(
    ("route", "body"),
    [
        (CHAT, {"model": "m", "messages": MESSAGES, "stream": True, "stream_options": None}),
        (CHAT, {"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": True}}),
        ("/v1/completions", {"model": "m", "prompt": "def f("}),
        ("/v1/completions", {"model": "m", "prompt": [1, 2, 3]}),
        ("/v1/embeddings", {"model": "m", "input": ["a", "b"]}),
        ("/v1/responses", {"model": "m"}),
        ("/v1/responses", {"model": "m", "input": [{"role": "user", "content": "hi"}]}),
    ],
)
def test_good_bodies_pass_unchanged(route: str, body: dict[str, Any]) -> None:
    assert parse_body(raw(body), route) == body


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(constant: str) -> None:
    data = b'{"model": "m", "messages": [{"role": "user"}], "temperature": ' + constant.encode()
    with pytest.raises(InvalidRequestError) as info:
        parse_body(data + b"}", CHAT)
    assert info.value.status == 400
    assert info.value.param is None
    assert "not valid JSON" in info.value.message


def test_deeply_nested_body_is_invalid_json_not_a_crash() -> None:
    with pytest.raises(InvalidRequestError, match="not valid JSON"):
        parse_body(b"[" * 100_000 + b"]" * 100_000, CHAT)


def test_json_kind() -> None:
    assert [json_kind(v) for v in ("", 1, 1.5, True, None, [], {})] == [
        "a string", "a number", "a number", "a boolean", "null", "an array", "an object",
    ]  # fmt: skip
