"""The `pki` command: flags in, library calls, a few lines out. Errors: one line, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pki.ca import CA, CA_DAYS, CRL_DAYS, LEAF_DAYS, MAX_DAYS, CertRecord
from pki.errors import PKIError

PROG = "pki"
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str) -> NoReturn:
    """Print `pki: error: MESSAGE` as one line on stderr and exit 2."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"{PROG}: error: {line}\n")
    raise SystemExit(EXIT_USAGE)


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days above 0")
    if value > MAX_DAYS:
        raise argparse.ArgumentTypeError(f"{text!r}: at most {MAX_DAYS} days (100 years)")
    return value


def _default_dir() -> Path:
    return Path(os.environ.get("PKI_DIR") or "pki")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; --dir is accepted by every subcommand."""
    common = _Parser(add_help=False)
    # SUPPRESS: a --dir given before the subcommand is not reset by the subcommand's default.
    common.add_argument(
        "--dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="CA directory (default: $PKI_DIR or ./pki)",
    )
    parser = _Parser(
        prog=PROG, parents=[common], description="A small CA for the gateway and its connectors."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", parents=[common], help="create the CA")
    init.add_argument("--name", default="Home LLM CA", help="the CA's common name")
    init.add_argument("--days", type=_days, default=CA_DAYS, help=f"default {CA_DAYS}")

    issue = sub.add_parser("issue", parents=[common], help="issue a server or client certificate")
    kinds = issue.add_subparsers(dest="kind", required=True, metavar="KIND")
    server = kinds.add_parser("server", parents=[common], help="a TLS server certificate")
    server.add_argument("name", metavar="NAME")
    server.add_argument(
        "--dns", action="append", default=[], metavar="HOST", help="a DNS name (repeatable)"
    )
    server.add_argument(
        "--ip", action="append", default=[], metavar="ADDR", help="an IP address (repeatable)"
    )
    client = kinds.add_parser("client", parents=[common], help="a TLS client certificate")
    client.add_argument("name", metavar="NAME")
    for each in (server, client):
        each.add_argument("--days", type=_days, default=LEAF_DAYS, help=f"default {LEAF_DAYS}")
        each.add_argument("--force", action="store_true", help="replace a live certificate")

    listing = sub.add_parser("list", parents=[common], help="show issued certificates")
    listing.add_argument("--json", action="store_true", help="print JSON")

    revoke = sub.add_parser("revoke", parents=[common], help="revoke NAME, rewrite crl.pem")
    revoke.add_argument("name", metavar="NAME")

    crl = sub.add_parser("crl", parents=[common], help="re-sign crl.pem (for a daily timer)")
    crl.add_argument("--days", type=_days, default=CRL_DAYS, help=f"nextUpdate, default {CRL_DAYS}")
    return parser


def _init(args: argparse.Namespace, directory: Path) -> None:
    ca = CA.init(directory, name=args.name, days=args.days)
    print(f"created CA {ca.name!r} in {directory}: ca.crt, ca.key (0600), crl.pem")


def _issue(args: argparse.Namespace, directory: Path) -> None:
    ca = CA.load(directory)
    if args.kind == "server":
        issued = ca.issue_server(
            args.name, dns=args.dns, ips=args.ip, days=args.days, force=args.force
        )
    else:
        issued = ca.issue_client(args.name, days=args.days, force=args.force)
    print(
        f"issued {issued.kind} certificate {issued.name}: {issued.cert_path}, {issued.key_path} "
        f"(serial {issued.serial:X}, until {issued.not_after:%Y-%m-%d %H:%M}Z)"
    )


def _list(args: argparse.Namespace, directory: Path) -> None:
    records = CA.load(directory).list()
    if args.json:
        print(json.dumps([_record_dict(r) for r in records], indent=2))
        return
    print(format_table(records))


def _record_dict(record: CertRecord) -> dict[str, object]:
    return {
        "name": record.name,
        "kind": record.kind,
        "serial": format(record.serial, "X"),
        "not_after": record.not_after.isoformat(),
        "status": record.status,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


def format_table(records: Sequence[CertRecord]) -> str:
    """Records as an aligned text table (header included, even when empty)."""
    rows = [("NAME", "KIND", "SERIAL", "NOT AFTER", "STATUS")]
    rows += [
        (r.name, r.kind, format(r.serial, "X"), f"{r.not_after:%Y-%m-%d %H:%M}Z", r.status)
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _revoke(args: argparse.Namespace, directory: Path) -> None:
    serials = CA.load(directory).revoke(args.name)
    listed = ", ".join(format(s, "X") for s in serials)
    print(f"revoked {args.name} (serial {listed}); rewrote {directory / 'crl.pem'}")


def _crl(args: argparse.Namespace, directory: Path) -> None:
    path = CA.load(directory).crl(days=args.days)
    print(f"re-signed {path} (next update in {args.days} days)")


_COMMANDS = {"init": _init, "issue": _issue, "list": _list, "revoke": _revoke, "crl": _crl}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `pki` console script."""
    args = build_parser().parse_args(argv)
    directory = getattr(args, "dir", None) or _default_dir()
    try:
        _COMMANDS[args.command](args, directory)
    except PKIError as exc:
        fail(str(exc))
    except OSError as exc:  # the library maps its own; this catches the unexpected ones
        fail(f"{exc.filename or directory}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
