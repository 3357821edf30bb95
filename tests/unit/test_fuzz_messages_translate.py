"""Property tests (hypothesis) for the Messages <-> chat completions translation: whatever a
client sends, the request translation answers a chat body or a 400 naming the field, never
another exception (a 500); whatever an upstream streams or answers, the translation gives events
and a Message, never an exception, and the stream always ends in Anthropic's order."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.messages_stream import MessageStream
from gateway.api.messages_translate import chat_to_message, messages_to_chat
from gateway.errors import TranslationError
from tests.support.fuzz import fuzz_settings

FUZZ = fuzz_settings(200)

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["user", "assistant", "system", "text", "tool_use", "tool_result", "image"]),
)
KEYS = st.sampled_from(
    (
        *("role", "content", "type", "text", "id", "name", "input", "source", "tool_use_id"),
        *("index", "delta", "tool_calls", "function", "arguments", "finish_reason", "usage"),
        *("choices", "prompt_tokens", "completion_tokens", "message", "error", "code"),
        "stop_reason",
    )
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=24,
)
TOP = st.sampled_from(
    (
        *("system", "messages", "max_tokens", "stop_sequences", "tools", "tool_choice"),
        *("metadata", "temperature", "stream", "thinking", "extra"),
    )
)


@FUZZ
@given(st.dictionaries(TOP, JSON, max_size=6), st.lists(JSON, max_size=4))
def test_a_request_translates_or_is_a_400(body: dict[str, Any], turns: list[Any]) -> None:
    body = {"model": "m", **body}
    body.setdefault("messages", turns)
    try:
        chat = messages_to_chat(body, "up")
    except TranslationError:  # a 400 naming the field; anything else would be a 500
        return
    json.dumps(chat)
    assert chat["model"] == "up"


@FUZZ
@given(st.lists(st.dictionaries(KEYS, JSON, max_size=5), max_size=8))
def test_any_upstream_chunks_give_anthropics_event_order(chunks: list[dict[str, Any]]) -> None:
    stream = MessageStream("alias")
    events = [event for chunk in chunks for event in stream.feed(chunk)]
    events += stream.closing_events()
    names = [name for name, _ in events]
    json.dumps(events)
    assert names[0] == "message_start"
    if names[-1] == "error":
        return
    assert names[-2:] == ["message_delta", "message_stop"]
    opened = [data["index"] for name, data in events if name == "content_block_start"]
    closed = [data["index"] for name, data in events if name == "content_block_stop"]
    assert opened == closed == list(range(len(opened)))


@FUZZ
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_any_whole_answer_gives_a_message(answer: dict[str, Any]) -> None:
    message = chat_to_message(answer, "alias")
    json.dumps(message)
    assert message["type"] == "message"
