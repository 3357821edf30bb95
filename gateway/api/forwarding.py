"""Forwarding one admitted API request through the tunnel.

What is sent and how the answer is read are chosen, pure, in :mod:`gateway.api.upstream_call`
(the upstream's own API relayed, or Anthropic's Messages translated to and from chat
completions). :class:`UpstreamForwarder` sends the call, awaits the response head, then answers
(an :class:`~gateway.api.answer.Answer`) a JSON body through the call's reader or streams SSE
chunk by chunk through the reader's rewriter (:class:`gateway.api.sse.SseRewriter`,
:class:`gateway.api.messages_stream.MessageSseTranslator`). It frees nothing itself: the tunnel
stream it opens is noted on the :class:`Exchange`, and :meth:`Services.close_exchange` runs once,
from the ``finally`` that spans the request from admission to the last byte handed to the server
(:meth:`gateway.api.routes.ApiRoutes.handle_call`): it closes the tunnel stream, frees the
concurrency slot, charges tokens and writes the ledger, metrics and access log.

Backpressure: each piece of an answer goes to the ASGI server's ``send``, which in Hypercorn
returns only once the piece fits the connection (HTTP/1.1: the transport's write buffer drained;
HTTP/2: the stream's flow-control window and a 32 KiB stream buffer). Until then nothing more is
read from the tunnel stream, whose HTTP/2 window then stops the connector, whose unread socket
stops the upstream. A JSON answer up to :data:`MAX_BUFFERED_ANSWER_BYTES` is read whole (one
message, exact ``model`` rewrite and usage); a larger one goes on piece by piece through
:class:`gateway.api.sse.BodyRewriter`, so no answer holds more than that in the gateway.

What a request holds, is charged and gives back lives in :mod:`gateway.api.exchange` (re-exported).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from gateway.api.answer import Answer, sse_error_event
from gateway.api.exchange import AdmissionLike, Exchange, LedgerLike, Services
from gateway.api.upstream_call import AnswerReader, StreamRewriter, UpstreamCall
from gateway.errors import (
    AnswerCutError,
    ApiError,
    TunnelUnavailableError,
    UpstreamAnswerError,
    UpstreamFailedError,
    upstream_failed_message,
)
from tunnel.api import TunnelResponse
from tunnel.errors import NoTunnelError, TunnelError

__all__ = [  # the accounting types are re-exported: the app factory takes them from here
    "AdmissionLike",
    "Exchange",
    "LedgerLike",
    "Services",
    "UpstreamForwarder",
    "map_tunnel_error",
    "prompt_of",
]

log = logging.getLogger("gateway.proxy")

KEEPALIVE: Final = b": keep-alive\n\n"
SSE_HEADERS: Final = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("cache-control", "no-cache"),
    ("x-accel-buffering", "no"),
)
MAX_ERROR_BODY_BYTES: Final = 64 * 1024
MAX_BUFFERED_ANSWER_BYTES: Final = 1 << 20  # a larger JSON answer is passed on piece by piece
CONNECTOR_ANSWER_HEADER: Final = "x-tunnel-answer"  # set on the connector's own answers
Json = dict[str, Any]


def prompt_of(body: Mapping[str, Any]) -> object:
    """The prompt text fields, for ``[log] log_prompts = true`` only."""
    return {k: body[k] for k in ("messages", "prompt", "input", "instructions") if k in body}


def map_tunnel_error(exc: BaseException, request_id: str) -> ApiError:
    """The client's 502 / 503 for a tunnel failure; the cause (which may name an office
    address) is logged with the request id, never sent."""
    if isinstance(exc, NoTunnelError):
        return TunnelUnavailableError(
            f"No connector is serving upstream '{exc.upstream}' right now. Try again later."
        )
    if isinstance(exc, TimeoutError):
        return UpstreamFailedError("The upstream did not answer in time.")
    log.warning("request %s: the tunnel or the upstream failed: %s", request_id, exc)
    return UpstreamFailedError(upstream_failed_message(request_id))


def is_event_stream(response: TunnelResponse) -> bool:
    return any(
        k == "content-type" and v.startswith("text/event-stream") for k, v in response.headers
    )


def content_type(response: TunnelResponse) -> str:
    for key, value in response.headers:
        if key == "content-type":
            return value
    return "application/json"


def from_connector(response: TunnelResponse, data: bytes) -> bool:
    """True for an answer the connector made itself (it could not reach the upstream, or
    refused the path): its text names office hosts. Connectors older than the header answer
    such a 502 with the code ``upstream_unreachable``."""
    if any(k == CONNECTOR_ANSWER_HEADER for k, _ in response.headers):
        return True
    return response.status == 502 and b'"upstream_unreachable"' in data


async def read_upto(response: TunnelResponse, limit: int) -> tuple[bytes, bool]:
    """The body up to about ``limit`` bytes, and whether that is all of it."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        part = await response.read()
        if not part:
            return b"".join(parts), True
        parts.append(part)
        size += len(part)
    return b"".join(parts), False


