"""The OpenAI routes: auth -> body -> model -> limits -> forward; ``/v1/models``.

:meth:`ApiRoutes.handle_call` is an async context manager around the whole request: the
adapter that sends the answer (:class:`gateway.api.asgi.ApiAdapter`) sends it inside the
``async with``, and everything an admitted request took (concurrency slot, tunnel stream, token
charge, ledger row, access-log line) is given back by its one ``finally``, however the request
ends: answered, refused after admission, cancelled before, during or after the answer, or the
server's ``send`` failing (STYLE 14).

Every answer (errors included) carries ``x-request-id`` and, once the caller is known, the
limiter's ``x-ratelimit-*`` headers (read without being charged when the request is not
admitted: 400, 404, 413 and ``/v1/models``). Errors are in OpenAI's shape, with OpenAI's codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from quart import Quart, Response, jsonify, request

from gateway.api.body_rewrite import client_asked_usage, upstream_body, wants_stream
from gateway.api.forwarding import (
    AdmissionLike,
    Exchange,
    UpstreamForwarder,
    forward_headers,
    prompt_of,
)
from gateway.api.models import ModelCatalog, ResolvedModel
from gateway.api.request_body import parse_body_async
from gateway.auth.authenticator import AuthError
from gateway.auth.identity import Identity
from gateway.errors import GatewayError, openai_error
from gateway.limits.limiter import RateLimitedError, estimate_tokens
from gateway.metrics import RequestRecord

log = logging.getLogger("gateway.routes")

DRAIN_TIMEOUT_S: Final = 5.0
DRAIN_FACTOR: Final = 4
API_ROUTES: Final = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ApiCall:
    """One API request as the handler needs it, whoever parsed it (Quart or the fast path)."""

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


async def drain_body(max_bytes: int) -> None:
    """Read and drop what is left of the request body (bounded in bytes and time): an HTTP/1.1
    connection can only carry the next request once this one's body is in."""
    dropped = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            async for chunk in request.body:
                dropped += len(chunk)
                if dropped > max_bytes:
                    return


def rate_limit_error(exc: RateLimitedError) -> Response:
    kind = "tokens" if exc.kind == "tokens" else "requests"
    headers = dict(exc.headers)
    headers.setdefault("retry-after", str(max(1, round(exc.retry_after_s))))
    return openai_error(429, exc.message, kind, None, "rate_limit_exceeded", headers=headers)


def auth_error(exc: AuthError) -> Response:
    return openai_error(401, exc.message, "invalid_request_error", None, "invalid_api_key")


