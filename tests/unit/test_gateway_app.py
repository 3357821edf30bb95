"""The Quart app in memory (Quart's test client, no sockets) with small fakes for its parts."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.accesslog import AccessLog
from gateway.app import create_admin_app, create_app
from gateway.auth.identity import Identity
from gateway.client_address import client_address
from gateway.config import config_from_table
from gateway.errors import AuthError
from gateway.metrics import GatewayMetrics
from tunnel.api import PoolStatus
from tunnel.errors import NoTunnelError, StreamResetError

UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
ALICE = Identity("alice", "key", None, 0, 0, 0)


class FakeResponse:
    def __init__(self, status: int, ctype: str, parts: list[bytes | float | Exception]) -> None:
        self.status = status
        self.headers = [("content-type", ctype)]
        self.parts = parts
        self.closed = False
        self._next = 0
        self._until: float | None = None

    async def read(self) -> bytes:
        """Like the tunnel's: a cancelled wait (the keep-alive timeout) loses nothing."""
        loop = asyncio.get_running_loop()
        while self._next < len(self.parts):
            part = self.parts[self._next]
            if isinstance(part, float):
                if self._until is None:
                    self._until = loop.time() + part
                await asyncio.sleep(max(0.0, self._until - loop.time()))
                self._until = None
                self._next += 1
                continue
            self._next += 1
            if isinstance(part, Exception):
                raise part
            return part
        return b""

    async def _gen(self) -> AsyncIterator[bytes]:
        while part := await self.read():
            yield part

    def body(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def aclose(self) -> None:
        self.closed = True


class FakePool:
    def __init__(self) -> None:
        self.response: FakeResponse | Exception = NoTunnelError("office-llm")
        self.sent: list[tuple[str, str, list[tuple[str, str]], bytes]] = []

    async def request(
        self, upstream: str, method: str, path: str, headers: list[tuple[str, str]],
        body: bytes | AsyncIterable[bytes],
    ) -> FakeResponse:  # fmt: skip
        assert isinstance(body, bytes)
        self.sent.append((upstream, path, headers, body))
        if isinstance(self.response, Exception):
            raise self.response
        return self.response

    def status(self) -> PoolStatus:
        return PoolStatus()


class FakeAuth:
    async def authenticate(self, authorization: str | None) -> Identity:
        if authorization != "Bearer good":
            raise AuthError("Incorrect API key provided.")
        return ALICE


class FakeAdmission:
    def __init__(self) -> None:
        self.headers = {"x-ratelimit-limit-requests": "60"}
        self.charged: list[tuple[int, int]] = []
        self.released = False

    async def charge(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.charged.append((prompt_tokens, completion_tokens))

    async def release(self) -> None:
        self.released = True


class FakeLimiter:
    def __init__(self) -> None:
        self.admissions: list[FakeAdmission] = []

    async def admit(self, identity: Identity, requested_tokens: int) -> FakeAdmission:
        self.admissions.append(FakeAdmission())
        return self.admissions[-1]

    async def headers_for(self, identity: Identity) -> dict[str, str]:
        return {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "60"}


class FakeLedger:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int, int]] = []

    async def record(self, identity: str, model: str, prompt: int, completion: int) -> None:
        self.rows.append((identity, model, prompt, completion))


class Rig:
    def __init__(self, tmp: Path) -> None:
        table = {
            "server": {"cert": "c", "key": "k", "sse_keepalive_s": 0.05, "max_body_bytes": 2048,
                       "trusted_proxies": ["10.0.0.0/8"]},
            "tunnel": {"cert": "c", "key": "k", "ca": "a", "crl": "r", "allowed_connectors": ["o"]},
            "models": {"qwen3-coder": {"upstream": "office-llm", "model": UP}},
        }  # fmt: skip
        self.cfg = config_from_table(table, tmp / "gateway.toml")
        self.pool = FakePool()
        self.limiter = FakeLimiter()
        self.ledger = FakeLedger()
        self.log_path = tmp / "access.log"
        self.metrics = GatewayMetrics()
        self.access_log = AccessLog(self.log_path)
        self.app = create_app(
            self.cfg, self.pool, FakeAuth(), self.limiter, self.ledger, self.metrics,
            access_log=self.access_log,
        )  # fmt: skip

    async def post(self, path: str, body: Any, **headers: str) -> Any:
        client = self.app.test_client()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await client.post(
            path, data=data, headers={"authorization": "Bearer good", **headers}
        )


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    rig.access_log.close()


