"""The real `gateway serve` + real `connector run` + the stand-in LLM, driven by the OpenAI SDK.

Certificates come from `pki`; the SDK trusts only the test CA. Nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.pki_fixtures import PkiPaths, make_pki
from tests.support.procs import ManagedProcess, file_ready, our_command, run_command
from tests.support.standin_llm import StandinLLM

UP = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
MESSAGES = [{"role": "user", "content": "hello there"}]
MAX_BODY = 64 * 1024


def toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, numbers, booleans and lists read the same in TOML


def gateway_toml(
    tmp: Path,
    pki: PkiPaths,
    tunnel_extra: dict[str, Any] | None = None,
    *,
    messages_api: str = "native",
    **server: Any,
) -> Path:
    srv = {
        "listen": "127.0.0.1:0",
        "cert": str(pki.server_cert),
        "key": str(pki.server_key),
        "max_body_bytes": MAX_BODY,
        "sse_keepalive_s": 0.3,
        **server,
    }
    tunnel = {
        "listen": "127.0.0.1:0",
        "cert": str(pki.server_cert),
        "key": str(pki.server_key),
        "ca": str(pki.ca_cert),
        "crl": str(pki.crl),
        "allowed_connectors": ["office-1"],
        # a handshake that stalls (see the report on start_tls under uvloop) is retried soon
        "handshake_timeout_s": 2,
        **(tunnel_extra or {}),
    }
    lines = ["[server]", *(f"{k} = {toml_value(v)}" for k, v in srv.items())]
    lines += ["[admin]", 'listen = "127.0.0.1:0"', "[tunnel]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in tunnel.items()]
    lines += ["[auth]", 'keys_db = "gateway.db"', "[limits]", "rpm = 0", "tpm = 0"]
    lines += ["concurrency = 0", '[models."qwen3-coder"]', 'upstream = "office-llm"']
    lines += [f"model = {toml_value(UP)}", f"messages_api = {toml_value(messages_api)}"]
    lines += ["[models.embed]", 'upstream = "office-llm"']
    lines += ['model = "text-embedding-test"', "[log]", 'access_log = "access.log"']
    path = tmp / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def connector_toml(
    tmp: Path, pki: PkiPaths, tunnel_port: int, upstream_url: str, extra: str = ""
) -> Path:
    path = tmp / "connector.toml"
    path.write_text(
        "[gateway]\n" + extra + f'address = "127.0.0.1:{tunnel_port}"\nserver_name = "localhost"\n'
        f"ca = {toml_value(str(pki.ca_cert))}\ncert = {toml_value(str(pki.client_cert))}\n"
        f"key = {toml_value(str(pki.client_key))}\n"
        "reconnect_base_s = 0.2\nreconnect_max_s = 0.5\n"
        "[upstreams.office-llm]\n"
        f'url = "{upstream_url}"\napi_key = "sk-upstream-secret"\n'
    )
    return path


def create_key(toml: Path, name: str, *extra: str) -> str:
    done = run_command("gateway", "keys", "create", name, *extra, "-c", str(toml))
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass
class GatewayRig:
    tmp: Path
    pki: PkiPaths
    standin: StandinLLM
    toml: Path
    gateway: ManagedProcess
    ports: dict[str, int]
    key: str
    processes: list[ManagedProcess] = field(default_factory=list)
    clients: list[openai.AsyncOpenAI] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.ports['public']}/v1"

    def client(self, key: str | None = None) -> openai.AsyncOpenAI:
        http = httpx.AsyncClient(verify=self.ssl_context())
        client = openai.AsyncOpenAI(
            base_url=self.base_url, api_key=key or self.key, http_client=http, max_retries=0
        )
        self.clients.append(client)
        return client

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki.ca_cert))

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(verify=self.ssl_context(), timeout=10.0)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    def start_connector(
        self, extra: str = 'transport = "tls"\n', upstream_url: str | None = None
    ) -> ManagedProcess:
        url = upstream_url or self.standin.url
        toml = connector_toml(self.tmp, self.pki, self.ports["tunnel"], url, extra)
        proc = our_command("connector", "run", "-c", str(toml), work_dir=self.tmp)
        proc.launch()
        self.processes.append(proc)
        return proc

    async def wait_ready(self, timeout: float = 15.0) -> None:
        url = f"http://127.0.0.1:{self.ports['admin']}/readyz"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while (await http.get(url)).status_code != 200:
                assert time.monotonic() < deadline, "no tunnel came up"
                await asyncio.sleep(0.05)

    def access_lines(self) -> list[dict[str, Any]]:
        path = self.tmp / "access.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    async def wait_access_lines(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The access log once it has ``count`` lines: a line is written just after the answer's
        last byte went out, so it may trail the client's view of the answer by a moment."""
        deadline = time.monotonic() + timeout
        while len(lines := self.access_lines()) < count:
            assert time.monotonic() < deadline, f"{len(lines)} access-log lines, not {count}"
            await asyncio.sleep(0.02)
        return lines


