"""The status page's numbers, from the ledger's SQLite file.

Two reads (:func:`read_day_usage`, :func:`read_requests`) and one pure aggregation
(:func:`aggregate`) that unit tests call with plain rows. "Requests" and tokens are counted as
``gateway usage`` counts them (the ``billed`` rows of ``request_log``, written in the same
transaction as the ``usage`` totals); "errors" are every logged request answered with a status of
400 or more, billed or not.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from gateway.ledger import UsageRow


@dataclass(frozen=True, slots=True)
class Range:
    """A chart's window: ``seconds`` back from now, in buckets of ``bucket_s``."""

    name: str
    seconds: int
    bucket_s: int

    @property
    def buckets(self) -> int:
        return self.seconds // self.bucket_s


RANGES: Final = {
    "hour": Range("hour", 3600, 60),
    "day": Range("day", 86400, 1800),
    "week": Range("week", 7 * 86400, 4 * 3600),
}


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One ``request_log`` row."""

    at: float
    identity: str
    model: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: int | None
    total_ms: int
    billed: bool
    stream: bool = False

    @property
    def tokens_per_s(self) -> float | None:
        """How fast a streamed answer came once it started, as ``/metrics`` counts it
        (:func:`gateway.metrics.output_tokens_per_second`): the tokens after the first over the
        time after the first byte; None for anything but a successful stream of two tokens."""
        if not self.stream or not 200 <= self.status < 300 or self.ttft_ms is None:
            return None
        generating_s = (self.total_ms - self.ttft_ms) / 1000
        if self.completion_tokens < 2 or generating_s <= 0:
            return None
        return (self.completion_tokens - 1) / generating_s


@dataclass(slots=True)
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0

    def add(self, row: LoggedRequest) -> None:
        if row.billed:
            self.requests += 1
            self.prompt_tokens += row.prompt_tokens
            self.completion_tokens += row.completion_tokens
        if row.status >= 400:
            self.errors += 1


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    """One bucket of one model: percentiles in milliseconds, rate in tokens per second."""

    count: int
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    total_p50_ms: float | None
    total_p95_ms: float | None
    tokens_per_s: float | None


@dataclass(frozen=True, slots=True)
class Series:
    """Everything the charts of one range show. ``start`` is the first bucket's start."""

    range: Range
    start: float
    by_identity: dict[str, list[Totals]] = field(default_factory=dict)
    by_model: dict[str, list[Totals]] = field(default_factory=dict)
    latency: dict[str, list[LatencyPoint]] = field(default_factory=dict)
    statuses: dict[int, list[int]] = field(default_factory=dict)

    def total(self, per: dict[str, list[Totals]], name: str) -> Totals:
        out = Totals()
        for t in per.get(name, []):
            out.requests += t.requests
            out.prompt_tokens += t.prompt_tokens
            out.completion_tokens += t.completion_tokens
            out.errors += t.errors
        return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def window_start(rng: Range, now: float) -> float:
    """The first bucket's start: whole buckets, the last one holding ``now``."""
    return (math.floor(now / rng.bucket_s) + 1) * rng.bucket_s - rng.seconds


def aggregate(rows: Iterable[LoggedRequest], rng: Range, now: float) -> Series:
    start = window_start(rng, now)
    series = Series(range=rng, start=start)
    n = rng.buckets
    samples: dict[str, list[list[LoggedRequest]]] = {}
    for row in rows:
        i = int((row.at - start) // rng.bucket_s)
        if not 0 <= i < n:
            continue
        for per, name in ((series.by_identity, row.identity), (series.by_model, row.model)):
            per.setdefault(name, [Totals() for _ in range(n)])[i].add(row)
        series.statuses.setdefault(row.status, [0] * n)[i] += 1
        if row.status < 400:
            samples.setdefault(row.model, [[] for _ in range(n)])[i].append(row)
    for model, buckets in samples.items():
        series.latency[model] = [latency_point(b) for b in buckets]
    return series


def latency_point(rows: Sequence[LoggedRequest]) -> LatencyPoint:
    ttft = [float(r.ttft_ms) for r in rows if r.ttft_ms is not None]
    total = [float(r.total_ms) for r in rows]
    rates = [rate for r in rows if (rate := r.tokens_per_s) is not None]
    return LatencyPoint(
        count=len(rows),
        ttft_p50_ms=percentile(ttft, 50),
        ttft_p95_ms=percentile(ttft, 95),
        total_p50_ms=percentile(total, 50),
        total_p95_ms=percentile(total, 95),
        tokens_per_s=percentile(rates, 50),
    )


# ----------------------------------------------------------------------------- SQLite


def open_ledger(path: Path) -> sqlite3.Connection:
    """The ledger's file, read-only (the gateway's writer thread is never blocked: WAL)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def read_day_usage(conn: sqlite3.Connection, day: date) -> list[UsageRow]:
    """One UTC day of the ``usage`` table, as ``gateway usage`` prints it."""
    found = _select(
        conn,
        "SELECT identity, model, requests, prompt_tokens, completion_tokens FROM usage"
        " WHERE day = ? ORDER BY identity, model",
        (day.isoformat(),),
    )
    return [UsageRow(str(i), day, str(m), int(r), int(p), int(c)) for i, m, r, p, c in found]


def read_requests(conn: sqlite3.Connection, since: float) -> list[LoggedRequest]:
    found = _select(
        conn,
        "SELECT at, identity, model, status, prompt_tokens, completion_tokens, ttft_ms,"
        " total_ms, billed, stream FROM request_log WHERE at >= ?",
        (since,),
    )
    return [
        LoggedRequest(
            at=float(at),
            identity=str(identity),
            model=str(model),
            status=int(status),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            ttft_ms=None if ttft is None else int(ttft),
            total_ms=int(total),
            billed=bool(billed),
            stream=bool(stream),
        )
        for at, identity, model, status, prompt, completion, ttft, total, billed, stream in found
    ]


def _select(
    conn: sqlite3.Connection, query: str, args: tuple[object, ...]
) -> list[tuple[Any, ...]]:
    try:
        return conn.execute(query, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # a ledger no gateway of this version has opened yet
            return []
        raise