def chunk(content: str, usage: object = None, choices: bool = True) -> bytes:
    obj = {
        "model": UP,
        "choices": [{"delta": {"content": content}}] if choices else [],
        "usage": usage,
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


CHAT = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "hi"}]}


async def test_unknown_route_and_method_in_openai_shape(rig: Rig) -> None:
    resp = await rig.post("/v1/foo", {})
    assert resp.status_code == 404
    assert await resp.get_json() == {
        "error": {"message": "Invalid URL (POST /v1/foo)", "type": "invalid_request_error",
                  "param": None, "code": None}
    }  # fmt: skip
    assert resp.headers["x-request-id"].startswith("req_")
    resp = await rig.app.test_client().get("/v1/chat/completions")
    assert resp.status_code == 405


async def test_unserved_paths_are_logged_under_one_label(rig: Rig) -> None:
    """Issue 12 (4): a 404 used to leave no trace; now one access-log line with the path and
    the client, and one metric label value however many paths are tried."""
    client = rig.app.test_client()
    for i in range(30):
        resp = await client.post(
            f"/v1/thing-{i}?beta=true", headers={"user-agent": "claude-cli/2.0 (external, cli)"}
        )
        assert resp.status_code == 404
    resp = await client.put("/healthz")
    assert resp.status_code == 405
    lines = [json.loads(line) for line in rig.log_path.read_text().splitlines()]
    assert len(lines) == 31
    assert lines[0]["path"] == "POST /v1/thing-0?beta=true"
    assert lines[0]["user_agent"] == "claude-cli/2.0 (external, cli)"
    assert (lines[0]["route"], lines[0]["status"], lines[0]["identity"]) == ("unmatched", 404, "-")
    assert lines[-1]["path"] == "PUT /healthz"
    assert lines[-1]["status"] == 405
    text, _ = rig.metrics.render()
    counted = [
        line for line in text.decode().splitlines() if line.startswith("gateway_requests_total{")
    ]
    assert counted == [
        'gateway_requests_total{model="-",route="unmatched",status="404"} 30.0',
        'gateway_requests_total{model="-",route="unmatched",status="405"} 1.0',
    ]
    long = await client.get("/x" * 500)
    assert long.status_code == 404
    last = json.loads(rig.log_path.read_text().splitlines()[-1])
    assert len(last["path"]) <= len("GET ") + 200


