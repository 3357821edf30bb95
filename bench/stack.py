"""Everything the benchmark starts, on 127.0.0.1 and fresh ports, and stops again.

PKI (the ``pki`` library), the fast upstream, the floor app, the real ``gateway`` and ``connector``
processes (one connector per path: direct, through a private squid, over the WebSocket carrier).
A part that is not there yet (or fails to start) marks its paths "not available" with the reason;
the other paths still run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.client import Endpoint
from pki import CA
from tests.support.procs import (
    ManagedProcess,
    file_ready,
    free_port,
    our_command,
    port_ready,
    python_module_cmd,
    read_port_file,
    run_command,
    script_path,
)
from tests.support.squid import Squid, SquidOptions

DIRECT, FLOOR = "direct", "floor"
GATEWAY, SQUID, WEBSOCKET = "gateway", "gateway+squid", "gateway+websocket"
PATHS = (DIRECT, FLOOR, GATEWAY, SQUID, WEBSOCKET)
UPSTREAM_MODEL = "bench-model"
# path -> (model alias the client asks for, upstream name, client certificate)
GATEWAY_ROUTES = {
    GATEWAY: ("m-direct", "bench-direct", "office-1"),
    SQUID: ("m-squid", "bench-squid", "office-2"),
    WEBSOCKET: ("m-ws", "bench-ws", "office-3"),
}
READY_TIMEOUT_S = 30.0


def gateway_toml(api: int, admin: int, tunnel: int) -> str:
    allowed = ", ".join(f'"{cert}"' for _, _, cert in GATEWAY_ROUTES.values())
    models = "".join(
        f'\n[models."{alias}"]\nupstream = "{upstream}"\nmodel = "{UPSTREAM_MODEL}"\n'
        for alias, upstream, _ in GATEWAY_ROUTES.values()
    )
    return f"""# written by bench/stack.py: huge limits, so that limits never throttle the benchmark
[server]
listen = "127.0.0.1:{api}"
cert = "pki/gateway.crt"
key = "pki/gateway.key"
max_body_bytes = 104857600
max_connections_per_ip = 0  # no limit: (b) and the held streams open 64-100+ from 127.0.0.1

[admin]
listen = "127.0.0.1:{admin}"

[tunnel]
listen = "127.0.0.1:{tunnel}"
cert = "pki/gateway.crt"
key = "pki/gateway.key"
ca = "pki/ca.crt"
crl = "pki/crl.pem"
allowed_connectors = [{allowed}]

[auth]
keys_db = "gateway.db"

[limits]
storage = "memory://"
rpm = 1000000
tpm = 1000000000
concurrency = 1000

