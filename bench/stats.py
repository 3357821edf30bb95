"""Sans-IO arithmetic for the benchmark: percentiles, summaries, ratios, per-chunk delays.

Everything here takes plain numbers (seconds or nanoseconds) and returns plain numbers, so the
unit tests call it without a socket or a clock.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NS_PER_MS = 1_000_000
_TIMESTAMP = re.compile(rb"@t=(\d+)")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) with linear interpolation; ``None`` when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Latency figures of one sample, in milliseconds."""

    count: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "max_ms": self.max_ms,
        }


def summarize_s(durations_s: Sequence[float]) -> Summary:
    """Summarize durations given in seconds."""
    ms = [d * 1000 for d in durations_s]
    return summarize_ms(ms)


def summarize_ms(ms: Sequence[float]) -> Summary:
    if not ms:
        return Summary(0, None, None, None, None)
    return Summary(
        count=len(ms),
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=sum(ms) / len(ms),
        max_ms=max(ms),
    )


def difference(value: float | None, reference: float | None) -> float | None:
    """``value - reference``, or ``None`` if either is missing."""
    if value is None or reference is None:
        return None
    return value - reference


def ratio(value: float | None, reference: float | None) -> float | None:
    """``value / reference``, or ``None`` if either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def rate(count: float, seconds: float) -> float | None:
    """Events per second; ``None`` for an empty interval."""
    if seconds <= 0:
        return None
    return count / seconds


def growth_pct(start: float | None, end: float | None) -> float | None:
    """How much ``end`` grew over ``start``, in percent of ``start``."""
    if start is None or end is None or start <= 0:
        return None
    return (end - start) / start * 100


def sent_timestamp_ns(chunk: bytes) -> int | None:
    """The upstream's send time carried in an SSE chunk (``...@t=<monotonic ns>...``)."""
    match = _TIMESTAMP.search(chunk)
    return int(match.group(1)) if match else None


def chunk_delays_ms(pairs: Iterable[tuple[int, int]]) -> list[float]:
    """Per-chunk delay (receive - send) in ms from ``(sent_ns, received_ns)`` pairs.

    Both ends read ``CLOCK_MONOTONIC`` on the same machine, so the clocks agree across processes.
    """
    return [(received - sent) / NS_PER_MS for sent, received in pairs]


def inter_arrival_ms(received_ns: Sequence[int]) -> list[float]:
    """Gaps between consecutive arrivals, in ms."""
    return [(b - a) / NS_PER_MS for a, b in itertools.pairwise(received_ns)]


def mb_per_s(num_bytes: int, seconds: float) -> float | None:
    """Throughput in MB/s (10^6 bytes)."""
    per_s = rate(num_bytes, seconds)
    return None if per_s is None else per_s / 1e6
