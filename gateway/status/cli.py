"""``gateway status``: the status page's first screen in the terminal (tunnels, recent
disconnects, today's usage, certificate days left), read from the admin listener's
``/status.json``: ``--url``, else the ``[admin] listen`` of ``-c gateway.toml``.

The credential, when the listener asks for one, is ``$GATEWAY_ADMIN_KEY`` or the first line of
``--key-file`` (never a flag: the process list would show it). Errors: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from gateway.config import load_config
from gateway.errors import ConfigError, UsageError
from gateway.ledger import format_table

if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

KEY_ENV: Final = "GATEWAY_ADMIN_KEY"
MAX_ANSWER_BYTES: Final = 8 << 20
Handler = Callable[[argparse.Namespace], int]


def add_status_parser(subparsers: _SubParsers) -> argparse.ArgumentParser:
    status = subparsers.add_parser("status", help="tunnels, today's usage, certificate days left")
    status.add_argument("-c", "--config", type=Path, help="gateway.toml (its [admin] listen)")
    status.add_argument("--url", help="the admin listener, e.g. http://127.0.0.1:9100")
    status.add_argument(
        "--key-file", type=Path, help=f"a file holding an admin key or JWT (else ${KEY_ENV})"
    )
    status.add_argument("--json", action="store_true", help="the page's JSON as it came")
    status.add_argument("--timeout", type=float, default=5.0, help="seconds (5)")
    status.set_defaults(func=_run)
    return status


def _run(args: argparse.Namespace) -> int:
    try:
        url = admin_url(args.url, args.config)
        data = fetch_status(url, credential(args.key_file), args.timeout)
    except (UsageError, ConfigError) as exc:
        print(f"gateway status: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2) if args.json else status_text(data, url))
    return 0


def admin_url(url: str | None, config: Path | None) -> str:
    """``--url`` as given, else the config's admin listener (a wildcard bind is reached on
    loopback)."""
    if url:
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"--url: expected http://host:port, got {url!r}")
        return url.rstrip("/")
    if config is None:
        raise UsageError("give -c gateway.toml or --url http://127.0.0.1:9100")
    listen = load_config(config).admin.listen
    if listen is None:
        raise UsageError(f"{config}: [admin] listen is off, so there is no status to read")
    host, port = listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104 (mapped away)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def credential(key_file: Path | None) -> str | None:
    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--key-file: cannot read {key_file}: {exc}") from None
        return lines[0].strip() if lines and lines[0].strip() else None
    return os.environ.get(KEY_ENV) or None


def fetch_status(url: str, key: str | None, timeout_s: float) -> dict[str, Any]:
    target = f"{url}/status.json?range=day"
    req = urllib.request.Request(target, headers={"accept": "application/json"})  # noqa: S310
    if key:
        req.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only)
            raw = resp.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as exc:
        raise UsageError(f"{target}: HTTP {exc.code}: {_error_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach {url}: {reason}") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise UsageError(f"{target}: not the gateway's status JSON") from None
    if not isinstance(data, dict) or "tunnels" not in data:
        raise UsageError(f"{target}: not the gateway's status JSON")
    return data


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read(65536))["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)


def _since(at: float, now: float) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(at))
    minutes = max(int(now - at), 0) // 60
    return f"{stamp} ({minutes // 60}h {minutes % 60}m)"


def status_text(data: dict[str, Any], url: str) -> str:
    """The terminal screen; pure (``data`` is ``/status.json``)."""
    now = float(data["now"])
    state = "ready" if data["ready"] else "NOT READY (no usable tunnel)"
    out = [f"gateway {url}: {state}", "", "TUNNELS"]
    tunnels = [
        [t["connector"], t["carrier"], t["remote"], _since(t["connected_at"], now),
         "-" if t["rtt_s"] is None else f"{t['rtt_s'] * 1000:.1f}ms",
         str(t["active_streams"]), ",".join(t["upstreams"])]
        for t in data["tunnels"]
    ]  # fmt: skip
    heads = ["CONNECTOR", "CARRIER", "REMOTE", "CONNECTED SINCE", "RTT", "STREAMS", "UPSTREAMS"]
    out.append(format_table(heads, tunnels) if tunnels else "  none")
    gone = [
        [time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(d["at"])), d["connector"], d["reason"],
         d["detail"]]
        for d in data["disconnects"][:5]
    ]  # fmt: skip
    if gone:
        out += [
            "",
            "RECENT DISCONNECTS",
            format_table(["ENDED", "CONNECTOR", "REASON", "DETAIL"], gone),
        ]
    today = data["today"]
    rows = [
        [r["identity"], r["model"], str(r["requests"]), str(r["prompt_tokens"]),
         str(r["completion_tokens"]), str(r["total_tokens"])]
        for r in today["rows"]
    ]  # fmt: skip
    t = today["total"]
    if rows:
        rows.append(["all", "", str(t["requests"]), str(t["prompt_tokens"]),
                     str(t["completion_tokens"]), str(t["total_tokens"])])  # fmt: skip
    heads = ["IDENTITY", "MODEL", "REQUESTS", "PROMPT", "COMPLETION", "TOTAL"]
    out += [
        "",
        f"USAGE TODAY ({today['day']} UTC)",
        format_table(heads, rows) if rows else "  none",
    ]
    certs = [
        [c["role"], c["subject"], time.strftime("%Y-%m-%d", time.gmtime(c["not_after"])),
         f"{c['days_left']:.0f}", "RENEW SOON" if c["expiring"] else ""]
        for c in sorted(data["certificates"], key=lambda c: c["days_left"])
    ]  # fmt: skip
    heads = ["CERTIFICATE", "SUBJECT", "EXPIRES", "DAYS LEFT", ""]
    out += ["", "CERTIFICATES", format_table(heads, certs) if certs else "  none"]
    return "\n".join(out)
