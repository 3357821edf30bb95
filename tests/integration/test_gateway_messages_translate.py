"""Translate mode through the real gateway, connector and a chat-only stand-in, driven by the
official ``anthropic`` SDK: what Claude Code 2.x sends (ToolSearch's ``tool_reference`` results,
a turn begun with a Claude model) and parallel tool calls streamed interleaved."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.integration.test_gateway_api import GatewayRig, gateway_rig
from tests.integration.test_gateway_messages import MODEL, TURNS, WEATHER_TOOL, sdk
from tests.support.standin_llm.wire import TOOL_INPUT


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[GatewayRig]:
    async with gateway_rig(tmp_path, messages_api="translate") as rig:
        yield rig


async def test_tool_search_results_and_claude_turns_are_read(rig: GatewayRig) -> None:
    """ToolSearch's ``tool_reference`` blocks reach the model as text; thinking and a server
    tool's call of an earlier Claude turn are left out; no 400."""
    search = {"type": "tool_use", "id": "toolu_s", "name": "ToolSearch", "input": {"q": "w"}}
    turns: Any = [
        *TURNS,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "look it up", "signature": "sig"},
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                search,
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_s",
                    "content": [{"type": "tool_reference", "tool_name": "get_weather"}],
                }
            ],
        },
    ]
    deferred = {**WEATHER_TOOL, "defer_loading": True}
    client = sdk(rig, api_key=rig.key)
    answer = await client.beta.messages.create(
        model=MODEL, max_tokens=64, messages=turns, tools=[deferred]
    )
    assert answer.stop_reason == "end_turn"  # the stand-in answers a tool message with text
    sent = rig.standin.requests[-1].body["messages"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "ToolSearch"
    assert sent[-2]["content"] is None
    assert sent[-1] == {
        "role": "tool",
        "tool_call_id": "toolu_s",
        "content": "Tool loaded: get_weather",
    }


async def test_a_block_it_cannot_carry_is_an_anthropic_400_naming_it(rig: GatewayRig) -> None:
    turns: Any = [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        await sdk(rig, api_key=rig.key).messages.create(model=MODEL, max_tokens=8, messages=turns)
    body: Any = refused.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "'container_upload'" in body["error"]["message"]
    assert rig.standin.requests == []


async def test_interleaved_parallel_tool_calls_arrive_whole(rig: GatewayRig) -> None:
    """The stand-in streams two calls' fragments as index 0, 1, 0, 1: both inputs are whole."""
    client = sdk(rig, api_key=rig.key)
    args: Any = {"model": MODEL, "max_tokens": 64, "messages": TURNS, "tools": [WEATHER_TOOL]}
    parallel = {"standin": {"tool_calls": 2}}
    async with client.messages.stream(**args, extra_body=parallel) as stream:
        final = await stream.get_final_message()
    whole = await client.messages.create(**args, extra_body=parallel)
    for message in (final, whole):
        assert message.stop_reason == "tool_use"
        tools = [b for b in message.content if b.type == "tool_use"]
        assert [(t.name, t.input) for t in tools] == [("get_weather", TOOL_INPUT)] * 2
        assert len({t.id for t in tools}) == 2
