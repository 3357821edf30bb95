"""The stand-in LLM's aiohttp server: routes, pacing, request records."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.standin_llm.wire import (
    DEFAULT_MODELS,
    SSE_CONTENT_TYPE,
    Controls,
    Json,
    RecordedRequest,
    bulk_chunks,
    chat_usage,
    embedding_inputs,
    embedding_vector,
    encode_base64_floats,
    error_body,
    message_object,
    message_usage,
    prompt_tokens_for,
    response_object,
    response_usage,
    sse,
    tool_use_block,
    wants_tool_use,
)

Answer = web.StreamResponse
RecordedHandler = Callable[[web.Request, RecordedRequest], Awaitable[Answer]]


# --------------------------------------------------------------------------- server


class _ClientGoneError(Exception):
    pass


class _ErrorAnswerError(Exception):
    """Raised inside a handler to answer an OpenAI-shaped error."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        headers = {"retry-after": "1"} if status == 429 else {}
        self.response = web.json_response(
            error_body(status, message, param, code), status=status, headers=headers
        )


class StandinLLM:
    """The stand-in server: ``await start()`` in-process, or ``python -m`` this module."""

    def __init__(
        self,
        models: list[str] | tuple[str, ...] = DEFAULT_MODELS,
        *,
        chunks: int = 5,
        pace_ms: float = 0.0,
        first_delay_ms: float = 0.0,
        strict_models: bool = False,
        embedding_dims: int = 16,
        max_records: int = 10000,
        extra_routes: Sequence[web.RouteDef] = (),
        messages_api: bool = True,
    ) -> None:
        self.models = list(models)
        self.messages_api = messages_api  # False: a chat-only upstream (no /v1/messages)
        self.defaults = Controls(chunks=chunks, pace_ms=pace_ms, first_delay_ms=first_delay_ms)
        self.strict_models = strict_models
        self.extra_routes = list(extra_routes)  # e.g. a WebSocket echo, served before the catch-all
        self.embedding_dims = embedding_dims
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._next_id = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.scheme = "http"
        self.created = int(time.time())

    # ---- lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        recorded = {
            ("GET", "/v1/models"): self._models,
            ("POST", "/v1/chat/completions"): self._handle_chat,
            ("POST", "/v1/completions"): self._handle_completions,
            ("POST", "/v1/embeddings"): self._handle_embeddings,
            ("POST", "/v1/responses"): self._handle_responses,
            ("POST", "/v1/bulk/upload"): self._upload,
            ("POST", "/v1/bulk/echo"): self._echo,
            ("GET", "/v1/bulk/download"): self._download,
        }
        if self.messages_api:
            recorded["POST", "/v1/messages"] = self._handle_messages
            recorded["POST", "/v1/messages/count_tokens"] = self._count_tokens
        for (method, path), handler in recorded.items():
            app.router.add_route(method, path, self._guarded(handler))
        app.router.add_get("/_standin/requests", self._list_records)
        app.router.add_post("/_standin/reset", self._reset)
        app.router.add_routes(self.extra_routes)
        app.router.add_route("*", "/{tail:.*}", self._guarded(self._not_found))
        return app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """Listen on ``host:port`` (0: any free port), over TLS when ``ssl_context`` is given."""
        # handler_cancellation: a client that goes away cancels the handler at once, so the
        # record says "disconnected" within milliseconds rather than at the next write.
        self._runner = web.AppRunner(self.make_app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024, ssl_context=ssl_context)
        self.scheme = "https" if ssl_context is not None else "http"
        await site.start()
        address = self._runner.addresses[0]
        self.host, self.port = address[0], int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StandinLLM:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL without ``/v1``, e.g. ``http://127.0.0.1:41234``."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI SDK takes as ``base_url``: ``http://127.0.0.1:41234/v1``."""
        return self.url + "/v1"

    # ---- records

    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self._records)

    def reset(self) -> None:
        self._records.clear()

    async def wait_for_request(
        self, predicate: Callable[[RecordedRequest], bool], timeout: float = 5.0
    ) -> RecordedRequest:
        """The first record matching ``predicate``, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            for record in list(self._records):
                if predicate(record):
                    return record
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no recorded request matched within {timeout:.1f}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def _record(self, request: web.Request) -> RecordedRequest:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self._next_id += 1
        record = RecordedRequest(
            self._next_id, request.method, request.path, request.query_string, headers
        )
        self._records.append(record)
        self._changed.set()
        return record

    def _finish(self, record: RecordedRequest, *, completed: bool, disconnected: bool) -> None:
        record.ended_ns = time.monotonic_ns()
        record.completed = completed
        record.disconnected = disconnected
        self._changed.set()

    # ---- plumbing shared by the routes

    async def _read_json(self, request: web.Request, record: RecordedRequest) -> Json:
        raw = await request.read()
        record.body_size = len(raw)
        try:
            body = json.loads(raw)
        except ValueError:
            raise _ErrorAnswerError(
                400, "We could not parse the JSON body of your request."
            ) from None
        if not isinstance(body, dict):
            raise _ErrorAnswerError(400, "The request body must be a JSON object.")
        record.body = body
        return body

    def _check_model(self, body: Json) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _ErrorAnswerError(400, "you must provide a model parameter", "model")
        if self.strict_models and model not in self.models:
            raise _ErrorAnswerError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "model",
                "model_not_found",
            )
        return model

    def _guarded(self, handler: RecordedHandler) -> Callable[[web.Request], Awaitable[Answer]]:
        """The aiohttp handler for ``handler``: records the request and how it ended."""

        async def handle(request: web.Request) -> Answer:
            record = self._record(request)
            try:
                response = await handler(request, record)
            except _ErrorAnswerError as answer:
                response = answer.response
            except (asyncio.CancelledError, ConnectionResetError, _ClientGoneError):
                self._finish(record, completed=False, disconnected=True)
                raise
            except Exception:
                record.status = 500  # a bug in the stand-in: say so in the record too
                self._finish(record, completed=False, disconnected=False)
                raise
            record.status = response.status
            self._finish(record, completed=True, disconnected=False)
            return response

        return handle

    async def _prepare(
        self, request: web.Request, record: RecordedRequest
    ) -> tuple[Json, Controls, str]:
        body = await self._read_json(request, record)
        controls = self.defaults.merged(dict(record.headers), body)
        if controls.status is not None and controls.status >= 400:
            await self._sleep_ms(controls.first_delay_ms)
            raise _ErrorAnswerError(
                controls.status, f"stand-in error {controls.status} as requested"
            )
        model = self._check_model(body)
        record.model = model
        await self._sleep_ms(controls.head_delay_ms)
        return body, controls, model

    @staticmethod
    async def _sleep_ms(ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)

    async def _paced(self, controls: Controls, request: web.Request) -> AsyncIterator[int]:
        """Yields chunk indexes on the pacing schedule; cuts the connection at ``fail_after``."""
        start = time.monotonic() + controls.first_delay_ms / 1000
        for i in range(controls.count()):
            delay = start + i * controls.pace_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if controls.fail_after is not None and i >= controls.fail_after:
                if request.transport is not None:
                    request.transport.abort()
                raise _ClientGoneError("fail_after reached")
            yield i

    async def _open_sse(self, request: web.Request) -> Answer:
        response = web.StreamResponse(
            headers={
                "Content-Type": SSE_CONTENT_TYPE,
                "Cache-Control": "no-cache",
                "x-request-id": uuid.uuid4().hex,
            }
        )
        await response.prepare(request)
        return response

    # ---- routes

    async def _not_found(self, request: web.Request, _record: RecordedRequest) -> Answer:
        raise _ErrorAnswerError(404, f"Invalid URL ({request.method} {request.path})")

    async def _models(self, _request: web.Request, _record: RecordedRequest) -> Answer:
        data = [
            {"id": m, "object": "model", "created": self.created, "owned_by": "standin"}
            for m in self.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _handle_chat(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        n = int(body.get("n") or 1)
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        base = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            usage = chat_usage(prompt, controls.count())
            record.usage, record.chunks_sent = usage, controls.count()
            choices = [
                {
                    "index": k,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
                for k in range(n)
            ]
            payload = {**base, "object": "chat.completion", "choices": choices, "usage": usage}
            return web.json_response(payload, headers={"x-request-id": ident})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        response = await self._open_sse(request)

        def chunk(delta: Json, finish: str | None, k: int) -> bytes:
            choice = {"index": k, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({**base, "choices": [choice], **extra})

        for k in range(n):
            await response.write(chunk({"role": "assistant", "content": ""}, None, k))
        async for i in self._paced(controls, request):
            piece = controls.piece(i)
            await response.write(b"".join(chunk({"content": piece}, None, k) for k in range(n)))
            record.chunks_sent = i + 1
        for k in range(n):
            await response.write(chunk({}, "stop", k))
        usage = chat_usage(prompt, controls.count())
        record.usage = usage
        if include_usage:
            await response.write(sse({**base, "choices": [], "usage": usage}))
        await response.write(sse("[DONE]"))
        await response.write_eof()
        return response

    async def _handle_completions(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "cmpl-" + uuid.uuid4().hex[:24]
        base = {
            "id": ident,
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }

        def choice(text: str, finish: str | None) -> Json:
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish}

        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            usage = chat_usage(prompt, controls.count())
            record.usage, record.chunks_sent = usage, controls.count()
            return web.json_response({**base, "choices": [choice(text, "stop")], "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}
        response = await self._open_sse(request)
        async for i in self._paced(controls, request):
            piece = controls.piece(i)
            await response.write(sse({**base, "choices": [choice(piece, None)], **extra}))
            record.chunks_sent = i + 1
        await response.write(sse({**base, "choices": [choice("", "stop")], **extra}))
        usage = chat_usage(prompt, controls.count())
        record.usage = usage
        if include_usage:
            await response.write(sse({**base, "choices": [], "usage": usage}))
        await response.write(sse("[DONE]"))
        await response.write_eof()
        return response

    async def _handle_embeddings(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        await self._sleep_ms(controls.first_delay_ms)
        dims = int(body.get("dimensions") or self.embedding_dims)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(embedding_inputs(body.get("input", ""))):
            vector = embedding_vector(text, dims)
            encoded: Any = encode_base64_floats(vector) if as_base64 else vector
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        prompt = prompt_tokens_for(request.path, body)
        usage = {"prompt_tokens": prompt, "total_tokens": prompt}
        record.usage = usage
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    async def _handle_responses(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "resp_" + uuid.uuid4().hex
        usage = response_usage(prompt, controls.count())
        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            record.usage, record.chunks_sent = usage, controls.count()
            return web.json_response(response_object(body, model, ident, "completed", text, usage))
        response = await self._open_sse(request)
        seq = 0

        async def event(kind: str, payload: Json) -> None:
            nonlocal seq
            await response.write(sse({"type": kind, "sequence_number": seq, **payload}, event=kind))
            seq += 1

        started = response_object(body, model, ident, "in_progress", "", None)
        item_id = "msg_" + ident[5:]
        item = {
            "id": item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        await event("response.created", {"response": started})
        await event("response.in_progress", {"response": started})
        await event("response.output_item.added", {"output_index": 0, "item": item})
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        where = {"item_id": item_id, "output_index": 0, "content_index": 0}
        await event("response.content_part.added", {**where, "part": part})
        text = ""
        async for i in self._paced(controls, request):
            piece = controls.piece(i)
            text += piece
            await event("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
            record.chunks_sent = i + 1
        await event("response.output_text.done", {**where, "text": text, "logprobs": []})
        await event("response.content_part.done", {**where, "part": {**part, "text": text}})
        done = response_object(body, model, ident, "completed", text, usage)
        await event("response.output_item.done", {"output_index": 0, "item": done["output"][0]})
        await event("response.completed", {"response": done})
        record.usage = usage
        await response.write_eof()
        return response

    async def _count_tokens(self, request: web.Request, record: RecordedRequest) -> Answer:
        body, _controls, _model = await self._prepare(request, record)
        return web.json_response({"input_tokens": prompt_tokens_for(request.path, body)})

    async def _handle_messages(self, request: web.Request, record: RecordedRequest) -> Answer:
        """Anthropic's Messages API: text, or a ``tool_use`` block when tools are offered."""
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "msg_" + uuid.uuid4().hex
        tool = tool_use_block(body) if wants_tool_use(body) else None
        stop = "tool_use" if tool else "end_turn"
        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            content = [{"type": "text", "text": text}] + ([tool] if tool else [])
            record.usage = message_usage(prompt, controls.count())
            record.chunks_sent = controls.count()
            return web.json_response(message_object(model, ident, content, stop, record.usage))
        response = await self._open_sse(request)

        async def event(kind: str, payload: Json) -> None:
            await response.write(sse({"type": kind, **payload}, event=kind))

        start = message_object(model, ident, [], None, message_usage(prompt, 1))
        await event("message_start", {"message": start})
        await event("ping", {})
        await event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        async for i in self._paced(controls, request):
            delta = {"type": "text_delta", "text": controls.piece(i)}
            await event("content_block_delta", {"index": 0, "delta": delta})
            record.chunks_sent = i + 1
        await event("content_block_stop", {"index": 0})
        if tool is not None:
            await self._stream_tool_use(event, tool)
        usage = {"output_tokens": controls.count()}
        await event(
            "message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage}
        )
        await event("message_stop", {})
        record.usage = message_usage(prompt, controls.count())
        await response.write_eof()
        return response

    @staticmethod
    async def _stream_tool_use(event: Callable[[str, Json], Awaitable[None]], tool: Json) -> None:
        """Block 1: the ``tool_use`` block, its input in two ``input_json_delta`` pieces."""
        await event("content_block_start", {"index": 1, "content_block": {**tool, "input": {}}})
        text = json.dumps(tool["input"])
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            await event("content_block_delta", {"index": 1, "delta": delta})
        await event("content_block_stop", {"index": 1})

    async def _upload(self, request: web.Request, record: RecordedRequest) -> Answer:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            size += len(chunk)
        record.body_size, record.body_sha256 = size, digest.hexdigest()
        return web.json_response({"bytes": size, "sha256": record.body_sha256})

    async def _echo(self, request: web.Request, record: RecordedRequest) -> Answer:
        """Streams the body back as it arrives (both directions at once, for flow control)."""
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            record.body_size += len(chunk)
            await response.write(chunk)
        record.body_sha256 = digest.hexdigest()
        await response.write_eof()
        return response

    async def _download(self, request: web.Request, record: RecordedRequest) -> Answer:
        try:
            n = int(request.query.get("bytes", "0"))
        except ValueError:
            raise _ErrorAnswerError(400, "bytes must be an integer", "bytes") from None
        response = web.StreamResponse(
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(n)}
        )
        await response.prepare(request)
        for chunk in bulk_chunks(n):
            await response.write(chunk)
            record.chunks_sent += 1
        await response.write_eof()
        return response

    async def _list_records(self, _request: web.Request) -> Answer:
        return web.json_response([r.as_dict() for r in self._records])

    async def _reset(self, _request: web.Request) -> Answer:
        self.reset()
        return web.json_response({"ok": True})


# --------------------------------------------------------------------------- out-of-process use


async def fetch_records(url: str) -> list[Json]:
    """The records of a stand-in running elsewhere (``url`` without ``/v1``)."""
    async with aiohttp.ClientSession() as session, session.get(url + "/_standin/requests") as resp:
        resp.raise_for_status()
        records: list[Json] = await resp.json()
        return records
