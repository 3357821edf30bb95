"""The usage ledger: requests and tokens per identity per UTC day per model, in SQLite.

It shares ``[auth] keys_db`` with the key store (WAL mode, so writes never block readers).
``record`` runs its upsert in a worker thread so a busy database never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
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
VALUES (?, ?, ?, 1, ?, ?)
ON CONFLICT (identity, day, model) DO UPDATE SET
    requests = requests + 1,
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


class UsageLedger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, timeout=5.0, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: LedgerConfig) -> UsageLedger:
        return cls(Path(cfg.auth.keys_db))

    async def record(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> None:
        day = datetime.now(UTC).date()
        await asyncio.to_thread(
            self.record_sync, identity, model, prompt_tokens, completion_tokens, day
        )

    def record_sync(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int, day: date
    ) -> None:
        with self._lock:
            self._conn.execute(
                _UPSERT,
                (
                    identity,
                    day.isoformat(),
                    model,
                    max(prompt_tokens, 0),
                    max(completion_tokens, 0),
                ),
            )

    def rows(self, since: date | None = None) -> list[UsageRow]:
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
        with self._lock:
            self._conn.close()

    async def aclose(self) -> None:
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
