"""The request body checks: each route's required field and its type, NaN refused."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.api.request_body import (
    LARGE_BODY_BYTES,
    MAX_JSON_DEPTH,
    json_kind,
    parse_body,
    parse_body_async,
)
from gateway.errors import InvalidRequestError

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


def nested(depth: int) -> bytes:
    """A chat body whose ``messages[0].content`` nests ``depth`` levels in all."""
    inner = b"[" * (depth - 3) + b"]" * (depth - 3)
    return b'{"model":"m","messages":[{"role":"user","content":' + inner + b"}]}"


def test_deeply_nested_body_is_refused_naming_the_limit() -> None:
    assert parse_body(nested(MAX_JSON_DEPTH), CHAT)["model"] == "m"
    for depth in (MAX_JSON_DEPTH + 1, 900, 100_000):  # 100 000: past the recursion limit
        with pytest.raises(InvalidRequestError) as info:
            parse_body(nested(depth), CHAT)
        assert info.value.message == (
            f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels, the gateway's limit."
        )
        assert info.value.code == "json_too_deep"


async def test_large_bodies_are_parsed_off_the_loop_one_at_a_time() -> None:
    """Issue 11 (4): json.loads holds the GIL, so a large parse in a thread still stops the loop
    while it runs; what the thread and the one-at-a-time cap buy is that the loop runs between
    large parses. Here a tiny task (a /healthz) is done before the last of several parses."""
    part = [{"type": "text", "text": "w"}]
    messages = [{"role": "user", "content": part} for _ in range(30_000)]
    big = raw({"model": "m", "messages": messages})
    assert len(big) > 4 * LARGE_BODY_BYTES
    done: list[str] = []

    async def parse(i: int) -> None:
        body = await parse_body_async(big, CHAT)
        assert len(body["messages"]) == 30_000
        done.append(f"parse{i}")

    async def healthz() -> None:
        await asyncio.sleep(0)
        done.append("healthz")

    await asyncio.gather(*(parse(i) for i in range(4)), healthz())
    assert done.index("healthz") < 3, done
    small = await parse_body_async(raw({"model": "m", "messages": MESSAGES}), CHAT)
    assert small["messages"] == MESSAGES


def test_json_kind() -> None:
    assert [json_kind(v) for v in ("", 1, 1.5, True, None, [], {})] == [
        "a string", "a number", "a number", "a boolean", "null", "an array", "an object",
    ]  # fmt: skip
