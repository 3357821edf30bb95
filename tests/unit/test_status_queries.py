"""The status page's ledger side: ``request_log`` rows written with the ``usage`` totals (same
commit), the page's reads of a temp ledger, and the pure aggregation into chart buckets."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway import ledger as ledger_module
from gateway.ledger import RequestOutcome, UsageLedger
from gateway.status.queries import (
    RANGES,
    LoggedRequest,
    aggregate,
    open_ledger,
    percentile,
    read_day_usage,
    read_requests,
    window_start,
)

HOUR = RANGES["hour"]


def _row(at: float, who: str = "alice", status: int = 200, **kw: object) -> LoggedRequest:
    values: dict[str, object] = {
        "at": at, "identity": who, "model": "qwen", "status": status, "prompt_tokens": 10,
        "completion_tokens": 20, "ttft_ms": 100, "total_ms": 1100, "billed": True,
    }  # fmt: skip
    values.update(kw)
    return LoggedRequest(**values)  # type: ignore[arg-type]


async def test_request_log_rows_go_with_the_usage_totals(tmp_path: Path) -> None:
    led = UsageLedger(tmp_path / "gw.db")
    now = time.time()
    await led.record("alice", "qwen", 10, 5, RequestOutcome(now, 200, 0.25, 1.5))
    await led.record("alice", "qwen", 0, 0, RequestOutcome(now, 502, None, 0.1, billed=False))
    await led.record("bob", "qwen", 3, 0, RequestOutcome(now, 499, 0.1, 0.2))
    await led.record("carol", "qwen", 1, 1)  # no outcome: counted, not logged (the CLI's way)
    conn = open_ledger(tmp_path / "gw.db")
    try:
        today = read_day_usage(conn, datetime.now(UTC).date())
        logged = read_requests(conn, now - 60)
    finally:
        conn.close()
    assert today == led.rows()  # exactly what ``gateway usage`` prints for today
    assert [(r.identity, r.requests) for r in today] == [("alice", 1), ("bob", 1), ("carol", 1)]
    assert sorted((r.identity, r.status, r.billed, r.ttft_ms, r.total_ms) for r in logged) == [
        ("alice", 200, True, 250, 1500),
        ("alice", 502, False, None, 100),
        ("bob", 499, True, 100, 200),
    ]
    series = aggregate(logged, HOUR, now)
    alice = series.total(series.by_identity, "alice")
    assert (alice.requests, alice.prompt_tokens, alice.completion_tokens, alice.errors) == (
        1,
        10,
        5,
        1,
    )
    await led.aclose()


async def test_rows_past_the_retention_are_pruned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led = UsageLedger(tmp_path / "gw.db")
    old = time.time() - (ledger_module.REQUEST_LOG_DAYS + 1) * 86400
    await led.record("alice", "qwen", 1, 1, RequestOutcome(old, 200, 0.1, 0.2))
    await led.record("alice", "qwen", 1, 1, RequestOutcome(time.time(), 200, 0.1, 0.2))
    monkeypatch.setattr(ledger_module, "PRUNE_INTERVAL_S", 0.0)
    await led.record("alice", "qwen", 1, 1, RequestOutcome(time.time(), 200, 0.1, 0.2))
    with sqlite3.connect(tmp_path / "gw.db") as conn:
        (count,) = conn.execute("SELECT count(*) FROM request_log").fetchone()
        (requests,) = conn.execute("SELECT requests FROM usage").fetchone()
    assert (count, requests) == (2, 3)  # the usage totals are never pruned
    await led.aclose()


def test_a_ledger_without_the_table_reads_empty(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "old.db").close()
    conn = open_ledger(tmp_path / "old.db")
    assert read_requests(conn, 0) == []
    assert read_day_usage(conn, datetime.now(UTC).date()) == []
    conn.close()


def test_buckets_cover_the_window_up_to_now() -> None:
    now = 10_000.5
    start = window_start(HOUR, now)
    assert start == 10_020 - 3600  # the last bucket [9960, 10020) holds now
    rows = [_row(now), _row(start), _row(start - 1), _row(now + 120), _row(now - 30, "bob", 500)]
    series = aggregate(rows, HOUR, now)
    alice = series.by_identity["alice"]
    assert len(alice) == 60
    assert (alice[0].requests, alice[-1].requests) == (1, 1)  # before start and future: out
    assert series.total(series.by_identity, "alice").requests == 2
    assert series.by_identity["bob"][-1].errors == 1
    assert series.statuses == {200: [1] + [0] * 58 + [1], 500: [0] * 59 + [1]}


def test_latency_percentiles_and_rates() -> None:
    assert percentile([], 50) is None
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 101)), 95) == 95
    now = 3600.0 * 10
    rows = [_row(now, ttft_ms=t, total_ms=t + 1000, stream=True) for t in (100, 200, 300, 400)]
    rows.append(_row(now, status=502, ttft_ms=9999, total_ms=9999))  # errors: not latency
    point = aggregate(rows, HOUR, now).latency["qwen"][-1]
    assert (point.count, point.ttft_p50_ms, point.ttft_p95_ms) == (4, 200, 400)
    assert point.tokens_per_s == 19.0  # 19 tokens after the first, in the second after it
    assert _row(0).tokens_per_s is None  # an answer that came whole has no rate
    assert _row(0, stream=True, completion_tokens=1).tokens_per_s is None
    assert _row(0, stream=True, status=499).tokens_per_s is None
