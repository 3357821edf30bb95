"""The one ASGI adapter of the API routes: request in, :class:`~gateway.api.answer.Answer` out.

Quart costs every request a request object, a context, two tasks and a ``wait_for`` around the
send, which under load is a good share of the gateway's CPU. :class:`ApiAdapter` sits in front
of the Quart app and serves every API route itself: the POST routes through
:meth:`gateway.api.routes.ApiRoutes.handle_call`, ``GET /v1/models`` and ``/v1/models/{id}``,
and OpenAI's 405 for another method on them. Everything else (health, the WebSocket carrier,
unknown routes and their 404) goes on to Quart.

Like Quart, a client that goes away (``http.disconnect``) cancels the handler, so the upstream
request is cancelled through the tunnel and the concurrency slot freed at once. The answer is
sent inside :meth:`~gateway.api.routes.ApiRoutes.handle_call`'s ``async with``: the slot is held
until the last byte is handed to the server, and each ``send`` waits for Hypercorn to take the
piece (its flow control toward the client), which is what holds the upstream back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    MutableMapping,
)
from typing import Any, Final

from gateway import hypercorn_h2, hypercorn_h11
from gateway.api.answer import Answer, error_answer
from gateway.api.routes import (
    API_ROUTES,
    MODELS_ROUTE,
    ApiCall,
    ApiRoutes,
    new_request_id,
    shape_for,
)
from gateway.errors import (
    AnswerCutError,
    ApiError,
    ClientGoneError,
    InternalError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RequestTimeoutError,
)

log = logging.getLogger("gateway.fastpath")

BODY_TIMEOUT_S: Final = 120.0  # the whole request body must be in by then
DRAIN_TIMEOUT_S: Final = 5.0
DRAIN_FACTOR: Final = 4  # a body over the limit is read and dropped up to this many times it
ERROR_DRAIN_BYTES: Final = 1 << 20  # the body of a request refused unread (405)
MODEL_PREFIX: Final = MODELS_ROUTE + "/"
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_api_path(path: str, post_paths: frozenset[str]) -> bool:
    """The paths this adapter serves: the POST routes, ``/v1/models`` and ``/v1/models/{id}``
    (an id that is not empty and does not start with ``/``, as Quart's ``path`` converter)."""
    if path in post_paths or path == MODELS_ROUTE:
        return True
    model_id = path[len(MODEL_PREFIX) :] if path.startswith(MODEL_PREFIX) else ""
    return bool(model_id) and not model_id.startswith("/")


class ApiAdapter:
    """ASGI middleware: the API routes here, anything else to ``app``."""

    def __init__(self, app: ASGIApp, routes: ApiRoutes) -> None:
        hypercorn_h2.install()  # without it, an HTTP/2 client's shut window holds nothing back
        hypercorn_h11.install()  # a request Hypercorn cannot parse is told why, in JSON
        self.app = app
        self.routes = routes
        self.post_paths = frozenset(API_ROUTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"], self.post_paths):
            await self.app(scope, receive, send)
            return
        await ApiRequest(scope, receive, send).run(self)


class ApiRequest:
    """One API request over ASGI: body in, answer out, cancelled if the client goes away."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request_id = new_request_id()
        self.body_done = False
        self.answered = False
        self.cancelled_here = False
        self.started = False
        self.task: asyncio.Task[Any] | None = None
        self.watcher: asyncio.Task[None] | None = None

    def call(self) -> ApiCall:
        authorization = None
        headers: list[tuple[str, str]] = []
        for raw_name, raw_value in self.scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name == "authorization":
                authorization = value
            headers.append((name, value))
        client = self.scope.get("client")
        return ApiCall(
            route=self.scope["path"],
            authorization=authorization,
            headers=headers,
            remote=str(client[0]) if client else "-",
            request_id=self.request_id,
            read_body=self.read_body,
            drain=self.drain,
        )

    async def run(self, adapter: ApiAdapter) -> None:
        self.task = asyncio.current_task()
        try:
            async with self.answer(adapter) as answer:
                await self.respond(answer)  # the request's resources are held until sent
        except ClientGoneError:
            return
        except AnswerCutError:
            return  # the answer is incomplete: Hypercorn closes the connection (or resets)
        except asyncio.CancelledError:
            if not self.cancelled_here:
                raise
            if self.task is not None:
                self.task.uncancel()  # our own cancel (the client left): the request is over
        except Exception:
            log.exception("unexpected error on %s %s", self.scope["method"], self.scope["path"])
            if self.started:
                raise  # the answer is on its way: only closing the connection is left
            await self.respond(error_answer(InternalError(), shape=shape_for(self.scope["path"])))
        finally:
            self.answered = True
            if self.watcher is not None:
                self.watcher.cancel()
            self.watcher = self.task = None  # no cycle through the tasks' frames

    def answer(self, adapter: ApiAdapter) -> contextlib.AbstractAsyncContextManager[Answer]:
        """The route's answer, held open while it is sent."""
        method, path = self.scope["method"], self.scope["path"]
        if path in adapter.post_paths:
            if method == "POST":
                return adapter.routes.handle_call(self.call())
        elif method in ("GET", "HEAD"):
            return self.models(adapter.routes, path)
        return self.refused(MethodNotAllowedError(f"{method} {path}"))

    @contextlib.asynccontextmanager
    async def models(self, routes: ApiRoutes, path: str) -> AsyncIterator[Answer]:
        """``/v1/models`` or one model; the (empty) body is read first, so that a client that
        leaves while the upstreams' lists are fetched cancels the fetch."""
        await self.drain(ERROR_DRAIN_BYTES)
        model_id = None if path == MODELS_ROUTE else path[len(MODEL_PREFIX) :]
        yield await routes.models(self.call().authorization, model_id)

    @contextlib.asynccontextmanager
    async def refused(self, exc: ApiError) -> AsyncIterator[Answer]:
        await self.drain(ERROR_DRAIN_BYTES)
        yield error_answer(exc, shape=shape_for(self.scope["path"]))

    # ----------------------------------------------------------------- request body

    async def _next_chunk(self) -> bytes | None:
        """The next piece of the body; None at its end."""
        if self.body_done:
            return None
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        if not message.get("more_body", False):
            self.body_done = True
            self.watcher = asyncio.ensure_future(self._watch())
        return bytes(message.get("body", b""))

    async def read_body(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                while (chunk := await self._next_chunk()) is not None:
                    size += len(chunk)
                    if size > limit:
                        await self.drain(DRAIN_FACTOR * limit)
                        raise PayloadTooLargeError(limit)
                    parts.append(chunk)
        except TimeoutError:
            raise RequestTimeoutError("Timed out reading the request body.") from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def drain(self, max_bytes: int) -> None:
        if not self.body_done:
            async with contextlib.aclosing(self._chunks()) as chunks:
                await drop_body(chunks, max_bytes)

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        while (chunk := await self._next_chunk()) is not None:
            yield chunk

    async def _watch(self) -> None:
        """After the body: wait for ``http.disconnect`` and cancel the handler if it is early."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self.answered and self.task is not None:
            self.cancelled_here = True
            self.task.cancel()

    # ----------------------------------------------------------------- answer

    async def respond(self, answer: Answer) -> None:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers
        ]
        body = answer.body
        if isinstance(body, bytes):
            headers.append((b"content-length", str(len(body)).encode("ascii")))
        headers.append((b"x-request-id", self.request_id.encode("ascii")))
        start = {"type": "http.response.start", "status": answer.status, "headers": headers}
        self.started = True
        await self.send(start)
        if isinstance(body, bytes):  # a whole answer: one message
            data = b"" if self.scope["method"] == "HEAD" else body
            await self.send({"type": "http.response.body", "body": data, "more_body": False})
            return
        try:
            async for piece in body:
                await self.send({"type": "http.response.body", "body": piece, "more_body": True})
        finally:
            await aclose(body)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})


async def drop_body(chunks: AsyncIterable[bytes], max_bytes: int) -> None:
    """Read and drop the rest of a request body (bounded in bytes and time): an HTTP/1.1
    connection can only carry the next request once this one's body is in."""
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for chunk in chunks:
                dropped += len(chunk)
                if dropped > max_bytes:
                    return


async def aclose(body: AsyncIterator[bytes]) -> None:
    """Close an answer's generator at once (its ``finally`` frees the tunnel stream), whether
    it ran out or the sending stopped half-way."""
    close = getattr(body, "aclose", None)
    if close is not None:
        await close()
