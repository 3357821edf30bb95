"""Every answer of the stand-in validates strictly against the SDK's pydantic models (the SDK
itself parses leniently, so this is what proves the wire format field by field)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pydantic
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from tests.support.standin_llm import DEFAULT_MODELS, StandinLLM

MODEL = DEFAULT_MODELS[0]


def sse_data(raw: bytes) -> list[str]:
    return [
        line[len("data: ") :]
        for block in raw.decode().split("\n\n")
        for line in block.split("\n")
        if line.startswith("data: ")
    ]


async def raw(server: StandinLLM, path: str, body: dict[str, Any]) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.base_url + path, json=body) as resp,
    ):
        assert resp.status == 200
        return await resp.read()


async def test_strict_shapes(standin_llm: StandinLLM) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    ChatCompletion.model_validate_json(await raw(standin_llm, "/chat/completions", chat))
    streamed = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    data = sse_data(await raw(standin_llm, "/chat/completions", streamed))
    assert data[-1] == "[DONE]"
    for item in data[:-1]:
        ChatCompletionChunk.model_validate_json(item)
    assert json.loads(data[-2])["usage"]["completion_tokens"] == 5

    completion = {"model": MODEL, "prompt": "x"}
    Completion.model_validate_json(await raw(standin_llm, "/completions", completion))
    data = sse_data(await raw(standin_llm, "/completions", {**completion, "stream": True}))
    for item in data[:-1]:
        chunk = json.loads(item)
        for choice in chunk["choices"]:
            # OpenAI streams ``finish_reason: null`` until the end; the SDK types it for the
            # non-streamed object only
            choice["finish_reason"] = choice["finish_reason"] or "stop"
        Completion.model_validate(chunk)

    for fmt in ("float", "base64"):
        body = {"model": "text-embedding-test", "input": ["a", "b"], "encoding_format": fmt}
        if fmt == "float":
            CreateEmbeddingResponse.model_validate_json(await raw(standin_llm, "/embeddings", body))
        else:
            assert isinstance(
                json.loads(await raw(standin_llm, "/embeddings", body))["data"][0]["embedding"],
                str,
            )

    responses = {"model": MODEL, "input": "hi"}
    Response.model_validate_json(await raw(standin_llm, "/responses", responses))
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)
    events = sse_data(await raw(standin_llm, "/responses", {**responses, "stream": True}))
    for item in events:
        adapter.validate_json(item)

    async with (
        aiohttp.ClientSession() as session,
        session.get(standin_llm.base_url + "/models") as resp,
    ):
        listed = await resp.json()
    assert listed["object"] == "list"
    for item in listed["data"]:
        Model.model_validate(item)


async def test_error_shape(standin_llm: StandinLLM) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            standin_llm.base_url + "/chat/completions",
            json={"messages": []},
        ) as resp:
            body = await resp.json()
            status = resp.status
        async with session.post(
            standin_llm.base_url + "/chat/completions", data=b"{not json"
        ) as resp:
            bad_json_status = resp.status
    assert status == 400
    assert body == {
        "error": {
            "message": "you must provide a model parameter",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }
    assert bad_json_status == 400


async def test_strict_tool_call_shapes(standin_llm: StandinLLM) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    whole = ChatCompletion.model_validate_json(await raw(standin_llm, "/chat/completions", chat))
    assert whole.choices[0].finish_reason == "tool_calls"
    streamed = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    data = sse_data(await raw(standin_llm, "/chat/completions", streamed))
    chunks = [ChatCompletionChunk.model_validate_json(item) for item in data[:-1]]
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices]
    head, *fragments = [call[0] for call in calls if call]
    assert (head.index, head.id, head.type) == (0, "call_standin_1", "function")
    assert head.function is not None
    assert head.function.name == "f"
    assert len(fragments) == 2
    assert all(f.id is None and f.function and f.function.arguments for f in fragments)
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