class ApiRoutes:
    """The handlers; :meth:`register` adds them to an app."""

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

    def register(self, app: Quart) -> None:
        """The routes on ``app``. The POST API routes are served by
        :class:`gateway.api.asgi.ApiAdapter` in front of the app (see
        :func:`gateway.app.create_app`): only it can hold a request's resources until its answer
        is sent. Quart keeps their rules so that other methods get OpenAI's 405."""
        for path in API_ROUTES:
            app.add_url_rule(path, path, self._not_served, methods=["POST"])
        app.add_url_rule("/v1/models", "models", self.list_models, methods=["GET"])
        app.add_url_rule("/v1/models/<path:model_id>", "model", self.get_model, methods=["GET"])

    async def _not_served(self) -> Response:
        """A POST the fast path did not take although Quart's rule matches: a path that is not
        written exactly as the route (``//v1/chat/completions``, an absolute URI). OpenAI's
        answer to a path it does not serve, rather than a guess at what was meant."""
        target = f"{request.method} {request.full_path.rstrip('?')}"
        return openai_error(404, f"Invalid URL ({target})", "invalid_request_error")

    async def _identity(self) -> Identity:
        return await self.auth.authenticate(request.headers.get("authorization"))

    @contextlib.asynccontextmanager
    async def handle_call(self, call: ApiCall) -> AsyncIterator[Response]:
        """Auth -> body -> model -> limits -> forward, for one API request: the answer is sent
        inside the ``async with``; its end gives back what the request took."""
        started = time.perf_counter()
        try:
            identity = await self.auth.authenticate(call.authorization)
        except AuthError as exc:
            await call.drain(self.max_body_bytes)
            self._log_refusal(call, started, 401)
            yield auth_error(exc)
            return
        model = "-"  # the client's own name for a model it may not use is not a label
        try:
            raw = await call.read_body(self.max_body_bytes)
            body = await parse_body_async(raw, call.route)
            resolved = await self.catalog.resolve(body["model"], identity.models)
            model = resolved.name
            admission = await self.limiter.admit(identity, estimate_tokens(body))
        except RateLimitedError as exc:
            self._log_refusal(call, started, 429, identity.name, model)
            yield rate_limit_error(exc)
            return
        except GatewayError as exc:
            self._log_refusal(call, started, exc.status, identity.name, model)
            yield exc.to_response(await self._limit_headers(identity))
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
        )
        try:
            yield await self._forward(ex, call, raw, body, resolved)
        except BaseException as exc:
            ex.ended_by(exc)
            raise
        finally:
            await self.forwarder.s.close_exchange(ex)

    def _log_refusal(
        self, call: ApiCall, started: float, status: int, identity: str = "-", model: str = "-"
    ) -> None:
        """A request answered before admission (401, 400, 404, 413, 429) is still one access-log
        line and one count in ``gateway_requests_total``, with no tokens."""
        record = RequestRecord(
            request_id=call.request_id,
            route=call.route,
            model=model,
            status=status,
            identity=identity,
            remote=call.remote,
            stream=False,
            prompt_tokens=0,
            completion_tokens=0,
            latency_s=time.perf_counter() - started,
            ttfb_s=None,
        )
        self.forwarder.s.log(record)

    async def _forward(
        self, ex: Exchange, call: ApiCall, raw: bytes, body: Json, resolved: ResolvedModel
    ) -> Response:
        """The admitted request's answer: the upstream's, or an error in OpenAI's shape."""
        try:
            response = await self.forwarder.forward(
                ex,
                resolved,
                forward_headers(call.headers),
                upstream_body(raw, body, call.route, resolved),
                drop_usage_chunk=ex.stream and not client_asked_usage(body),
            )
        except GatewayError as exc:
            ex.status = exc.status
            response = exc.to_response()
        # appended, not replaced: no answer built above carries x-ratelimit-* headers, and
        # werkzeug's ``update`` scans every header for each one it sets
        response.headers.extend(ex.admission.headers)
        return response

    async def _limit_headers(self, identity: Identity) -> dict[str, str]:
        """The identity's ``x-ratelimit-*`` headers as they stand, nothing consumed: for the
        answers that are not admitted (400, 404, 413, ``/v1/models``)."""
        try:
            return await self.limiter.headers_for(identity)
        except Exception:  # the limit storage is down: the answer itself still goes out
            log.exception("reading the rate limit state failed")
            return {}

    async def list_models(self) -> Response:
        try:
            identity = await self._identity()
        except AuthError as exc:
            return auth_error(exc)
        data = await self.catalog.listing(identity.models)
        response = jsonify({"object": "list", "data": data})
        response.headers.update(await self._limit_headers(identity))
        return response

    async def get_model(self, model_id: str) -> Response:
        try:
            identity = await self._identity()
        except AuthError as exc:
            return auth_error(exc)
        response = await self._model_entry(model_id, identity)
        response.headers.update(await self._limit_headers(identity))
        return response

    async def _model_entry(self, model_id: str, identity: Identity) -> Response:
        try:
            await self.catalog.resolve(model_id, identity.models)
        except GatewayError as exc:
            return exc.to_response()
        for entry in await self.catalog.listing(identity.models):
            if entry["id"] == model_id:
                return jsonify(entry)
        return openai_error(
            404,
            f"The model `{model_id}` does not exist.",
            "invalid_request_error",
            "model",
            "model_not_found",
        )
