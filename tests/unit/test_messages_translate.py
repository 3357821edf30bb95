"""The Messages <-> chat completions translation, checked with Anthropic's own SDK as the reader.

The streams under ``tests/unit/data`` are written in the vendors' wire formats: a vLLM chat
completions stream and the Anthropic Messages stream that answers the same turn. Translating the
first must give what the SDK reads from the second (text, tool calls, stop reason, usage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.api.messages_stream import MessageSseTranslator, MessageStream
from gateway.api.messages_translate import (
    chat_error_to_message_error,
    chat_to_message,
    count_from_tokenize,
    error_type,
    messages_to_chat,
    tokenize_request,
)
from gateway.errors import TranslationError

DATA = Path(__file__).parent / "data"
UPSTREAM = "Qwen/Qwen3-Coder-30B-A3B-Instruct"


def sdk_read_stream(sse: bytes, **request: Any) -> anthropic.types.Message:
    """What the official SDK makes of ``sse`` as the answer to a streamed ``messages.create``."""

    def answer(_request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=sse, headers={"content-type": "text/event-stream"})

    client = anthropic.Anthropic(
        api_key="test",
        base_url="http://gateway.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    args: dict[str, Any] = {
        "model": "qwen3-coder",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "hi"}],
        **request,
    }
    with client.messages.stream(**args) as stream:
        return stream.get_final_message()


def translate(sse: bytes, *, cuts: list[int] | None = None, stops: tuple[str, ...] = ()) -> bytes:
    translator = MessageSseTranslator("qwen3-coder", stops)
    out = b""
    at = 0
    for cut in [*(cuts or []), len(sse)]:
        out += translator.feed(sse[at:cut])
        at = cut
    return out + translator.close()


def summary(message: anthropic.types.Message) -> dict[str, Any]:
    blocks: list[Any] = []
    for block in message.content:
        if block.type == "text":
            blocks.append(("text", block.text))
        elif block.type == "tool_use":
            blocks.append(("tool_use", block.name, block.input))
    return {
        "content": blocks,
        "stop_reason": message.stop_reason,
        "stop_sequence": message.stop_sequence,
        "output_tokens": message.usage.output_tokens,
    }


@pytest.mark.parametrize(
    ("chat", "messages", "stops"),
    [
        ("chat_tool_stream.sse", "messages_tool_stream.sse", ()),
        ("chat_text_stream.sse", "messages_text_stream.sse", ("4",)),
    ],
)
def test_translated_stream_reads_like_anthropics(
    chat: str, messages: str, stops: tuple[str, ...]
) -> None:
    translated = translate((DATA / chat).read_bytes(), stops=stops)
    ours = sdk_read_stream(translated)
    theirs = sdk_read_stream((DATA / messages).read_bytes())
    assert summary(ours) == summary(theirs)
    assert ours.model == "qwen3-coder"
    assert ours.id.startswith("msg_")


def test_event_order_is_anthropics() -> None:
    translated = translate((DATA / "chat_tool_stream.sse").read_bytes())
    names = [line[7:] for line in translated.decode().splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    final = json.loads(translated.decode().split("data: ")[-2].split("\n")[0])
    assert final["usage"] == {"input_tokens": 412, "output_tokens": 38}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=12))
def test_where_the_upstream_cuts_its_bytes_changes_nothing(cuts: list[int]) -> None:
    sse = (DATA / "chat_tool_stream.sse").read_bytes()
    whole = translate(sse)
    points = sorted({min(c, len(sse)) for c in cuts})
    assert translate(sse, cuts=points) == whole


def test_stream_without_usage_counts_deltas_and_closes_open_block() -> None:
    stream = MessageStream("a")
    events = stream.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    events += stream.closing_events()
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2][1]["usage"]["output_tokens"] == 1
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert stream.closing_events() == []


def test_upstream_error_mid_stream_becomes_an_error_event() -> None:
    stream = MessageStream("a")
    stream.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    events = stream.feed({"error": {"message": "out of memory", "type": "server_error"}})
    assert events == [
        ("error", {"type": "error", "error": {"type": "api_error", "message": "out of memory"}})
    ]
    assert stream.closing_events() == []


def test_max_tokens_stop_reason() -> None:
    stream = MessageStream("a")
    stream.feed({"id": "x", "choices": [{"index": 0, "delta": {"content": "a"}}]})
    stream.feed({"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    assert stream.closing_events()[-2][1]["delta"]["stop_reason"] == "max_tokens"


# --------------------------------------------------------------------------- requests

CLAUDE_CODE_LIKE = {
    "model": "qwen3-coder",
    "max_tokens": 32000,
    "stream": True,
    "temperature": 1,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "Be brief."},
    ],
    "metadata": {"user_id": "user_abc"},
    "thinking": {"type": "adaptive", "display": "omitted"},  # Claude Code 2.1's own fields
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "output_config": {"effort": "high"},
    "tools": [
        {
            "defer_loading": False,
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
        },
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["</done>"],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "list files"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Running ls."},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.py\nb.py"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"},
                },
                {"type": "text", "text": "and now?"},
            ],
        },
    ],
}


def test_claude_code_like_request_translates() -> None:
    chat = messages_to_chat(CLAUDE_CODE_LIKE, UPSTREAM)
    assert chat["model"] == UPSTREAM
    assert chat["max_tokens"] == 32000
    assert chat["temperature"] == 1
    assert chat["stop"] == ["</done>"]
    assert chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True}
    assert chat["user"] == "user_abc"
    assert not {"thinking", "context_management", "output_config", "metadata"} & set(chat)
    assert chat["tool_choice"] == "auto"
    assert chat["parallel_tool_calls"] is False
    assert [t["function"]["name"] for t in chat["tools"]] == ["Bash"]  # the server tool is dropped
    assert chat["tools"][0]["function"]["parameters"]["type"] == "object"
    assert chat["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\nBe brief."},
        {"role": "user", "content": "list files"},
        {
            "role": "assistant",
            "content": "Running ls.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "Bash", "arguments": '{"command": "ls"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "a.py\nb.py"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "text", "text": "and now?"},
            ],
        },
    ]


def test_a_system_turn_inside_messages_stays_a_system_message() -> None:
    """Claude Code 2.1 sends its environment as a ``system`` turn after the first user turn."""
    body = {
        "model": "m",
        "max_tokens": 5,
        "system": "You are Claude Code.",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "# Env", "cache_control": {}}]},
        ],
    }
    assert messages_to_chat(body, "m")["messages"] == [
        {"role": "system", "content": "You are Claude Code."},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "# Env"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "Bash"},
            {"tool_choice": {"type": "function", "function": {"name": "Bash"}}},
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [], "tool_choice": choice}
    chat = messages_to_chat(body, "m")
    assert {k: chat[k] for k in expected} == expected


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "developer", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "system", "content": [{"type": "image", "source": {}}]}]},
            "messages.0.content.0",
        ),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}
                ]
            },
            "messages.0.content.0.source",
        ),
        ({"messages": [], "tool_choice": {"type": "tool"}}, "tool_choice.type"),
        ({"messages": [], "system": 3}, "system"),
    ],
)
def test_untranslatable_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(TranslationError) as caught:
        messages_to_chat({"model": "m", "max_tokens": 5, **body}, "m")
    assert caught.value.param == param


# --------------------------------------------------------------------------- answers


def test_whole_answer_with_tool_calls() -> None:
    answer = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "Read", "arguments": '{"path": "a.py"}'},
                        },
                        {
                            "id": "call_2",
                            "type": "function",
                            "function": {"name": "Bad", "arguments": "not json"},
                        },
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14},
    }
    message = chat_to_message(answer, "qwen3-coder")
    parsed = anthropic.types.Message.model_validate(message)
    assert parsed.id == "msg_1"
    assert parsed.stop_reason == "tool_use"
    assert parsed.usage.input_tokens == 10
    assert parsed.usage.output_tokens == 4
    assert [b.type for b in parsed.content] == ["text", "tool_use", "tool_use"]
    assert message["content"][1]["input"] == {"path": "a.py"}
    assert message["content"][2]["input"] == {"_arguments": "not json"}


def test_stop_sequence_named_by_vllm() -> None:
    answer = {
        "id": "c",
        "choices": [{"message": {"content": "1, 2"}, "finish_reason": "stop", "stop_reason": "3"}],
    }
    message = chat_to_message(answer, "a", stops=["3"])
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "3")
    assert chat_to_message(answer, "a")["stop_reason"] == "end_turn"


def test_errors_in_anthropics_shape() -> None:
    body = chat_error_to_message_error(400, b'{"error": {"message": "too long", "type": "x"}}')
    assert body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "too long"},
    }
    assert chat_error_to_message_error(502, b"<html>")["error"]["type"] == "api_error"
    assert error_type(429) == "rate_limit_error"
    assert error_type(529) == "overloaded_error"
    assert error_type(418) == "invalid_request_error"


def test_count_tokens_uses_tokenize() -> None:
    request = tokenize_request(CLAUDE_CODE_LIKE, UPSTREAM)
    assert request["model"] == UPSTREAM
    assert request["messages"][0]["role"] == "system"
    assert "stream" not in request
    assert count_from_tokenize({"count": 17, "max_model_len": 32768, "tokens": []}) == 17
    assert count_from_tokenize({"tokens": [1, 2, 3]}) == 3
    assert count_from_tokenize({"detail": "Not Found"}) is None
