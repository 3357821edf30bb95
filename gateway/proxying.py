"""Forwarding one admitted API request through the tunnel, and accounting for it once.

The request side (:func:`forward_headers`; the body in :mod:`gateway.body_rewrite`) is pure.
:class:`Forwarder` awaits the response head, then either answers a complete JSON body (model
rewritten, usage read) or streams SSE chunk by chunk through :class:`gateway.sse.SseRewriter`.
Whatever happens (end, error, client gone), :meth:`Exchange.finish` runs exactly once: the
concurrency slot is freed first, then tokens charged, and the ledger, metrics, access log written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from quart import Response

from gateway.accesslog import AccessLog
from gateway.errors import (
    GatewayError,
    TunnelUnavailableError,
    UpstreamFailedError,
    sse_error_event,
)
from gateway.metrics import GatewayMetrics, RequestRecord
from gateway.models import ResolvedModel
from gateway.sse import SseRewriter, Usage, model_replacements, rewrite_json_body
from tunnel.api import TunnelPool, TunnelResponse
from tunnel.errors import NoTunnelError, TunnelError

log = logging.getLogger("gateway.proxy")

FORWARDED_HEADERS: Final = frozenset({"content-type", "accept", "user-agent", "openai-beta"})
KEEPALIVE: Final = b": keep-alive\n\n"
SSE_HEADERS: Final = {"cache-control": "no-cache", "x-accel-buffering": "no"}
MAX_ERROR_BODY_BYTES: Final = 64 * 1024
Json = dict[str, Any]


class AdmissionLike(Protocol):
    headers: dict[str, str]

    async def charge(self, prompt_tokens: int, completion_tokens: int) -> None: ...
    async def release(self) -> None: ...


class LedgerLike(Protocol):
    async def record(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None: ...


# --------------------------------------------------------------------------- request side


def forward_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Only the headers an upstream needs; never the client's ``authorization``."""
    out = [(k.lower(), v) for k, v in headers if k.lower() in FORWARDED_HEADERS]
    if not any(k == "content-type" for k, _ in out):
        out.append(("content-type", "application/json"))
    return out


def prompt_of(body: Mapping[str, Any]) -> object:
    """The prompt text fields, for ``[log] log_prompts = true`` only."""
    return {k: body[k] for k in ("messages", "prompt", "input", "instructions") if k in body}


# --------------------------------------------------------------------------- accounting


@dataclass(slots=True)
class Exchange:
    """One API request from admission to the end of its answer."""

    request_id: str
    route: str
    model: str
    identity: str
    remote: str
    stream: bool
    admission: AdmissionLike
    started: float = field(default_factory=time.perf_counter)
    prompt: object = None
    status: int = 0
    usage: Usage | None = None
    ttfb_s: float | None = None
    _finished: bool = False

    def first_byte(self) -> None:
        if self.ttfb_s is None:
            self.ttfb_s = time.perf_counter() - self.started


@dataclass(slots=True)
class Services:
    """What the forwarding needs; built once by the app factory."""

    pool: TunnelPool
    ledger: LedgerLike
    metrics: GatewayMetrics
    access_log: AccessLog
    keepalive_s: float
    upstream_timeout_s: float

    async def finish(self, ex: Exchange) -> None:
        """Free the slot, charge, record: once per request, never raising."""
        if ex._finished:
            return
        ex._finished = True
        usage = ex.usage or Usage()
        try:
            await ex.admission.release()
            if usage.prompt_tokens or usage.completion_tokens:
                await ex.admission.charge(usage.prompt_tokens, usage.completion_tokens)
                await self.ledger.record(
                    ex.identity, ex.model, usage.prompt_tokens, usage.completion_tokens
                )
        except Exception:
            log.exception("accounting for request %s failed", ex.request_id)
        record = RequestRecord(
            request_id=ex.request_id,
            route=ex.route,
            model=ex.model,
            status=ex.status,
            identity=ex.identity,
            remote=ex.remote,
            stream=ex.stream,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_s=time.perf_counter() - ex.started,
            ttfb_s=ex.ttfb_s,
        )
        self.metrics.observe(record)
        try:
            self.access_log.write(record, ex.prompt)
        except (OSError, ValueError):
            log.exception("writing the access log failed")


def map_tunnel_error(exc: BaseException) -> GatewayError:
    if isinstance(exc, NoTunnelError):
        return TunnelUnavailableError(
            f"No connector is serving upstream '{exc.upstream}' right now. Try again later."
        )
    if isinstance(exc, TimeoutError):
        return UpstreamFailedError("The upstream did not answer in time.")
    return UpstreamFailedError(f"The tunnel or the upstream failed: {exc}")


def is_event_stream(response: TunnelResponse) -> bool:
    return any(
        k == "content-type" and v.startswith("text/event-stream") for k, v in response.headers
    )


def content_type(response: TunnelResponse) -> str:
    for key, value in response.headers:
        if key == "content-type":
            return value
    return "application/json"


async def read_body(response: TunnelResponse, limit: int | None = None) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for part in response.body():
        parts.append(part)
        size += len(part)
        if limit is not None and size >= limit:
            break
    return b"".join(parts)


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


