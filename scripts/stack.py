"""A deployment on loopback, in pieces: PKI, stand-in LLMs, gateway, squid, connector, keys.

`make demo` (scripts/demo.py) and `make clients` (scripts/clients/) put these pieces together,
each its own way: the demo with one model alias, the clients' runner with one alias per
`messages_api` mode. Every process started here is a child in its own process group, logging to
DIR/logs/NAME.log, stopped by `Processes.stop_all`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MARKER = ".made-by-demo"  # only a directory holding this file is ever wiped
ALIAS = "qwen3-coder"
STANDIN_MODEL = "Qwen/Qwen3-Coder-30B-A3B-Instruct"
CONNECTOR = "office-1"
UPSTREAM = "office-llm"
KEY_ENV = "OFFICE_LLM_KEY"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class DemoError(Exception):
    """Something the deployment needs is missing or did not come up; the message says what."""


@dataclass(frozen=True)
class Ports:
    public: int
    tunnel: int
    admin: int


@dataclass(frozen=True)
class Alias:
    """One `[models."NAME"]` table of gateway.toml."""

    name: str
    upstream: str
    model: str
    messages_api: str = "native"


# --------------------------------------------------------------------------- small helpers


def say(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_or_free(preferred: int) -> int:
    """`preferred` when nothing listens on it (and it can be bound), else a free port."""
    if preferred:
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("127.0.0.1", preferred))
            return preferred
    return free_port()


def command(name: str) -> str:
    """The console script NAME from this venv (or PATH)."""
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise DemoError(f"the {name!r} command is not installed; run `make venv` first")
    return found


def fresh_dir(path: Path) -> None:
    """Empty PATH for a new demo; refuse to wipe a directory the demo did not make."""
    if path.exists():
        if any(path.iterdir()) and not (path / MARKER).exists():
            raise DemoError(f"{path} exists and was not made by the demo; choose another --dir")
        shutil.rmtree(path)
    (path / "logs").mkdir(parents=True)
    (path / MARKER).write_text("made by scripts/demo.py; removed on the next run\n")


def wait_until(what: str, check: Processes, ready: Callable[[], bool], timeout_s: float) -> None:
    """Poll READY() until true (bounded by TIMEOUT_S); fail fast if a child process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check.raise_if_dead()
        if ready():
            return
        time.sleep(0.1)
    raise DemoError(f"{what} did not come up within {timeout_s:.0f}s")


