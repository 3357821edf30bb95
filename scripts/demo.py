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
import json
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import openai

from scripts.stack import (
    ALIAS,
    CONNECTOR,
    ROOT,
    STANDIN_MODEL,
    UPSTREAM,
    Alias,
    DemoError,
    Ports,
    Processes,
    create_key,
    describe_tunnels,
    free_port,
    fresh_dir,
    gateway_toml,
    make_pki,
    port_or_free,
    say,
    signals_interrupt,
    start_connector,
    start_gateway,
    start_squid,
    start_standin,
    upstream_model,
    wait_for_tunnel,
)


@dataclass(frozen=True)
class Stack:
    """What the demo set up, for the checks and the copy-paste lines."""

    base_url: str
    ca: Path
    key: str
    model: str


# --------------------------------------------------------------------------- bringing it up


def choose_ports(args: argparse.Namespace) -> Ports:
    if args.once:  # tests and CI: never collide with a demo someone left running
        return Ports(free_port(), free_port(), free_port())
    return Ports(
        port_or_free(args.public_port),
        port_or_free(args.tunnel_port),
        port_or_free(args.admin_port),
    )


def start_upstream(args: argparse.Namespace, procs: Processes, work: Path) -> tuple[str, str]:
    """(upstream URL, its model id): the real one given, or a stand-in started here."""
    if args.upstream:
        model = args.model or upstream_model(args.upstream)
        say(f"demo: upstream   {args.upstream} (model {model})")
        return args.upstream, model
    pace_ms = 0 if args.once else 150  # a visible stream by hand
    url, model = start_standin(procs, work, pace_ms=pace_ms), args.model or STANDIN_MODEL
    say(f"demo: stand-in   {url} (an OpenAI-compatible stand-in LLM, model {model})")
    return url, model


def connect_tunnel(
    args: argparse.Namespace, procs: Processes, work: Path, ports: Ports, upstream: str
) -> str:
    """Start the connector through a private squid when there is one; return how it dials."""
    proxy = None if args.no_squid else start_squid(procs, ports.tunnel)
    start_connector(procs, work, ports, {UPSTREAM: upstream}, proxy)
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
    gateway_config.write_text(gateway_toml(ports, [Alias(ALIAS, UPSTREAM, model)]))
    key = create_key(gateway_config)
    say("demo: key        'demo', from `gateway keys create demo -c gateway.toml`")
    start_gateway(procs, gateway_config)
    say(
        f"demo: gateway    https://127.0.0.1:{ports.public} "
        f"(tunnel port {ports.tunnel}, metrics http://127.0.0.1:{ports.admin}/metrics)"
    )
    via = connect_tunnel(args, procs, work, ports, upstream)
    say(f"demo: connector  {CONNECTOR} dials {via}")
    status = wait_for_tunnel(procs, ports)
    say(f"demo: ready      /readyz: {describe_tunnels(status)}")
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
