"""The usage ledger: requests and tokens per identity per UTC day per model, in SQLite.

It shares ``[auth] keys_db`` with the key store (WAL mode, so writes never block readers).
``record`` only adds to totals held in memory (no I/O per request); they are written to SQLite
at most once a second in one transaction (in a worker thread, so a busy database never stalls
the event loop), and before :meth:`UsageLedger.rows` reads and when the ledger is closed, so a
graceful stop loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    identity TEXT NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (identity, day, model)
);
"""
_UPSERT = """
INSERT INTO usage (identity, day, model, requests, prompt_tokens, completion_tokens)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (identity, day, model) DO UPDATE SET
    requests = requests + excluded.requests,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens
"""


@dataclass(frozen=True, slots=True)
class UsageRow:
    identity: str
    day: date
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_json(self) -> dict[str, object]:
        return {**asdict(self), "day": self.day.isoformat(), "total_tokens": self.total_tokens}


class _AuthSettings(Protocol):
    @property
    def keys_db(self) -> Path: ...


class LedgerConfig(Protocol):
    @property
    def auth(self) -> _AuthSettings: ...


FLUSH_INTERVAL_S = 1.0
_Key = tuple[str, str, str]  # identity, ISO day, model


class UsageLedger:
    def __init__(self, path: Path, *, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, fast
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()  # the connection and ``_pending``
        self._pending: dict[_Key, list[int]] = {}  # [requests, prompt, completion]
        self._flush_interval_s = flush_interval_s
        self._flusher: asyncio.Task[None] | None = None
        self._day_cache: tuple[int, str] = (-1, "")

    @classmethod
    def from_config(cls, cfg: LedgerConfig) -> UsageLedger:
        return cls(Path(cfg.auth.keys_db))

    async def record(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        """Count one request; written to SQLite within ``flush_interval_s``."""
        self.add(identity, model, prompt_tokens, completion_tokens, self._today())
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())

    def _today(self) -> str:
        now = int(time.time()) // 86400
        if now != self._day_cache[0]:
            self._day_cache = (now, datetime.now(UTC).date().isoformat())
        return self._day_cache[1]

    def add(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int, day: str
    ) -> None:
        with self._lock:
            totals = self._pending.get((identity, day, model))
            if totals is None:
                totals = self._pending[(identity, day, model)] = [0, 0, 0]
            totals[0] += 1
            totals[1] += max(prompt_tokens, 0)
            totals[2] += max(completion_tokens, 0)

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._flush_interval_s)
            await asyncio.to_thread(self.flush)
        finally:
            self._flusher = None

    def record_sync(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int, day: date
    ) -> None:
        """Count one request and write it at once (the CLI and tests)."""
        self.add(identity, model, prompt_tokens, completion_tokens, day.isoformat())
        self.flush()

    def flush(self) -> None:
        """Write the totals held in memory in one transaction; kept for the next try on error."""
        with self._lock:
            if not self._pending:
                return
            pending, self._pending = self._pending, {}
            rows = [(i, d, m, *totals) for (i, d, m), totals in pending.items()]
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(_UPSERT, rows)
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except BaseException:
                for key, totals in pending.items():  # nothing lost: merge back
                    mine = self._pending.setdefault(key, [0, 0, 0])
                    for n in range(3):
                        mine[n] += totals[n]
                raise

    def rows(self, since: date | None = None) -> list[UsageRow]:
        self.flush()
        query = (
            "SELECT identity, day, model, requests, prompt_tokens, completion_tokens FROM usage"
            " WHERE day >= ? ORDER BY day, identity, model"
        )
        with self._lock:
            found = self._conn.execute(query, ((since or date.min).isoformat(),)).fetchall()
        return [
            UsageRow(
                identity=i,
                day=date.fromisoformat(d),
                model=m,
                requests=r,
                prompt_tokens=p,
                completion_tokens=c,
            )
            for i, d, m, r, p, c in found
        ]

    def close(self) -> None:
        """Write what is pending, then close (idempotent)."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._conn.close()

    async def aclose(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        self.close()


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain left-aligned text table (numbers right-aligned)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(r[i].isdigit() for r in rows) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def usage_table(rows: list[UsageRow]) -> str:
    headers = ["DAY", "IDENTITY", "MODEL", "REQUESTS", "PROMPT", "COMPLETION", "TOTAL"]
    body = [
        [
            r.day.isoformat(),
            r.identity,
            r.model,
            str(r.requests),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.total_tokens),
        ]
        for r in rows
    ]
    return format_table(headers, body)
