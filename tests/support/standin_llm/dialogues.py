"""The stand-in's conversational routes: OpenAI's chat completions (text, tool calls, stop
strings; streamed and not), Anthropic's Messages (native mode) and vLLM's ``/tokenize``.

What the model does is fixed by the request, never random: it answers ``chunks`` pieces of text
(or ``reply``), then calls a tool when the request offers tools and its last turn is not a tool's
answer (``wants_tool_call`` / ``wants_tool_use``), always with :data:`~.wire.TOOL_INPUT`; a stop
string (``stop`` / ``stop_sequences``) found in the text ends the answer there, tool call or not.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from tests.support.standin_llm.core import Answer, StandinCore
from tests.support.standin_llm.wire import (
    Controls,
    Json,
    RecordedRequest,
    StopWatch,
    chat_tool_call,
    chat_usage,
    message_object,
    message_usage,
    prompt_tokens_for,
    sse,
    stop_strings,
    tokenize_answer,
    tool_use_block,
    wants_tool_call,
    wants_tool_use,
)


def _halves(text: str) -> tuple[str, str]:
    """A tool call's arguments in two fragments, as models stream them."""
    half = len(text) // 2
    return text[:half], text[half:]


class DialogueRoutes(StandinCore):
    async def _generated(
        self, controls: Controls, request: web.Request, watch: StopWatch, record: RecordedRequest
    ) -> AsyncIterator[str]:
        """The answer's text pieces on the pacing schedule, until the last or a stop string."""
        async for i in self._paced(controls, request):
            piece = watch.take(controls.piece(i))
            record.chunks_sent = i + 1
            if piece:
                yield piece
            if watch.matched is not None:
                return

    async def _handle_chat(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        n = int(body.get("n") or 1)
        watch = StopWatch(stop_strings(body.get("stop")))
        call = chat_tool_call(body) if wants_tool_call(body) else None
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        base = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        if not body.get("stream"):
            text = "".join([p async for p in self._generated(controls, request, watch, record)])
            call = None if watch.matched is not None else call
            message: Json = {"role": "assistant", "content": text or None, "refusal": None}
            if call is not None:
                message["tool_calls"] = [call]
            finish = "tool_calls" if call is not None else "stop"
            choice = {"message": message, "logprobs": None, "finish_reason": finish}
            choices = [{"index": k, **choice, "stop_reason": watch.matched} for k in range(n)]
            record.usage = usage = chat_usage(prompt, watch.pieces)
            payload = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
            return web.json_response(payload, headers={"x-request-id": ident})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        response = await self._open_sse(request)

        async def emit(delta: Json, finish: str | None = None, **more: object) -> None:
            choices = [
                {"index": k, "delta": delta, "logprobs": None, "finish_reason": finish, **more}
                for k in range(n)
            ]
            await response.write(b"".join(sse({**base, "choices": [c], **extra}) for c in choices))

        await emit({"role": "assistant", "content": ""})
        async for piece in self._generated(controls, request, watch, record):
            await emit({"content": piece})
        if call is not None and watch.matched is None:
            await self._stream_tool_call(emit, call)
            await emit({}, "tool_calls", stop_reason=None)
        else:
            await emit({}, "stop", stop_reason=watch.matched)
        record.usage = usage = chat_usage(prompt, watch.pieces)
        if include_usage:
            await response.write(sse({**base, "choices": [], "usage": usage}))
        await response.write(sse("[DONE]"))
        await response.write_eof()
        return response

    @staticmethod
    async def _stream_tool_call(emit: Callable[..., Awaitable[None]], call: Json) -> None:
        """As OpenAI and vLLM stream one: index, id, type and name first, then the arguments
        in fragments."""
        head = {**call, "index": 0, "function": {"name": call["function"]["name"]}}
        await emit({"tool_calls": [head]})
        for fragment in _halves(call["function"]["arguments"]):
            await emit({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]})

    async def _count_tokens(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, _controls, _model = await self._prepare(request, record)
        return web.json_response({"input_tokens": prompt_tokens_for(request.path, body)})

    async def _tokenize(self, request: web.Request, record: RecordedRequest) -> Answer:
        """vLLM's ``POST /tokenize`` (beside ``/v1``, not under it)."""
        body, _controls, _model = await self._prepare(request, record)
        return web.json_response(tokenize_answer(body))

    async def _handle_messages(self, request: web.Request, record: RecordedRequest) -> Answer:
        """Anthropic's Messages API: text, then a ``tool_use`` block when tools are offered."""
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "msg_" + uuid.uuid4().hex
        watch = StopWatch(stop_strings(body.get("stop_sequences")))
        tool = tool_use_block(body) if wants_tool_use(body) else None
        if not body.get("stream"):
            text = "".join([p async for p in self._generated(controls, request, watch, record)])
            tool = None if watch.matched is not None else tool
            content = [{"type": "text", "text": text}] + ([tool] if tool else [])
            record.usage = message_usage(prompt, watch.pieces)
            answer = message_object(model, ident, content, _stop(tool, watch), record.usage)
            answer["stop_sequence"] = watch.matched
            return web.json_response(answer)
        response = await self._open_sse(request)

        async def event(kind: str, payload: Json) -> None:
            await response.write(sse({"type": kind, **payload}, event=kind))

        start = message_object(model, ident, [], None, message_usage(prompt, 1))
        await event("message_start", {"message": start})
        await event("ping", {})
        await event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        async for piece in self._generated(controls, request, watch, record):
            delta = {"type": "text_delta", "text": piece}
            await event("content_block_delta", {"index": 0, "delta": delta})
        await event("content_block_stop", {"index": 0})
        tool = None if watch.matched is not None else tool
        if tool is not None:
            await self._stream_tool_use(event, tool)
        delta = {"stop_reason": _stop(tool, watch), "stop_sequence": watch.matched}
        await event("message_delta", {"delta": delta, "usage": {"output_tokens": watch.pieces}})
        await event("message_stop", {})
        record.usage = message_usage(prompt, watch.pieces)
        await response.write_eof()
        return response

    @staticmethod
    async def _stream_tool_use(event: Callable[[str, Json], Awaitable[None]], tool: Json) -> None:
        """Block 1: the ``tool_use`` block, its input in two ``input_json_delta`` pieces."""
        await event("content_block_start", {"index": 1, "content_block": {**tool, "input": {}}})
        for piece in _halves(json.dumps(tool["input"])):
            delta = {"type": "input_json_delta", "partial_json": piece}
            await event("content_block_delta", {"index": 1, "delta": delta})
        await event("content_block_stop", {"index": 1})


def _stop(tool: Json | None, watch: StopWatch) -> str:
    """Anthropic's ``stop_reason`` for an answer that has ended."""
    if watch.matched is not None:
        return "stop_sequence"
    return "tool_use" if tool is not None else "end_turn"
