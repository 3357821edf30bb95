"""The usage ledger: requests and tokens per identity per UTC day per model, in SQLite; and
one row per answered request (``request_log``: time, status, tokens, latency) kept
``REQUEST_LOG_DAYS`` days, for the status page's charts (:mod:`gateway.status.queries`).

It shares ``[auth] keys_db`` with the key store (WAL mode, so writes never block readers).
``record`` returns once the request's row is committed, so a request that was answered is in the
ledger even if the process is then killed (``kill -9``): the forwarder awaits it before the last
byte of the answer. With WAL and ``synchronous=NORMAL`` a commit is a write into the WAL file, no
``fsync``: it survives a crash of the process (the OS has the bytes), not a power cut.

Commits are made by one writer thread (the event loop never waits for SQLite) from a queue: each
transaction takes every record waiting at that moment (a group commit), so under load a commit
serves many requests and the cost per request stays that of batching. A request's ``usage``
total and its ``request_log`` row are written in the same transaction, so the page's totals and
``gateway usage`` agree. Requests that cost nothing (a 502 before any token) are logged but not
counted in ``usage`` (``billed = 0``), as before, and their callers do not wait for the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final, Protocol

log = logging.getLogger("gateway.ledger")

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
CREATE TABLE IF NOT EXISTS request_log (
    at REAL NOT NULL,
    identity TEXT NOT NULL,
    model TEXT NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    ttft_ms INTEGER,
    total_ms INTEGER NOT NULL,
    billed INTEGER NOT NULL,
    stream INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS request_log_at ON request_log (at);
"""
_LOG_INSERT = "INSERT INTO request_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
REQUEST_LOG_DAYS: Final = 8  # the page shows a week; a day more so the week is always whole
PRUNE_INTERVAL_S: Final = 3600.0
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


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """How one request ended, for ``request_log``: ``billed`` requests (tokens, or a client
    that left) are also counted in ``usage``."""

    at: float  # unix time, when the request was settled
    status: int
    ttft_s: float | None  # time to the first byte of the upstream's answer
    total_s: float
    billed: bool = True
    stream: bool = False


class _KeysDbSettings(Protocol):
    @property
    def keys_db(self) -> Path: ...


class LedgerConfig(Protocol):
    @property
    def auth(self) -> _KeysDbSettings: ...


RETRY_INTERVAL_S = 1.0  # totals whose commit failed are tried again this often
_Key = tuple[str, str, str]  # identity, ISO day, model
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_STOP: Final = object()


@dataclass(frozen=True, slots=True)
class _Record:
    key: _Key
    prompt_tokens: int
    completion_tokens: int
    waiter: _Waiter | None
    outcome: RequestOutcome | None = None


