"""``python -m tests.support.standin_llm --port 0 --port-file F``: the stand-in as a process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

try:
    import uvloop
except ImportError:  # Windows
    uvloop = None  # type: ignore[assignment]

from tests.support.standin_llm.server import StandinLLM
from tests.support.standin_llm.wire import DEFAULT_MODELS


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="standin_llm", description="A stand-in OpenAI-compatible LLM server."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the bound port here once ready")
    parser.add_argument("--model", action="append", dest="models", help="a model id (repeatable)")
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--pace-ms", type=float, default=0.0)
    parser.add_argument("--first-delay-ms", type=float, default=0.0)
    parser.add_argument("--strict-models", action="store_true")
    parser.add_argument(
        "--no-messages-api", action="store_true", help="no /v1/messages (a chat-only upstream)"
    )
    parser.add_argument(
        "--no-tokenize", action="store_true", help="no /tokenize (vLLM's token counter)"
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    server = StandinLLM(
        args.models or DEFAULT_MODELS,
        chunks=args.chunks,
        pace_ms=args.pace_ms,
        first_delay_ms=args.first_delay_ms,
        strict_models=args.strict_models,
        messages_api=not args.no_messages_api,
        tokenize=not args.no_tokenize,
    )
    await server.start(args.host, args.port)
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{server.port}\n")
        os.replace(tmp, args.port_file)  # atomic: a reader never sees a half-written port
    print(f"standin_llm: listening on {server.url}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if uvloop is not None:
        uvloop.install()
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
