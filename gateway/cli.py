"""``gateway``: ``serve``, ``check``, ``keys`` / ``usage`` (from :mod:`gateway.keys_cli`) and
``status`` (from :mod:`gateway.status.cli`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, cast

from gateway.config import GatewayConfig, check_files, load_config
from gateway.errors import ConfigError
from gateway.keys_cli import add_keys_parser, add_usage_parser
from gateway.status.cli import add_status_parser

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """Usage mistakes: one line on standard error and exit code 2, as every error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _load(args: argparse.Namespace) -> GatewayConfig:
    cfg = load_config(Path(args.config))
    check_files(cfg)
    return cfg


def _check(args: argparse.Namespace) -> int:
    _load(args)
    print(f"gateway check: {args.config}: OK", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    cfg = _load(args)
    logging.basicConfig(
        level=cfg.log.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from gateway.server import main_serve  # noqa: PLC0415 (keeps `check` and `keys` light)

    try:
        main_serve(cfg, ready_file=args.ready_file)
    except OSError as exc:  # a port in use, a certificate that does not load...
        raise ConfigError(f"cannot serve: {exc}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gateway", description="OpenAI-compatible HTTPS gateway")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", required=True, help="gateway.toml")
    serve.add_argument("--ready-file", type=Path, help="write the bound ports as JSON here")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check", help="validate gateway.toml and exit")
    check.add_argument("-c", "--config", required=True, help="gateway.toml")
    check.set_defaults(func=_check)
    shared = cast("argparse._SubParsersAction[argparse.ArgumentParser]", sub)
    add_keys_parser(shared)
    add_usage_parser(shared)
    add_status_parser(shared)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"gateway {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
