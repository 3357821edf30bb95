"""`python -m scripts.clients [--only NAME]... [--dir DIR] [--host-network]`: see __init__."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.clients import isolation
from scripts.clients.agents import AGENTS, Agent
from scripts.clients.runner import NODE_BIN, PREFIX, Outcome, bring_up, report, run_agent
from scripts.stack import DemoError, Processes, fresh_dir, say, signals_interrupt


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="clients", description="Run the real agents headless.")
    parser.add_argument("--dir", type=Path, default=PREFIX / "run", help="work dir (wiped)")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="this client only (repeatable)"
    )
    parser.add_argument(
        "--host-network",
        action="store_true",
        help="no network namespace: the agents' own switches are all that keep them home",
    )
    return parser.parse_args(argv)


def chosen(args: argparse.Namespace, isolated: bool) -> list[Agent]:
    agents = [a for a in AGENTS if not args.only or a.name in args.only]
    skipped = [a for a in agents if a.needs_isolation and not isolated]
    for agent in skipped:
        say(f"clients: {agent.name} ({agent.mode}) needs the network namespace; not run")
    return [a for a in agents if a not in skipped]


def run(args: argparse.Namespace, isolated: bool) -> int:
    if not (NODE_BIN / "claude").exists():
        raise DemoError(f"the clients are not installed in {PREFIX}; run `make clients`")
    agents = chosen(args, isolated)
    work = args.dir.resolve()
    procs = Processes(work / "logs")
    outcomes: list[Outcome] = []
    try:
        fresh_dir(work)
        deployment = bring_up(procs, work, [a.key_name for a in agents])
        for index, agent in enumerate(agents):
            say(f"clients: {agent.name} ({agent.mode}) ...")
            outcomes.append(run_agent(agent, deployment, work, index))
    finally:
        procs.stop_all()
    say("\n" + report(outcomes))
    failed = sum(not o.verdict.passed for o in outcomes)
    where = "in a network namespace with loopback only" if isolated else "on the host's network"
    say(f"\nclients: ran {where}; logs in {work}")
    say(f"clients: {len(outcomes) - failed} passed, {failed} failed")
    return 1 if failed or not outcomes else 0


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse_args(raw)
    try:
        if not args.host_network and not isolation.inside():
            return isolation.rerun_isolated(raw)
        if isolation.inside():
            isolation.bring_loopback_up()
        with signals_interrupt():
            return run(args, isolated=isolation.inside())
    except (DemoError, isolation.IsolationError) as exc:
        print(f"clients: error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        say("\nclients: interrupted")
        return 1


if __name__ == "__main__":
    sys.exit(main())