[log]
access_log = "access.log"
level = "warning"
{models}"""


def connector_toml(
    tunnel_port: int, cert: str, upstream: str, upstream_url: str, carrier: str
) -> str:
    """``carrier``: "tls", "squid:PORT" (tls through that proxy) or "websocket:URL"."""
    lines = [
        "[gateway]",
        f'address = "127.0.0.1:{tunnel_port}"',
        'server_name = "localhost"',
        'ca = "pki/ca.crt"',
        f'cert = "pki/{cert}.crt"',
        f'key = "pki/{cert}.key"',
        "connections = 1",
    ]
    kind, _, where = carrier.partition(":")
    if kind == "squid":
        lines += [f'proxy = "http://127.0.0.1:{where}"', 'transport = "tls"']
    elif kind == "websocket":
        # The outer TLS (system store + proxy_ca) must trust the gateway's public certificate,
        # which the bench issues from its own CA.
        lines += ['transport = "websocket"', f'websocket_url = "{where}"']
        lines += ['proxy_ca = "pki/ca.crt"']
    else:
        lines += ['transport = "tls"']
    lines += ["", f"[upstreams.{upstream}]", f'url = "{upstream_url}"', ""]
    return "\n".join(lines)


def client_ssl_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class Stack:
    work: Path
    procs: dict[str, ManagedProcess] = field(default_factory=dict)
    squid: Squid | None = None
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    upstream_url: str = ""
    tunnel_port: int = 0
    api_port: int = 0
    admin_port: int = 0  # the gateway's /metrics

    @property
    def pki(self) -> Path:
        return self.work / "pki"

    # ---- pids for psutil: the server that answers on each path, and its connector

    def front_pid(self, path: str) -> int | None:
        role = {DIRECT: "upstream", FLOOR: "floor"}.get(path, "gateway")
        proc = self.procs.get(role)
        return proc.pid if proc is not None and proc.running else None

    def connector_pid(self, path: str) -> int | None:
        proc = self.procs.get(f"connector-{path}")
        return proc.pid if proc is not None and proc.running else None

    # ---- start

    def make_pki(self) -> None:
        ca = CA.init(self.pki, name="Bench CA")
        ca.issue_server("gateway", dns=["localhost"], ips=["127.0.0.1"])
        for _, _, cert in GATEWAY_ROUTES.values():
            ca.issue_client(cert)

    async def start(self) -> None:
        self.make_pki()
        ssl_context = client_ssl_context(self.pki / "ca.crt")
        await self._start_upstream()
        self.endpoints[DIRECT] = Endpoint(DIRECT, self.upstream_url, UPSTREAM_MODEL)
        floor_port = free_port()
        pki = self.pki
        argv = python_module_cmd("bench.floor_app", "--port", str(floor_port))
        argv += ["--cert", str(pki / "gateway.crt"), "--key", str(pki / "gateway.key")]
        await self._launch("floor", argv, port_ready("127.0.0.1", floor_port))
        self.endpoints[FLOOR] = Endpoint(
            FLOOR, f"https://127.0.0.1:{floor_port}", UPSTREAM_MODEL, ssl_context=ssl_context
        )
        try:
            key = await self._start_gateway()
        except Exception as exc:  # any failure: report the gateway rows n/a
            reason = f"gateway not available: {_one_line(exc)}"
            for path in GATEWAY_ROUTES:
                self.unavailable[path] = reason
            return
        for path, (alias, upstream, cert) in GATEWAY_ROUTES.items():
            endpoint = Endpoint(
                path, f"https://127.0.0.1:{self.api_port}", alias, f"Bearer {key}", ssl_context
            )
            try:
                await self._start_connector(path, upstream, cert)
                await wait_route(endpoint, READY_TIMEOUT_S)
            except Exception as exc:  # this path only is not available
                self.unavailable[path] = f"{path} not available: {_one_line(exc)}"
                await self._stop_role(f"connector-{path}")
                continue
            self.endpoints[path] = endpoint

    async def _launch(
        self, role: str, argv: list[str], ready: object, cwd: Path | None = None
    ) -> ManagedProcess:
        proc = ManagedProcess(
            argv, log_path=self.work / f"{role}.log", ready=ready, name=role,  # type: ignore[arg-type]
            ready_timeout_s=READY_TIMEOUT_S, cwd=cwd,
        )  # fmt: skip
        self.procs[role] = proc
        await proc.astart()
        return proc

    async def _start_upstream(self) -> None:
        port_file = self.work / "upstream.port"
        argv = python_module_cmd("bench.fast_upstream", "--port-file", str(port_file))
        await self._launch("upstream", argv, file_ready(port_file))
        self.upstream_url = f"http://127.0.0.1:{read_port_file(port_file)}"

    async def _start_gateway(self) -> str:
        script_path("gateway")  # FileNotFoundError when the package is not installed
        self.api_port, self.admin_port, self.tunnel_port = free_port(), free_port(), free_port()
        config = self.work / "gateway.toml"
        config.write_text(gateway_toml(self.api_port, self.admin_port, self.tunnel_port))
        created = await asyncio.to_thread(
            run_command, "gateway", "keys", "create", "bench", "--rpm", "1000000",
            "--tpm", "1000000000", "--concurrency", "1000", "-c", str(config), cwd=self.work,
        )  # fmt: skip
        if created.returncode != 0 or not created.stdout.strip():
            raise RuntimeError(f"gateway keys create failed: {created.stderr.strip()[-300:]}")
        proc = our_command(
            "gateway", "serve", "-c", str(config), work_dir=self.work,
            ready=port_ready("127.0.0.1", self.api_port),
        )  # fmt: skip
        proc.ready_timeout_s = READY_TIMEOUT_S
        self.procs["gateway"] = proc
        await proc.astart()
        return created.stdout.strip()

    async def _start_connector(self, path: str, upstream: str, cert: str) -> None:
        carrier = "tls"
        if path == SQUID:
            self.squid = Squid(SquidOptions(ssl_ports=(self.tunnel_port,)), log_dir=self.work)
            await self.squid.astart()
            carrier = f"squid:{self.squid.port}"
        elif path == WEBSOCKET:
            carrier = f"websocket:https://127.0.0.1:{self.api_port}/.well-known/llm-tunnel"
        role = f"connector-{path}"
        config = self.work / f"{role}.toml"
        config.write_text(
            connector_toml(self.tunnel_port, cert, upstream, self.upstream_url, carrier)
        )
        proc = our_command("connector", "run", "-c", str(config), work_dir=self.work, name=role)
        proc.ready_timeout_s = READY_TIMEOUT_S
        self.procs[role] = proc
        await proc.astart()

    # ---- stop

    async def _stop_role(self, role: str) -> None:
        proc = self.procs.pop(role, None)
        if proc is not None:
            await proc.astop(timeout=5.0)

    async def stop(self) -> None:
        """Stop everything started, connectors first; never raises."""
        for role in sorted(self.procs, key=lambda r: not r.startswith("connector")):
            with contextlib.suppress(Exception):
                await self.procs[role].astop(timeout=5.0)
        self.procs.clear()
        if self.squid is not None:
            with contextlib.suppress(Exception):
                await self.squid.astop()
            self.squid = None

    def stop_now(self) -> None:
        """Synchronous last resort (e.g. from a signal or atexit): SIGKILL every group."""
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.kill()
        if self.squid is not None and self.squid.process is not None:
            with contextlib.suppress(Exception):
                self.squid.process.kill()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


async def wait_route(endpoint: Endpoint, within_s: float) -> None:
    """Until a chat completion through ``endpoint`` succeeds (the connector is in), or raise."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    last = ""
    connector = aiohttp.TCPConnector(ssl=endpoint.ssl_context or False)
    async with aiohttp.ClientSession(connector=connector) as session:
        while loop.time() < deadline:
            try:
                async with session.post(
                    endpoint.base_url + "/v1/chat/completions",
                    data=endpoint.chat_body(),
                    headers=endpoint.headers(),
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as resp:
                    last = f"status {resp.status}: {(await resp.text())[:200]}"
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = _one_line(exc)
            await asyncio.sleep(0.1)
    raise TimeoutError(f"no answer through {endpoint.name} within {within_s:.0f}s ({last})")