async def cancel_and_close(task: asyncio.Future[TunnelResponse]) -> None:
    """Abandon a pending ``pool.request``: cancel it, or close the response it already got."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        response = await task
        await response.aclose()


# --------------------------------------------------------------------------- forwarding


class Forwarder:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def forward(
        self,
        ex: Exchange,
        resolved: ResolvedModel,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        drop_usage_chunk: bool,
    ) -> Response:
        """Send the request and answer the client; the exchange is finished by the time the
        returned response's body has been sent (or the client went away)."""
        pairs = model_replacements(resolved.model, resolved.name)
        request = self.s.pool.request(resolved.upstream, "POST", ex.route, headers, body)
        if ex.stream:
            rewriter = SseRewriter(pairs, drop_usage_chunk=drop_usage_chunk)
            return await self._start_stream(ex, asyncio.ensure_future(request), rewriter, pairs)
        deadline = asyncio.get_running_loop().time() + self.s.upstream_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                response = await request
        except BaseException as exc:
            await self._fail(ex, exc)
            raise
        return await self._complete(ex, response, pairs, deadline)

    async def _start_stream(
        self,
        ex: Exchange,
        task: asyncio.Future[TunnelResponse],
        rewriter: SseRewriter,
        pairs: tuple[tuple[bytes, bytes], ...],
    ) -> Response:
        """Wait up to one keep-alive interval for the head: a quick error is passed through
        with its own status; a slow head gets 200 at once and comments until it comes."""
        try:
            await asyncio.wait({task}, timeout=min(self.s.keepalive_s, self.s.upstream_timeout_s))
            if not task.done():
                return self._sse_response(ex, self._late_stream(ex, task, rewriter))
            response = task.result()
        except BaseException as exc:
            await cancel_and_close(task)
            await self._fail(ex, exc)
            raise
        if response.status == 200 and is_event_stream(response):
            return self._sse_response(ex, self._stream(ex, response, rewriter))
        deadline = asyncio.get_running_loop().time() + self.s.upstream_timeout_s
        return await self._complete(ex, response, pairs, deadline)

    async def _fail(self, ex: Exchange, exc: BaseException) -> None:
        """Finish a failed exchange; tunnel failures become the client's 502 / 503."""
        if isinstance(exc, TunnelError | TimeoutError):
            mapped = map_tunnel_error(exc)
            ex.status = mapped.status
            await self.s.finish(ex)
            raise mapped from None
        # cancelled: the client went away (499 as nginx logs it); anything else is our bug
        ex.status = 499 if isinstance(exc, asyncio.CancelledError) else 500
        await self.s.finish(ex)

    async def _complete(
        self,
        ex: Exchange,
        response: TunnelResponse,
        pairs: tuple[tuple[bytes, bytes], ...],
        deadline: float,
    ) -> Response:
        """A whole answer: read it, rewrite ``model``, take ``usage``; pass errors through."""
        try:
            async with asyncio.timeout_at(deadline):
                data = await read_body(response)
        except BaseException as exc:
            await response.aclose()
            await self._fail(ex, exc)
            raise
        await response.aclose()
        ex.first_byte()
        ex.status = response.status
        if 200 <= response.status < 300:
            data, ex.usage = rewrite_json_body(data, pairs)
        await self.s.finish(ex)
        return Response(data, status=response.status, content_type=content_type(response))

    def _sse_response(self, ex: Exchange, body: AsyncIterator[bytes]) -> Response:
        ex.status = 200
        response = Response(body, status=200, content_type="text/event-stream; charset=utf-8")
        response.headers.update(SSE_HEADERS)
        response.timeout = None  # a stream may run for many minutes
        return response

    async def _late_stream(
        self, ex: Exchange, task: asyncio.Future[TunnelResponse], rewriter: SseRewriter
    ) -> AsyncIterator[bytes]:
        """The head was slow: 200 is already sent, so comments keep the line alive meanwhile
        and a failure becomes an error event."""
        self.s.metrics.active_streams.inc()
        deadline = time.monotonic() + self.s.upstream_timeout_s
        try:
            while not task.done():
                left = _time_left(deadline)
                await asyncio.wait({task}, timeout=min(self.s.keepalive_s, left))
                if not task.done():
                    yield KEEPALIVE
            response = task.result()
        except (TunnelError, TimeoutError) as exc:
            await cancel_and_close(task)
            yield self._error_event(ex, exc)
            self.s.metrics.active_streams.dec()
            await self.s.finish(ex)
            return
        except BaseException:
            await cancel_and_close(task)
            self.s.metrics.active_streams.dec()
            ex.status = 499
            await self.s.finish(ex)
            raise
        self.s.metrics.active_streams.dec()
        if response.status != 200 or not is_event_stream(response):
            async for piece in self._error_answer(ex, response):
                yield piece
            return
        async for piece in self._stream(ex, response, rewriter):
            yield piece

    async def _error_answer(self, ex: Exchange, response: TunnelResponse) -> AsyncIterator[bytes]:
        try:
            data = await read_body(response, MAX_ERROR_BODY_BYTES)
        except TunnelError:
            data = b""
        finally:
            await response.aclose()
        ex.status = response.status
        try:
            error = json.loads(data)["error"]
            message, kind = str(error["message"]), str(error.get("type") or "server_error")
        except (ValueError, KeyError, TypeError):
            message, kind = f"The upstream answered {response.status}.", "server_error"
        await self.s.finish(ex)
        yield sse_error_event(message, kind)

    def _error_event(self, ex: Exchange, exc: BaseException) -> bytes:
        mapped = map_tunnel_error(exc)
        ex.status = mapped.status
        return sse_error_event(mapped.message, mapped.error_type, mapped.code)

    async def _stream(
        self, ex: Exchange, response: TunnelResponse, rewriter: SseRewriter
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
                    yield out
            tail = rewriter.flush()
            if tail:
                yield tail
        except TunnelError as exc:
            yield self._error_event(ex, exc)
        except BaseException:
            ex.status = 499  # the client went away (nginx's code for it)
            raise
        finally:
            self.s.metrics.active_streams.dec()
            await response.aclose()
            ex.usage = rewriter.usage
            await self.s.finish(ex)
