"""Fixtures shared by every test: the stand-in LLM, private squid/redis/nginx, a test PKI, and a
process group that stops whatever a test started. All are function-scoped and always stopped."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.nginxproc import Nginx, NginxOptions
from tests.support.procs import ProcessGroup
from tests.support.redisproc import RedisServer
from tests.support.squid import Squid, SquidOptions
from tests.support.standin_llm import StandinLLM

if TYPE_CHECKING:
    from tests.support.pki_fixtures import PkiPaths


def _require(program: str) -> None:
    if shutil.which(program) is None and not Path("/usr/sbin", program).exists():
        pytest.skip(f"{program} is not installed")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (``CI`` set), a test skipped because a program is missing is a failure: `make
    test` installs every program the tests use, so such a skip would hide an unchecked feature."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and "is not installed" in str(report.longrepr):
        report.outcome = "failed"


@pytest.fixture
async def standin_llm() -> AsyncIterator[StandinLLM]:
    """A started in-process stand-in LLM with the default models (``.url``, ``.base_url``)."""
    server = StandinLLM()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def standin_factory() -> AsyncIterator[Callable[..., Awaitable[StandinLLM]]]:
    """``await standin_factory(models=[...], pace_ms=5, ssl_context=ctx)``: a started stand-in."""
    started: list[StandinLLM] = []

    async def make(ssl_context: Any = None, **kwargs: Any) -> StandinLLM:
        server = StandinLLM(**kwargs)
        await server.start(ssl_context=ssl_context)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in reversed(started):
            await server.stop()


@pytest.fixture
def squid_factory(tmp_path: Path) -> Iterator[Callable[..., Squid]]:
    """``squid_factory(guise="default"|"bump"|"http_only", ssl_ports=(443,), auth=None,
    upstream_ca=None, websocket_upgrade=True)`` -> a started Squid (``.url``, ``.port``,
    ``.proxy_ca_path``); its logs are copied to ``tmp_path`` when it stops."""
    _require("squid")
    started: list[Squid] = []

    def make(**kwargs: Any) -> Squid:
        squid = Squid(SquidOptions(**kwargs), log_dir=tmp_path)
        started.append(squid)
        return squid.start()

    try:
        yield make
    finally:
        for squid in reversed(started):
            squid.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started private redis-server (``.url`` = ``redis://127.0.0.1:PORT/0``)."""
    _require("redis-server")
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator[Callable[..., Nginx]]:
    """``nginx_factory(cert=, key=, upstream="https://127.0.0.1:P", upstream_ca=None,
    websocket_path="/.well-known/llm-tunnel")`` -> a started Nginx (``.url``)."""
    _require("nginx")
    started: list[Nginx] = []

    def make(**kwargs: Any) -> Nginx:
        nginx = Nginx(NginxOptions(**kwargs), log_dir=tmp_path)
        started.append(nginx)
        return nginx.start()

    try:
        yield make
    finally:
        for nginx in reversed(started):
            nginx.stop()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Track processes (``procs.add(p)``, ``procs.ours("gateway", "serve", "-c", cfg)``); all are
    stopped at the end of the test, newest first."""
    group = ProcessGroup(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


@pytest.fixture
def pki_paths(tmp_path: Path) -> PkiPaths:
    """A test PKI made by ``pki`` itself: ``tests.support.pki_fixtures.PkiPaths`` (CA, a server
    cert "gateway" for localhost/127.0.0.1, a client cert "office-1") in ``tmp_path/pki``."""
    from tests.support.pki_fixtures import make_pki  # noqa: PLC0415 - pki may be mid-change

    return make_pki(tmp_path / "pki")


@pytest.fixture
def pki_dir(pki_paths: PkiPaths) -> Path:
    """The directory of ``pki_paths`` (ca.crt, ca.key, crl.pem, gateway.*, office-1.*)."""
    return pki_paths.dir
