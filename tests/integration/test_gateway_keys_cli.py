"""``gateway keys`` and ``gateway usage`` as processes: the key alone on stdout, one-line errors
with exit 2, no secrets listed, and a revocation seen by a running authenticator within 1 s."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from gateway.auth.authenticator import Authenticator
from gateway.auth.identity import LimitDefaults
from gateway.auth.keystore import KeyStore, looks_like_key
from gateway.errors import AuthError
from gateway.ledger import UsageLedger
from tests.support.procs import REPO_ROOT, base_env

CONFIG = """
[server]
cert = "pki/gateway.crt"
key = "pki/gateway.key"
[admin]
listen = "127.0.0.1:0"
[tunnel]
listen = "127.0.0.1:0"
cert = "pki/gateway.crt"
key = "pki/gateway.key"
ca = "pki/ca.crt"
crl = "pki/crl.pem"
allowed_connectors = ["office-1"]
[auth]
keys_db = "data/gateway.db"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    return path


def gateway(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "gateway.keys_cli", *args]
    return subprocess.run(
        argv, cwd=REPO_ROOT, env=base_env(), capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip


def test_create_prints_the_key_alone(config: Path, tmp_path: Path) -> None:
    done = gateway("keys", "create", "alice", "--rpm", "5", "--tpm", "900", "--concurrency",
                   "2", "--models", "qwen3-coder,small", "-c", str(config))  # fmt: skip
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert done.stdout == key + "\n"
    assert looks_like_key(key)
    assert "alice" in done.stderr
    assert key not in done.stderr
    db = tmp_path / "data" / "gateway.db"  # relative to the config file
    store = KeyStore(db)
    try:
        record = store.lookup(key)
    finally:
        store.close()
    assert record is not None
    assert (record.rpm, record.tpm, record.concurrency) == (5, 900, 2)
    assert key.encode() not in b"".join(p.read_bytes() for p in db.parent.iterdir())


def test_duplicate_refused_then_forced(config: Path) -> None:
    first = gateway("keys", "create", "bob", "-c", str(config)).stdout.strip()
    dup = gateway("keys", "create", "bob", "-c", str(config))
    assert dup.returncode == 2
    assert dup.stdout == ""
    assert dup.stderr.strip().splitlines() == [
        "gateway keys: error: a key named 'bob' already exists (use --force)"
    ]
    forced = gateway("keys", "create", "bob", "--force", "-c", str(config))
    assert forced.returncode == 0
    listed = json.loads(gateway("keys", "list", "--json", "-c", str(config)).stdout)
    assert [(k["name"], k["revoked"] is None) for k in listed] == [("bob", False), ("bob", True)]
    text = gateway("keys", "list", "-c", str(config)).stdout
    assert first not in text
    assert forced.stdout.strip() not in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "revoke", "nobody"], "gateway keys: error: no live key named 'nobody'"),
        (["keys", "create", "bad name"], "gateway keys: error: invalid key name 'bad name'"),
        (["keys", "create", "x", "--expires", "2001-01-01"], "is not in the future"),
        (["keys", "list", "-c", "/nonexistent/gateway.toml"], "cannot read"),
        (["keys", "list", "--bogus"], "unrecognized arguments"),
        (["keys", "create", "x", "--rpm", "many"], "expected a whole number"),
        (["keys", "create", "x", "--tpm", "9" * 23], "expected a whole number <= 9007199254740992"),
        (["keys", "create", "x", "--rpm", "9007199254740993"], "<= 9007199254740992"),
        (["keys", "create", "x", "--concurrency", "\u0663"], "expected a whole number >= 0"),
    ],
)
def test_errors_are_one_line_exit_2(config: Path, args: list[str], message: str) -> None:
    if "-c" not in args:
        args = [*args, "-c", str(config)]
    done = gateway(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_config_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + "\n[limits]\nrmp = 5\n")
    done = gateway("keys", "list", "-c", str(path))
    assert done.returncode == 2
    assert "limits.rmp" in done.stderr


async def test_revoke_reaches_a_running_authenticator_within_a_second(
    config: Path, tmp_path: Path
) -> None:
    key = gateway("keys", "create", "carol", "-c", str(config)).stdout.strip()
    auth = Authenticator(KeyStore(tmp_path / "data" / "gateway.db"), None, LimitDefaults())
    try:
        assert (await auth.authenticate(f"Bearer {key}")).name == "carol"
        assert gateway("keys", "revoke", "carol", "-c", str(config)).returncode == 0
        revoked_at = time.monotonic()
        refused_after = None
        while time.monotonic() - revoked_at < 2.0:  # the cache rechecks SQLite every 0.25 s
            try:
                await auth.authenticate(f"Bearer {key}")
            except AuthError:
                refused_after = time.monotonic() - revoked_at
                break
            await asyncio.sleep(0.01)
        assert refused_after is not None
        assert refused_after < 1.0
    finally:
        await auth.aclose()


def test_expired_key_listed_with_its_date(config: Path) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert (
        gateway("keys", "create", "dave", "--expires", tomorrow, "-c", str(config)).returncode == 0
    )
    listed = json.loads(gateway("keys", "list", "--json", "-c", str(config)).stdout)
    assert listed[0]["expires"] == tomorrow


def test_usage_table_and_json(config: Path, tmp_path: Path) -> None:
    ledger = UsageLedger(tmp_path / "data" / "gateway.db")
    today = datetime.now(UTC).date()
    try:
        ledger.record_sync("alice", "qwen3-coder", 120, 30, today)
        ledger.record_sync("alice", "qwen3-coder", 80, 20, today)
        ledger.record_sync("bob", "small", 5, 5, date(2001, 1, 1))  # outside --days
    finally:
        ledger.close()
    rows = json.loads(gateway("usage", "--days", "7", "--json", "-c", str(config)).stdout)
    assert rows == [
        {"identity": "alice", "day": today.isoformat(), "model": "qwen3-coder", "requests": 2,
         "prompt_tokens": 200, "completion_tokens": 50, "total_tokens": 250},
    ]  # fmt: skip
    table = gateway("usage", "-c", str(config)).stdout.splitlines()
    assert table[0].split()[:3] == ["DAY", "IDENTITY", "MODEL"]
    assert table[1].split() == [today.isoformat(), "alice", "qwen3-coder", "2", "200", "50", "250"]
