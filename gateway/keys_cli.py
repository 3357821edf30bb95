"""``gateway keys create|list|revoke`` and ``gateway usage``: a thin CLI over keys and ledger.

``keys create`` prints the new key ALONE on standard output (``KEY=$(gateway keys create ...)``);
every other word goes to standard error. Errors: one line ``gateway keys: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.auth.keystore import KeyRecord, KeyStore
from gateway.config import load_config
from gateway.errors import ConfigError, KeyStoreError, UsageError
from gateway.ledger import UsageLedger, format_table, usage_table

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
Handler = Callable[[argparse.Namespace], int]


def add_keys_parser(subparsers: _SubParsers) -> argparse.ArgumentParser:
    """``gateway keys ...``; each leaf sets ``func(args) -> exit code``."""
    keys = subparsers.add_parser("keys", help="create, list and revoke API keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create a key and print it once on stdout")
    create.add_argument("name")
    create.add_argument("--rpm", type=_non_negative, help="requests per minute (0 = no limit)")
    create.add_argument("--tpm", type=_non_negative, help="tokens per minute (0 = no limit)")
    create.add_argument("--concurrency", type=_non_negative, help="concurrent requests")
    create.add_argument("--models", type=_models, help="allowed model aliases, comma-separated")
    create.add_argument("--expires", type=_date, help="YYYY-MM-DD: refused from 00:00 UTC that day")
    create.add_argument("--force", action="store_true", help="revoke a live key of that name first")
    _add_config(create)
    create.set_defaults(func=_guarded("gateway keys", _create))

    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    _add_config(listing)
    listing.set_defaults(func=_guarded("gateway keys", _list))

    revoke = actions.add_parser(
        "revoke", help="revoke a key (a running gateway refuses it at once)"
    )
    revoke.add_argument("name")
    _add_config(revoke)
    revoke.set_defaults(func=_guarded("gateway keys", _revoke))
    return keys


def add_usage_parser(subparsers: _SubParsers) -> argparse.ArgumentParser:
    usage = subparsers.add_parser("usage", help="requests and tokens per identity per day")
    usage.add_argument("--days", type=_positive, default=30, help="how many days back (30)")
    usage.add_argument("--json", action="store_true", help="JSON instead of a table")
    _add_config(usage)
    usage.set_defaults(func=_guarded("gateway usage", _usage))
    return usage


def _add_config(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a -c given to the parent parser is kept when the leaf does not repeat it.
    parser.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help="gateway.toml")


def _guarded(prog: str, handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (UsageError, KeyStoreError, ConfigError) as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2

    return run


def _keys_db(args: argparse.Namespace) -> Path:
    config = getattr(args, "config", None)
    if config is None:
        raise UsageError("-c/--config gateway.toml is required")
    return Path(load_config(Path(config)).auth.keys_db)


def _create(args: argparse.Namespace) -> int:
    if not _NAME.fullmatch(args.name):
        raise UsageError(f"invalid key name {args.name!r} (letters, digits, . _ @ + -; max 64)")
    if args.expires is not None and args.expires <= datetime.now(UTC).date():
        raise UsageError(f"--expires {args.expires} is not in the future")
    store = KeyStore(_keys_db(args))
    try:
        secret = store.create(
            args.name,
            rpm=args.rpm,
            tpm=args.tpm,
            concurrency=args.concurrency,
            models=args.models,
            expires=args.expires,
            force=args.force,
        )
    finally:
        store.close()
    print(f"created key {args.name!r}; it is shown once, store it now", file=sys.stderr)
    print(secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    store = KeyStore(_keys_db(args))
    try:
        records = store.list()
    finally:
        store.close()
    if args.json:
        print(json.dumps([_record_json(r) for r in records], indent=2))
    else:
        print(_records_table(records))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    store = KeyStore(_keys_db(args))
    try:
        store.revoke(args.name)
    finally:
        store.close()
    print(f"revoked key {args.name!r}", file=sys.stderr)
    return 0


def _usage(args: argparse.Namespace) -> int:
    ledger = UsageLedger(_keys_db(args))
    try:
        rows = ledger.rows(since=datetime.now(UTC).date() - timedelta(days=args.days - 1))
    finally:
        ledger.close()
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2))
    else:
        print(usage_table(rows))
    return 0


def _record_json(r: KeyRecord) -> dict[str, object]:
    return {
        "name": r.name,
        "created": r.created.isoformat(),
        "expires": r.expires.isoformat() if r.expires else None,
        "rpm": r.rpm,
        "tpm": r.tpm,
        "concurrency": r.concurrency,
        "models": sorted(r.models) if r.models is not None else None,
        "revoked": r.revoked.isoformat() if r.revoked else None,
    }


def _records_table(records: list[KeyRecord]) -> str:
    def text(value: object) -> str:
        return "-" if value is None else str(value)

    rows = [
        [
            r.name,
            r.created.date().isoformat(),
            text(r.expires),
            text(r.rpm),
            text(r.tpm),
            text(r.concurrency),
            ",".join(sorted(r.models)) if r.models else "*",
            r.revoked.date().isoformat() if r.revoked else "-",
        ]
        for r in records
    ]
    headers = ["NAME", "CREATED", "EXPIRES", "RPM", "TPM", "CONC", "MODELS", "REVOKED"]
    return format_table(headers, rows)


MAX_LIMIT = 2**53  # past this SQLite's INTEGER and the limiter's arithmetic overflow


def _non_negative(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    if len(text) > 20 or int(text) > MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a whole number <= {MAX_LIMIT}, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a whole number >= 1")
    return value


def _models(text: str) -> frozenset[str]:
    models = frozenset(m.strip() for m in text.split(",") if m.strip())
    if not models:
        raise argparse.ArgumentTypeError("expected model names, comma-separated")
    return models


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m gateway.keys_cli keys ...``); ``gateway`` calls the same."""
    parser = argparse.ArgumentParser(prog="gateway")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_keys_parser(subparsers)
    add_usage_parser(subparsers)
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
