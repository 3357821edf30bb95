"""Sans-IO arithmetic for the benchmark: percentiles, summaries, ratios, per-chunk delays.

Everything here takes plain numbers (seconds or nanoseconds) and returns plain numbers, so the
unit tests call it without a socket or a clock.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
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


# --------------------------------------------------------------------------- CPU budget

US_PER_S = 1_000_000
_NOT_WORK = ("idle", "iowait")  # time a core spends waiting, not running anything
_COUNTED_TWICE = ("guest", "guest_nice")  # Linux already counts these in user and nice


def per_request_us(cpu_s: float | None, requests: int) -> float | None:
    """CPU microseconds per request; ``None`` when unknown or when no request completed."""
    if cpu_s is None or requests <= 0:
        return None
    return cpu_s * US_PER_S / requests


def busy_pct(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Share of all cores' time spent running something between two ``psutil.cpu_times()``
    readings (as dicts): 100 means every core was busy the whole time."""
    deltas = {k: after[k] - before.get(k, 0.0) for k in after if k not in _COUNTED_TWICE}
    total = sum(deltas.values())
    if total <= 0:
        return None
    idle = sum(deltas.get(k, 0.0) for k in _NOT_WORK)
    return (total - idle) / total * 100


def share_of_cores_pct(cpu_s: float | None, wall_s: float, cores: int) -> float | None:
    """``cpu_s`` of CPU used over ``wall_s`` as a share of ``cores`` cores (100 = all busy)."""
    if cpu_s is None or wall_s <= 0 or cores <= 0:
        return None
    return cpu_s / (wall_s * cores) * 100


#: the processes on a path whose CPU workload (b) counts (see ``bench.workloads.cpu_roles``)
CPU_ROLES = ("client", "upstream", "front", "connector", "proxy")
PathMetrics = Mapping[str, float | int | None]


def rps_bound(per_role_us: Mapping[str, float], cores: int) -> tuple[float | None, str]:
    """The request rate CPU allows a path, and what sets it.

    Each process runs one event loop (one core at most, the GIL), so it serves at most
    ``10^6 / its_us`` requests/s; together they serve at most ``cores * 10^6 / total_us``.
    The lower bound wins: returns ``(rps, role)``, ``role`` being the process that caps it or
    ``"all cores"``; ``(None, "")`` when nothing was measured."""
    busy = {role: us for role, us in per_role_us.items() if us > 0}
    total = sum(busy.values())
    if not busy or cores <= 0:
        return None, ""
    role, top = max(busy.items(), key=lambda item: item[1])
    by_cores = cores * US_PER_S / total
    by_process = US_PER_S / top
    return (by_process, role) if by_process < by_cores else (by_cores, "all cores")


@dataclass(frozen=True)
class CpuCeiling:
    """What CPU allows for the gateway/floor request-rate ratio (see :func:`cpu_ceiling`)."""

    target: float
    floor_total_us: float
    gateway_total_us: float
    #: floor_total_us / gateway_total_us: the ratio if both paths kept every core busy
    ratio_ceiling: float
    #: floor_total_us / target - client - upstream: gateway + connector budget on that premise
    budget_us: float
    #: what the gateway's own processes (gateway, connector, proxy) spend now
    spent_us: float
    floor_rps_model: float
    floor_limit: str
    gateway_rps_model: float
    gateway_limit: str
    #: gateway_rps_model / floor_rps_model: the ratio CPU allows with one core per process
    model_ratio: float
    #: the floor's measured rate times ``target``: the rate the gateway must reach
    needed_rps: float
    #: cores * 10^6 / needed_rps: the most all the gateway path's processes may spend together
    needed_total_us: float
    #: needed_total_us - client - upstream: what gateway + connector may spend together
    needed_budget_us: float
    #: 10^6 / needed_rps: the most any one process (one event loop) may spend
    process_cap_us: float
    gateway_process_us: float


def _role_us(metrics: PathMetrics) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for role in CPU_ROLES:
        value = metrics.get(f"cpu_us_per_req_{role}")
        if value is None:
            return None
        out[role] = float(value)
    return out


def cpu_ceiling(
    floor: PathMetrics, gateway: PathMetrics, cores: int, target: float = 0.5
) -> CpuCeiling | None:
    """The gateway/floor requests-per-second ratio that CPU allows, and the CPU per request
    the gateway's own processes may spend to reach ``target``; from the two paths' figures of
    workload (b) (``cpu_us_per_req_<role>`` for each of :data:`CPU_ROLES`, and ``rps``).

    Every process on a path (load client, upstream, front server, connector) runs on the
    same ``cores``. If both paths kept every core busy, ``rps ~= cores * 10^6 / total_us``
    (``total_us``: the CPU all the path's processes spend per request) and the core count
    cancels in the ratio: ``ratio_ceiling = floor_total_us / gateway_total_us``. Reaching
    ``target`` then means ``gateway_total_us <= floor_total_us / target`` (for 0.5:
    ``2 * floor_total_us``); the client and upstream are the benchmark's, so the gateway and
    connector may spend together ``budget_us = floor_total_us / target - client_us -
    upstream_us`` (of the gateway run), against ``spent_us`` now.

    A path may instead be capped by one process: one event loop uses one core at most, so
    ``rps <= 10^6 / us`` of its busiest process (:func:`rps_bound`); the floor, one Hypercorn
    process, is typically capped that way below what all cores would allow. The ``*_model``
    figures take both caps; ``needed_*`` start from the floor's measured rate (the model's if
    it was not measured): the gateway must reach ``needed_rps = target * floor_rps``, so all
    its path's processes may spend together ``cores * 10^6 / needed_rps`` per request,
    gateway + connector that minus client and upstream, and no single process more than
    ``10^6 / needed_rps``. When the floor does keep every core busy, ``needed_budget_us``
    equals ``budget_us``.
    """
    floor_us, gateway_us = _role_us(floor), _role_us(gateway)
    if floor_us is None or gateway_us is None or target <= 0 or cores <= 0:
        return None
    floor_total, gateway_total = sum(floor_us.values()), sum(gateway_us.values())
    floor_rps, floor_limit = rps_bound(floor_us, cores)
    gateway_rps, gateway_limit = rps_bound(gateway_us, cores)
    if floor_rps is None or gateway_rps is None:
        return None
    bench_us = gateway_us["client"] + gateway_us["upstream"]
    measured = floor.get("rps")
    needed_rps = target * (float(measured) if measured else floor_rps)
    needed_total = cores * US_PER_S / needed_rps
    return CpuCeiling(
        target=target,
        floor_total_us=floor_total,
        gateway_total_us=gateway_total,
        ratio_ceiling=floor_total / gateway_total,
        budget_us=floor_total / target - bench_us,
        spent_us=gateway_total - bench_us,
        floor_rps_model=floor_rps,
        floor_limit=floor_limit,
        gateway_rps_model=gateway_rps,
        gateway_limit=gateway_limit,
        model_ratio=gateway_rps / floor_rps,
        needed_rps=needed_rps,
        needed_total_us=needed_total,
        needed_budget_us=needed_total - bench_us,
        process_cap_us=US_PER_S / needed_rps,
        gateway_process_us=gateway_us["front"],
    )
