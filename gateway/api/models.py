"""Model names: aliases from ``[models.ALIAS]``, the upstreams' own lists, and ``/v1/models``.

A client names a model by an alias (``qwen3-coder``) or by the name an upstream itself lists
(``Qwen/Qwen3-Coder-30B-A3B-Instruct``). :class:`ModelMap` is pure; :class:`ModelCatalog` adds
the upstreams' ``GET /v1/models`` answers, fetched through the tunnel and cached for a while.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway.config import ModelRoute
from gateway.errors import ModelNotFoundError
from tunnel.api import TunnelPool
from tunnel.errors import TunnelError

CATALOG_TTL_S: Final = 30.0
FETCH_TIMEOUT_S: Final = 5.0
MAX_LIST_BYTES: Final = 4 << 20
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    name: str  # what the client asked for, and what it gets back in ``model``
    upstream: str  # the connector-side upstream name
    model: str  # the name the upstream knows
    messages_api: str = "native"  # how /v1/messages reaches it: "native" or "translate"


class ModelMap:
    """Aliases from the config plus model ids the upstreams listed themselves."""

    def __init__(self, routes: Mapping[str, ModelRoute]) -> None:
        self._aliases = dict(routes)
        self._listed: dict[str, str] = {}  # upstream model id -> upstream name
        self._modes: dict[tuple[str, str], str] = {}  # (upstream, model) -> messages_api
        for route in routes.values():
            self._listed.setdefault(route.model, route.upstream)
            if route.messages_api != "native":
                self._modes[route.upstream, route.model] = route.messages_api

    @property
    def upstreams(self) -> set[str]:
        return {r.upstream for r in self._aliases.values()}

    def learn(self, upstream: str, model_ids: Iterable[str]) -> None:
        """Make models an upstream lists reachable by their own ids (config aliases win)."""
        for model_id in model_ids:
            self._listed.setdefault(model_id, upstream)

    def lookup(self, name: str) -> ResolvedModel | None:
        """An alias, or a model's own id; the own id takes the ``messages_api`` of an alias that
        names it (the mode says what the upstream serves, not what the client calls it)."""
        route = self._aliases.get(name)
        if route is not None:
            return ResolvedModel(name, route.upstream, route.model, route.messages_api)
        upstream = self._listed.get(name)
        if upstream is None:
            return None
        return ResolvedModel(name, upstream, name, self._modes.get((upstream, name), "native"))

    def may_use(self, allowed: frozenset[str] | None, resolved: ResolvedModel) -> bool:
        """Permission follows the names the identity was given: allowed when it was given
        ``resolved``'s own name, or a name that reaches the same upstream *and* model (an alias
        grants its upstream's own id for the model, and back). Another alias to the same model
        on another upstream is not granted by it."""
        if allowed is None or resolved.name in allowed:
            return True
        target = (resolved.upstream, resolved.model)
        for name in allowed:
            granted = self.lookup(name)
            if granted is not None and (granted.upstream, granted.model) == target:
                return True
        return False

    def resolve(self, name: str, allowed: frozenset[str] | None) -> ResolvedModel:
        resolved = self.lookup(name)
        if resolved is None or not self.may_use(allowed, resolved):
            raise ModelNotFoundError(name)
        return resolved

    def listing(
        self, upstream_entries: Mapping[str, Json], allowed: frozenset[str] | None, now: int
    ) -> list[Json]:
        """``/v1/models`` ``data``: aliases first, then the upstreams' own ids, filtered."""
        out: list[Json] = []
        for name in [*self._aliases, *sorted(set(self._listed) - set(self._aliases))]:
            resolved = self.lookup(name)
            if resolved is None or not self.may_use(allowed, resolved):
                continue
            out.append(model_entry(name, resolved, upstream_entries.get(resolved.model), now))
        return out


def model_entry(name: str, resolved: ResolvedModel, upstream: Json | None, now: int) -> Json:
    """One model object, the upstream's own fields kept, ``id`` set to the name shown."""
    entry: Json = dict(upstream) if upstream else {}
    entry["id"] = name
    entry.setdefault("object", "model")
    entry.setdefault("created", now)
    entry.setdefault("owned_by", resolved.upstream)
    return entry


def parse_model_list(body: bytes) -> list[Json]:
    """The ``data`` entries of an upstream's ``/v1/models`` answer (bad answers -> [])."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return []
    if not isinstance(data, list):
        return []
    return [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]


class ModelCatalog:
    """The model map plus what each upstream lists, fetched through the tunnel when stale."""

    def __init__(self, model_map: ModelMap, pool: TunnelPool) -> None:
        self.map = model_map
        self._pool = pool
        self._entries: dict[str, Json] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def upstreams(self) -> set[str]:
        announced = {u for t in self._pool.status().tunnels for u in t.upstreams}
        return self.map.upstreams | announced

    async def refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            if not force and time.monotonic() - self._fetched_at < CATALOG_TTL_S:
                return
            results = await asyncio.gather(*(self._fetch(u) for u in sorted(self.upstreams())))
            for upstream, entries in results:
                self.map.learn(upstream, (e["id"] for e in entries))
                for entry in entries:
                    self._entries.setdefault(entry["id"], entry)
            self._fetched_at = time.monotonic()

    async def resolve(self, name: str, allowed: frozenset[str] | None) -> ResolvedModel:
        """Resolve ``name``; an unknown name triggers one refresh of the upstreams' lists."""
        if self.map.lookup(name) is None:
            await self.refresh()
        return self.map.resolve(name, allowed)

    async def listing(self, allowed: frozenset[str] | None) -> list[Json]:
        await self.refresh()
        return self.map.listing(self._entries, allowed, int(time.time()))

    async def _fetch(self, upstream: str) -> tuple[str, list[Json]]:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                return upstream, parse_model_list(await self._get_list(upstream))
        except (TunnelError, TimeoutError):
            return upstream, []

    async def _get_list(self, upstream: str) -> bytes:
        headers = [("accept", "application/json")]
        response = await self._pool.request(upstream, "GET", "/v1/models", headers, b"")
        try:
            if response.status != 200:
                return b""
            parts: list[bytes] = []
            size = 0
            async for part in response.body():
                parts.append(part)
                size += len(part)
                if size > MAX_LIST_BYTES:
                    return b""
            return b"".join(parts)
        finally:
            await response.aclose()
