"""More of the public API against a real gateway, connector and stand-in: the ``x-ratelimit-*``
headers on every answer, the admin metrics after a chat, a non-streamed request abandoned by its
client, and HTTP/2."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_gateway_api import (
    MAX_BODY,
    MESSAGES,
    GatewayRig,
    create_key,
    gateway_rig,
)

CHAT = {"model": "qwen3-coder", "messages": MESSAGES}
LIMIT_HEADERS = (
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
)  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[GatewayRig]:
    async with gateway_rig(tmp_path) as rig:
        yield rig


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def remaining(resp: httpx.Response) -> tuple[int, int]:
    missing = [h for h in LIMIT_HEADERS if h not in resp.headers]
    assert not missing, (resp.status_code, resp.request.url, missing)
    return (
        int(resp.headers["x-ratelimit-remaining-requests"]),
        int(resp.headers["x-ratelimit-remaining-tokens"]),
    )


async def test_ratelimit_headers_on_every_answer_read_not_charged(rig: GatewayRig) -> None:
    key = create_key(rig.toml, "dave", "--rpm", "50", "--tpm", "100000")
    url = rig.base_url
    async with rig.http() as http:
        models = await http.get(f"{url}/models", headers=bearer(key))
        assert models.status_code == 200
        assert remaining(models) == (50, 100000)  # /v1/models is not counted
        assert models.headers["x-ratelimit-limit-requests"] == "50"
        chat = await http.post(f"{url}/chat/completions", json=CHAT, headers=bearer(key))
        assert chat.status_code == 200
        requests_left, _ = remaining(chat)
        assert requests_left == 49
        answers = [
            await http.post(f"{url}/chat/completions", content=b"{nope", headers=bearer(key)),
            await http.post(
                f"{url}/chat/completions", json={**CHAT, "messages": "hi"}, headers=bearer(key)
            ),
            await http.post(
                f"{url}/chat/completions", json={**CHAT, "model": "gpt-9"}, headers=bearer(key)
            ),
            await http.post(
                f"{url}/chat/completions",
                json={**CHAT, "pad": "x" * MAX_BODY},
                headers=bearer(key),
            ),
            await http.get(f"{url}/models/qwen3-coder", headers=bearer(key)),
            await http.get(f"{url}/models/gpt-9", headers=bearer(key)),
            await http.get(f"{url}/models", headers=bearer(key)),
        ]
        assert [a.status_code for a in answers] == [400, 400, 404, 413, 200, 404, 200]
        for answer in answers:
            assert remaining(answer)[0] == 49  # every answer carries them, none charged
            assert re.fullmatch(r"\d+(\.\d+)?m?s|\d+m\d+(\.\d+)?s", answer.headers[
                "x-ratelimit-reset-requests"])  # fmt: skip
        # without a known caller there is no identity to report limits for
        anonymous = await http.get(f"{url}/models")
        assert anonymous.status_code == 401


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


async def test_metrics_after_a_chat_and_a_stream(rig: GatewayRig) -> None:
    async with rig.http() as http:
        chat = await http.post(f"{rig.base_url}/chat/completions", json=CHAT, headers=rig.headers())
        assert chat.status_code == 200
        body = {**CHAT, "stream": True, "standin": {"chunks": 3}}
        async with http.stream(
            "POST", f"{rig.base_url}/chat/completions", json=body, headers=rig.headers()
        ) as resp:
            assert resp.status_code == 200
            lines = [line async for line in resp.aiter_lines()]
        assert "data: [DONE]" in lines
    usages = [r.usage for r in rig.standin.requests if r.path == "/v1/chat/completions"]
    assert len(usages) == 2
    assert all(usages)
    prompt = sum(u["prompt_tokens"] for u in usages if u)
    completion = sum(u["completion_tokens"] for u in usages if u)
    assert prompt > 0
    assert completion > 0
    admin = f"http://127.0.0.1:{rig.ports['admin']}/metrics"
    route = 'route="/v1/chat/completions"'
    async with httpx.AsyncClient() as plain:
        deadline = time.monotonic() + 5.0
        while True:  # the stream's accounting runs just after its last byte went out
            text = (await plain.get(admin)).text
            counted = f"gateway_request_duration_seconds_count{{{route}}} 2.0" in text
            if counted or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert metric(text, "gateway_active_streams") == 0.0
    assert metric(text, 'gateway_prompt_tokens_total{identity="alice"}') == prompt
    assert metric(text, 'gateway_completion_tokens_total{identity="alice"}') == completion
    assert metric(text, f"gateway_request_duration_seconds_count{{{route}}}") == 2.0
    assert metric(text, f"gateway_time_to_first_byte_seconds_count{{{route}}}") == 2.0
    labels = 'model="qwen3-coder",route="/v1/chat/completions",status="200"'
    assert metric(text, f"gateway_requests_total{{{labels}}}") == 2.0


async def test_non_streamed_client_gone_cancels_upstream_and_frees_the_slot(
    rig: GatewayRig,
) -> None:
    key = create_key(rig.toml, "erin", "--concurrency", "1")
    slow = {**CHAT, "standin": {"first_delay_ms": 20000}}
    http = rig.http()
    task = asyncio.ensure_future(
        http.post(f"{rig.base_url}/chat/completions", json=slow, headers=bearer(key))
    )
    await rig.standin.wait_for_request(lambda r: r.path == "/v1/chat/completions", timeout=10.0)
    async with rig.http() as other:  # the one slot is taken meanwhile
        busy = await other.post(f"{rig.base_url}/chat/completions", json=CHAT, headers=bearer(key))
        assert busy.status_code == 429
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await http.aclose()  # the client goes away: its connection is closed
        left = time.monotonic()
        record = await rig.standin.wait_for_request(lambda r: r.disconnected, timeout=1.0)
        assert time.monotonic() - left < 1.0
        assert not record.completed
        deadline = time.monotonic() + 1.0
        while True:  # the slot is freed with the cancellation, well within a second
            again = await other.post(
                f"{rig.base_url}/chat/completions", json=CHAT, headers=bearer(key)
            )
            if again.status_code != 429 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert again.status_code == 200


async def test_http2_on_the_public_api(rig: GatewayRig) -> None:
    async with httpx.AsyncClient(http2=True, verify=rig.ssl_context(), timeout=10.0) as http:
        chat = await http.post(f"{rig.base_url}/chat/completions", json=CHAT, headers=rig.headers())
        assert chat.http_version == "HTTP/2"
        assert chat.status_code == 200
        assert chat.json()["model"] == "qwen3-coder"
        body = {**CHAT, "stream": True, "standin": {"chunks": 3}}
        async with http.stream(
            "POST", f"{rig.base_url}/chat/completions", json=body, headers=rig.headers()
        ) as resp:
            assert resp.http_version == "HTTP/2"
            lines = [line async for line in resp.aiter_lines()]
        assert lines.count("data: [DONE]") == 1
        models = await http.get(f"{rig.base_url}/models", headers=rig.headers())
        assert models.http_version == "HTTP/2"
        assert "x-ratelimit-limit-requests" in models.headers
