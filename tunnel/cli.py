"""``connector run -c FILE`` and ``connector doctor -c FILE``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from tunnel.config import ConnectorConfig
from tunnel.connector import Connector
from tunnel.dialers.table import dialer_for
from tunnel.doctor import main_doctor
from tunnel.errors import TunnelError
from tunnel.heap import freeze_startup_heap
from tunnel.security.contexts import connector_context

PROG = "connector"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{PROG}: error: {message}\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The office side of the LLM tunnel.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, text in (("run", "hold the tunnel(s) open"), ("doctor", "check every step")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", required=True, type=Path, help="connector.toml")
        cmd.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 2


def _install_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """SIGTERM/SIGINT set ``stop``; ``signal.signal`` where the loop cannot (Windows)."""

    def from_signal(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            signal.signal(sig, from_signal)


async def _run(cfg: ConnectorConfig) -> None:
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), stop)
    connector = Connector(cfg)
    freeze_startup_heap()
    await connector.run(stop)


def _event_loop_runner() -> Callable[..., object]:
    """uvloop's runner where uvloop exists (it is not installed on Windows), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 (optional: not on Windows)
    except ImportError:
        return asyncio.run
    runner: Callable[..., object] = uvloop.run
    return runner


def _run_command(path: Path) -> int:
    try:
        cfg = ConnectorConfig.load(path)
        connector_context(cfg.ca, cfg.cert, cfg.key)
        dialer_for(cfg.transport)
    except TunnelError as exc:
        return _fail(str(exc))
    _event_loop_runner()(_run(cfg))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("h2").setLevel(logging.WARNING)
    if args.command == "doctor":
        return main_doctor(args.config)
    try:
        return _run_command(args.config)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
