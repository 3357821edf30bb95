"""The API routes: auth -> body -> model -> limits -> forward; ``/v1/models``.

:meth:`ApiRoutes.handle_call` is an async context manager around the whole request: the adapter
that sends the answer (:class:`gateway.api.asgi.ApiAdapter`) sends it inside the ``async with``;
everything an admitted request took (concurrency slot, tunnel stream, token charge, ledger row,
access-log line) is given back by its one ``finally``, however the request ends: answered,
refused after admission, cancelled before, during or after the answer, or the server's ``send``
failing (STYLE 14).

Every answer is an :class:`~gateway.api.answer.Answer`. Once the caller is known it carries the
limiter's ``x-ratelimit-*`` headers (read without being charged when the request is not
admitted: 400, 404, 413 and ``/v1/models``). Errors are in OpenAI's shape, with OpenAI's codes;
on Anthropic's Messages routes (forwarded to the upstream's own ``/v1/messages``, or translated
to chat completions: :mod:`gateway.api.upstream_call`) they are in Anthropic's shape,
``x-api-key`` is accepted, and the limit headers are Anthropic's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from gateway.api.answer import (
    Answer,
    ErrorShape,
    anthropic_shape,
    error_answer,
    json_answer,
    openai_shape,
)
from gateway.api.body_rewrite import wants_stream
from gateway.api.forwarding import AdmissionLike, Exchange, UpstreamForwarder, prompt_of
from gateway.api.models import ModelCatalog, ResolvedModel
from gateway.api.request_body import parse_body_async
from gateway.api.upstream_call import MESSAGES_ROUTES, upstream_call
from gateway.auth.identity import Identity
from gateway.errors import ApiError, ModelNotFoundError
from gateway.limits.estimate import estimate_tokens
from gateway.limits.headers import anthropic_from_openai
from gateway.metrics import refusal_record

log = logging.getLogger("gateway.routes")

API_ROUTES: Final = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    *MESSAGES_ROUTES,
)
MODELS_ROUTE: Final = "/v1/models"
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One API request as the handler needs it, parsed by the adapter."""

    route: str
    authorization: str | None
    headers: list[tuple[str, str]]
    remote: str
    request_id: str
    read_body: Callable[[int], Awaitable[bytes]]  # the body, or PayloadTooLargeError past limit
    drain: Callable[[int], Awaitable[None]]  # read and drop what is left of the body


class AuthenticatorLike(Protocol):
    async def authenticate(self, authorization: str | None) -> Identity: ...


class LimiterLike(Protocol):
    async def admit(self, identity: Identity, requested_tokens: int) -> AdmissionLike: ...
    async def headers_for(self, identity: Identity) -> dict[str, str]: ...


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def shape_for(route: str) -> ErrorShape:
    """How errors on ``route`` are written: Anthropic's on its Messages routes, else OpenAI's."""
    return anthropic_shape if route in MESSAGES_ROUTES else openai_shape


def messages_call(call: ApiCall) -> ApiCall:
    """A Messages call as the core takes it: ``x-api-key`` (what ``ANTHROPIC_API_KEY`` sends)
    counts as the bearer credential when there is no ``authorization``."""
    if call.authorization is not None:
        return call
    key = next((v for k, v in call.headers if k == "x-api-key"), None)
    if key is None:
        return call
    return dataclasses.replace(call, authorization=f"Bearer {key}")


def anthropic_answer(answer: Answer) -> Answer:
    """``answer`` with the ``x-ratelimit-*`` headers written as Anthropic's."""
    if not any(k.startswith("x-ratelimit-") for k, _ in answer.headers):
        return answer
    headers = anthropic_from_openai(dict(answer.headers), datetime.now(UTC))
    return Answer(answer.status, tuple(headers.items()), answer.body)


