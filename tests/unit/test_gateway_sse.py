"""SSE splitting, model rewriting and usage extraction, bytes in and bytes out."""

from __future__ import annotations

import json

import pytest

from gateway.api.sse import (
    SseRewriter,
    Usage,
    event_data,
    has_real_usage,
    model_replacements,
    rewrite_json_body,
    usage_from,
)

UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
PAIRS = model_replacements(UP, "qwen3-coder")


def chunk(content: str, *, usage: object = None, choices: bool = True) -> bytes:
    obj: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "model": UP}
    obj["choices"] = [{"index": 0, "delta": {"content": content}}] if choices else []
    obj["usage"] = usage
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


USAGE_CHUNK = chunk("", usage={"prompt_tokens": 7, "completion_tokens": 3}, choices=False)
STREAM = chunk("Hel") + chunk("lo") + USAGE_CHUNK + b"data: [DONE]\n\n"


def run(rewriter: SseRewriter, pieces: list[bytes]) -> bytes:
    return b"".join(rewriter.feed(p) for p in pieces) + rewriter.flush()


def test_model_is_rewritten_and_usage_taken() -> None:
    r = SseRewriter(PAIRS)
    out = run(r, [STREAM])
    assert UP.encode() not in out
    assert out.count(b'"model":"qwen3-coder"') == 3
    assert r.usage == Usage(7, 3)
    assert out.endswith(b"data: [DONE]\n\n")


def test_usage_chunk_dropped_when_client_did_not_ask() -> None:
    r = SseRewriter(PAIRS, drop_usage_chunk=True)
    out = run(r, [STREAM])
    assert b'"prompt_tokens"' not in out
    assert out == (chunk("Hel") + chunk("lo") + b"data: [DONE]\n\n").replace(
        b'"model":"' + UP.encode() + b'"', b'"model":"qwen3-coder"'
    )
    assert r.usage == Usage(7, 3)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 50])
def test_chunks_split_across_reads(size: int) -> None:
    r = SseRewriter(PAIRS, drop_usage_chunk=True)
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    out = run(r, pieces)
    whole = SseRewriter(PAIRS, drop_usage_chunk=True)
    assert out == run(whole, [STREAM])
    assert r.usage == Usage(7, 3)


def test_only_complete_events_are_sent() -> None:
    r = SseRewriter(PAIRS)
    first = chunk("a")
    assert r.feed(first[:10]) == b""
    assert r.feed(first[10:]) == first.replace(UP.encode(), b"qwen3-coder")


def test_unchanged_chunks_pass_byte_for_byte() -> None:
    r = SseRewriter()
    data = b'data: {"x": 1.50, "model":"m", "usage":null}\n\n'
    assert r.feed(data) == data
    assert r.usage is None


def test_crlf_events() -> None:
    data = STREAM.replace(b"\n\n", b"\r\n\r\n")
    r = SseRewriter(PAIRS, drop_usage_chunk=True)
    out = run(r, [data[:40], data[40:]])
    assert b"prompt_tokens" not in out
    assert out.count(b"\r\n\r\n") == 3
    assert r.usage == Usage(7, 3)


def test_model_with_space_and_escaped_slash() -> None:
    data = b'data: {"model": "Qwen\\/Qwen3-Coder-30B-A3B-Instruct"}\n\n'
    assert SseRewriter(PAIRS).feed(data) == b'data: {"model": "qwen3-coder"}\n\n'


def test_text_mentioning_model_is_not_rewritten() -> None:
    content = '"model":"' + UP + '"'
    data = chunk(content)
    out = SseRewriter(PAIRS).feed(data)
    assert json.loads(out[6:])["choices"][0]["delta"]["content"] == content


def test_responses_stream_completed_event() -> None:
    created = {"type": "response.created", "response": {"model": UP, "usage": None}}
    done = {
        "type": "response.completed",
        "response": {"model": UP, "usage": {"input_tokens": 11, "output_tokens": 4}},
    }
    data = b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"  # type: ignore[attr-defined]
        for e in (created, done)
    )
    r = SseRewriter(PAIRS, drop_usage_chunk=False)
    out = run(r, [data])
    assert r.usage == Usage(11, 4)
    assert out.count(b"qwen3-coder") == 2