# --------------------------------------------------------------------------- processes


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT both raise KeyboardInterrupt, so that `finally` stops every child.

    SIGINT is set explicitly: a shell starts background jobs with it ignored.
    """
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Processes:
    """Child processes, each in its own process group, logging to DIR/logs/NAME.log."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes] | Callable[[], object]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        with log:
            proc = subprocess.Popen(  # noqa: S603 - argv is built here, never from a shell string
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env or child_env(),
                start_new_session=True,  # own process group: Ctrl-C reaches the demo only
            )
        self.children.append((name, proc))

    def on_stop(self, name: str, stop: Callable[[], object]) -> None:
        """Something started elsewhere (e.g. squid) that stop_all must stop in its turn."""
        self.children.append((name, stop))

    def raise_if_dead(self) -> None:
        for name, proc in self.children:
            if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
                raise DemoError(f"{name} exited with status {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])

    def stop_all(self) -> None:
        """SIGTERM each group, newest first (connector drains before the gateway goes)."""
        for name, proc in reversed(self.children):
            try:
                if isinstance(proc, subprocess.Popen):
                    self._stop(name, proc)
                else:
                    proc()
            except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                print(f"demo: could not stop {name}: {exc}", file=sys.stderr, flush=True)
        self.children.clear()

    @staticmethod
    def _stop(name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            say(f"demo: {name} did not stop within {STOP_TIMEOUT_S:.0f}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT_S)


# --------------------------------------------------------------------------- configuration


def make_pki(pki_dir: Path) -> Path:
    from pki import CA  # noqa: PLC0415 - imported late so --help works before `make venv`

    ca = CA.init(pki_dir, name="Demo LLM CA")
    ca.issue_server("gateway", dns=["localhost"], ips=["127.0.0.1"])
    ca.issue_client(CONNECTOR)
    return pki_dir / "ca.crt"


def gateway_toml(ports: Ports, aliases: Sequence[Alias], access_log: str | None = None) -> str:
    log = f'\n[log]\naccess_log = "{access_log}"\n' if access_log else ""
    models = "".join(
        f'\n[models."{a.name}"]\nupstream = "{a.upstream}"\nmodel = "{a.model}"\n'
        + (f'messages_api = "{a.messages_api}"\n' if a.messages_api != "native" else "")
        for a in aliases
    )
    return f"""\
# Written by scripts/stack.py; see deploy/gateway.toml for every key explained.
[server]
listen = "127.0.0.1:{ports.public}"
cert = "pki/gateway.crt"
key = "pki/gateway.key"

[admin]
listen = "127.0.0.1:{ports.admin}"

[tunnel]
listen = "127.0.0.1:{ports.tunnel}"
cert = "pki/gateway.crt"
key = "pki/gateway.key"
ca = "pki/ca.crt"
crl = "pki/crl.pem"
allowed_connectors = ["{CONNECTOR}"]

[auth]
keys_db = "gateway.db"

[limits]
storage = "memory://"
rpm = 600
tpm = 1000000
concurrency = 8
{log}{models}"""


def connector_toml(ports: Ports, upstreams: Mapping[str, str], proxy_url: str | None) -> str:
    proxy = f'proxy = "{proxy_url}"\n' if proxy_url else ""
    key_env = f'api_key_env = "{KEY_ENV}"\n' if os.environ.get(KEY_ENV) else ""
    tables = "".join(
        f'\n[upstreams.{name}]\nurl = "{url}"\n{key_env}' for name, url in upstreams.items()
    )
    return f"""\
# Written by scripts/stack.py; see deploy/connector.toml for every key explained.
[gateway]
address = "127.0.0.1:{ports.tunnel}"
server_name = "localhost"
ca = "pki/ca.crt"
cert = "pki/{CONNECTOR}.crt"
key = "pki/{CONNECTOR}.key"
{proxy}transport = "tls"
{tables}"""


# --------------------------------------------------------------------------- starting things


def start_standin(
    procs: Processes,
    work: Path,
    *,
    name: str = "standin",
    pace_ms: float = 0,
    messages_api: bool = True,
) -> str:
    """A stand-in LLM (without /v1/messages unless MESSAGES_API: a chat-only upstream); its URL."""
    port_file = work / f"{name}.port"
    argv = [sys.executable, "-m", "tests.support.standin_llm", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--port-file", str(port_file), "--pace-ms", str(pace_ms)]
    procs.start(name, argv + ([] if messages_api else ["--no-messages-api"]))
    wait_until(f"the stand-in LLM ({name})", procs, port_file.exists, STARTUP_TIMEOUT_S)
    return f"http://127.0.0.1:{int(port_file.read_text())}"


def start_squid(procs: Processes, tunnel_port: int) -> str | None:
    """A private squid with its stock policy, the tunnel port standing in for 443; its URL."""
    if shutil.which("squid") is None:
        return None
    from tests.support.squid import Squid, SquidOptions  # noqa: PLC0415 - only when squid exists

    squid = Squid(SquidOptions(ssl_ports=(tunnel_port,)), log_dir=procs.log_dir)
    squid.start()
    procs.on_stop("squid", squid.stop)
    return squid.url


def run_gateway(*args: str) -> str:
    """`gateway ARGS...` to its end; its standard output (DemoError with its words if it failed)."""
    argv = [command("gateway"), *args]
    env = child_env()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, env=env)  # noqa: S603
    if done.returncode != 0:
        raise DemoError(f"gateway {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def create_key(config: Path, name: str = "demo") -> str:
    key = run_gateway("keys", "create", name, "-c", str(config)).strip()
    if not key:
        raise DemoError("gateway keys create printed no key")
    return key


def start_gateway(procs: Processes, config: Path) -> None:
    """`gateway serve -c CONFIG`, waited for until every listener is bound."""
    ready_file = config.with_name("gateway.ready")  # written once every listener is bound
    argv = [command("gateway"), "serve", "-c", str(config), "--ready-file", str(ready_file)]
    procs.start("gateway", argv)
    wait_until("the gateway", procs, ready_file.exists, STARTUP_TIMEOUT_S)


def start_connector(
    procs: Processes, work: Path, ports: Ports, upstreams: Mapping[str, str], proxy: str | None
) -> None:
    """`connector run`, with no proxy variables: its config says which proxy (if any) to use."""
    config = work / "connector.toml"
    config.write_text(connector_toml(ports, upstreams, proxy))
    argv = [command("connector"), "run", "-c", str(config)]
    procs.start("connector", argv, child_env(without_proxy=True))


def wait_for_tunnel(procs: Processes, ports: Ports) -> dict[str, object]:
    """Until the gateway's /readyz says ready; its JSON."""
    status: list[dict[str, object]] = []

    def ready() -> bool:
        body = readyz(ports)
        if body is not None:
            status.append(body)
        return body is not None

    wait_until("the tunnel (gateway /readyz)", procs, ready, STARTUP_TIMEOUT_S)
    return status[-1]


def readyz(ports: Ports) -> dict[str, object] | None:
    """GET /readyz on the admin listener (the public one says only ready or not); its JSON
    when the gateway says ready, else None."""
    url = f"http://127.0.0.1:{ports.admin}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            body = resp.read()
    except (urllib.error.URLError, OSError):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def describe_tunnels(readyz_body: dict[str, object]) -> str:
    """'1 tunnel up: office-1 over tls' from /readyz's JSON (or the JSON itself if unexpected)."""
    tunnels = readyz_body.get("tunnels")
    if not isinstance(tunnels, list) or not all(isinstance(t, dict) for t in tunnels):
        return json.dumps(readyz_body)
    names = ", ".join(f"{t.get('connector')} over {t.get('carrier')}" for t in tunnels)
    return f"{len(tunnels)} tunnel{'s' if len(tunnels) != 1 else ''} up: {names}"


def upstream_model(url: str) -> str:
    """The first model a real upstream lists (its own API key from $OFFICE_LLM_KEY if set)."""
    request = urllib.request.Request(url.rstrip("/") + "/v1/models")  # noqa: S310
    if os.environ.get(KEY_ENV):
        request.add_header("Authorization", f"Bearer {os.environ[KEY_ENV]}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            models = json.load(resp)["data"]
        return str(models[0]["id"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise DemoError(f"could not list the models of {url} ({exc}); pass --model ID") from exc


def child_env(*, without_proxy: bool = False) -> dict[str, str]:
    """The environment for our commands: this checkout importable first, output unbuffered.

    The connector gets no proxy variables: the demo says in its config which proxy to use.
    """
    env = {k: v for k, v in os.environ.items() if not (without_proxy and k in PROXY_VARS)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env
