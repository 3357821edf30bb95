"""The status page's routes on the admin app: ``/`` (the page), ``/status/fragment`` (what the
page swaps in every few seconds) and ``/status.json`` (``gateway status``), each taking
``?range=hour|day|week`` and each behind the :class:`AdminGuard`.

A snapshot is built off the event loop (SQLite and the certificate files), at most once per
``CACHE_S`` per range however many tabs are open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from quart import Quart, Response, jsonify, request

from gateway.api.answer import error_answer
from gateway.app import create_admin_app, quart_response
from gateway.certificates import certificate_facts
from gateway.config import GatewayConfig
from gateway.errors import ApiError, InvalidRequestError
from gateway.metrics import GatewayMetrics
from gateway.status.access import REALM, AdminGuard, AuthenticatorLike, credential_required
from gateway.status.model import Snapshot, build_snapshot, snapshot_json, utc_day
from gateway.status.queries import RANGES, Range, open_ledger, read_day_usage, read_requests
from gateway.status.render import render_fragment, render_page
from tunnel.api import PoolStatus, TunnelPool

CACHE_S: Final = 2.0
HTML: Final = "text/html; charset=utf-8"


@dataclass(slots=True)
class StatusSource:
    """Builds snapshots for the routes (and tests) from the config, the pool and the ledger."""

    config: GatewayConfig
    pool: TunnelPool
    clock: Callable[[], float] = time.time
    _cache: dict[str, tuple[float, Snapshot]] | None = None

    async def snapshot(self, rng: Range) -> Snapshot:
        now = self.clock()
        cache = self._cache if self._cache is not None else {}
        self._cache = cache
        hit = cache.get(rng.name)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        status = self.pool.status()  # on the loop: the listener's state is the loop's
        snap = await asyncio.to_thread(self.build, rng, status, now)
        cache[rng.name] = (now, snap)
        return snap

    def build(self, rng: Range, status: PoolStatus, now: float) -> Snapshot:
        conn = open_ledger(self.config.auth.keys_db)
        try:
            today = read_day_usage(conn, utc_day(now))
            since = now - rng.seconds - rng.bucket_s
            logged = read_requests(conn, since)
        finally:
            conn.close()
        return build_snapshot(
            now=now,
            status=status,
            facts=certificate_facts(self.config, status),
            today=today,
            requests=logged,
            rng=rng,
        )


def range_of(name: str | None) -> Range:
    rng = RANGES.get(name or "hour")
    if rng is None:
        raise InvalidRequestError(
            f"range: expected one of {', '.join(RANGES)}, got {name!r}", param="range"
        )
    return rng


def admin_guard(config: GatewayConfig, auth: AuthenticatorLike) -> AdminGuard:
    """Who may see the admin listener's page and details, as ``[admin]`` says."""
    host = config.admin.listen[0] if config.admin.listen else "127.0.0.1"
    return AdminGuard(
        auth, config.admin.keys, required=credential_required(config.admin.auth, host)
    )


def create_status_admin_app(
    config: GatewayConfig, pool: TunnelPool, metrics: GatewayMetrics, auth: AuthenticatorLike
) -> Quart:
    """The admin app as ``gateway serve`` runs it: ``/metrics``, ``/healthz``, ``/readyz``
    (its details behind the same guard as the page: off loopback a stranger learns only ready
    or not, as on the public listener) and the status page."""
    guard = admin_guard(config, auth)
    app = create_admin_app(pool, metrics, config=config, details=guard.allows)
    add_status_routes(app, config, pool, guard)
    return app


def add_status_routes(
    app: Quart, config: GatewayConfig, pool: TunnelPool, guard: AdminGuard
) -> None:
    """The page and its data on ``app`` (the admin app), behind ``guard``."""
    source = StatusSource(config, pool)

    async def snapshot() -> Snapshot | Response:
        try:
            await guard.check(request.headers.get("authorization"))
            return await source.snapshot(range_of(request.args.get("range")))
        except ApiError as exc:
            response = quart_response(error_answer(exc))
            if exc.status == 401:
                response.headers["www-authenticate"] = REALM
            return response

    async def page() -> Response:
        snap = await snapshot()
        if isinstance(snap, Response):
            return snap
        return _no_store(Response(render_page(snap), content_type=HTML))

    async def fragment() -> Response:
        snap = await snapshot()
        if isinstance(snap, Response):
            return snap
        return _no_store(Response(render_fragment(snap), content_type=HTML))

    async def data() -> Response:
        snap = await snapshot()
        if isinstance(snap, Response):
            return snap
        return _no_store(jsonify(snapshot_json(snap)))

    app.add_url_rule("/", "status_page", page, methods=["GET"])
    app.add_url_rule("/status/fragment", "status_fragment", fragment, methods=["GET"])
    app.add_url_rule("/status.json", "status_json", data, methods=["GET"])


def _no_store(response: Response) -> Response:
    response.headers["cache-control"] = "no-store"
    return response


__all__ = [
    "StatusSource",
    "add_status_routes",
    "admin_guard",
    "create_status_admin_app",
    "range_of",
]
