"""Shared pieces of the tunnel integration tests (this module holds no tests itself).

The listener runs in the test's event loop; each connector is a real ``connector run`` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pki import CA
from tests.support.pki_fixtures import PkiPaths, make_pki
from tests.support.procs import ManagedProcess, our_command
from tests.support.standin_llm import StandinLLM
from tunnel.api import TunnelResponse
from tunnel.config import ListenerConfig
from tunnel.listener import Listener

PING_INTERVAL_S = 0.3
PING_TIMEOUT_S = 1.0


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def toml_table(name: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def listener_config(pki: PkiPaths, **overrides: Any) -> ListenerConfig:
    table: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "cert": str(pki.server_cert),
        "key": str(pki.server_key),
        "ca": str(pki.ca_cert),
        "crl": str(pki.crl),
        "allowed_connectors": ["office-1", "office-2"],
        "ping_interval_s": PING_INTERVAL_S,
        "ping_timeout_s": PING_TIMEOUT_S,
        "crl_poll_s": 0.2,
    }
    table.update(overrides)
    return ListenerConfig.from_table(table, pki.dir)


def write_connector_toml(
    path: Path,
    pki: PkiPaths,
    port: int,
    upstream_url: str,
    *,
    name: str = "office-1",
    gateway: Mapping[str, Any] | None = None,
    upstream: Mapping[str, Any] | None = None,
) -> Path:
    gw: dict[str, Any] = {
        "address": f"127.0.0.1:{port}",
        "server_name": "localhost",
        "ca": str(pki.ca_cert),
        "cert": str(pki.cert(name)),
        "key": str(pki.key(name)),
        "transport": "tls",
        "ping_interval_s": PING_INTERVAL_S,
        "ping_timeout_s": PING_TIMEOUT_S,
        "reconnect_base_s": 0.2,
        "reconnect_max_s": 0.5,
        "drain_timeout_s": 5,
    }
    gw.update(gateway or {})
    up: dict[str, Any] = {"url": upstream_url, "api_key": "sk-upstream-secret"}
    up.update(upstream or {})
    path.write_text(toml_table("gateway", gw) + toml_table("upstreams.office-llm", up))
    return path


async def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def read_body(resp: TunnelResponse) -> bytes:
    parts = [chunk async for chunk in resp.body()]
    await resp.aclose()
    return b"".join(parts)


@dataclass
class Rig:
    tmp: Path
    pki: PkiPaths
    standin: StandinLLM
    listener: Listener
    connectors: list[ManagedProcess] = field(default_factory=list)

    def connector_toml(self, name: str = "office-1", **kw: Any) -> Path:
        return write_connector_toml(
            self.tmp / f"{name}.toml",
            self.pki,
            self.listener.port,
            self.standin.url,
            name=name,
            **kw,
        )

    def start_connector(self, toml: Path, label: str = "connector") -> ManagedProcess:
        proc = our_command("connector", "run", "-c", str(toml), work_dir=self.tmp, name=label)
        proc.launch()
        self.connectors.append(proc)
        return proc

    def tunnels(self) -> int:
        return sum(1 for t in self.listener.pool.status().tunnels if not t.draining)

    async def wait_tunnels(self, n: int, timeout: float = 15.0) -> None:
        await wait_until(lambda: self.tunnels() >= n, timeout, f"{n} tunnel(s)")

    async def chat(
        self, body: Mapping[str, Any], headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, bytes]:
        resp = await self.listener.pool.request(
            "office-llm",
            "POST",
            "/v1/chat/completions",
            [("content-type", "application/json"), *(headers or [])],
            json.dumps(body).encode(),
        )
        return resp.status, await read_body(resp)


@contextlib.asynccontextmanager
async def make_rig(tmp: Path, **listener_overrides: Any) -> AsyncIterator[Rig]:
    """PKI (office-1, office-2 issued), an in-process stand-in and listener; stops everything."""
    pki = make_pki(tmp / "pki")
    CA.load(pki.dir).issue_client("office-2")
    standin = StandinLLM()
    await standin.start()
    listener = Listener(listener_config(pki, **listener_overrides))
    await listener.start()
    rig = Rig(tmp, pki, standin, listener)
    try:
        yield rig
    finally:
        for proc in rig.connectors:
            await proc.akill()
        await rig.listener.aclose(drain_timeout_s=1.0)
        await standin.stop()