@contextlib.asynccontextmanager
async def gateway_rig(
    tmp: Path,
    *,
    connector: bool = True,
    tunnel_extra: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    key_args: tuple[str, ...] = (),
    upstream_url: str | None = None,
    messages_api: str = "native",
    tokenize: bool = True,
) -> AsyncIterator[GatewayRig]:
    """A gateway (``server`` keys added to ``[server]``), a key ``alice`` created with
    ``key_args``, and unless ``connector`` is False a connector to the stand-in (or to
    ``upstream_url``), the tunnel up. With ``messages_api = "translate"`` the model
    ``qwen3-coder`` is translated and the stand-in serves no ``/v1/messages`` (a chat-only
    upstream); ``tokenize`` says whether it serves vLLM's ``/tokenize``."""
    pki = make_pki(tmp / "pki")
    toml = gateway_toml(tmp, pki, tunnel_extra, messages_api=messages_api, **(server or {}))
    key = create_key(toml, "alice", *key_args)
    ready = tmp / "ready.json"
    standin = StandinLLM(messages_api=messages_api == "native", tokenize=tokenize)
    await standin.start()
    gateway = our_command(
        "gateway", "serve", "-c", str(toml), "--ready-file", str(ready),
        work_dir=tmp, ready=file_ready(ready),
    )  # fmt: skip
    await gateway.astart()
    rig = GatewayRig(tmp, pki, standin, toml, gateway, json.loads(ready.read_text()), key)
    rig.processes.append(gateway)
    try:
        if connector:
            rig.start_connector(upstream_url=upstream_url)
            await rig.wait_ready()
        yield rig
    finally:
        for client in rig.clients:
            await client.close()
        for proc in reversed(rig.processes):
            await proc.astop()
        await standin.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[GatewayRig]:
    async with gateway_rig(tmp_path) as rig:
        yield rig


# --------------------------------------------------------------------------- the happy paths


async def test_chat_models_and_access_log(rig: GatewayRig) -> None:
    client = rig.client()
    answer = await client.chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]
    assert answer.model == "qwen3-coder"
    assert answer.choices[0].message.content == "Hello from the stand-in LLM. "
    record = rig.standin.requests[-1]
    assert record.model == UP
    assert record.headers["authorization"] == "Bearer sk-upstream-secret"
    assert rig.key not in json.dumps(record.headers)

    ids = [m.id async for m in client.models.list()]
    assert ids[:2] == ["qwen3-coder", "embed"]
    assert UP in ids
    limited = create_key(rig.toml, "bob", "--models", "embed")
    only = [m.id async for m in rig.client(limited).models.list()]
    assert only == ["embed", "text-embedding-test"]
    assert (await client.models.retrieve("qwen3-coder")).id == "qwen3-coder"

    line = (await rig.wait_access_lines(1))[0]
    assert line["identity"] == "alice"
    assert line["model"] == "qwen3-coder"
    assert line["route"] == "/v1/chat/completions"
    assert line["status"] == 200
    assert (line["prompt_tokens"], line["completion_tokens"]) == (
        record.usage["prompt_tokens"],  # type: ignore[index]
        record.usage["completion_tokens"],  # type: ignore[index]
    )
    assert line["latency_ms"] >= line["ttfb_ms"] > 0
    log_text = (rig.tmp / "access.log").read_text()
    assert rig.key not in log_text
    assert "hello there" not in log_text


async def test_streamed_chat_is_paced_like_the_upstream(rig: GatewayRig) -> None:
    client = rig.client()
    stream = await client.chat.completions.create(
        model="qwen3-coder", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        extra_body={"standin": {"chunks": 6, "pace_ms": 150}},
    )  # fmt: skip
    times: list[float] = []
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 5, times
    assert all(0.1 < gap < 0.25 for gap in gaps), gaps
    assert all(c.model == "qwen3-coder" for c in chunks)
    assert all(c.choices for c in chunks), "the usage chunk the client did not ask for leaked"
    sent = rig.standin.requests[-1].body
    assert sent["stream_options"] == {"include_usage": True}
    assert (await rig.wait_access_lines(1))[-1]["completion_tokens"] == 6


