"""`make demo`: the whole path on one machine, with real processes and the official OpenAI SDK.

A throwaway PKI in .demo/, the stand-in LLM (or a real one with --upstream), the gateway, a
private squid when one is installed (else the connector dials directly, and says so), the
connector, an API key; then chat, streamed chat and models.list through the gateway. Prints the
base URL, the CA file, the key and copy-paste curl and Python lines, then runs until Ctrl-C
(or, with --once, exits 0 when every check passed and 1 otherwise). Everything it started is
stopped on the way out.

    python -m scripts.demo [--once] [--upstream URL] [--model ID] [--dir .demo]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import openai

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
    """Something the demo needs is missing or did not come up; the message says what."""


@dataclass(frozen=True)
class Ports:
    public: int
    tunnel: int
    admin: int


@dataclass(frozen=True)
class Stack:
    """What the demo set up, for the checks and the copy-paste lines."""

    base_url: str
    ca: Path
    key: str
    model: str


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


def choose_ports(args: argparse.Namespace) -> Ports:
    if args.once:  # tests and CI: never collide with a demo someone left running
        return Ports(free_port(), free_port(), free_port())
    return Ports(
        port_or_free(args.public_port),
        port_or_free(args.tunnel_port),
        port_or_free(args.admin_port),
    )


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


def gateway_toml(ports: Ports, model: str) -> str:
    return f"""\
# Written by scripts/demo.py; see deploy/gateway.toml for every key explained.
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

[models."{ALIAS}"]
upstream = "{UPSTREAM}"
model = "{model}"
"""


def connector_toml(ports: Ports, upstream_url: str, proxy_url: str | None) -> str:
    proxy = f'proxy = "{proxy_url}"\n' if proxy_url else ""
    key_env = f'api_key_env = "{KEY_ENV}"\n' if os.environ.get(KEY_ENV) else ""
    return f"""\
# Written by scripts/demo.py; see deploy/connector.toml for every key explained.
[gateway]
address = "127.0.0.1:{ports.tunnel}"
server_name = "localhost"
ca = "pki/ca.crt"
cert = "pki/{CONNECTOR}.crt"
key = "pki/{CONNECTOR}.key"
{proxy}transport = "tls"

