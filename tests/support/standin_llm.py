"""A stand-in OpenAI-compatible LLM server (like vLLM, LiteLLM) for tests, the demo and the bench.

It speaks OpenAI's wire format closely enough for the official ``openai`` SDK to parse it all:
``GET /v1/models``, ``POST /v1/chat/completions`` (stream, ``stream_options.include_usage``),
``POST /v1/completions`` (stream too), ``POST /v1/embeddings`` (float and base64),
``POST /v1/responses`` (stream too). Two bulk paths move large bodies byte-exactly:
``POST /v1/bulk/upload`` (answers the size and sha256) and ``GET /v1/bulk/download?bytes=N``.

Controls, per request, as headers or as a ``"standin"`` object in the JSON body (the body wins):

- ``x-standin-chunks`` / ``chunks``: number of content chunks (= completion tokens), default 5
- ``x-standin-pace-ms`` / ``pace_ms``: interval between chunks
- ``x-standin-first-delay-ms`` / ``first_delay_ms``: delay before the first chunk (or the answer)
- ``x-standin-status`` / ``status``: answer this status with an OpenAI-shaped error
- ``x-standin-fail-after`` / ``fail_after``: cut the connection after N content chunks
- ``x-standin-timestamps`` / ``timestamps``: each content piece reads ``w<i>@t=<monotonic ns> ``
- ``reply`` (body only): the answer's text, one chunk per space-separated word

Every request is recorded (headers, JSON body or size, times, status, usage sent, whether the client
went away before the answer finished): ``GET /_standin/requests``, ``POST /_standin/reset``, or
``StandinLLM.requests`` in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import ssl
import struct
import sys
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

try:
    import uvloop
except ImportError:  # Windows
    uvloop = None  # type: ignore[assignment]

DEFAULT_MODELS = ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "text-embedding-test")
DEFAULT_REPLY_WORDS = ("Hello", "from", "the", "stand-in", "LLM.")
BULK_BLOCK_SIZE = 65536
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
Json = dict[str, Any]


# --------------------------------------------------------------------------- pure helpers


def _make_bulk_block() -> bytes:
    parts = (hashlib.sha256(b"standin-%d" % i).digest() for i in range(BULK_BLOCK_SIZE // 32))
    return b"".join(parts)


BULK_BLOCK = _make_bulk_block()


def bulk_chunks(n: int, chunk_size: int = BULK_BLOCK_SIZE) -> Iterator[bytes]:
    """The deterministic bytes of ``GET /v1/bulk/download?bytes=n``, in chunks."""
    view = memoryview(BULK_BLOCK)
    remaining = n
    while remaining > 0:
        size = min(remaining, chunk_size, BULK_BLOCK_SIZE)
        yield bytes(view[:size])
        remaining -= size


def bulk_bytes(n: int) -> bytes:
    return b"".join(bulk_chunks(n))


def bulk_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for chunk in bulk_chunks(n):
        digest.update(chunk)
    return digest.hexdigest()


def count_words(value: Any) -> int:
    """Deterministic token count: whitespace-separated words in every text found in ``value``."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, int):
        return 1  # a token id
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):
        texts = [value[k] for k in ("content", "text", "input", "output") if k in value]
        return sum(count_words(t) for t in texts)
    return 0


def prompt_tokens_for(path: str, body: Json) -> int:
    if path.endswith("/chat/completions"):
        n = count_words(body.get("messages", []))
    elif path.endswith("/completions"):
        n = count_words(body.get("prompt", ""))
    elif path.endswith("/embeddings"):
        n = count_words(body.get("input", ""))
    else:
        n = count_words(body.get("input", "")) + count_words(body.get("instructions") or "")
    return max(n, 1)


def embedding_vector(text: str, dims: int) -> list[float]:
    """Deterministic floats in [-1, 1), exactly representable as float32."""
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 128) / 128 for b in digest)
        counter += 1
    return out[:dims]