async def test_streamed_chat_with_usage_the_client_asked_for(rig: GatewayRig) -> None:
    stream = await rig.client().chat.completions.create(
        model="qwen3-coder", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = [c async for c in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


async def test_streamed_completions_embeddings_and_responses(rig: GatewayRig) -> None:
    client = rig.client()
    stream = await client.completions.create(model="qwen3-coder", prompt="def f(", stream=True)
    texts = [c.choices[0].text async for c in stream if c.choices]
    assert "".join(texts) == "Hello from the stand-in LLM. "
    assert rig.standin.requests[-1].body["stream_options"] == {"include_usage": True}

    emb = await client.embeddings.create(model="embed", input=["a b", "c"])
    assert emb.model == "embed"
    assert len(emb.data) == 2
    assert emb.usage.prompt_tokens > 0

    resp = await client.responses.create(model="qwen3-coder", input="hi")
    assert resp.model == "qwen3-coder"
    assert resp.output_text.strip() == "Hello from the stand-in LLM."
    events = [
        e async for e in await client.responses.create(model="qwen3-coder", input="hi", stream=True)
    ]
    done = [e for e in events if e.type == "response.completed"]
    assert done
    assert done[0].response.model == "qwen3-coder"
    lines = await rig.wait_access_lines(4)
    assert [line["route"] for line in lines] == [
        "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/responses",
    ]  # fmt: skip
    assert all(line["prompt_tokens"] > 0 for line in lines)
    assert lines[-1]["completion_tokens"] == 5


async def test_unknown_fields_pass_through_both_ways(rig: GatewayRig) -> None:
    extra = {
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        ],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "suffix": "x",
        "made_up_field": {"nested": [1, 2.5, "three"]},
    }
    body = {"model": "qwen3-coder", "messages": MESSAGES, **extra}
    async with rig.http() as http:
        resp = await http.post(f"{rig.base_url}/chat/completions", json=body, headers=rig.headers())
    assert resp.status_code == 200, resp.text
    sent = rig.standin.requests[-1].body
    assert {k: sent[k] for k in extra} == extra
    answer = resp.json()
    assert answer["model"] == "qwen3-coder"
    assert len(answer["choices"]) == 2
    assert "refusal" in answer["choices"][0]["message"]
    assert "logprobs" in answer["choices"][0]
    assert resp.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" in resp.headers


# --------------------------------------------------------------------------- errors


async def test_errors_in_openai_shape(rig: GatewayRig) -> None:
    client = rig.client()
    with pytest.raises(openai.NotFoundError) as nf:
        await client.chat.completions.create(model="gpt-9", messages=MESSAGES)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    assert (
        nf.value.body["message"]
        == "The model `gpt-9` does not exist or you do not have access to it."
    )  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="qwen3-coder", messages=None)  # type: ignore[arg-type]
    assert bad.value.param == "messages"
    with pytest.raises(openai.AuthenticationError) as auth:
        await rig.client("sk-gw-wrong").chat.completions.create(
            model="qwen3-coder", messages=MESSAGES
        )  # type: ignore[arg-type]
    assert auth.value.code == "invalid_api_key"
    limited = create_key(rig.toml, "carol", "--models", "embed")
    with pytest.raises(openai.NotFoundError):
        await rig.client(limited).chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]

    async with rig.http() as http:
        big = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "x" * MAX_BODY}]}
        resp = await http.post(f"{rig.base_url}/chat/completions", json=big, headers=rig.headers())
        assert resp.status_code == 413
        assert resp.json()["error"]["type"] == "invalid_request_error"
        resp = await http.post(f"{rig.base_url}/foo", json={}, headers=rig.headers())
        assert resp.status_code == 404
        assert resp.json() == {
            "error": {"message": "Invalid URL (POST /v1/foo)", "type": "invalid_request_error",
                      "param": None, "code": None}
        }  # fmt: skip
        resp = await http.get(f"{rig.base_url}/chat/completions", headers=rig.headers())
        assert resp.status_code == 405
        assert (
            resp.json()["error"]["message"] == "Invalid method for URL (GET /v1/chat/completions)"
        )
        resp = await http.post(
            f"{rig.base_url}/chat/completions", content=b"{nope", headers=rig.headers()
        )
        assert resp.status_code == 400
        assert "x-request-id" in resp.headers
        # the upstream's own 4xx passes through
        body = {"model": "qwen3-coder", "messages": MESSAGES, "standin": {"status": 422}}
        resp = await http.post(f"{rig.base_url}/chat/completions", json=body, headers=rig.headers())
        assert resp.status_code == 422
        assert resp.json()["error"]["message"] == "stand-in error 422 as requested"


