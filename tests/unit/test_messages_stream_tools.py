"""Parallel tool calls in the stream translation: chat completions may interleave the argument
fragments of several calls (index 0, then 1, then 0 again), while a Messages stream has one
content block open at a time. The first call streams as it comes; the others are held whole
and follow it, so no fragment is lost or moved to another call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gateway.api.messages_stream import Event, MessageStream
from tests.support.fuzz import fuzz_settings
from tests.unit.test_messages_translate import sdk_read_stream, translate

DATA = Path(__file__).parent / "data"


def tool_chunk(index: int, arguments: str = "", head: tuple[str, str] | None = None) -> Any:
    function: dict[str, str] = {"arguments": arguments} if arguments else {}
    call: dict[str, Any] = {"index": index, "function": function}
    if head is not None:
        call["id"], function["name"] = head
    return {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


def reassemble(events: list[Event]) -> list[tuple[str, str, str]]:
    """``(id, name, arguments)`` per tool_use block, checking blocks open and close in turn."""
    calls: list[tuple[str, str, str]] = []
    open_index: int | None = None
    for name, data in events:
        if name == "content_block_start":
            assert open_index is None, "a block opened inside another"
            assert data["index"] == len(calls)
            open_index = data["index"]
            block = data["content_block"]
            calls.append((block.get("id", ""), block.get("name", ""), ""))
        elif name == "content_block_delta":
            assert data["index"] == open_index
            if data["delta"]["type"] == "input_json_delta":
                id_, tool, arguments = calls[-1]
                calls[-1] = (id_, tool, arguments + data["delta"]["partial_json"])
        elif name == "content_block_stop":
            assert data["index"] == open_index
            open_index = None
    assert open_index is None
    return [call for call in calls if call[1]]


def test_interleaved_calls_keep_every_fragment() -> None:
    """The recorded stream sends index 0, 1, 0, 1, 0; the SDK reads both calls whole."""
    translated = translate((DATA / "chat_tool_interleaved_stream.sse").read_bytes())
    message = sdk_read_stream(translated)
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "text"
    tools = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert tools == [
        ("chatcmpl-tool-a1", "get_weather", {"location": "Paris", "unit": "celsius"}),
        ("chatcmpl-tool-b2", "get_time", {"tz": "Europe/Paris"}),
    ]
    assert message.usage.output_tokens == 42


def test_the_first_call_streams_as_it_comes() -> None:
    stream = MessageStream("a")
    stream.feed(tool_chunk(0, "", ("call_0", "Bash")))
    events = stream.feed(tool_chunk(0, '{"command": '))
    assert events == [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"command": '},
            },
        )
    ]
    assert stream.feed(tool_chunk(1, "{}", ("call_1", "Read"))) == []  # held until the end
    assert stream.feed(tool_chunk(0, '"ls"}'))[0][1]["delta"]["partial_json"] == '"ls"}'


def test_text_after_a_tool_call_follows_the_calls() -> None:
    stream = MessageStream("a")
    events = stream.feed(tool_chunk(0, "{}", ("call_0", "Bash")))
    events += stream.feed({"choices": [{"index": 0, "delta": {"content": "done"}}]})
    events += stream.feed(tool_chunk(0, ""))
    events += stream.closing_events()
    blocks = [
        data["content_block"]["type"] for name, data in events if name == "content_block_start"
    ]
    assert blocks == ["tool_use", "text"]
    assert reassemble(events) == [("call_0", "Bash", "{}")]


FRAGMENTS = st.lists(st.text(max_size=5), min_size=1, max_size=5)


@fuzz_settings(200)
@given(st.lists(FRAGMENTS, min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_any_interleaving_reassembles_to_the_calls(fragments: list[list[str]], rng: Any) -> None:
    """Each call's fragments keep their order; the calls' turns are shuffled."""
    queues = [[(i, f, n == 0) for n, f in enumerate(parts)] for i, parts in enumerate(fragments)]
    order = [i for i, parts in enumerate(fragments) for _ in parts]
    rng.shuffle(order)
    stream = MessageStream("a")
    events: list[Event] = []
    seen: list[int] = []
    for i in order:
        index, fragment, first = queues[i].pop(0)
        head = (f"call_{index}", f"tool_{index}") if first else None
        seen += [index] if first else []
        events += stream.feed(tool_chunk(index, fragment, head))
    events += stream.closing_events()
    json.dumps(events)
    expected = [(f"call_{i}", f"tool_{i}", "".join(fragments[i])) for i in seen]
    assert reassemble(events) == expected
