"""One admitted API request's accounting: what it holds, what it is charged, and the one
place that gives it all back (:meth:`Services.close_exchange`).

:class:`gateway.api.forwarding.UpstreamForwarder` notes on the :class:`Exchange` the tunnel
stream it opens, the status and the usage; :meth:`gateway.api.routes.ApiRoutes.handle_call`
calls :meth:`Services.close_exchange` from the ``finally`` that spans the request from admission
to the last byte handed to the server. It closes the tunnel stream, frees the concurrency slot,
charges the tokens and writes the ledger, metrics and access log, once. An answer that completes
is settled (tokens charged, ledger row committed) just before its last bytes leave, so that what
a client has seen is in the ledger even if the gateway is killed right after.

Tokens of a client that left (499): the upstream's ``usage`` when it came; otherwise the prompt
estimated from the request (:func:`gateway.limits.estimate.estimate_prompt_tokens`, characters
/ 4) plus one completion token per SSE event relayed so far (upstreams send about one token per
chunk; the role and finish events count too: a slight over-estimate, never a free answer). A
request that failed on the upstream's side (502, 503) is charged only the usage it reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.accesslog import AccessLog
from gateway.api.answer import ErrorShape, openai_shape
from gateway.api.sse import Usage
from gateway.errors import AnswerCutError
from gateway.ledger import RequestOutcome
from gateway.limits.estimate import estimate_prompt_tokens
from gateway.metrics import GatewayMetrics, RequestRecord
from tunnel.api import TunnelPool, TunnelResponse
from tunnel.errors import TunnelError

log = logging.getLogger("gateway.proxy")


class AdmissionLike(Protocol):
    headers: dict[str, str]

    async def charge(self, prompt_tokens: int, completion_tokens: int) -> None: ...
    async def release(self) -> None: ...


class LedgerLike(Protocol):
    async def record(
        self,
        identity: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        outcome: RequestOutcome | None = None,
    ) -> None: ...


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
    request_body: Mapping[str, Any] | None = None  # for the prompt estimate of a 499
    upstream: TunnelResponse | None = None  # the tunnel stream, closed by close_exchange
    pending: asyncio.Future[TunnelResponse] | None = None  # a head still awaited
    relayed_events: int = 0
    error_shape: ErrorShape = openai_shape  # how an error inside a started stream is written
    #: the tokens charged once settled; a client that leaves after that (while the settled
    #: tail goes out) is logged 499 with these, as the ledger has them
    charged: tuple[int, int] | None = None
    _finished: bool = False

    def first_byte(self) -> None:
        if self.ttfb_s is None:
            self.ttfb_s = time.perf_counter() - self.started

    def ended_by(self, exc: BaseException) -> None:
        """The status of a request whose answer ``exc`` cut short."""
        if isinstance(exc, asyncio.CancelledError | GeneratorExit | ConnectionError):
            self.status = 499  # the client went away (nginx's code for it)
        elif isinstance(exc, TunnelError | TimeoutError | AnswerCutError):
            self.status = 502
        else:
            self.status = 500


def charged_tokens(ex: Exchange) -> tuple[int, int]:
    """Prompt and completion tokens to charge: the upstream's usage, and for a client that left
    what was consumed even when the upstream never said (see the module's docstring)."""
    usage = ex.usage or Usage()
    if ex.status != 499:
        return usage.prompt_tokens, usage.completion_tokens
    prompt = usage.prompt_tokens
    if not prompt and ex.request_body is not None:
        prompt = estimate_prompt_tokens(ex.request_body)
    return prompt, max(usage.completion_tokens, ex.relayed_events)


async def close_upstream(ex: Exchange) -> None:
    """Reset the tunnel stream unless it finished (the connector then aborts the upstream)."""
    try:
        if ex.pending is not None:
            await cancel_and_close(ex.pending)
        if ex.upstream is not None:
            await ex.upstream.aclose()
    except Exception:
        log.exception("closing the tunnel stream of request %s failed", ex.request_id)


@dataclass(slots=True)
class Services:
    """What the forwarding needs; built once by the app factory."""

    pool: TunnelPool
    ledger: LedgerLike
    metrics: GatewayMetrics
    access_log: AccessLog
    keepalive_s: float
    upstream_timeout_s: float

    async def settle(self, ex: Exchange) -> tuple[int, int]:
        """Charge the tokens and commit the ledger row, once. An answer that completes calls
        this before its last bytes go out, so a row the client has seen survives a crash of the
        gateway; :meth:`close_exchange` calls it for every other ending. A 499 is in the ledger's
        totals even when nothing could be charged; an answer that cost nothing (a 502 before
        any token) is only in its request log (the status page's errors). Returns the tokens
        charged, the same on every later call."""
        if ex.charged is not None:
            return ex.charged
        ex.charged = prompt, completion = charged_tokens(ex)
        billed = bool(prompt or completion or ex.status == 499)
        outcome = RequestOutcome(
            at=time.time(),
            status=ex.status,
            ttft_s=ex.ttfb_s,
            total_s=time.perf_counter() - ex.started,
            billed=billed,
            stream=ex.stream,
        )
        try:
            if prompt or completion:
                await ex.admission.charge(prompt, completion)
            await self.ledger.record(ex.identity, ex.model, prompt, completion, outcome)
        except Exception:
            log.exception("accounting for request %s failed", ex.request_id)
        return prompt, completion

    async def close_exchange(self, ex: Exchange) -> None:
        """After the last byte was handed to the server (or the request ended otherwise): close
        the tunnel stream, free the slot, settle, log; once per request, never raising."""
        if ex._finished:
            return
        ex._finished = True
        await close_upstream(ex)
        try:
            await ex.admission.release()
        except Exception:
            log.exception("freeing the slot of request %s failed", ex.request_id)
        prompt, completion = await self.settle(ex)
        record = RequestRecord(
            request_id=ex.request_id,
            route=ex.route,
            model=ex.model,
            status=ex.status,
            identity=ex.identity,
            remote=ex.remote,
            stream=ex.stream,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_s=time.perf_counter() - ex.started,
            ttfb_s=ex.ttfb_s,
        )
        self.log(record, ex.prompt)

    def log(self, record: RequestRecord, prompt: object = None) -> None:
        """One request's count in the metrics and its access-log line (never raising)."""
        self.metrics.observe(record)
        try:
            self.access_log.write(record, prompt)
        except (OSError, ValueError):
            log.exception("writing the access log failed")


async def cancel_and_close(task: asyncio.Future[TunnelResponse]) -> None:
    """Abandon a pending ``pool.request``: cancel it, or close the response it already got."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        response = await task
        await response.aclose()
