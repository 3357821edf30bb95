"""The usage ledger: upserts per identity/day/model, durable group commits, since, the table."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.auth.keystore import KeyStore
from gateway.ledger import UsageLedger, UsageRow, usage_table


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[UsageLedger]:
    led = UsageLedger(tmp_path / "gw.db")
    yield led
    led.close()


async def test_record_upserts(ledger: UsageLedger) -> None:
    await ledger.record("alice", "qwen", 10, 5)
    await ledger.record("alice", "qwen", 1, 2)
    await ledger.record("alice", "small", 3, 0)
    await ledger.record("bob", "qwen", 7, 7)
    today = datetime.now(UTC).date()
    assert ledger.rows() == [
        UsageRow("alice", today, "qwen", 2, 11, 7),
        UsageRow("alice", today, "small", 1, 3, 0),
        UsageRow("bob", today, "qwen", 1, 7, 7),
    ]
    await ledger.aclose()


def _stored(path: Path) -> list[tuple[object, ...]]:
    """What another process (``gateway usage``) would read from the file right now."""
    with sqlite3.connect(path) as conn:
        query = "SELECT identity, model, requests, prompt_tokens, completion_tokens FROM usage"
        return list(conn.execute(query).fetchall())


async def test_a_recorded_request_is_committed_when_record_returns(tmp_path: Path) -> None:
    """Issue 11 (9): durable before the answer ends; concurrent records share commits."""
    led = UsageLedger(tmp_path / "gw.db")
    await led.record("alice", "qwen", 2, 3)
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 1, 2, 3)]
    await asyncio.gather(*(led.record("alice", "qwen", 2, 3) for _ in range(200)))
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 201, 402, 603)]
    assert led.commits < 200  # grouped: the records waiting for the writer go in one transaction
    await led.aclose()


async def test_a_failed_commit_is_reported_and_the_totals_kept(tmp_path: Path) -> None:
    led = UsageLedger(tmp_path / "gw.db", busy_timeout_s=0.0)
    await led.record("alice", "qwen", 5, 5)
    blocker = sqlite3.connect(tmp_path / "gw.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError):
        await led.record("alice", "qwen", 1, 1)
    blocker.execute("ROLLBACK")
    blocker.close()
    await led.record("alice", "qwen", 1, 1)  # the kept totals go with the next commit
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 3, 7, 7)]
    await led.aclose()


async def test_a_cancelled_record_is_still_written(tmp_path: Path) -> None:
    led = UsageLedger(tmp_path / "gw.db")
    task = asyncio.ensure_future(led.record("alice", "qwen", 1, 1))
    await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await led.aclose()
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 1, 1, 1)]


def test_since_filter(ledger: UsageLedger) -> None:
    ledger.record_sync("alice", "m", 1, 1, date(2030, 1, 1))
    ledger.record_sync("alice", "m", 2, 2, date(2030, 1, 3))
    assert [r.day for r in ledger.rows(since=date(2030, 1, 2))] == [date(2030, 1, 3)]
    assert len(ledger.rows()) == 2


def test_shares_the_keys_db(tmp_path: Path) -> None:
    keys = KeyStore(tmp_path / "gw.db")
    led = UsageLedger(tmp_path / "gw.db")
    try:
        keys.create("alice")
        led.record_sync("alice", "m", 1, 1, date(2030, 1, 1))
        assert [r.name for r in keys.list()] == ["alice"]
        assert led.rows()[0].total_tokens == 2
    finally:
        keys.close()
        led.close()


def test_table_and_json() -> None:
    row = UsageRow("alice", date(2030, 1, 1), "qwen", 3, 1200, 34)
    lines = usage_table([row]).splitlines()
    assert lines[0].split() == ["DAY", "IDENTITY", "MODEL", "REQUESTS", "PROMPT", "COMPLETION",
                                "TOTAL"]  # fmt: skip
    assert lines[1].split() == ["2030-01-01", "alice", "qwen", "3", "1200", "34", "1234"]
    assert row.as_json()["day"] == "2030-01-01"
    assert row.as_json()["total_tokens"] == 1234
    assert usage_table([]).split() == lines[0].split()
