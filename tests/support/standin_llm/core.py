"""The stand-in LLM's core: its settings, request records, and the plumbing its routes share
(reading a request, per-request controls, pacing, SSE, OpenAI-shaped errors)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from aiohttp import web

from tests.support.standin_llm.wire import (
    DEFAULT_MODELS,
    SSE_CONTENT_TYPE,
    Controls,
    Json,
    RecordedRequest,
    anthropic_error_body,
    error_body,
)

Answer = web.StreamResponse
RecordedHandler = Callable[[web.Request, RecordedRequest], Awaitable[Answer]]


class ClientGoneError(Exception):
    pass


class ErrorAnswerError(Exception):
    """Raised inside a handler to answer an error: in OpenAI's shape, or in Anthropic's on the
    Messages routes (as vLLM's /v1/messages answers)."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response_for(self, path: str) -> web.Response:
        headers = {"retry-after": "1"} if self.status == 429 else {}
        body = error_body(self.status, self.message, self.param, self.code)
        if path.startswith("/v1/messages"):
            body = anthropic_error_body(self.status, self.message)
        return web.json_response(body, status=self.status, headers=headers)


class StandinCore:
    """What every route of the stand-in shares; the server is
    :class:`tests.support.standin_llm.server.StandinLLM`."""

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
        tokenize: bool = True,
    ) -> None:
        self.models = list(models)
        self.messages_api = messages_api  # False: a chat-only upstream (no /v1/messages)
        self.tokenize = tokenize  # False: no vLLM /tokenize (404, as most servers)
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
            raise ErrorAnswerError(
                400, "We could not parse the JSON body of your request."
            ) from None
        if not isinstance(body, dict):
            raise ErrorAnswerError(400, "The request body must be a JSON object.")
        record.body = body
        return body

    def _check_model(self, body: Json) -> str:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ErrorAnswerError(400, "you must provide a model parameter", "model")
        if self.strict_models and model not in self.models:
            raise ErrorAnswerError(
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
            except ErrorAnswerError as answer:
                response = answer.response_for(request.path)
            except (asyncio.CancelledError, ConnectionResetError, ClientGoneError):
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
            raise ErrorAnswerError(
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
                raise ClientGoneError("fail_after reached")
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