@pytest.mark.parametrize(
    ("body", "status", "param", "code"),
    [
        (b"{nope", 400, None, None),
        ({"model": "qwen3-coder"}, 400, "messages", "missing_required_parameter"),
        ({"messages": []}, 400, "model", "missing_required_parameter"),
        ({"model": 3, "messages": []}, 400, "model", "invalid_type"),
        ({"model": "gpt-9", "messages": [{"role": "user"}]}, 404, "model", "model_not_found"),
        ({"model": "qwen3-coder", "messages": "hi"}, 400, "messages", "invalid_type"),
        ({**CHAT, "stream": True, "stream_options": 1}, 400, "stream_options", "invalid_type"),
        (b'{"model": "qwen3-coder", "messages": [], "temperature": NaN}', 400, None, None),
        ({**CHAT, "pad": "x" * 4096}, 413, None, "request_too_large"),
    ],
)
async def test_request_errors(
    rig: Rig, body: Any, status: int, param: str | None, code: str | None
) -> None:
    resp = await rig.post("/v1/chat/completions", body)
    assert resp.status_code == status
    error = (await resp.get_json())["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert resp.headers["x-ratelimit-remaining-requests"] == "60"  # read, not charged
    assert not rig.limiter.admissions
    assert all(path == "/v1/models" for _, path, _, _ in rig.pool.sent)  # never forwarded


async def test_bad_key_is_401(rig: Rig) -> None:
    resp = await rig.post("/v1/chat/completions", CHAT, authorization="Bearer bad")
    assert resp.status_code == 401
    assert (await resp.get_json())["error"]["code"] == "invalid_api_key"


async def test_no_tunnel_is_503_and_slot_released(rig: Rig) -> None:
    resp = await rig.post("/v1/chat/completions", CHAT)
    assert resp.status_code == 503
    assert (await resp.get_json())["error"]["code"] == "tunnel_unavailable"
    assert resp.headers["x-ratelimit-limit-requests"] == "60"
    assert rig.limiter.admissions[0].released


async def test_json_answer_rewritten_and_charged(rig: Rig) -> None:
    answer = {"model": UP, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    rig.pool.response = FakeResponse(200, "application/json", [json.dumps(answer).encode()])
    resp = await rig.post("/v1/chat/completions", {**CHAT, "user": "u1"}, **{"openai-beta": "x"})
    assert (await resp.get_json())["model"] == "qwen3-coder"
    upstream, path, headers, body = rig.pool.sent[0]
    assert (upstream, path) == ("office-llm", "/v1/chat/completions")
    assert json.loads(body) == {**CHAT, "model": UP, "user": "u1"}
    assert dict(headers)["openai-beta"] == "x"
    assert "authorization" not in dict(headers)
    admission = rig.limiter.admissions[0]
    assert admission.charged == [(3, 4)]
    assert admission.released
    assert rig.ledger.rows == [("alice", "qwen3-coder", 3, 4)]
    line = json.loads(rig.log_path.read_text())
    assert (line["status"], line["prompt_tokens"], line["completion_tokens"]) == (200, 3, 4)


async def test_stream_keepalive_usage_hidden_and_charged(rig: Rig) -> None:
    usage = {"prompt_tokens": 2, "completion_tokens": 2}
    parts: list[bytes | float | Exception] = [
        0.12, chunk("a"), chunk("b")[:9], chunk("b")[9:], chunk("", usage, choices=False),
        b"data: [DONE]\n\n",
    ]  # fmt: skip
    rig.pool.response = FakeResponse(200, "text/event-stream", parts)
    resp = await rig.post("/v1/chat/completions", {**CHAT, "stream": True})
    assert resp.status_code == 200
    body = await resp.get_data()
    assert body.startswith(b": keep-alive\n\n")
    assert body.count(b'"model": "qwen3-coder"') == 2
    assert b"prompt_tokens" not in body
    assert body.endswith(b"data: [DONE]\n\n")
    sent = json.loads(rig.pool.sent[0][3])
    assert sent["stream_options"] == {"include_usage": True}
    assert rig.limiter.admissions[0].charged == [(2, 2)]


async def test_tunnel_lost_mid_stream_ends_with_an_error_event(rig: Rig) -> None:
    parts: list[bytes | float | Exception] = [chunk("a"), StreamResetError("tunnel lost")]
    rig.pool.response = FakeResponse(200, "text/event-stream", parts)
    resp = await rig.post("/v1/chat/completions", {**CHAT, "stream": True})
    body = await resp.get_data()
    last = body.split(b"\n\n")[-2]
    assert json.loads(last[6:])["error"]["code"] == "upstream_error"
    assert rig.pool.response.closed


async def test_a_messages_stream_that_breaks_ends_with_anthropics_error_event(rig: Rig) -> None:
    start = {"type": "message_start", "message": {"id": "msg_1", "model": UP, "usage": {}}}
    first = b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n"
    parts: list[bytes | float | Exception] = [first, StreamResetError("tunnel lost")]
    rig.pool.response = FakeResponse(200, "text/event-stream", parts)
    body = {
        "model": "qwen3-coder",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp = await rig.post("/v1/messages", body)
    last = (await resp.get_data()).split(b"\n\n")[-2]
    name, data = last.split(b"\n", 1)
    assert name == b"event: error"
    error = json.loads(data[6:])
    assert error["type"] == "error"
    assert error["error"]["type"] == "api_error"  # 502: Anthropic's type for a server failure
    assert "request id req_" in error["error"]["message"]


async def test_upstream_4xx_on_a_stream_passes_through(rig: Rig) -> None:
    error = {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
    }
    rig.pool.response = FakeResponse(400, "application/json", [json.dumps(error).encode()])
    resp = await rig.post("/v1/chat/completions", {**CHAT, "stream": True})
    assert resp.status_code == 400
    assert await resp.get_json() == error


async def test_health_and_admin(rig: Rig) -> None:
    client = rig.app.test_client()
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert await ready.get_json() == {"ready": False}
    admin = create_admin_app(rig.pool, rig.metrics).test_client()
    assert b"gateway_active_streams" in await (await admin.get("/metrics")).get_data()
    assert (await client.get("/metrics")).status_code == 404


NETS = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.1/32"))


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.1.1.1", None, "10.1.1.1"),
        ("10.1.1.1", "1.2.3.4", "1.2.3.4"),
        ("10.1.1.1", "6.6.6.6, 1.2.3.4, 192.168.1.1", "1.2.3.4"),  # spoofed left part ignored
        ("10.1.1.1", "10.2.2.2", "10.2.2.2"),
        ("10.1.1.1", "unknown, 10.2.2.2", "10.2.2.2"),
    ],
)
def test_client_address(peer: str, xff: str | None, expected: str) -> None:
    assert client_address(peer, xff, NETS) == expected


# --------------------------------------------------------------------------- the ASGI adapter


class AsgiClient:
    """Drives ``app.asgi_app`` with raw ASGI messages (what Hypercorn does)."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for message in messages:
            self.incoming.put_nowait(message)
        self.sent: list[dict[str, Any]] = []
        self.got_body = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body":
            self.got_body.set()


def http_scope(path: str, method: str = "POST") -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "https", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 443),
        "headers": [(b"authorization", b"Bearer good"), (b"content-type", b"application/json")],
    }  # fmt: skip


async def test_fast_path_body_in_pieces_one_answer_message(rig: Rig) -> None:
    answer = {"model": UP, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    rig.pool.response = FakeResponse(200, "application/json", [json.dumps(answer).encode()])
    raw = json.dumps(CHAT).encode()
    client = AsgiClient([
        {"type": "http.request", "body": raw[:10], "more_body": True},
        {"type": "http.request", "body": raw[10:], "more_body": False},
    ])  # fmt: skip
    await rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    start, body = client.sent  # the head, then the whole answer in one message
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"x-request-id"].startswith(b"req_")
    assert headers[b"x-ratelimit-limit-requests"] == b"60"
    assert json.loads(body["body"])["model"] == "qwen3-coder"
    assert body["more_body"] is False
    assert json.loads(rig.pool.sent[-1][3]) == {**CHAT, "model": UP}
    assert rig.ledger.rows == [("alice", "qwen3-coder", 3, 4)]


async def test_fast_path_client_gone_mid_stream_cancels_and_frees(rig: Rig) -> None:
    rig.pool.response = FakeResponse(200, "text/event-stream", [chunk("a"), 30.0, chunk("b")])
    body = json.dumps({**CHAT, "stream": True}).encode()
    client = AsgiClient([{"type": "http.request", "body": body, "more_body": False}])
    task = asyncio.ensure_future(
        rig.app.asgi_app(http_scope("/v1/chat/completions"), client.receive, client.send)
    )
    async with asyncio.timeout(5):
        await client.got_body.wait()  # the first chunk is out; the upstream is now silent
        client.incoming.put_nowait({"type": "http.disconnect"})
        await task  # returns (not cancelled): the request is over
    assert rig.limiter.admissions[0].released
    assert rig.pool.response.closed
    line = json.loads(rig.log_path.read_text().splitlines()[-1])
    assert line["status"] == 499


async def test_adapter_answers_another_method_with_openai_405(rig: Rig) -> None:
    client = AsgiClient([{"type": "http.request", "body": b"", "more_body": False}])
    await rig.app.asgi_app(http_scope("/v1/chat/completions", "GET"), client.receive, client.send)
    assert client.sent[0]["status"] == 405  # the adapter's answer, in OpenAI's shape
    assert b'"error"' in b"".join(m.get("body", b"") for m in client.sent)


async def test_messages_routes_refuse_in_anthropics_shape(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = AsgiClient([{"type": "http.request", "body": b"", "more_body": False}])
    await rig.app.asgi_app(http_scope("/v1/messages", "GET"), client.receive, client.send)
    assert client.sent[0]["status"] == 405
    body = json.loads(b"".join(m.get("body", b"") for m in client.sent[1:]))
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"

    def broken(*_args: object) -> bytes:
        raise RuntimeError("a bug between admission and the upstream")

    monkeypatch.setattr("gateway.api.routes.upstream_call", broken)
    raw = json.dumps({"model": "qwen3-coder", "max_tokens": 8, "messages": CHAT["messages"]})
    client = AsgiClient([{"type": "http.request", "body": raw.encode(), "more_body": False}])
    await rig.app.asgi_app(http_scope("/v1/messages"), client.receive, client.send)
    assert client.sent[0]["status"] == 500
    body = json.loads(b"".join(m.get("body", b"") for m in client.sent[1:]))
    assert body == {
        "type": "error",
        "error": {"type": "api_error", "message": "The gateway failed to handle the request."},
    }


async def test_public_readyz_says_ready_only_and_admin_lists_every_tunnel_field(rig: Rig) -> None:
    """Issue 11 (8a): no connector names, office addresses or upstreams on the public port."""
    from tunnel.api import TunnelInfo  # noqa: PLC0415

    info = TunnelInfo("office-1", "t1", "tls", "198.51.100.7:50022", ("office-llm",), 2, False, 3.5)
    rig.pool.status = lambda: PoolStatus((info,))  # type: ignore[method-assign]
    public = await rig.app.test_client().get("/readyz")
    assert public.status_code == 200
    assert await public.get_json() == {"ready": True}
    admin = await create_admin_app(rig.pool, rig.metrics).test_client().get("/readyz")  # type: ignore[arg-type]
    assert admin.status_code == 200
    tunnel = (await admin.get_json())["tunnels"][0]
    assert tunnel == {**dataclasses.asdict(info), "upstreams": ["office-llm"]}
    rig.pool.status = PoolStatus  # type: ignore[method-assign]
    assert await (await rig.app.test_client().get("/readyz")).get_json() == {"ready": False}


async def test_adapter_serves_the_model_list_and_one_model(rig: Rig) -> None:
    client = rig.app.test_client()
    headers = {"authorization": "Bearer good"}
    listing = await client.get("/v1/models", headers=headers)
    assert listing.status_code == 200
    assert listing.headers["x-request-id"].startswith("req_")
    assert listing.headers["x-ratelimit-remaining-requests"] == "60"
    ids = [m["id"] for m in (await listing.get_json())["data"]]
    assert ids == ["qwen3-coder", UP]  # the alias first, then the upstream's own id
    one = await client.get("/v1/models/qwen3-coder", headers=headers)
    assert (await one.get_json())["id"] == "qwen3-coder"
    missing = await client.get("/v1/models/gpt-9", headers=headers)
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "model_not_found"
    assert missing.headers["x-ratelimit-limit-requests"] == "60"
    unauthenticated = await client.get("/v1/models")
    assert unauthenticated.status_code == 401
    assert "x-ratelimit-limit-requests" not in unauthenticated.headers


async def test_adapter_refuses_other_methods_and_leaves_odd_paths_to_quart(rig: Rig) -> None:
    client = rig.app.test_client()
    wrong = await client.delete("/v1/models", headers={"authorization": "Bearer good"})
    assert wrong.status_code == 405
    assert (await wrong.get_json())["error"][
        "message"
    ] == "Invalid method for URL (DELETE /v1/models)"
    for path in ("//v1/chat/completions", "/v1/chat/completions/", "/v1/models/"):
        resp = await rig.post(path, CHAT)
        assert resp.status_code == 404, path
        assert (await resp.get_json())["error"]["message"].startswith("Invalid URL (POST /")
    assert not rig.limiter.admissions
