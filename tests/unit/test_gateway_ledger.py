"""The usage ledger: upserts per identity/day/model, batched writes, the since filter, the table."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.keystore import KeyStore
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


async def test_records_are_held_then_written_in_one_batch(tmp_path: Path) -> None:
    led = UsageLedger(tmp_path / "gw.db", flush_interval_s=0.05)
    for _ in range(100):
        await led.record("alice", "qwen", 2, 3)
    assert _stored(tmp_path / "gw.db") == []  # nothing written per request
    for _ in range(100):  # bounded wait for the timed flush
        if _stored(tmp_path / "gw.db"):
            break
        await asyncio.sleep(0.02)
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 100, 200, 300)]
    await led.record("alice", "qwen", 1, 1)
    await led.aclose()  # a graceful stop writes what is pending
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 101, 201, 301)]


async def test_a_failed_flush_keeps_the_totals(tmp_path: Path) -> None:
    led = UsageLedger(tmp_path / "gw.db", flush_interval_s=3600)
    await led.record("alice", "qwen", 5, 5)
    blocker = sqlite3.connect(tmp_path / "gw.db", timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    led._conn.execute("PRAGMA busy_timeout=0")
    with pytest.raises(sqlite3.OperationalError):
        led.flush()
    blocker.execute("ROLLBACK")
    blocker.close()
    await led.record("alice", "qwen", 1, 1)
    await led.aclose()
    assert _stored(tmp_path / "gw.db") == [("alice", "qwen", 2, 6, 6)]


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