class UsageLedger:
    def __init__(self, path: Path, *, busy_timeout_s: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process crashing (not a power cut); no fsync
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()  # the connection and ``_pending``
        self._pending: dict[_Key, list[int]] = {}  # [requests, prompt, completion]
        self._pending_log: list[tuple[object, ...]] = []  # request_log rows
        self._pruned_at = 0.0
        self._queue: queue.SimpleQueue[_Record | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._day_cache: tuple[int, str] = (-1, "")
        self.commits = 0

    @classmethod
    def from_config(cls, cfg: LedgerConfig) -> UsageLedger:
        return cls(Path(cfg.auth.keys_db))

    async def record(
        self,
        identity: str,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        outcome: RequestOutcome | None = None,
    ) -> None:
        """Count one request (and log its ``outcome``); returns once it is committed (raises if
        the commit failed: the totals are then kept and go with the next commit). Cancelling
        the caller does not take the record back. An outcome that is not ``billed`` (nothing
        to count) is only queued: nobody waits for the status page's row."""
        key = (identity, self._today(), model)
        if outcome is not None and not outcome.billed:
            self._put(_Record(key, prompt_tokens, completion_tokens, None, outcome))
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._put(_Record(key, prompt_tokens, completion_tokens, (loop, done), outcome))
        await done  # cancelled: the writer still commits the record, and wakes nobody

    def _put(self, rec: _Record) -> None:
        self._queue.put(rec)
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_loop, name="gateway-ledger", daemon=True
            )
            self._writer.start()

    def _today(self) -> str:
        now = int(time.time()) // 86400
        if now != self._day_cache[0]:
            self._day_cache = (now, datetime.now(UTC).date().isoformat())
        return self._day_cache[1]

    def add(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int, day: str
    ) -> None:
        """Count one request in memory (written by the next commit or :meth:`flush`)."""
        with self._lock:
            self._add_locked((identity, day, model), 1, prompt_tokens, completion_tokens)

    def _take_locked(self, rec: _Record) -> None:
        out = rec.outcome
        if out is None or out.billed:
            self._add_locked(rec.key, 1, rec.prompt_tokens, rec.completion_tokens)
        if out is not None:
            ttft_ms = None if out.ttft_s is None else round(out.ttft_s * 1000)
            identity, _, model = rec.key
            prompt, completion = max(rec.prompt_tokens, 0), max(rec.completion_tokens, 0)
            self._pending_log.append(
                (out.at, identity, model, out.status, prompt, completion, ttft_ms,
                 round(out.total_s * 1000), int(out.billed), int(out.stream))
            )  # fmt: skip

    def _add_locked(self, key: _Key, requests: int, prompt: int, completion: int) -> None:
        totals = self._pending.get(key)
        if totals is None:
            totals = self._pending[key] = [0, 0, 0]
        totals[0] += requests
        totals[1] += max(prompt, 0)
        totals[2] += max(completion, 0)

    # ----------------------------------------------------------------- the writer thread

    def _write_loop(self) -> None:
        """Take whatever is queued, commit it in one transaction, wake its waiters; until
        :meth:`aclose` queues ``_STOP``."""
        while True:
            batch, stop = self._take()
            error: BaseException | None = None
            with self._lock:
                for rec in batch:
                    self._take_locked(rec)
            try:
                self.flush()
            except Exception as exc:
                log.warning("usage ledger: commit failed, kept for the next one: %s", exc)
                error = exc
            _wake([rec.waiter for rec in batch if rec.waiter is not None], error)
            if stop:
                return

    def _take(self) -> tuple[list[_Record], bool]:
        """The records waiting now (at least one, unless totals are due for a retry)."""
        batch: list[_Record] = []
        try:
            waiting = self._pending or self._pending_log
            item = self._queue.get(timeout=RETRY_INTERVAL_S if waiting else None)
        except queue.Empty:
            return batch, False
        while True:
            if item is _STOP:
                return batch, True
            assert isinstance(item, _Record)
            batch.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False

    # ----------------------------------------------------------------- SQLite

    def record_sync(
        self, identity: str, model: str, prompt_tokens: int, completion_tokens: int, day: date
    ) -> None:
        """Count one request and write it at once (the CLI and tests)."""
        self.add(identity, model, prompt_tokens, completion_tokens, day.isoformat())
        self.flush()

    def flush(self) -> None:
        """Write the totals held in memory in one transaction; kept for the next try on error."""
        with self._lock:
            if not self._pending and not self._pending_log:
                return
            pending, self._pending = self._pending, {}
            logged, self._pending_log = self._pending_log, []
            rows = [(i, d, m, *totals) for (i, d, m), totals in pending.items()]
            try:
                if len(rows) == 1 and not logged:  # one statement is its own transaction
                    self._conn.execute(_UPSERT, rows[0])
                else:
                    self._write_many(rows, logged)
                self.commits += 1
            except BaseException:
                for key, totals in pending.items():  # nothing lost: merge back
                    self._add_locked(key, *totals)
                self._pending_log[:0] = logged
                raise

    def _write_many(self, rows: list[tuple[object, ...]], logged: list[tuple[object, ...]]) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(_UPSERT, rows)
            self._conn.executemany(_LOG_INSERT, logged)
            self._prune_locked()
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _prune_locked(self) -> None:
        """Drop ``request_log`` rows past the retention, at most once an hour (in a commit)."""
        now = time.time()
        if now - self._pruned_at >= PRUNE_INTERVAL_S:
            self._pruned_at = now
            cutoff = now - REQUEST_LOG_DAYS * 86400
            self._conn.execute("DELETE FROM request_log WHERE at < ?", (cutoff,))

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
        """Write what is pending, then close (idempotent). The writer must be stopped first
        (:meth:`aclose`)."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._conn.close()

    async def aclose(self) -> None:
        """Stop the writer once it has committed everything queued, then :meth:`close`."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(writer.join)
        self.close()


def _wake(waiters: list[_Waiter], error: BaseException | None) -> None:
    """Resolve the waiters' futures on their loops: one wake-up call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, futures, error)


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


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
