"""The real ``openai`` SDK parses everything the stand-in LLM answers."""

from __future__ import annotations

import asyncio
import hashlib
import io
import itertools
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from tests.support.standin_llm import (
    DEFAULT_MODELS,
    StandinLLM,
    bulk_sha256,
    embedding_vector,
    fetch_records,
)
from tests.support.standin_llm.wire import TOOL_INPUT

CHAT_MODEL = DEFAULT_MODELS[0]


@pytest.fixture
async def server() -> AsyncIterator[StandinLLM]:
    s = StandinLLM()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def sync_client(s: StandinLLM) -> openai.OpenAI:
    return openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0)


def async_client(s: StandinLLM) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=s.base_url, api_key="x", max_retries=0)


async def test_models_list(server: StandinLLM) -> None:
    async with async_client(server) as client:
        models = [m async for m in client.models.list()]
    assert [m.id for m in models] == list(DEFAULT_MODELS)
    assert all(m.object == "model" and m.owned_by for m in models)


async def test_chat_sync_sdk_echoes_model_and_counts_usage(server: StandinLLM) -> None:
    def call() -> openai.types.chat.ChatCompletion:
        with sync_client(server) as client:
            return client.chat.completions.create(
                model="some-upstream-model",
                messages=[{"role": "user", "content": "one two three"}],
                extra_body={"standin": {"chunks": 3}, "unknown_field": {"a": 1}},
            )

    completion = await asyncio.to_thread(call)
    assert completion.object == "chat.completion"
    assert completion.model == "some-upstream-model"
    assert completion.choices[0].message.content == "Hello from the "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 3)
    record = server.requests[-1]
    assert record.body["unknown_field"] == {"a": 1}
    assert record.headers["authorization"] == "Bearer x"
    assert record.completed
    assert not record.disconnected
    assert record.usage == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}


async def test_streamed_chat_with_usage(server: StandinLLM) -> None:
    async with async_client(server) as client:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-standin-chunks": "7"},
        )
        chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the stand-in LLM. Hello from "
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 7
    assert chunks[-1].usage.prompt_tokens == 2
    assert all(c.object == "chat.completion.chunk" and c.model == CHAT_MODEL for c in chunks)


async def test_streamed_chat_without_usage_has_no_usage_chunk(server: StandinLLM) -> None:
    async with async_client(server) as client:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        chunks = [c async for c in stream]
    assert all(c.choices and c.usage is None for c in chunks)
    assert server.requests[-1].usage is not None  # still recorded for the tests


async def test_stream_pacing_and_timestamps(server: StandinLLM) -> None:
    arrivals: list[float] = []
    async with async_client(server) as client:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_body={"standin": {"chunks": 5, "pace_ms": 100, "timestamps": True}},
        )
        pieces = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic())
                pieces.append(chunk.choices[0].delta.content)
    assert [p.split("@")[0] for p in pieces] == ["w0", "w1", "w2", "w3", "w4"]
    sent = [int(p.split("t=")[1]) / 1e9 for p in pieces]
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert all(0.08 <= g <= 0.3 for g in gaps), gaps
    assert arrivals[-1] - arrivals[0] >= 0.35  # not bunched


async def test_completions_plain_and_streamed(server: StandinLLM) -> None:
    async with async_client(server) as client:
        done = await client.completions.create(model=CHAT_MODEL, prompt="def f(", max_tokens=5)
        stream = await client.completions.create(
            model=CHAT_MODEL,
            prompt="def f(",
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"standin": {"reply": "x = 1"}},
        )
        chunks = [c async for c in stream]
    assert done.object == "text_completion"
    assert done.choices[0].text == "Hello from the stand-in LLM. "
    assert done.usage is not None
    assert done.usage.total_tokens == 2 + 5
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "x = 1"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


async def test_embeddings_base64_default_and_float(server: StandinLLM) -> None:
    async with async_client(server) as client:
        default = await client.embeddings.create(model="text-embedding-test", input=["a b", "c"])
        floats = await client.embeddings.create(
            model="text-embedding-test", input="a b", encoding_format="float"
        )
    assert server.requests[0].body.get("encoding_format") == "base64"
    assert len(default.data) == 2
    assert default.data[0].embedding == pytest.approx(embedding_vector("a b", 16))
    assert floats.data[0].embedding == embedding_vector("a b", 16)
    assert default.usage.prompt_tokens == 3
    assert floats.usage.total_tokens == 2


async def test_responses_plain_and_streamed(server: StandinLLM) -> None:
    async with async_client(server) as client:
        resp = await client.responses.create(model=CHAT_MODEL, input="hello world")
        events = []
        async with client.responses.stream(model=CHAT_MODEL, input="hello world") as stream:
            async for event in stream:
                events.append(event.type)
            final = await stream.get_final_response()
    assert resp.output_text == "Hello from the stand-in LLM. "
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (2, 5, 7)
    assert events[0] == "response.created"
    assert events[-1] == "response.completed"
    assert events.count("response.output_text.delta") == 5
    assert final.output_text == "Hello from the stand-in LLM. "
    assert final.usage is not None
    assert final.usage.total_tokens == 7