def encode_base64_floats(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [json.dumps(value)]
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value]
    return [json.dumps(value)]


def sse(data: Json | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def error_body(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> Json:
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    if status == 429:
        kind = code = "rate_limit_exceeded"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class Controls:
    chunks: int = 5
    pace_ms: float = 0.0
    first_delay_ms: float = 0.0
    status: int | None = None
    fail_after: int | None = None
    timestamps: bool = False
    reply: str | None = None

    _HEADERS = (
        ("chunks", "x-standin-chunks", int),
        ("pace_ms", "x-standin-pace-ms", float),
        ("first_delay_ms", "x-standin-first-delay-ms", float),
        ("status", "x-standin-status", int),
        ("fail_after", "x-standin-fail-after", int),
        ("timestamps", "x-standin-timestamps", lambda v: v.lower() in ("1", "true", "yes")),
    )

    def merged(self, headers: dict[str, str], body: Json) -> Controls:
        values = asdict(self)
        for name, header, convert in self._HEADERS:
            if header in headers:
                values[name] = convert(headers[header])
        extra = body.get("standin")
        if isinstance(extra, dict):
            values.update({k: v for k, v in extra.items() if k in values})
        return Controls(**values)

    def piece(self, i: int) -> str:
        """Content piece ``i`` of the answer (its trailing space included, but the last's)."""
        if self.reply is not None:
            words = self.reply.split(" ")
            return words[i] + (" " if i < len(words) - 1 else "")
        if self.timestamps:
            return f"w{i}@t={time.monotonic_ns()} "
        return DEFAULT_REPLY_WORDS[i % len(DEFAULT_REPLY_WORDS)] + " "

    def count(self) -> int:
        return len(self.reply.split(" ")) if self.reply is not None else self.chunks


def chat_usage(prompt: int, completion: int) -> Json:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    id: int
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any = None  # parsed JSON, or None
    body_size: int = 0
    body_sha256: str | None = None
    started_ns: int = field(default_factory=time.monotonic_ns)
    started_wall: float = field(default_factory=time.time)
    ended_ns: int | None = None
    status: int | None = None
    completed: bool = False
    disconnected: bool = False
    chunks_sent: int = 0
    usage: Json | None = None
    model: str | None = None

    def as_dict(self) -> Json:
        return asdict(self)


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
    ) -> None:
        self.models = list(models)
        self.defaults = Controls(chunks=chunks, pace_ms=pace_ms, first_delay_ms=first_delay_ms)
        self.strict_models = strict_models
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
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/bulk/upload", self._upload)
        app.router.add_get("/v1/bulk/download", self._download)
        app.router.add_get("/_standin/requests", self._list_records)
        app.router.add_post("/_standin/reset", self._reset)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
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

    async def _guarded(
        self,
        request: web.Request,
        handler: Callable[[web.Request, RecordedRequest], Any],
    ) -> web.StreamResponse:
        record = self._record(request)
        try:
            response: web.StreamResponse = await handler(request, record)
        except _ErrorAnswerError as answer:
            response = answer.response
        except (asyncio.CancelledError, ConnectionResetError, _ClientGoneError):
            self._finish(record, completed=False, disconnected=True)
            raise
        record.status = response.status
        self._finish(record, completed=True, disconnected=False)
        return response

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

    async def _open_sse(self, request: web.Request) -> web.StreamResponse:
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

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        async def handle(_req: web.Request, _rec: RecordedRequest) -> web.StreamResponse:
            raise _ErrorAnswerError(404, f"Invalid URL ({request.method} {request.path})")

        return await self._guarded(request, handle)

    async def _models(self, request: web.Request) -> web.StreamResponse:
        async def handle(_req: web.Request, _rec: RecordedRequest) -> web.StreamResponse:
            data = [
                {"id": m, "object": "model", "created": self.created, "owned_by": "standin"}
                for m in self.models
            ]
            return web.json_response({"object": "list", "data": data})

        return await self._guarded(request, handle)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._handle_chat)

    async def _handle_chat(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
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

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._handle_completions)

    async def _handle_completions(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
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

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._handle_embeddings)

    async def _handle_embeddings(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
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

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._guarded(request, self._handle_responses)

    def _response_object(
        self, body: Json, model: str, ident: str, status: str, text: str, usage: Json | None
    ) -> Json:
        output = []
        if status == "completed":
            output.append(
                {
                    "id": "msg_" + ident[5:],
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                    ],
                }
            )
        return {
            "id": ident,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "temperature": body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        }

    @staticmethod
    def _response_usage(prompt: int, completion: int) -> Json:
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }

    async def _handle_responses(
        self, request: web.Request, record: RecordedRequest
    ) -> web.StreamResponse:
        body, controls, model = await self._prepare(request, record)
        prompt = prompt_tokens_for(request.path, body)
        ident = "resp_" + uuid.uuid4().hex
        usage = self._response_usage(prompt, controls.count())
        if not body.get("stream"):
            text = "".join([controls.piece(i) async for i in self._paced(controls, request)])
            record.usage, record.chunks_sent = usage, controls.count()
            return web.json_response(
                self._response_object(body, model, ident, "completed", text, usage)
            )
        response = await self._open_sse(request)
        seq = 0

        async def event(kind: str, payload: Json) -> None:
            nonlocal seq
            await response.write(sse({"type": kind, "sequence_number": seq, **payload}, event=kind))
            seq += 1

        started = self._response_object(body, model, ident, "in_progress", "", None)
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
        done = self._response_object(body, model, ident, "completed", text, usage)
        await event("response.output_item.done", {"output_index": 0, "item": done["output"][0]})
        await event("response.completed", {"response": done})
        record.usage = usage
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        async def handle(req: web.Request, record: RecordedRequest) -> web.StreamResponse:
            digest = hashlib.sha256()
            size = 0
            async for chunk in req.content.iter_any():
                digest.update(chunk)
                size += len(chunk)
            record.body_size, record.body_sha256 = size, digest.hexdigest()
            return web.json_response({"bytes": size, "sha256": record.body_sha256})

        return await self._guarded(request, handle)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        async def handle(req: web.Request, record: RecordedRequest) -> web.StreamResponse:
            try:
                n = int(req.query.get("bytes", "0"))
            except ValueError:
                raise _ErrorAnswerError(400, "bytes must be an integer", "bytes") from None
            response = web.StreamResponse(
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(n)}
            )
            await response.prepare(req)
            for chunk in bulk_chunks(n):
                await response.write(chunk)
                record.chunks_sent += 1
            await response.write_eof()
            return response

        return await self._guarded(request, handle)

    async def _list_records(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response([r.as_dict() for r in self._records])

    async def _reset(self, _request: web.Request) -> web.StreamResponse:
        self.reset()
        return web.json_response({"ok": True})


# --------------------------------------------------------------------------- out-of-process use


async def fetch_records(url: str) -> list[Json]:
    """The records of a stand-in running elsewhere (``url`` without ``/v1``)."""
    async with aiohttp.ClientSession() as session, session.get(url + "/_standin/requests") as resp:
        resp.raise_for_status()
        records: list[Json] = await resp.json()
        return records


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="standin_llm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once ready")
    parser.add_argument("--model", action="append", dest="models", help="a model id (repeatable)")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--first-delay-ms", type=float, default=0.0)
    parser.add_argument("--strict-models", action="store_true")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    server = StandinLLM(
        args.models or DEFAULT_MODELS,
        chunks=args.chunks,
        pace_ms=args.pace_ms,
        first_delay_ms=args.first_delay_ms,
        strict_models=args.strict_models,
    )
    await server.start(args.host, args.port)
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{server.port}\n")
        os.replace(tmp, args.port_file)  # atomic: a reader never sees a half-written port
    print(f"standin_llm: listening on {server.url}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if uvloop is not None:
        uvloop.install()
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
