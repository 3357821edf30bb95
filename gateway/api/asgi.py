"""The POST API routes served straight from ASGI, without Quart's request machinery.

Quart costs every request a request object, a context, two tasks and a ``wait_for`` around the
send, which under load is a good share of the gateway's CPU. :class:`ApiAdapter` sits in front
of the Quart app and answers ``POST /v1/chat/completions`` (and the other API routes) itself, with
the same handler (:meth:`gateway.api.routes.ApiRoutes.handle_call`); everything else
(``/v1/models``, health, the WebSocket carrier, unknown routes) goes on to Quart.

Like Quart, a client that goes away (``http.disconnect``) cancels the handler, so the upstream
request is cancelled through the tunnel and the concurrency slot freed at once. The answer is
sent inside :meth:`~gateway.api.routes.ApiRoutes.handle_call`'s ``async with``: the slot is
held until the last byte is handed to the server, and each ``send`` waits for Hypercorn to take
the piece (its flow control toward the client), which is what holds the upstream back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from quart import Response
from quart.wrappers.response import DataBody

from gateway import hypercorn_h2
from gateway.api.forwarding import AnswerCutError
from gateway.api.routes import (
    API_ROUTES,
    DRAIN_FACTOR,
    DRAIN_TIMEOUT_S,
    ApiCall,
    ApiRoutes,
    new_request_id,
)
from gateway.errors import GatewayError, PayloadTooLargeError, openai_error

log = logging.getLogger("gateway.fastpath")

BODY_TIMEOUT_S: Final = 120.0  # as the Quart app's BODY_TIMEOUT
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestTimeoutError(GatewayError):
    status = 408
    error_type = "invalid_request_error"


class ClientGoneError(Exception):
    """The client went away before its request was complete."""


class ApiAdapter:
    """ASGI middleware: the POST API routes here, anything else to ``app``."""

    def __init__(self, app: ASGIApp, routes: ApiRoutes) -> None:
        hypercorn_h2.install()  # without it, an HTTP/2 client's shut window holds nothing back
        self.app = app
        self.routes = routes
        self.paths = frozenset(API_ROUTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        await ApiRequest(scope, receive, send).run(self.routes)


class ApiRequest:
    """One API request over ASGI: body in, response out, cancelled if the client goes away."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request_id = new_request_id()
        self.body_done = False
        self.finished = False
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

    async def run(self, routes: ApiRoutes) -> None:
        self.task = asyncio.current_task()
        try:
            async with routes.handle_call(self.call()) as response:
                await self.respond(response)  # the request's resources are held until sent
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
            log.exception("unexpected error on POST %s", self.scope["path"])
            if self.started:
                raise  # the answer is on its way: only closing the connection is left
            await self.respond(
                openai_error(500, "The gateway failed to handle the request.", "server_error")
            )
        finally:
            self.finished = True
            if self.watcher is not None:
                self.watcher.cancel()
            self.watcher = self.task = None  # no cycle through the tasks' frames

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
        """Read and drop the rest of the body (bounded), so HTTP/1.1 can carry the answer."""
        dropped = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                while (chunk := await self._next_chunk()) is not None:
                    dropped += len(chunk)
                    if dropped > max_bytes:
                        return

    async def _watch(self) -> None:
        """After the body: wait for ``http.disconnect`` and cancel the handler if it is early."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self.finished and self.task is not None:
            self.cancelled_here = True
            self.task.cancel()

    # ----------------------------------------------------------------- response

    async def respond(self, response: Response) -> None:
        headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in response.headers.items()
        ]
        headers.append((b"x-request-id", self.request_id.encode("ascii")))
        start = {"type": "http.response.start", "status": response.status_code, "headers": headers}
        self.started = True
        await self.send(start)
        body = response.response
        if isinstance(body, DataBody):  # a whole answer: one message
            await self.send({"type": "http.response.body", "body": body.data, "more_body": False})
            return
        async with body as pieces:
            async for piece in pieces:
                data = piece.encode() if isinstance(piece, str) else piece
                await self.send({"type": "http.response.body", "body": data, "more_body": True})
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
