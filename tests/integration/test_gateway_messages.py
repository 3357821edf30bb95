"""Anthropic's Messages API through the real gateway, connector and stand-in, driven by the
official ``anthropic`` SDK (which speaks through ``httpx2``), in both upstream modes: ``native``
(the stand-in serves ``/v1/messages``) and ``translate`` (a chat-only stand-in: the gateway
speaks chat completions to it and ``/tokenize`` to count)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import pytest

from tests.integration.test_gateway_api import UP, GatewayRig, create_key, gateway_rig
from tests.support.procs import run_command
from tests.support.standin_llm.wire import TOOL_INPUT

MODEL = "qwen3-coder"
MODES = ("native", "translate")
#: where each mode sends /v1/messages and /v1/messages/count_tokens
UPSTREAM_PATHS = {
    "native": ("/v1/messages", "/v1/messages/count_tokens"),
    "translate": ("/v1/chat/completions", "/tokenize"),
}
TURNS: list[Any] = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
async def rig(tmp_path: Path, mode: str) -> AsyncIterator[GatewayRig]:
    """The gateway with ``qwen3-coder`` in ``mode`` (and a stand-in to match)."""
    async with gateway_rig(tmp_path, messages_api=mode) as rig:
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


async def metrics_text(rig: GatewayRig) -> str:
    async with httpx.AsyncClient() as plain:
        return (await plain.get(f"http://127.0.0.1:{rig.ports['admin']}/metrics")).text


async def test_messages_whole_and_streamed_with_usage(rig: GatewayRig, mode: str) -> None:
    client = sdk(rig, api_key=rig.key)
    whole = await client.messages.create(model=MODEL, max_tokens=64, messages=TURNS)
    assert whole.model == MODEL
    assert whole.id.startswith("msg_")
    assert whole.stop_reason == "end_turn"
    assert whole.content[0].type == "text"
    assert whole.content[0].text
    assert (whole.usage.input_tokens, whole.usage.output_tokens) == (2, 5)
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=TURNS) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(texts) == final.content[0].text
    assert len(texts) == 5  # relayed piece by piece, in both modes
    assert final.model == MODEL  # message_start's model renamed back to the alias
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)

    upstream = [r for r in rig.standin.requests if r.path == UPSTREAM_PATHS[mode][0]]
    assert [r.model for r in upstream] == [UP, UP]
    assert all("x-api-key" not in r.headers for r in upstream)
    if mode == "native":
        versions = {r.headers.get("anthropic-version") for r in upstream}
        assert len(versions) == 1
        assert None not in versions  # the SDK's own anthropic-version reached the upstream
    else:  # chat completions, asked for the usage of the stream
        assert upstream[0].body == {"model": UP, "messages": TURNS, "max_tokens": 64}
        assert upstream[1].body["stream_options"] == {"include_usage": True}
        assert all("anthropic-version" not in r.headers for r in upstream)
    lines = await rig.wait_access_lines(2)
    assert [(x["route"], x["status"]) for x in lines] == [("/v1/messages", 200)] * 2
    assert [(x["prompt_tokens"], x["completion_tokens"]) for x in lines] == [(2, 5)] * 2
    rows = ledger_rows(rig)
    assert [(r["requests"], r["prompt_tokens"], r["completion_tokens"]) for r in rows] == [
        (2, 4, 10)
    ]
    labels = 'model="qwen3-coder",route="/v1/messages",status="200"'
    assert f"gateway_requests_total{{{labels}}} 2.0" in await metrics_text(rig)


async def test_messages_stream_is_relayed_as_it_comes(rig: GatewayRig) -> None:
    """Each upstream chunk goes out when it comes (translated or not), not at the end."""
    client = sdk(rig, api_key=rig.key)
    arrivals: list[float] = []
    async with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=TURNS,
        extra_body={"standin": {"chunks": 5, "pace_ms": 150}},
    ) as stream:
        async for _text in stream.text_stream:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 5
    assert arrivals[-1] - arrivals[0] >= 0.45


async def test_a_slow_upstream_head_gets_keepalives_then_the_stream(rig: GatewayRig) -> None:
    """The upstream takes longer than ``sse_keepalive_s`` (0.3 s) to answer: the client has its
    200 and SSE comments meanwhile, then the whole Messages stream."""
    body = {
        "model": MODEL, "max_tokens": 64, "messages": TURNS, "stream": True,
        "standin": {"head_delay_ms": 1000},
    }  # fmt: skip
    async with (
        rig.http() as http,
        http.stream(
            "POST",
            f"https://localhost:{rig.ports['public']}/v1/messages",
            json=body,
            headers={"x-api-key": rig.key},
        ) as resp,
    ):
        lines = [line async for line in resp.aiter_lines() if line]
    assert resp.status_code == 200
    assert lines[0] == ": keep-alive"
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[0] == "message_start"
    assert events[-2:] == ["message_delta", "message_stop"]
    assert events.count("content_block_delta") == 5


async def test_messages_tool_use_round_trip_whole_and_streamed(rig: GatewayRig, mode: str) -> None:
    client = sdk(rig, api_key=rig.key)
    whole = await client.messages.create(
        model=MODEL, max_tokens=64, messages=TURNS, tools=[WEATHER_TOOL]
    )
    assert whole.stop_reason == "tool_use"
    assert [b.type for b in whole.content] == ["text", "tool_use"]
    tool = whole.content[-1]
    assert (tool.type, tool.name, tool.input) == ("tool_use", "get_weather", TOOL_INPUT)
    async with client.messages.stream(
        model=MODEL, max_tokens=64, messages=TURNS, tools=[WEATHER_TOOL]
    ) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[-1].type == "tool_use"
    assert final.content[-1].input == TOOL_INPUT  # assembled from input_json_delta pieces
    assert kinds.count("input_json") == 2
    answered = [
        *TURNS,
        {"role": "assistant", "content": [b.model_dump() for b in whole.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}],
        },
    ]
    after = await client.messages.create(
        model=MODEL, max_tokens=64, messages=answered, tools=[WEATHER_TOOL]
    )
    assert [b.type for b in after.content] == ["text"]
    assert after.stop_reason == "end_turn"
    if mode == "translate":  # tool_use / tool_result as tool_calls / a tool message
        sent = rig.standin.requests[-1].body["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == tool.id
        assert json.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == TOOL_INPUT
        assert sent[-1] == {"role": "tool", "tool_call_id": tool.id, "content": "sunny"}
        assert rig.standin.requests[0].body["tools"][0]["function"]["name"] == "get_weather"


async def test_messages_stop_sequences(rig: GatewayRig) -> None:
    client = sdk(rig, api_key=rig.key)
    args: Any = {"model": MODEL, "max_tokens": 64, "messages": TURNS}
    whole = await client.messages.create(**args, stop_sequences=["stand-in"])
    async with client.messages.stream(**args, stop_sequences=["nothing", "from"]) as stream:
        final = await stream.get_final_message()
    assert (whole.stop_reason, whole.stop_sequence) == ("stop_sequence", "stand-in")
    assert whole.content[0].text == "Hello from the "  # type: ignore[union-attr]
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "from")
    assert final.content[0].text == "Hello "  # type: ignore[union-attr]


async def test_messages_bearer_beta_query_and_count_tokens(rig: GatewayRig, mode: str) -> None:
    client = sdk(rig, token=rig.key)
    answer = await client.messages.create(model=MODEL, max_tokens=16, messages=TURNS)
    assert answer.content[0].text
    counted = await client.messages.count_tokens(model=MODEL, messages=TURNS)
    assert counted.input_tokens == 2  # native: its count_tokens; translate: vLLM's /tokenize
    async with rig.http() as http:
        resp = await http.post(
            f"https://localhost:{rig.ports['public']}/v1/messages?beta=true",
            json={"model": MODEL, "max_tokens": 16, "messages": TURNS},
            headers={"x-api-key": rig.key, "anthropic-beta": "tools-2024-04-04"},
        )
    assert resp.status_code == 200, resp.text
    assert resp.headers["anthropic-ratelimit-requests-limit"]
    upstream = rig.standin.requests
    send, count = UPSTREAM_PATHS[mode]
    assert [r.path for r in upstream] == [send, count, send]
    if mode == "native":
        assert upstream[-1].headers.get("anthropic-beta") == "tools-2024-04-04"
    else:
        assert upstream[1].body == {"model": UP, "messages": TURNS}
    assert all(rig.key not in str(r.headers) for r in upstream)  # the gateway key stays home
    assert upstream[-1].query == ""  # ?beta=true is the gateway's to accept, not forwarded
    lines = await rig.wait_access_lines(3)
    assert lines[1]["route"] == "/v1/messages/count_tokens"
    assert (lines[1]["prompt_tokens"], lines[1]["completion_tokens"]) == (0, 0)


async def test_count_tokens_without_tokenize_says_so(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, messages_api="translate", tokenize=False) as rig:
        client = sdk(rig, api_key=rig.key)
        with pytest.raises(anthropic.NotFoundError) as missing:
            await client.messages.count_tokens(model=MODEL, messages=TURNS)
        line = (await rig.wait_access_lines(1))[-1]
        answer = await client.messages.create(model=MODEL, max_tokens=16, messages=TURNS)
    assert missing.value.status_code == 404
    body: Any = missing.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "cannot count tokens" in body["error"]["message"]
    assert "/tokenize" in body["error"]["message"]
    assert [r.path for r in rig.standin.requests][:1] == ["/tokenize"]
    assert (line["route"], line["status"]) == ("/v1/messages/count_tokens", 404)
    assert answer.content[0].text  # the model itself still answers


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


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_in_anthropic_shape(rig: GatewayRig, stream: bool) -> None:
    """The stand-in answers 503 (OpenAI's shape from a chat server, Anthropic's from a native
    one): the client gets Anthropic's ``overloaded_error`` with the upstream's message."""
    client = sdk(rig, api_key=rig.key)
    args: Any = {"model": MODEL, "max_tokens": 16, "messages": TURNS}
    with pytest.raises(anthropic.APIStatusError) as failed:
        await client.messages.create(**args, stream=stream, extra_body={"standin": {"status": 503}})
    assert failed.value.status_code == 503
    body: Any = failed.value.body
    assert body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "stand-in error 503 as requested"},
    }
    line = (await rig.wait_access_lines(1))[-1]
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (503, 0, 0)


async def test_a_stream_that_breaks_ends_with_an_error_event(rig: GatewayRig) -> None:
    client = sdk(rig, api_key=rig.key)
    texts: list[str] = []

    async def read() -> None:
        async with client.messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=TURNS,
            extra_body={"standin": {"chunks": 20, "fail_after": 3, "pace_ms": 50}},
        ) as stream:
            async for text in stream.text_stream:
                texts.append(text)

    with pytest.raises(anthropic.APIStatusError) as broken:
        await read()
    assert len(texts) == 3
    body: Any = broken.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "request id req_" in body["error"]["message"]


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
    assert headers["anthropic-ratelimit-tokens-limit"]
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


async def test_messages_abandoned_stream_is_499_with_tokens(rig: GatewayRig, mode: str) -> None:
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
    assert record.chunks_sent < 20  # the cancellation reached the upstream
    assert time.monotonic() - left < 1.0
    line = (await rig.wait_access_lines(1))[-1]
    assert line["status"] == 499
    assert line["completion_tokens"] > 0
    if mode == "native":
        assert record.headers["anthropic-version"] == "2023-06-01"
        assert line["prompt_tokens"] == 2  # from message_start
    else:  # chat completions says its usage only at the end: the prompt is estimated
        assert line["prompt_tokens"] == 4  # "user" + "hello there": 15 characters / 4
    rows = ledger_rows(rig)
    assert [(r["requests"], r["completion_tokens"]) for r in rows] == [
        (1, line["completion_tokens"])
    ]


async def test_root_answers_get_and_head(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, connector=False) as rig, rig.http() as http:
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
