"""The shared fixtures of tests/conftest.py start what they promise and stop it afterwards."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import openai
import redis

from tests.support.procs import ManagedProcess, ProcessGroup, port_answers
from tests.support.redisproc import RedisServer
from tests.support.squid import Squid
from tests.support.standin_llm import StandinLLM


async def test_standin_fixture(standin_llm: StandinLLM) -> None:
    async with openai.AsyncOpenAI(base_url=standin_llm.base_url, api_key="x") as client:
        assert len([m async for m in client.models.list()]) == 2


async def test_standin_factory(
    standin_factory: Callable[..., Awaitable[StandinLLM]],
) -> None:
    first = await standin_factory(models=["a"])
    second = await standin_factory(models=["b"], pace_ms=1)
    assert first.port != second.port
    assert second.defaults.pace_ms == 1


def test_squid_factory(squid_factory: Callable[..., Squid]) -> None:
    squid = squid_factory(guise="http_only")
    assert port_answers("127.0.0.1", squid.port)


def test_redis_server(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_procs_group_stops_everything(procs: ProcessGroup, tmp_path: Path) -> None:
    proc = procs.start(
        ManagedProcess(
            [sys.executable, "-c", "import time; time.sleep(60)"], log_path=tmp_path / "s.log"
        )
    )
    assert proc.running
    assert procs.stop_all() != {}
    assert not proc.running


def test_pki_fixtures(pki_dir: Path) -> None:
    assert (pki_dir / "ca.crt").exists()
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    assert ctx.cert_store_stats()["x509_ca"] == 1
