"""The stand-in LLM's pure helpers (no sockets)."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

from openai.types.responses import Response

from tests.support.standin_llm import (
    BULK_BLOCK_SIZE,
    Controls,
    bulk_bytes,
    bulk_sha256,
    count_words,
    embedding_inputs,
    embedding_vector,
    encode_base64_floats,
    error_body,
    prompt_tokens_for,
    response_object,
    response_usage,
    sse,
)
from tests.support.standin_llm.wire import StopWatch


def test_count_words_walks_messages_and_parts() -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
    ]
    assert count_words(messages) == 5
    assert count_words([1, 2, 3]) == 3


def test_prompt_tokens_per_route_never_zero() -> None:
    assert prompt_tokens_for("/v1/chat/completions", {"messages": []}) == 1
    assert prompt_tokens_for("/v1/completions", {"prompt": "a b c"}) == 3
    assert prompt_tokens_for("/v1/embeddings", {"input": ["a", "b c"]}) == 3
    assert prompt_tokens_for("/v1/responses", {"input": "a b", "instructions": "c"}) == 3


def test_controls_headers_then_body() -> None:
    base = Controls()
    merged = base.merged(
        {"x-standin-chunks": "9", "x-standin-pace-ms": "2.5", "x-standin-timestamps": "1"},
        {"standin": {"chunks": 4, "bogus": 1}},
    )
    assert (merged.chunks, merged.pace_ms, merged.timestamps) == (4, 2.5, True)
    assert base.merged({}, {}) == base


def test_controls_pieces() -> None:
    assert Controls(reply="a b c").count() == 3
    assert [Controls(reply="a b c").piece(i) for i in range(3)] == ["a ", "b ", "c"]
    assert Controls().piece(0) == "Hello "
    assert Controls(timestamps=True).piece(3).startswith("w3@t=")


def test_embeddings_are_deterministic_and_float32_exact() -> None:
    vector = embedding_vector("hello", 40)
    assert vector == embedding_vector("hello", 40)
    assert vector != embedding_vector("hello!", 40)
    assert all(-1 <= v < 1 for v in vector)
    decoded = struct.unpack("<40f", base64.b64decode(encode_base64_floats(vector)))
    assert list(decoded) == vector
    assert embedding_inputs("x") == ["x"]
    assert embedding_inputs([1, 2]) == ["[1, 2]"]
    assert len(embedding_inputs(["a", "b"])) == 2


def test_bulk_bytes_are_deterministic() -> None:
    n = 3 * BULK_BLOCK_SIZE + 11
    data = bulk_bytes(n)
    assert len(data) == n
    assert hashlib.sha256(data).hexdigest() == bulk_sha256(n)
    assert bulk_bytes(0) == b""


def test_sse_and_error_shapes() -> None:
    assert sse("[DONE]") == b"data: [DONE]\n\n"
    framed = sse({"a": 1}, event="response.created")
    assert framed == b'event: response.created\ndata: {"a":1}\n\n'
    err = error_body(429, "slow down")["error"]
    assert err["type"] == err["code"] == "rate_limit_exceeded"
    assert json.loads(json.dumps(error_body(500, "x")))["error"]["type"] == "server_error"


def test_response_object_validates_as_the_sdk_model() -> None:
    body = {"model": "m", "input": "hi", "instructions": "be brief"}
    obj = response_object(body, "m", "resp_abc", "completed", "hello", response_usage(2, 3))
    parsed = Response.model_validate(obj)
    assert parsed.output_text == "hello"
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == 5
    assert Response.model_validate(response_object(body, "m", "resp_x", "in_progress", "", None))


def test_stop_watch_cuts_at_the_first_stop_string_even_across_pieces() -> None:
    watch = StopWatch(("from", "LLM"))
    assert [watch.take(p) for p in ("Hello ", "fr", "om the", " x")] == ["Hello ", "fr", "", ""]
    assert (watch.matched, watch.pieces) == ("from", 3)
    plain = StopWatch(())
    assert plain.take("x" * 100) == "x" * 100
    assert plain.matched is None
    late = StopWatch(("the",))
    assert [late.take(p) for p in ("Hello from ", "the stand-in")] == ["Hello from ", ""]
    assert late.matched == "the"