# --------------------------------------------------------------------------- forwarding


class UpstreamForwarder:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def forward(self, ex: Exchange, upstream: str, call: UpstreamCall) -> Answer:
        """Send ``call`` to ``upstream`` and return the client's answer; ``upstream_timeout_s``
        counts from now, whatever keep-alives a stream sends meanwhile. Tunnel failures raise
        the client's 502 / 503 as :class:`~gateway.errors.ApiError`."""
        deadline = asyncio.get_running_loop().time() + self.s.upstream_timeout_s
        request = self.s.pool.request(upstream, "POST", call.path, call.headers, call.body)
        if ex.stream:
            ex.pending = asyncio.ensure_future(request)
            return await self._start_stream(ex, call.reader, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                ex.upstream = await request
        except (TunnelError, TimeoutError) as exc:
            raise self._mapped(ex, exc) from None
        return await self._complete(ex, ex.upstream, call.reader, deadline)

    def _mapped(self, ex: Exchange, exc: BaseException) -> ApiError:
        mapped = map_tunnel_error(exc, ex.request_id)
        ex.status = mapped.status
        return mapped

    async def _start_stream(self, ex: Exchange, reader: AnswerReader, deadline: float) -> Answer:
        """Wait up to one keep-alive interval for the head: a quick error is passed through
        with its own status; a slow head gets 200 at once and comments until it comes."""
        task = ex.pending
        assert task is not None
        left = deadline - asyncio.get_running_loop().time()
        await asyncio.wait({task}, timeout=max(0.0, min(self.s.keepalive_s, left)))
        if not task.done():
            return self._sse_response(ex, self._late_stream(ex, task, reader.stream(), deadline))
        ex.pending = None
        try:
            response = ex.upstream = task.result()
        except (TunnelError, TimeoutError) as exc:
            raise self._mapped(ex, exc) from None
        if response.status == 200 and is_event_stream(response):
            return self._sse_response(ex, self._stream(ex, response, reader.stream()))
        return await self._complete(ex, response, reader, deadline)

    async def _complete(
        self, ex: Exchange, response: TunnelResponse, reader: AnswerReader, deadline: float
    ) -> Answer:
        """A JSON answer (or an error, in the client's shape): read whole when small, else
        passed on piece by piece when the reader can."""
        try:
            async with asyncio.timeout_at(deadline):
                data, complete = await read_upto(response, MAX_BUFFERED_ANSWER_BYTES)
        except (TunnelError, TimeoutError) as exc:
            raise self._mapped(ex, exc) from None
        ex.first_byte()
        ex.status = response.status
        ok = 200 <= response.status < 300
        if not ok and complete and from_connector(response, data):
            raise self._connector_failed(ex, response, data)
        ctype = reader.content_type or content_type(response)
        if complete:
            if ok:
                data, ex.usage = reader.whole(data)
            else:
                data = reader.error(response.status, data)
            await self.s.settle(ex)
            return Answer(response.status, (("content-type", ctype),), data)
        rewriter = reader.pieces(ok)
        if rewriter is None:
            log.warning("request %s: over %d bytes to translate", ex.request_id, len(data))
            raise UpstreamFailedError("The upstream's answer is too large to translate.")
        body = self._relay(ex, response, rewriter, data)
        return Answer(response.status, (("content-type", ctype),), body)

    def _connector_failed(
        self, ex: Exchange, response: TunnelResponse, data: bytes
    ) -> UpstreamFailedError:
        log.warning(
            "request %s: the connector answered %d: %s",
            ex.request_id,
            response.status,
            data[:2000].decode("utf-8", "replace"),
        )
        ex.status = UpstreamFailedError.status
        return UpstreamFailedError(upstream_failed_message(ex.request_id))

    async def _relay(
        self, ex: Exchange, response: TunnelResponse, rewriter: StreamRewriter, first: bytes
    ) -> AsyncIterator[bytes]:
        """A large answer piece by piece, each read only once the previous one is sent; a
        tunnel failure, or an upstream silent for ``upstream_timeout_s``, cuts it."""
        yield rewriter.feed(first)
        timeout_s = self.s.upstream_timeout_s
        while True:
            try:
                async with asyncio.timeout(timeout_s):
                    data = await response.read()
            except (TunnelError, TimeoutError) as exc:
                log.warning("request %s: the answer broke off: %r", ex.request_id, exc)
                raise AnswerCutError from None
            if not data:
                break
            out = rewriter.feed(data)
            if out:
                yield out
        tail = await self._settled_tail(ex, rewriter)
        if tail:
            yield tail

    async def _settled_tail(self, ex: Exchange, rewriter: StreamRewriter) -> bytes:
        """At the upstream's end: what the rewriter still holds, returned only once the
        request is settled (tokens charged, ledger row committed), so the client's last bytes
        never come before its row."""
        tail = rewriter.flush()
        ex.usage = rewriter.usage
        await self.s.settle(ex)
        return tail

    def _sse_response(self, ex: Exchange, body: AsyncIterator[bytes]) -> Answer:
        ex.status = 200
        return Answer(200, SSE_HEADERS, body)

    async def _late_stream(
        self,
        ex: Exchange,
        task: asyncio.Future[TunnelResponse],
        rewriter: StreamRewriter,
        deadline: float,
    ) -> AsyncIterator[bytes]:
        """The head was slow: 200 is already sent, so comments keep the line alive meanwhile
        and a failure becomes an error event."""
        loop = asyncio.get_running_loop()
        self.s.metrics.active_streams.inc()
        try:
            while not task.done():
                left = deadline - loop.time()
                if left <= 0:  # the tunnel request is cancelled by close_exchange
                    yield self._error_event(ex, TimeoutError())
                    return
                await asyncio.wait({task}, timeout=min(self.s.keepalive_s, left))
                if not task.done():
                    yield KEEPALIVE
            ex.pending = None
            response = ex.upstream = task.result()
        except (TunnelError, TimeoutError) as exc:
            yield self._error_event(ex, exc)
            return
        finally:
            self.s.metrics.active_streams.dec()
        if response.status != 200 or not is_event_stream(response):
            yield await self._error_answer(ex, response)
            return
        async for piece in self._stream(ex, response, rewriter):
            yield piece

    async def _error_answer(self, ex: Exchange, response: TunnelResponse) -> bytes:
        """An upstream's error after a 200 went out: its message as an error event (a
        connector's own error: the generic message, the detail in the log)."""
        try:
            data, _ = await read_upto(response, MAX_ERROR_BODY_BYTES)
        except TunnelError:
            data = b""
        ex.status = response.status
        if from_connector(response, data):
            return sse_error_event(self._connector_failed(ex, response, data), ex.error_shape)
        try:
            error = json.loads(data)["error"]
            message, kind = str(error["message"]), str(error.get("type") or "server_error")
        except (ValueError, KeyError, TypeError):
            message, kind = f"The upstream answered {response.status}.", "server_error"
        return sse_error_event(UpstreamAnswerError(response.status, message, kind), ex.error_shape)

    def _error_event(self, ex: Exchange, exc: BaseException) -> bytes:
        return sse_error_event(self._mapped(ex, exc), ex.error_shape)

    async def _stream(
        self, ex: Exchange, response: TunnelResponse, rewriter: StreamRewriter
    ) -> AsyncIterator[bytes]:
        """Relay SSE as it arrives. Whenever the upstream is silent for ``keepalive_s`` (the
        model reading a long prompt), an SSE comment goes out: it sits between events, because
        the rewriter only ever releases whole events."""
        self.s.metrics.active_streams.inc()
        keepalive_s = self.s.keepalive_s
        try:
            while True:
                try:
                    async with asyncio.timeout(keepalive_s):
                        data = await response.read()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if not data:
                    break
                ex.first_byte()
                out = rewriter.feed(data)
                if out:
                    ex.relayed_events += out.count(b"data:")  # ~ one token each (see above)
                    yield out
            tail = await self._settled_tail(ex, rewriter)
            if tail:
                yield tail
        except TunnelError as exc:
            yield self._error_event(ex, exc)
        finally:
            self.s.metrics.active_streams.dec()
            ex.usage = rewriter.usage
            await response.aclose()