def test_usage_on_last_content_chunk_is_kept() -> None:
    data = chunk("end", usage={"prompt_tokens": 2, "completion_tokens": 1})
    r = SseRewriter(drop_usage_chunk=True)
    assert r.feed(data) == data
    assert r.usage == Usage(2, 1)


def test_incomplete_tail_is_flushed() -> None:
    r = SseRewriter()
    assert r.feed(b"data: x") == b""
    assert r.flush() == b"data: x"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}, Usage(3, 2)),
        ({"usage": {"prompt_tokens": 5, "total_tokens": 5}}, Usage(5, 0)),
        ({"usage": {"input_tokens": 9, "output_tokens": 1}}, Usage(9, 1)),
        ({"response": {"usage": {"input_tokens": 1, "output_tokens": 2}}}, Usage(1, 2)),
        ({"usage": None}, None),
        ({"usage": {"prompt_tokens": "x", "completion_tokens": True}}, Usage(0, 0)),
        ([1, 2], None),
    ],
)
def test_usage_from(obj: object, expected: Usage | None) -> None:
    assert usage_from(obj) == expected


def test_rewrite_json_body_keeps_unknown_fields_bytes() -> None:
    body = (
        b'{"id":"x","model":"' + UP.encode() + b'","choices":[{"logprobs":{"a":1.0e-5}}],'
        b'"system_fingerprint":"fp","usage":{"prompt_tokens":4,"completion_tokens":6}}'
    )
    out, usage = rewrite_json_body(body, PAIRS)
    assert usage == Usage(4, 6)
    assert out == body.replace(UP.encode(), b"qwen3-coder")
    assert rewrite_json_body(b"not json usage", ()) == (b"not json usage", None)


def test_helpers() -> None:
    assert event_data(b"event: x\ndata: a\ndata:b") == b"a\nb"
    assert event_data(b": comment") is None
    assert not has_real_usage(b'{"usage":null}')
    assert has_real_usage(b'{"usage":{}}')
    assert model_replacements("same", "same") == ()


def anthropic_event(kind: str, payload: dict[str, object]) -> bytes:
    data = json.dumps({"type": kind, **payload}, separators=(",", ":")).encode()
    return f"event: {kind}\n".encode() + b"data: " + data + b"\n\n"


MESSAGE_START = anthropic_event(
    "message_start",
    {"message": {"id": "m", "model": UP, "usage": {"input_tokens": 11, "output_tokens": 1}}},
)
DELTA = anthropic_event(
    "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "hi"}}
)


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_anthropic_stream_usage_and_model(size: int) -> None:
    """Input tokens from message_start, output tokens from message_delta (which has none of
    the input), the upstream's model renamed inside message_start, nothing dropped."""
    stream = (
        MESSAGE_START
        + DELTA
        + anthropic_event("message_delta", {"delta": {}, "usage": {"output_tokens": 4}})
        + anthropic_event("message_stop", {})
    )
    r = SseRewriter(PAIRS)
    out = run(r, [stream[i : i + size] for i in range(0, len(stream), size)])
    assert r.usage == Usage(11, 4)
    assert b'"model":"qwen3-coder"' in out
    assert out == stream.replace(json.dumps(UP).encode(), b'"qwen3-coder"')


def test_anthropic_message_delta_with_input_tokens_wins() -> None:
    """vLLM's message_delta repeats input_tokens: its counts are taken as they are."""
    usage = {"input_tokens": 12, "output_tokens": 4}
    r = SseRewriter(PAIRS)
    run(r, [MESSAGE_START + anthropic_event("message_delta", {"delta": {}, "usage": usage})])
    assert r.usage == Usage(12, 4)


def test_anthropic_whole_answer_usage() -> None:
    body = json.dumps({"type": "message", "usage": {"input_tokens": 3, "output_tokens": 2}})
    assert rewrite_json_body(body.encode(), PAIRS)[1] == Usage(3, 2)