class ApiRoutes:
    """The handlers of the API routes; :class:`gateway.api.asgi.ApiAdapter` calls them."""

    def __init__(
        self,
        auth: AuthenticatorLike,
        limiter: LimiterLike,
        catalog: ModelCatalog,
        forwarder: UpstreamForwarder,
        max_body_bytes: int,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.auth = auth
        self.limiter = limiter
        self.catalog = catalog
        self.forwarder = forwarder

    @contextlib.asynccontextmanager
    async def handle_call(self, call: ApiCall) -> AsyncIterator[Answer]:
        """One API request; Anthropic's Messages routes answer in Anthropic's dialect (errors,
        ``anthropic-ratelimit-*`` headers), everything else as OpenAI does."""
        if call.route not in MESSAGES_ROUTES:
            async with self._handle(call, shape_for(call.route)) as answer:
                yield answer
            return
        async with self._handle(messages_call(call), shape_for(call.route)) as answer:
            yield anthropic_answer(answer)

    @contextlib.asynccontextmanager
    async def _handle(self, call: ApiCall, shape: ErrorShape) -> AsyncIterator[Answer]:
        """Auth -> body -> model -> limits -> forward, for one API request: the answer is sent
        inside the ``async with``; its end gives back what the request took."""
        started = time.perf_counter()
        identity: Identity | None = None
        model = "-"  # the client's own name for a model it may not use is not a label
        try:
            identity = await self.auth.authenticate(call.authorization)
            raw = await call.read_body(self.max_body_bytes)
            body = await parse_body_async(raw, call.route)
            resolved = await self.catalog.resolve(body["model"], identity.models)
            model = resolved.name
            admission = await self.limiter.admit(identity, estimate_tokens(body))
        except ApiError as exc:
            yield await self._refused(call, started, exc, identity, model, shape)
            return
        # admitted: from here on, the finally below is the one place that gives back
        ex = Exchange(
            request_id=call.request_id,
            route=call.route,
            model=resolved.name,
            identity=identity.name,
            remote=call.remote,
            stream=wants_stream(body),
            admission=admission,
            prompt=prompt_of(body) if self.forwarder.s.access_log.log_prompts else None,
            request_body=body,
            error_shape=shape,
        )
        try:
            yield await self._forward(ex, call, raw, body, resolved, shape)
        except BaseException as exc:
            ex.ended_by(exc)
            raise
        finally:
            await self.forwarder.s.close_exchange(ex)

    async def _refused(  # noqa: PLR0917 (one refusal's parts, all needed)
        self,
        call: ApiCall,
        started: float,
        exc: ApiError,
        identity: Identity | None,
        model: str,
        shape: ErrorShape,
    ) -> Answer:
        """The answer to a request refused before admission. Unauthenticated, its body is
        still unread (read and dropped, so HTTP/1.1 can carry the answer) and it gets no limit
        headers; a 429 carries the limit state it was refused on."""
        if identity is None:
            await call.drain(self.max_body_bytes)
        self._log_refusal(call, started, exc.status, identity, model)
        limits = await self._limit_headers(identity) if not exc.headers else {}
        return error_answer(exc, limits, shape)

    def _log_refusal(
        self, call: ApiCall, started: float, status: int, identity: Identity | None, model: str
    ) -> None:
        """A request answered before admission (401, 400, 404, 413, 429) is still one access-log
        line and one count in ``gateway_requests_total``, with no tokens."""
        record = refusal_record(
            call.request_id,
            call.route,
            status,
            call.remote,
            time.perf_counter() - started,
            identity=identity.name if identity is not None else "-",
            model=model,
        )
        self.forwarder.s.log(record)

    async def _forward(  # noqa: PLR0917 (one request's parts, all needed)
        self,
        ex: Exchange,
        call: ApiCall,
        raw: bytes,
        body: Json,
        resolved: ResolvedModel,
        shape: ErrorShape,
    ) -> Answer:
        """The admitted request's answer: the upstream's, or an error in the route's shape."""
        try:
            sent = upstream_call(call.route, call.headers, raw, body, resolved)
            answer = await self.forwarder.forward(ex, resolved.upstream, sent)
        except ApiError as exc:
            ex.status = exc.status
            answer = error_answer(exc, shape=shape)
        return answer.with_headers(ex.admission.headers)

    async def _limit_headers(self, identity: Identity | None) -> dict[str, str]:
        """The identity's ``x-ratelimit-*`` headers as they stand, nothing consumed: for the
        answers that are not admitted (400, 404, 413, ``/v1/models``)."""
        if identity is None:
            return {}
        try:
            return await self.limiter.headers_for(identity)
        except Exception:  # the limit storage is down: the answer itself still goes out
            log.exception("reading the rate limit state failed")
            return {}

    async def models(self, authorization: str | None, model_id: str | None = None) -> Answer:
        """``GET /v1/models`` (the models this caller may use, aliases first), or with
        ``model_id`` ``GET /v1/models/{model_id}`` (one of them, or OpenAI's 404)."""
        try:
            identity = await self.auth.authenticate(authorization)
        except ApiError as exc:
            return error_answer(exc)
        try:
            if model_id is None:
                data = await self.catalog.listing(identity.models)
                answer = json_answer({"object": "list", "data": data})
            else:
                answer = json_answer(await self._model_entry(model_id, identity))
        except ApiError as exc:
            answer = error_answer(exc)
        return answer.with_headers(await self._limit_headers(identity))

    async def _model_entry(self, model_id: str, identity: Identity) -> Json:
        await self.catalog.resolve(model_id, identity.models)
        for entry in await self.catalog.listing(identity.models):
            if entry["id"] == model_id:
                return entry
        raise ModelNotFoundError(model_id, f"The model `{model_id}` does not exist.")