async def test_503_without_a_connector(tmp_path: Path) -> None:
    async with gateway_rig(tmp_path, connector=False) as rig:
        with pytest.raises(openai.InternalServerError) as info:
            await rig.client().chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]
        assert info.value.status_code == 503
        assert info.value.code == "tunnel_unavailable"
        async with rig.http() as http:
            public = await http.get(f"https://localhost:{rig.ports['public']}/readyz")
            assert public.status_code == 503
            assert public.json() == {"ready": False}
            assert (
                await http.get(f"https://localhost:{rig.ports['public']}/healthz")
            ).status_code == 200
        async with httpx.AsyncClient() as plain:
            metrics = await plain.get(f"http://127.0.0.1:{rig.ports['admin']}/metrics")
        labels = 'model="qwen3-coder",route="/v1/chat/completions",status="503"'
        assert f"gateway_requests_total{{{labels}}} 1.0" in metrics.text
        assert "gateway_tunnels_up 0.0" in metrics.text


# ----------------------------------------------------------------- streams: cancel, keep-alive


async def test_client_disconnect_cancels_the_upstream_within_a_second(rig: GatewayRig) -> None:
    body = {
        "model": "qwen3-coder", "messages": MESSAGES, "stream": True,
        "standin": {"chunks": 100, "pace_ms": 100},
    }  # fmt: skip
    async with rig.http() as http:
        async with http.stream(
            "POST", f"{rig.base_url}/chat/completions", json=body, headers=rig.headers()
        ) as resp:
            assert resp.status_code == 200
            seen = 0
            async for line in resp.aiter_lines():
                seen += line.startswith("data:")
                if seen >= 3:
                    break
        left = time.monotonic()
    record = await rig.standin.wait_for_request(lambda r: r.disconnected, timeout=1.0)
    assert record.ended_ns is not None
    assert record.chunks_sent < 20
    assert time.monotonic() - left < 1.0
    assert (await rig.wait_access_lines(1))[-1]["status"] == 499


async def test_keepalive_comments_while_the_model_thinks(rig: GatewayRig) -> None:
    body = {
        "model": "qwen3-coder", "messages": MESSAGES, "stream": True,
        "standin": {"first_delay_ms": 1000, "chunks": 2},
    }  # fmt: skip
    lines: list[str] = []
    async with (
        rig.http() as http,
        http.stream(
            "POST", f"{rig.base_url}/chat/completions", json=body, headers=rig.headers()
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in resp.aiter_lines()]
    assert lines.count(": keep-alive") >= 2
    assert lines[-2:] == ["data: [DONE]", ""]


# --------------------------------------------------------------------------- the WebSocket carrier


@pytest.mark.parametrize("plain_http", [False, True])
async def test_websocket_carrier_on_the_public_port_and_plain_http(
    tmp_path: Path, plain_http: bool
) -> None:
    extra = {"websocket_http_listen": "127.0.0.1:0"}
    async with gateway_rig(tmp_path, connector=False, tunnel_extra=extra) as rig:
        path = "/.well-known/llm-tunnel"
        if plain_http:
            url = f"http://127.0.0.1:{rig.ports['websocket_http']}{path}"
        else:
            url = f"https://localhost:{rig.ports['public']}{path}"
        rig.start_connector(
            f'transport = "websocket"\nwebsocket_url = "{url}"\n'
            f"proxy_ca = {toml_value(str(rig.pki.ca_cert))}\n"
        )
        await rig.wait_ready()
        answer = await rig.client().chat.completions.create(model="qwen3-coder", messages=MESSAGES)  # type: ignore[arg-type]
        assert answer.model == "qwen3-coder"
        async with rig.http() as http:
            public = (await http.get(f"https://localhost:{rig.ports['public']}/readyz")).json()
        assert public == {"ready": True}  # no connector names or addresses on the public port
        async with httpx.AsyncClient() as plain:
            admin = await plain.get(f"http://127.0.0.1:{rig.ports['admin']}/readyz")
        tunnel = admin.json()["tunnels"][0]
        assert (tunnel["connector"], tunnel["carrier"]) == ("office-1", "websocket")
        assert tunnel["remote"].startswith("127.0.0.1")
        if plain_http:  # the plain-HTTP listener serves the tunnel path and nothing else
            async with httpx.AsyncClient() as plain:
                other = await plain.get(f"http://127.0.0.1:{rig.ports['websocket_http']}/v1/models")
            assert other.status_code == 404