[upstreams.{UPSTREAM}]
url = "{upstream_url}"
{key_env}"""


# --------------------------------------------------------------------------- starting things


def start_standin(procs: Processes, work: Path, once: bool) -> str:
    port_file = work / "standin.port"
    pace = ["--pace-ms", "0"] if once else ["--pace-ms", "150"]  # a visible stream by hand
    argv = [sys.executable, "-m", "tests.support.standin_llm", "--host", "127.0.0.1"]
    procs.start("standin", [*argv, "--port", "0", "--port-file", str(port_file), *pace])
    wait_until("the stand-in LLM", procs, port_file.exists, STARTUP_TIMEOUT_S)
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


def create_key(config: Path) -> str:
    argv = [command("gateway"), "keys", "create", "demo", "-c", str(config)]
    env = child_env()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60, env=env)  # noqa: S603
    key = done.stdout.strip()
    if done.returncode != 0 or not key:
        raise DemoError(f"gateway keys create failed ({done.returncode}): {done.stderr.strip()}")
    return key


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


def start_upstream(args: argparse.Namespace, procs: Processes, work: Path) -> tuple[str, str]:
    """(upstream URL, its model id): the real one given, or a stand-in started here."""
    if args.upstream:
        model = args.model or upstream_model(args.upstream)
        say(f"demo: upstream   {args.upstream} (model {model})")
        return args.upstream, model
    url, model = start_standin(procs, work, args.once), args.model or STANDIN_MODEL
    say(f"demo: stand-in   {url} (an OpenAI-compatible stand-in LLM, model {model})")
    return url, model


def start_connector(
    args: argparse.Namespace, procs: Processes, work: Path, ports: Ports, upstream: str
) -> str:
    """Start the connector through a private squid when there is one; return how it dials."""
    proxy = None if args.no_squid else start_squid(procs, ports.tunnel)
    config = work / "connector.toml"
    config.write_text(connector_toml(ports, upstream, proxy))
    procs.start(
        "connector", [command("connector"), "run", "-c", str(config)], child_env(without_proxy=True)
    )
    if proxy is not None:
        return f"through squid at {proxy} (it allows CONNECT to port {ports.tunnel} only)"
    reason = "--no-squid was given" if args.no_squid else "squid is not installed"
    return f"directly, without a proxy ({reason})"


def bring_up(args: argparse.Namespace, procs: Processes, work: Path) -> Stack:
    ports = choose_ports(args)
    ca = make_pki(work / "pki")
    say(f"demo: PKI        {work / 'pki'} (CA, server 'gateway', client '{CONNECTOR}')")
    upstream, model = start_upstream(args, procs, work)
    gateway_config = work / "gateway.toml"
    gateway_config.write_text(gateway_toml(ports, model))
    key = create_key(gateway_config)
    say("demo: key        'demo', from `gateway keys create demo -c gateway.toml`")
    ready_file = work / "gateway.ready"  # written once every listener is bound
    argv = [command("gateway"), "serve", "-c", str(gateway_config), "--ready-file", str(ready_file)]
    procs.start("gateway", argv)
    wait_until("the gateway", procs, ready_file.exists, STARTUP_TIMEOUT_S)
    say(
        f"demo: gateway    https://127.0.0.1:{ports.public} "
        f"(tunnel port {ports.tunnel}, metrics http://127.0.0.1:{ports.admin}/metrics)"
    )
    via = start_connector(args, procs, work, ports, upstream)
    say(f"demo: connector  {CONNECTOR} dials {via}")
    status: list[dict[str, object]] = []

    def ready() -> bool:
        body = readyz(ports)
        if body is not None:
            status.append(body)
        return body is not None

    wait_until("the tunnel (gateway /readyz)", procs, ready, STARTUP_TIMEOUT_S)
    say(f"demo: ready      /readyz: {describe_tunnels(status[-1])}")
    return Stack(f"https://127.0.0.1:{ports.public}/v1", ca, key, model)


# --------------------------------------------------------------------------- the checks


def client_for(stack: Stack) -> openai.OpenAI:
    context = ssl.create_default_context(cafile=str(stack.ca))
    return openai.OpenAI(
        base_url=stack.base_url,
        api_key=stack.key,
        http_client=openai.DefaultHttpxClient(verify=context),
        max_retries=0,  # the demo reports failures as they are
        timeout=60,
    )


def check_chat(client: openai.OpenAI) -> str:
    answer = client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "Say hello to the demo."}]
    )
    text = answer.choices[0].message.content or ""
    usage = answer.usage
    tokens = (
        f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens"
        if usage
        else "no usage"
    )
    if not text:
        raise DemoError("the answer was empty")
    return f"{text!r} ({tokens})"


def check_stream(client: openai.OpenAI) -> str:
    pieces: list[str] = []
    print("ok: stream     ", end="", flush=True)
    stream = client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "Stream a greeting."}], stream=True
    )
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                piece = choice.delta.content or ""
                pieces.append(piece)
                print(piece, end="", flush=True)
    print(flush=True)
    if not "".join(pieces):
        raise DemoError("the stream carried no content")
    return f"{sum(1 for p in pieces if p)} chunks"


def check_models(client: openai.OpenAI) -> str:
    ids = [model.id for model in client.models.list()]
    if ALIAS not in ids:
        raise DemoError(f"{ALIAS!r} is not among the models listed: {ids}")
    return ", ".join(ids)


def run_checks(stack: Stack) -> bool:
    """Chat, streamed chat and models.list with the official SDK; print each result."""
    passed = True
    with client_for(stack) as client:  # closed after: open connections would delay the stop
        for name, check in (
            ("chat", check_chat),
            ("stream", check_stream),
            ("models", check_models),
        ):
            try:
                result = check(client)
            except (openai.OpenAIError, DemoError) as exc:
                say(f"\nFAILED: {name}: {type(exc).__name__}: {exc}")
                passed = False
                continue
            say(f"ok: {name:<10} {result}" if name != "stream" else f"ok: stream     ({result})")
    return passed


def print_usage_lines(stack: Stack) -> None:
    body = json.dumps({"model": ALIAS, "messages": [{"role": "user", "content": "Hello"}]})
    python = (
        "import ssl, openai\n"
        "client = openai.OpenAI(\n"
        f'    base_url="{stack.base_url}",\n'
        f'    api_key="{stack.key}",\n'
        "    http_client=openai.DefaultHttpxClient(\n"
        f'        verify=ssl.create_default_context(cafile="{stack.ca}")),\n'
        ")\n"
        f'answer = client.chat.completions.create(model="{ALIAS}", '
        'messages=[{"role": "user", "content": "Hello"}])\n'
        "print(answer.choices[0].message.content)\n"
    )
    say(
        f"""
Base URL : {stack.base_url}
CA file  : {stack.ca}
API key  : {stack.key}
Model    : {ALIAS} (-> {stack.model})

curl:
curl --cacert {stack.ca} {stack.base_url}/chat/completions \\
  -H "Authorization: Bearer {stack.key}" \\
  -H "Content-Type: application/json" \\
  -d '{body}'

Python (the OpenAI SDK):
{sys.executable} - <<'PY'
{python}PY
"""
    )


# --------------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="run the checks, stop, exit 0 or 1")
    parser.add_argument("--upstream", metavar="URL", help="a real OpenAI-compatible server")
    parser.add_argument("--model", metavar="ID", help="the upstream's model (default: its first)")
    parser.add_argument("--dir", type=Path, default=ROOT / ".demo", help="work dir (wiped)")
    parser.add_argument("--public-port", type=int, default=8443)
    parser.add_argument("--tunnel-port", type=int, default=9443)
    parser.add_argument("--admin-port", type=int, default=9100)
    parser.add_argument("--no-squid", action="store_true", help="connect the connector directly")
    return parser.parse_args(argv)


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.dir.resolve()
    procs = Processes(work / "logs")
    with signals_interrupt():
        try:
            fresh_dir(work)
            return run(args, procs, work)
        except DemoError as exc:
            print(f"demo: error: {exc}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            say("\ndemo: stopping")
            return 0
        finally:
            procs.stop_all()


def run(args: argparse.Namespace, procs: Processes, work: Path) -> int:
    stack = bring_up(args, procs, work)
    passed = run_checks(stack)
    print_usage_lines(stack)
    if args.once:
        say(
            "demo: all checks passed" if passed else "demo: some checks FAILED (logs in .demo/logs)"
        )
        return 0 if passed else 1
    say(f"demo: running; logs in {work / 'logs'}; press Ctrl-C to stop everything")
    while True:
        procs.raise_if_dead()
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
