"""A network namespace with only loopback, for the whole run (deployment and agents alike).

The agents' own switches turn off what they send besides model calls, as far as each has one;
the namespace makes sure of it: there is no route anywhere but 127.0.0.1, so a call home fails at
once (ENETUNREACH) instead of leaving the machine. `python -m scripts.clients` runs itself again
under `unshare --net` (as root; `--map-root-user` otherwise, where user namespaces are allowed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence

INSIDE = "LLM_GATEWAY_CLIENTS_NETNS"  # set in the environment of the run inside the namespace


class IsolationError(Exception):
    """No namespace could be made, or it is not what it should be."""


def inside() -> bool:
    return os.environ.get(INSIDE) == "1"


def unshare_argv(argv: Sequence[str]) -> list[str]:
    """`unshare --net ... python -m scripts.clients ARGV`."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise IsolationError("`unshare` (util-linux) is not installed")
    as_root = [] if os.geteuid() == 0 else ["--map-root-user"]
    return [unshare, "--net", *as_root, "--", sys.executable, "-m", "scripts.clients", *argv]


def rerun_isolated(argv: Sequence[str]) -> int:
    """Run this command again inside a new network namespace; its exit status."""
    env = dict(os.environ, **{INSIDE: "1"})
    try:
        return subprocess.run(unshare_argv(argv), env=env, check=False).returncode  # noqa: S603
    except OSError as exc:
        raise IsolationError(f"could not start unshare: {exc}") from exc


def bring_loopback_up() -> None:
    """`ip link set lo up` (a new namespace's loopback is down), then check that loopback is the
    only interface there is."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    done = subprocess.run(  # noqa: S603 - argv is built here
        [ip, "link", "set", "lo", "up"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise IsolationError(f"ip link set lo up failed: {done.stderr.strip()}")
    names = sorted(name for _index, name in socket.if_nameindex())
    if names != ["lo"]:
        raise IsolationError(f"the namespace has interfaces besides loopback: {names}")
