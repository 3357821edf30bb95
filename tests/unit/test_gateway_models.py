"""The model map: aliases, upstream ids, access filtering and /v1/models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator

import pytest

from gateway.api.models import ModelCatalog, ModelMap, ResolvedModel, parse_model_list
from gateway.config import ModelRoute
from gateway.errors import ModelNotFoundError
from tunnel.api import PoolStatus, TunnelInfo
from tunnel.errors import NoTunnelError

UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
ROUTES = {
    "qwen3-coder": ModelRoute("office-llm", UP),
    "embed": ModelRoute("office-llm", "text-embedding-test"),
}


def test_alias_and_upstream_id_resolve() -> None:
    m = ModelMap(ROUTES)
    assert m.resolve("qwen3-coder", None) == ResolvedModel("qwen3-coder", "office-llm", UP)
    assert m.resolve(UP, None) == ResolvedModel(UP, "office-llm", UP)


def test_unknown_model_is_404_with_openai_message() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        ModelMap(ROUTES).resolve("gpt-5", None)
    assert info.value.message == "The model `gpt-5` does not exist or you do not have access to it."
    assert (info.value.status, info.value.code, info.value.param) == (
        404,
        "model_not_found",
        "model",
    )


def test_forbidden_model_looks_like_unknown() -> None:
    m = ModelMap(ROUTES)
    with pytest.raises(ModelNotFoundError):
        m.resolve("embed", frozenset({"qwen3-coder"}))
    # allowed by alias -> the upstream id of the same model is allowed too, and back
    assert m.resolve(UP, frozenset({"qwen3-coder"})).model == UP
    assert m.resolve("qwen3-coder", frozenset({UP})).upstream == "office-llm"


def test_listing_filters_and_keeps_upstream_fields() -> None:
    m = ModelMap(ROUTES)
    m.learn("other", ["llama"])
    upstream = {
        UP: {"id": UP, "object": "model", "created": 5, "owned_by": "vllm", "max_model_len": 9}
    }
    everything = m.listing(upstream, None, now=100)
    ids = [e["id"] for e in everything]
    assert ids == ["qwen3-coder", "embed", UP, "llama", "text-embedding-test"]
    alias = everything[0]
    assert alias == {
        "id": "qwen3-coder",
        "object": "model",
        "created": 5,
        "owned_by": "vllm",
        "max_model_len": 9,
    }
    assert everything[3] == {"id": "llama", "object": "model", "created": 100, "owned_by": "other"}
    limited = m.listing(upstream, frozenset({"qwen3-coder"}), now=100)
    assert [e["id"] for e in limited] == ["qwen3-coder", UP]


def test_parse_model_list_tolerates_garbage() -> None:
    assert parse_model_list(b"nope") == []
    assert parse_model_list(b"[]") == []
    assert parse_model_list(b'{"data": [{"id": "a"}, {"x": 1}, 3]}') == [{"id": "a"}]


class _FakeResponse:
    def __init__(self, body: bytes) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = [("content-type", "application/json")]
        self._body = body
        self.closed = False

    async def read(self) -> bytes:
        body, self._body = self._body, b""
        return body

    async def _iter(self) -> AsyncIterator[bytes]:
        yield self._body

    def body(self) -> AsyncIterator[bytes]:
        return self._iter()

    async def aclose(self) -> None:
        self.closed = True


class _FakePool:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def request(
        self,
        upstream: str,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
    ) -> _FakeResponse:
        self.calls.append((upstream, path))
        if upstream == "down":
            raise NoTunnelError(upstream)
        return _FakeResponse(json.dumps({"data": [{"id": f"{upstream}-model"}]}).encode())

    def status(self) -> PoolStatus:
        info = TunnelInfo(
            "office-1", "t1", "tls", "127.0.0.1:1", ("announced", "down"), 0, False, 1.0
        )
        return PoolStatus((info,))


async def test_catalog_learns_upstream_ids_once_per_ttl() -> None:
    pool = _FakePool()
    catalog = ModelCatalog(ModelMap(ROUTES), pool)  # type: ignore[arg-type]
    resolved = await catalog.resolve("announced-model", None)
    assert resolved == ResolvedModel("announced-model", "announced", "announced-model")
    assert sorted(pool.calls) == [
        ("announced", "/v1/models"),
        ("down", "/v1/models"),
        ("office-llm", "/v1/models"),
    ]
    with pytest.raises(ModelNotFoundError):
        await catalog.resolve("missing", None)
    assert len(pool.calls) == 3  # cached
    ids = [e["id"] for e in await catalog.listing(frozenset({"qwen3-coder", "office-llm-model"}))]
    assert ids == ["qwen3-coder", UP, "office-llm-model"]


def test_permission_follows_the_alias_not_the_model_name() -> None:
    """Issue 11: a key allowed alias ``a`` -> (U1, X) may not use alias ``b`` -> (U2, X)."""
    m = ModelMap({"a": ModelRoute("u1", "X"), "b": ModelRoute("u2", "X")})
    assert m.resolve("a", frozenset({"a"})).upstream == "u1"
    with pytest.raises(ModelNotFoundError):
        m.resolve("b", frozenset({"a"}))
    assert m.resolve("X", frozenset({"a"})).upstream == "u1"  # X's own id reaches u1
    with pytest.raises(ModelNotFoundError):
        m.resolve("X", frozenset({"b"}))  # ... which ``b`` does not grant
    listed = [e["id"] for e in m.listing({}, frozenset({"a"}), now=1)]
    assert listed == ["a", "X"]
