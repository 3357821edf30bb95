"""Bring up the deployment, run each agent in an empty home of its own, judge, tabulate."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.clients.agents import EXPECTED_TEXT, NATIVE_ALIAS, PROMPT, TRANSLATE_ALIAS, Agent
from scripts.clients.checks import Verdict, access_lines, judge, table
from scripts.stack import (
    ROOT,
    STANDIN_MODEL,
    Alias,
    Ports,
    Processes,
    create_key,
    free_port,
    gateway_toml,
    make_pki,
    run_gateway,
    say,
    start_connector,
    start_gateway,
    start_standin,
    wait_for_tunnel,
)

PREFIX = ROOT / ".clients"  # `npm ci --prefix .clients` (make clients)
NODE_BIN = PREFIX / "node_modules" / ".bin"
CONFIGS = ROOT / "clients"
PLACEHOLDER_BASE = "https://minipc.example.org:8443"  # the docs' and configs' gateway URL
AGENT_TIMEOUT_S = 240.0
LOG_SETTLE_S = 0.5  # the access-log line of a request is written just after its last byte
UPSTREAMS = {"office-llm": "standin", "office-chat": "standin-chat"}


@dataclass(frozen=True)
class Deployment:
    base: str  # https://127.0.0.1:PORT, without /v1
    ca: Path
    config: Path  # gateway.toml
    access_log: Path
    keys: dict[str, str]  # key name -> key


@dataclass(frozen=True)
class Outcome:
    agent: Agent
    seconds: float
    verdict: Verdict
    logs: Path  # its standard output and error: LOGS.out, LOGS.err


def bring_up(procs: Processes, work: Path, key_names: Sequence[str]) -> Deployment:
    """Two stand-ins (one serving /v1/messages, one chat-only), a gateway with an alias for
    each messages_api mode, the connector, and a key per agent."""
    ports = Ports(free_port(), free_port(), free_port())
    ca = make_pki(work / "pki")
    urls = {
        "office-llm": start_standin(procs, work, name="standin"),
        "office-chat": start_standin(procs, work, name="standin-chat", messages_api=False),
    }
    aliases = [
        Alias(NATIVE_ALIAS, "office-llm", STANDIN_MODEL),
        Alias(TRANSLATE_ALIAS, "office-chat", STANDIN_MODEL, messages_api="translate"),
    ]
    config = work / "gateway.toml"
    config.write_text(gateway_toml(ports, aliases, access_log="access.jsonl"))
    keys = {name: create_key(config, name) for name in dict.fromkeys(key_names)}
    start_gateway(procs, config)
    start_connector(procs, work, ports, urls, None)
    wait_for_tunnel(procs, ports)
    base = f"https://127.0.0.1:{ports.public}"
    say(f"clients: deployment {base} ({NATIVE_ALIAS}: native, {TRANSLATE_ALIAS}: translate)")
    return Deployment(base, ca, config, work / "access.jsonl", keys)


def agent_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the caller's (no keys, no proxies, no real home)."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "PATH": f"{NODE_BIN}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "NO_COLOR": "1",
    }


def prepare_home(agent: Agent, home: Path, base: str) -> Path:
    """The agent's home with its config files (the placeholder URL made the deployment's) and
    an empty project directory to run in; returns the project directory."""
    project = home / "project"
    project.mkdir(parents=True)
    (home / "node_modules").symlink_to(PREFIX / "node_modules")  # `import "openai"` from home
    for dest, source in agent.files.items():
        target = home / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((CONFIGS / source).read_text().replace(PLACEHOLDER_BASE, base))
    return project


def usage_rows(config: Path) -> list[dict[str, object]]:
    """`gateway usage --json`: the ledger's rows, as the operator reads them."""
    rows = json.loads(run_gateway("usage", "--json", "-c", str(config)))
    return rows if isinstance(rows, list) else []


def run_agent(agent: Agent, deployment: Deployment, work: Path, index: int) -> Outcome:
    name = f"{index}-{agent.key_name}"
    home = work / "homes" / name
    logs = work / "logs" / name
    values = {
        "key": deployment.keys[agent.key_name],
        "ca": str(deployment.ca),
        "base": deployment.base,
        "home": str(home),
        "prompt": PROMPT,
    }
    project = prepare_home(agent, home, deployment.base)
    env = agent_env(home) | {k: v.format_map(values) for k, v in agent.env.items()}
    argv = [arg.format_map(values) for arg in agent.argv]
    argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    offset = deployment.access_log.stat().st_size
    started = time.monotonic()
    try:
        done = subprocess.run(  # noqa: S603 - argv is built here
            argv,
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=AGENT_TIMEOUT_S,
            check=False,
        )
        output, errors, status = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, errors, status = _text(exc.stdout), _text(exc.stderr), -1
    seconds = time.monotonic() - started
    logs.with_suffix(".out").write_text(output)
    logs.with_suffix(".err").write_text(errors)
    time.sleep(LOG_SETTLE_S)
    with deployment.access_log.open("rb") as log:
        log.seek(offset)
        lines = access_lines(log.read().decode(errors="replace"))
    verdict = judge(output, EXPECTED_TEXT, lines, usage_rows(deployment.config), agent.key_name)
    if status != 0:
        ended = "timed out" if status == -1 else f"exited with status {status}"
        problems = (f"{argv[0]} {ended}", *verdict.problems)
        verdict = Verdict(problems, verdict.requests, verdict.tokens, verdict.notes)
    return Outcome(agent, seconds, verdict, logs)


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def report(outcomes: Sequence[Outcome]) -> str:
    rows = [("client", "mode", "result", "seconds", "requests", "tokens")]
    for o in outcomes:
        result = ("ok" if o.verdict.passed else "FAILED") + ("*" if o.verdict.notes else "")
        seconds, requests = f"{o.seconds:.1f}", str(o.verdict.requests)
        rows.append((o.agent.name, o.agent.mode, result, seconds, requests, str(o.verdict.tokens)))
    lines = [table(rows)]
    for o in outcomes:
        if o.verdict.passed and not o.verdict.notes:
            continue
        lines.append(f"\n{o.agent.name} ({o.agent.mode}){'' if o.verdict.passed else ' FAILED'}:")
        lines += [f"  - {problem}" for problem in o.verdict.problems]
        lines += [f"  * {note}" for note in o.verdict.notes]
        lines.append(f"  its output: {o.logs}.out and .err")
    return "\n".join(lines)
