"""The Quart apps: the public API, the admin app, and the WebSocket-only app for plain HTTP.

:func:`create_app` wires the collaborators (tunnel pool, authenticator, limiter, ledger,
metrics) into the API routes, which :class:`gateway.api.asgi.ApiAdapter` serves in front of
Quart. Quart keeps what it is for: ``/healthz``, ``/readyz``, the admin app's ``/metrics``, the
tunnel's WebSocket endpoint, and its own 404 / 405 for anything else, in OpenAI's error shape.
The client address comes from ``X-Forwarded-For`` only when the direct peer is a trusted proxy
(:class:`ForwardedFor`, an ASGI middleware, so the tunnel's WebSocket endpoint sees it too).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from quart import Quart, Response, g, jsonify, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from gateway.accesslog import AccessLog
from gateway.api.answer import Answer, error_answer
from gateway.api.asgi import ERROR_DRAIN_BYTES, ApiAdapter, drop_body
from gateway.api.forwarding import LedgerLike, Services, UpstreamForwarder
from gateway.api.models import ModelCatalog, ModelMap
from gateway.api.routes import ApiRoutes, AuthenticatorLike, LimiterLike, new_request_id
from gateway.certificates import certificate_facts
from gateway.client_address import ForwardedFor, Network
from gateway.config import GatewayConfig
from gateway.errors import (
    ApiError,
    HttpError,
    InternalError,
    MethodNotAllowedError,
    RouteNotFoundError,
)
from gateway.metrics import UNMATCHED, GatewayMetrics, RequestRecord, refusal_record
from gateway.websocket import serve_quart_websocket
from tunnel.api import TunnelPool
from tunnel.listener import Listener

log = logging.getLogger("gateway.app")


def create_app(  # noqa: PLR0917 (the factory's signature is shared with the auth helper)
    config: GatewayConfig,
    pool: TunnelPool,
    auth: AuthenticatorLike,
    limiter: LimiterLike,
    ledger: LedgerLike,
    metrics: GatewayMetrics,
    *,
    access_log: AccessLog | None = None,
    listener: Listener | None = None,
) -> Quart:
    """The public app. With ``listener``, the WebSocket tunnel carrier is served at
    ``[tunnel] websocket_path`` too."""
    app = _base_app("gateway")
    app.config["MAX_CONTENT_LENGTH"] = None  # the API routes apply max_body_bytes themselves
    services = Services(
        pool=pool,
        ledger=ledger,
        metrics=metrics,
        access_log=access_log
        or AccessLog(config.log.access_log, log_prompts=config.log.log_prompts),
        keepalive_s=config.server.sse_keepalive_s,
        upstream_timeout_s=config.server.upstream_timeout_s,
    )
    catalog = ModelCatalog(ModelMap(config.models), pool)
    forwarder = UpstreamForwarder(services)
    routes = ApiRoutes(auth, limiter, catalog, forwarder, config.server.max_body_bytes)
    add_health_routes(app, pool)
    add_root_route(app)
    if listener is not None:
        register_tunnel_websocket(app, config.websocket_path, listener)
    # the API routes skip Quart's per-request machinery (the hot path); the rest is Quart's
    _log_unmatched(app, services)
    adapter = ApiAdapter(cast("Any", app.asgi_app), routes)
    app.asgi_app = cast("Any", adapter)  # type: ignore[method-assign]
    _trust_forwarded_for(app, config.server.trusted_proxies)
    return app


#: whether a request (by its ``Authorization`` header) may see the admin ``/readyz`` details
DetailGate = Callable[[str | None], Awaitable[bool]]


def create_admin_app(
    pool: TunnelPool,
    metrics: GatewayMetrics,
    *,
    config: GatewayConfig | None = None,
    details: bool | DetailGate = True,
) -> Quart:
    """``/metrics``, ``/healthz``, ``/readyz`` with each tunnel's details, the recent
    disconnects and (given ``config``) the certificates' days left, to whom ``details`` allows
    (the status page's admin guard: everyone on a loopback admin listener)."""
    app = _base_app("gateway-admin")
    add_health_routes(app, pool, details=details, config=config)

    async def metrics_view() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
    return app


def create_websocket_app(config: GatewayConfig, listener: Listener) -> Quart:
    """The plain-HTTP listener (``websocket_http_listen``): the tunnel path and nothing else."""
    app = _base_app("gateway-websocket")
    register_tunnel_websocket(app, config.websocket_path, listener)
    _trust_forwarded_for(app, config.server.trusted_proxies)
    return app


def _trust_forwarded_for(app: Quart, trusted: Sequence[Network]) -> None:
    if trusted:
        app.asgi_app = cast("Any", ForwardedFor(app.asgi_app, trusted))  # type: ignore[method-assign]


def register_tunnel_websocket(app: Quart, path: str, listener: Listener) -> None:
    """The WebSocket carrier's endpoint (``tunnel.listener.serve_websocket``) at ``path``. The
    peer address it logs has been through :class:`ForwardedFor`, so a trusted front's client
    shows."""
    view = serve_quart_websocket(listener, remote_of=websocket_remote)
    app.add_websocket(path, "tunnel_websocket", view)


def websocket_remote(ws: Any) -> str:
    """``client`` or ``client via front`` when the address came from ``X-Forwarded-For``."""
    front = ws.scope.get("gateway.peer")
    client = str(ws.remote_addr or "?")
    return f"{client} via {front[0]}" if front else client


def _base_app(name: str) -> Quart:
    app = Quart(__name__)
    app.name = name
    app.config["RESPONSE_TIMEOUT"] = None  # streams run as long as the model writes
    app.config["BODY_TIMEOUT"] = 120
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    app.after_request(_add_request_id)
    return app


MAX_LOGGED_PATH = 200  # characters of an unserved path kept in its access-log line


def _log_unmatched(app: Quart, services: Services) -> None:
    """A request to a path the public app does not serve (404) or with a method it does not
    take there (405) is one access-log line, with the path and the User-Agent, and one count in
    ``gateway_requests_total{route="unmatched"}``: an operator sees which client fails and why,
    while the label stays one value however many paths strangers try."""

    @app.before_request
    async def started() -> None:
        g.started = time.perf_counter()

    async def unmatched(exc: HTTPException) -> Response:
        response = await _http_error(exc)
        if response.status_code in (404, 405):
            services.log(_unmatched_record(response.status_code))
        return response

    app.register_error_handler(HTTPException, unmatched)


def _unmatched_record(status: int) -> RequestRecord:
    if g.get("request_id") is None:
        g.request_id = new_request_id()
    path = request.full_path.rstrip("?")
    return refusal_record(
        g.request_id,
        UNMATCHED,
        status,
        request.remote_addr or "-",
        time.perf_counter() - g.get("started", time.perf_counter()),
        path=f"{request.method} {path[:MAX_LOGGED_PATH]}",
        user_agent=(request.headers.get("user-agent") or "")[:MAX_LOGGED_PATH] or None,
    )


async def _add_request_id(response: Response) -> Response:
    rid = g.get("request_id") or new_request_id()
    response.headers["x-request-id"] = rid
    return response


async def _http_error(exc: HTTPException) -> Response:
    """Quart's own 404 / 405 / 413 in OpenAI's words."""
    target = f"{request.method} {request.path}"
    status = exc.code or 500
    await drop_body(request.body, ERROR_DRAIN_BYTES)
    error: ApiError
    if status == 404:
        error = RouteNotFoundError(target)
    elif status == 405:
        error = MethodNotAllowedError(target)
    else:
        error = HttpError(status, exc.description or exc.name)
    return quart_response(error_answer(error))


async def _internal_error(exc: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return quart_response(error_answer(InternalError()))


def quart_response(answer: Answer) -> Response:
    """A whole :class:`~gateway.api.answer.Answer` (an error) as Quart's response."""
    assert isinstance(answer.body, bytes)
    return Response(answer.body, status=answer.status, headers=Headers(list(answer.headers)))


def add_root_route(app: Quart) -> None:
    """``GET /`` and ``HEAD /`` on the public port: a plain answer naming the service (Claude
    Code probes the base URL before it sends anything else), and the same on ``/api/hello``,
    where Claude Code sends ``HEAD`` at start to warm its connection (unless
    ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`` is set); without it every start left a 404."""

    async def root() -> Response:
        return jsonify({"service": "llm-tunnel-gateway", "status": "ok"})

    app.add_url_rule("/", "root", root, methods=["GET"])
    app.add_url_rule("/api/hello", "hello", root, methods=["GET"])


def add_health_routes(
    app: Quart,
    pool: TunnelPool,
    *,
    details: bool | DetailGate = False,
    config: GatewayConfig | None = None,
) -> None:
    """``/healthz`` and ``/readyz``. The public ``/readyz`` says ready or not and nothing else
    (connector names, the office's address and upstream names are not for the internet); with
    ``details`` (the admin listener) it lists every field of each tunnel's ``TunnelInfo``, the
    recent disconnects, and with ``config`` each certificate's days left."""

    async def healthz() -> Response:
        return jsonify({"status": "ok"})

    async def readyz() -> Response:
        status = pool.status()
        answer: dict[str, Any] = {"ready": status.ready}
        show = (
            details
            if isinstance(details, bool)
            else await details(request.headers.get("authorization"))
        )
        if show:
            answer["tunnels"] = [dataclasses.asdict(t) for t in status.tunnels]
            answer["recent_disconnects"] = [
                dataclasses.asdict(d) for d in status.recent_disconnects
            ]
        if show and config is not None:
            now = time.time()
            answer["certificates"] = [f.as_json(now) for f in certificate_facts(config, status)]
        response = jsonify(answer)
        response.status_code = 200 if status.ready else 503
        return response

    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])


__all__ = [
    "create_admin_app",
    "create_app",
    "create_websocket_app",
]
