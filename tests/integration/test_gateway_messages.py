"""Anthropic's Messages API through the real gateway, connector and stand-in (native mode),
driven by the official ``anthropic`` SDK (which speaks through ``httpx2``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from tests.integration.test_gateway_api import UP, GatewayRig, create_key, gateway_rig
from tests.support.procs import run_command
from tests.support.standin_llm.wire import TOOL_INPUT

MODEL = "qwen3-coder"
TURNS: list[Any] = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[GatewayRig]:
    async with gateway_rig(tmp_path) as rig:
        yield rig


def sdk(rig: GatewayRig, *, api_key: str | None = None, token: str | None = None) -> Any:
    """An ``AsyncAnthropic`` on the gateway that trusts only the test CA: ``api_key`` goes in
    ``x-api-key``, ``token`` in ``Authorization: Bearer``."""
    http = httpx2.AsyncClient(verify=rig.ssl_context())
    client = anthropic.AsyncAnthropic(
        base_url=f"https://localhost:{rig.ports['public']}",
        api_key=api_key if token is None else None,
        auth_token=token,
        http_client=http,
        max_retries=0,
    )
    rig.clients.append(client)  # closed by the rig, like its OpenAI clients
    return client


def ledger_rows(rig: GatewayRig) -> list[dict[str, Any]]:
    done = run_command("gateway", "usage", "--json", "-c", str(rig.toml))
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


async def test_messages_whole_and_streamed_with_usage(rig: GatewayRig) -> None:
    client = sdk(rig, api_key=rig.key)
    whole = await client.messages.create(model=MODEL, max_tokens=64, messages=TURNS)
    assert whole.model == MODEL
    assert whole.stop_reason == "end_turn"
    assert whole.content[0].type == "text"
    assert whole.content[0].text
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=TURNS) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == final.content[0].text
    assert final.model == MODEL  # message_start's model renamed back to the alias
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)

    upstream = [r for r in rig.standin.requests if r.path == "/v1/messages"]
    assert [r.model for r in upstream] == [UP, UP]
    versions = {r.headers.get("anthropic-version") for r in upstream}
    assert len(versions) == 1
    assert None not in versions  # the SDK's own anthropic-version reached the upstream
    assert all("x-api-key" not in r.headers for r in upstream)
    lines = await rig.wait_access_lines(2)
    assert [(x["route"], x["status"]) for x in lines] == [("/v1/messages", 200)] * 2
    assert [(x["prompt_tokens"], x["completion_tokens"]) for x in lines] == [(2, 5)] * 2
    rows = ledger_rows(rig)
    assert [(r["requests"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        (2, 4, 10)
    ]


async def test_messages_tool_use_whole_and_streamed(rig: GatewayRig) -> None:
    client = sdk(rig, api_key=rig.key)
    whole = await client.messages.create(
        model=MODEL, max_tokens=64, messages=TURNS, tools=[WEATHER_TOOL]
    )
    assert whole.stop_reason == "tool_use"
    tool = whole.content[-1]
    assert (tool.type, tool.name, tool.input) == ("tool_use", "get_weather", TOOL_INPUT)
    async with client.messages.stream(
        model=MODEL, max_tokens=64, messages=TURNS, tools=[WEATHER_TOOL]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use"
    assert final.content[-1].input == TOOL_INPUT  # assembled from input_json_delta pieces
    answered = [
        *TURNS,
        {"role": "assistant", "content": [tool.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}],
        },
    ]
    after = await client.messages.create(
        model=MODEL, max_tokens=64, messages=answered, tools=[WEATHER_TOOL]
    )
    assert [b.type for b in after.content] == ["text"]


async def test_messages_bearer_beta_query_and_count_tokens(rig: GatewayRig) -> None:
    client = sdk(rig, token=rig.key)
    answer = await client.messages.create(model=MODEL, max_tokens=16, messages=TURNS)
    assert answer.content[0].text
    counted = await client.messages.count_tokens(model=MODEL, messages=TURNS)
    assert counted.input_tokens == 2
    async with rig.http() as http:
        resp = await http.post(
            f"https://localhost:{rig.ports['public']}/v1/messages?beta=true",
            json={"model": MODEL, "max_tokens": 16, "messages": TURNS},
            headers={"x-api-key": rig.key, "anthropic-beta": "tools-2024-04-04"},
        )
    assert resp.status_code == 200, resp.text
    assert resp.headers["anthropic-ratelimit-requests-limit"]
    upstream = rig.standin.requests
    paths = ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages"]
    assert [r.path for r in upstream] == paths
    assert upstream[-1].headers.get("anthropic-beta") == "tools-2024-04-04"
    assert all(rig.key not in str(r.headers) for r in upstream)  # the gateway key stays home
    assert upstream[-1].query == ""  # ?beta=true is the gateway's to accept, not forwarded
    lines = await rig.wait_access_lines(3)
    assert lines[1]["route"] == "/v1/messages/count_tokens"
    assert (lines[1]["prompt_tokens"], lines[1]["completion_tokens"]) == (0, 0)


async def test_messages_errors_in_anthropic_shape(rig: GatewayRig) -> None:
    with pytest.raises(anthropic.AuthenticationError) as bad_key:
        await sdk(rig, api_key="sk-wrong").messages.create(
            model=MODEL, max_tokens=16, messages=TURNS
        )
    assert bad_key.value.status_code == 401
    assert bad_key.value.body["type"] == "error"  # type: ignore[index]
    assert bad_key.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    client = sdk(rig, api_key=rig.key)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await client.messages.create(model="no-such-model", max_tokens=16, messages=TURNS)
    assert unknown.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    async with rig.http() as http:
        resp = await http.post(
            f"https://localhost:{rig.ports['public']}/v1/messages",
            json={"model": MODEL, "messages": TURNS},
            headers={"x-api-key": rig.key},
        )
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in resp.json()["error"]["message"]


async def test_messages_rate_limit_429_with_anthropic_headers(rig: GatewayRig) -> None:
    slow = create_key(rig.toml, "slow", "--rpm", "1")
    client = sdk(rig, api_key=slow)
    first = await client.messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=TURNS
    )
    assert first.headers["anthropic-ratelimit-requests-limit"] == "1"
    assert "x-ratelimit-limit-requests" not in first.headers
    with pytest.raises(anthropic.RateLimitError) as limited:
        await client.messages.create(model=MODEL, max_tokens=16, messages=TURNS)
    headers = limited.value.response.headers
    assert int(headers["retry-after"]) >= 1
    reset = datetime.fromisoformat(headers["anthropic-ratelimit-requests-reset"])
    assert reset.tzinfo is not None
    assert reset > datetime.now(UTC)
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_messages_abandoned_stream_is_499_with_tokens(rig: GatewayRig) -> None:
    body = {
        "model": MODEL, "max_tokens": 512, "messages": TURNS, "stream": True,
        "standin": {"chunks": 100, "pace_ms": 100},
    }  # fmt: skip
    async with rig.http() as http:
        async with http.stream(
            "POST",
            f"https://localhost:{rig.ports['public']}/v1/messages",
            json=body,
            headers={"x-api-key": rig.key, "anthropic-version": "2023-06-01"},
        ) as resp:
            assert resp.status_code == 200
            seen = 0
            async for line in resp.aiter_lines():
                seen += line.startswith("event: content_block_delta")
                if seen >= 3:
                    break
        left = time.monotonic()
    record = await rig.standin.wait_for_request(lambda r: r.disconnected, timeout=1.0)
    assert record.headers["anthropic-version"] == "2023-06-01"
    assert record.chunks_sent < 20
    assert time.monotonic() - left < 1.0
    line = (await rig.wait_access_lines(1))[-1]
    assert line["status"] == 499
    assert line["prompt_tokens"] == 2  # from message_start
    assert line["completion_tokens"] > 0


async def test_root_answers_get_and_head(rig: GatewayRig) -> None:
    async with rig.http() as http:
        got = await http.get(f"https://localhost:{rig.ports['public']}/")
        head = await http.head(f"https://localhost:{rig.ports['public']}/")
    assert got.status_code == 200
    assert "gateway" in got.json()["service"]
    assert head.status_code == 200


async def test_claude_code_start_probe_is_answered(rig: GatewayRig) -> None:
    """Claude Code sends HEAD /api/hello at start (seen with 2.1.332, unless its
    nonessential traffic is turned off): a 200, not a 404 in the access log."""
    async with rig.http() as http:
        head = await http.head(f"https://localhost:{rig.ports['public']}/api/hello")
        got = await http.get(f"https://localhost:{rig.ports['public']}/api/hello")
    assert head.status_code == 200
    assert got.status_code == 200
    assert got.json()["status"] == "ok"