async def test_error_status_maps_to_sdk_exceptions(server: StandinLLM) -> None:
    async with async_client(server) as client:
        with pytest.raises(openai.InternalServerError) as err:
            await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "x"}],
                extra_headers={"x-standin-status": "500"},
            )
        assert err.value.status_code == 500
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(
                model=CHAT_MODEL,
                messages=[{"role": "user", "content": "x"}],
                extra_body={"standin": {"status": 429}},
            )
        with pytest.raises(openai.NotFoundError):
            await client.get("/nope", cast_to=object)


async def test_strict_models_gives_model_not_found() -> None:
    async with StandinLLM(strict_models=True) as s, async_client(s) as client:
        with pytest.raises(openai.NotFoundError) as err:
            await client.chat.completions.create(
                model="nope", messages=[{"role": "user", "content": "x"}]
            )
    assert err.value.code == "model_not_found"


async def test_client_disconnect_is_recorded_quickly(server: StandinLLM) -> None:
    async with async_client(server) as client:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_body={"standin": {"chunks": 1000, "pace_ms": 50}},
        )
        async for _chunk in stream:
            break
        await stream.close()
        gone_at = time.monotonic()
    record = await server.wait_for_request(lambda r: r.disconnected, timeout=5)
    assert record.ended_ns is not None
    assert record.ended_ns / 1e9 - gone_at < 1.0
    assert not record.completed
    assert record.chunks_sent < 1000


async def test_fail_after_cuts_the_stream(server: StandinLLM) -> None:
    async with async_client(server) as client:
        stream = await client.chat.completions.create(
            model=CHAT_MODEL,
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers={"x-standin-fail-after": "2"},
        )
        with pytest.raises(openai.APIError):
            async for _chunk in stream:
                pass


async def test_bulk_upload_download_and_records_endpoint(server: StandinLLM) -> None:
    size = 5 * 1024 * 1024 + 7
    payload = b"\x01\x02" * (size // 2)
    async with aiohttp.ClientSession() as session:
        async with session.post(server.url + "/v1/bulk/upload", data=io.BytesIO(payload)) as resp:
            answer = await resp.json()
        async with session.get(server.url + "/v1/bulk/download", params={"bytes": size}) as resp:
            digest = hashlib.sha256()
            total = 0
            async for chunk in resp.content.iter_any():
                digest.update(chunk)
                total += len(chunk)
        async with session.post(server.url + "/v1/bulk/echo", data=io.BytesIO(payload)) as resp:
            echoed = await resp.read()
    assert echoed == payload
    assert answer == {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    assert total == size
    assert digest.hexdigest() == bulk_sha256(size)
    records = await fetch_records(server.url)
    assert [r["path"] for r in records] == ["/v1/bulk/upload", "/v1/bulk/download", "/v1/bulk/echo"]
    async with aiohttp.ClientSession() as session:
        await session.post(server.url + "/_standin/reset")
    assert server.requests == []


# --------------------------------------------------------------------------- tool calls, stops

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "weather in Paris?"}]


async def test_chat_tool_call_whole_and_streamed(server: StandinLLM) -> None:
    async with async_client(server) as client:
        whole = await client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=[WEATHER]
        )
        async with client.chat.completions.stream(
            model=CHAT_MODEL, messages=ASK, tools=[WEATHER], stream_options={"include_usage": True}
        ) as stream:
            final = await stream.get_final_completion()
        answered = [
            *ASK,
            whole.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_standin_1", "content": "sunny"},
        ]
        after = await client.chat.completions.create(
            model=CHAT_MODEL, messages=answered, tools=[WEATHER]
        )
        refused = await client.chat.completions.create(
            model=CHAT_MODEL, messages=ASK, tools=[WEATHER], tool_choice="none"
        )
    for answer in (whole, final):
        choice = answer.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.content == "Hello from the stand-in LLM. "
        (call,) = choice.message.tool_calls or []
        assert (call.id, call.function.name) == ("call_standin_1", "get_weather")
        assert json.loads(call.function.arguments) == TOOL_INPUT  # fragments put together
    assert final.usage is not None
    assert final.usage.completion_tokens == 5
    assert after.choices[0].finish_reason == "stop"  # the tool's answer came: no new call
    assert not after.choices[0].message.tool_calls
    assert refused.choices[0].finish_reason == "stop"


async def test_chat_stop_strings_end_the_answer_like_vllm(server: StandinLLM) -> None:
    async with aiohttp.ClientSession() as session:
        body = {"model": CHAT_MODEL, "messages": ASK, "stop": ["stand-in", "LLM"]}
        async with session.post(server.base_url + "/chat/completions", json=body) as resp:
            whole = await resp.json()
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with session.post(server.base_url + "/chat/completions", json=streamed) as resp:
            chunks = [
                json.loads(line[6:])
                for line in (await resp.text()).splitlines()
                if line.startswith("data: {")
            ]
    choice = whole["choices"][0]
    assert choice["message"]["content"] == "Hello from the "
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", "stand-in")
    assert whole["usage"]["completion_tokens"] == 4  # the piece with the stop string counts
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from the "
    assert chunks[-2]["choices"][0]["stop_reason"] == "stand-in"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


async def test_vllm_tokenize_and_its_switch() -> None:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "one two three"}]}
    async with (
        StandinLLM() as on,
        StandinLLM(tokenize=False) as off,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(on.url + "/tokenize", json=body) as resp:
            counted = await resp.json()
        async with session.post(off.url + "/tokenize", json=body) as resp:
            missing = resp.status
    assert counted == {"count": 3, "max_model_len": 32768, "tokens": [1, 2, 3]}
    assert missing == 404
