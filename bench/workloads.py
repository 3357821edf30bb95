"""The workloads of issue 5, each run against every available path in turn.

Each returns ``{path: {metric: value}}``; "added" figures are filled in against ``direct``
afterwards (:func:`add_relative`). Sizes come from a :class:`Plan` (full, or ``BENCH_QUICK``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench import client, stats
from bench.client import Endpoint, StreamResult
from bench.profiling import Profiler
from bench.sampler import Counted, CpuWindow, Watch, rss_mb
from bench.stack import DIRECT, GATEWAY, SQUID, Stack

Metrics = dict[str, float | None]
PathFigures = dict[str, Metrics]


@dataclass(frozen=True)
class Plan:
    seq_count: int = 500
    load_s: float = 8.0
    load_warmup_s: float = 1.0
    stream_count: int = 30
    stream_chunks: int = 200
    paced_concurrency: int = 8
    paced_rounds: int = 2
    paced_chunks: int = 100
    pace_ms: float = 20.0
    held_streams: int = 100
    held_s: float = 10.0
    bulk_bytes: int = 50_000_000
    soak_s: float = 120.0
    # one full requests-per-minute window (60 s) plus a margin: the limiter's moving window holds
    # one entry per request for 60 s, so the gateway's state only reaches steady size after it
    soak_warmup_s: float = 65.0
    soak_concurrency: int = 8
    # (h) the cancel-heavy soak (BENCH_CANCEL_SOAK_S; 600 for the 10-minute version)
    cancel_soak_s: float = 120.0
    cancel_concurrency: int = 16


QUICK = Plan(
    seq_count=20, load_s=0.5, load_warmup_s=0.2, stream_count=3, stream_chunks=50,
    paced_concurrency=2, paced_rounds=1, paced_chunks=10, held_streams=10, held_s=1.0,
    bulk_bytes=2_000_000, soak_s=2.0, soak_warmup_s=0.5, soak_concurrency=2,
    cancel_soak_s=2.0, cancel_concurrency=4,
)  # fmt: skip


def median(values: list[float]) -> float | None:
    return stats.percentile(values, 50)


# --------------------------------------------------------------------------- (a)


async def latency(endpoint: Endpoint, plan: Plan) -> Metrics:
    sample = await client.sequential(endpoint, plan.seq_count)
    summary = stats.summarize_s(sample.latencies_s)
    return {"p50_ms": summary.p50_ms, "p99_ms": summary.p99_ms, "errors": sample.errors}


# --------------------------------------------------------------------------- (b)


def _watches(stack: Stack, path: str) -> dict[str, Watch]:
    pids = (("front", stack.front_pid(path)), ("connector", stack.connector_pid(path)))
    return {role: Watch(pid) for role, pid in pids if pid is not None}


async def load(
    endpoint: Endpoint,
    concurrency: int,
    plan: Plan,
    stack: Stack,
    on_start: Callable[[], None] | None = None,
) -> Metrics:
    if on_start is not None:
        on_start()
    watches = _watches(stack, endpoint.name)
    for watch in watches.values():
        watch.start()
    window = CpuWindow(cpu_roles(stack, endpoint.name))
    sample = await client.closed_loop(
        endpoint,
        concurrency,
        plan.load_s,
        plan.load_warmup_s,
        on_measure=window.start,
        on_done=window.stop,
    )
    for watch in watches.values():
        await watch.stop()
    summary = stats.summarize_s(sample.latencies_s)
    out: Metrics = {
        "rps": stats.rate(len(sample.latencies_s), sample.elapsed_s),
        "p50_ms": summary.p50_ms,
        "p99_ms": summary.p99_ms,
        "errors": sample.errors,
    }
    for role in ("front", "connector"):
        role_watch = watches.get(role)
        out[f"{role}_cpu_pct"] = role_watch.cpu_pct if role_watch else None
    out.update(cpu_figures(window, len(sample.latencies_s) + sample.errors))
    return out


def cpu_roles(stack: Stack, path: str) -> dict[str, Counted]:
    """Every process on ``path``: the bench process (the load client; alone, not with the
    servers it started as children), the bench upstream, the front server (none on ``direct``,
    where the upstream is the server), the path's connector, and squid on ``gateway+squid``."""
    upstream = stack.procs.get("upstream")
    squid = stack.squid.process if stack.squid is not None and path == SQUID else None
    return {
        "client": Counted(os.getpid(), children=False),
        "upstream": Counted(upstream.pid if upstream is not None else None),
        "front": Counted(None if path == DIRECT else stack.front_pid(path)),
        "connector": Counted(stack.connector_pid(path)),
        "proxy": Counted(squid.pid if squid is not None else None),
    }


def cpu_figures(window: CpuWindow, requests: int) -> Metrics:
    """``cpu_us_per_req_<role>`` and their ``_total``; ``machine_cpu_pct`` (all cores busy =
    100) and ``path_cpu_pct`` (the share of all cores this path's processes used)."""
    out: Metrics = {}
    for role in stats.CPU_ROLES:
        out[f"cpu_us_per_req_{role}"] = stats.per_request_us(window.cpu_s.get(role), requests)
    parts = [window.cpu_s.get(role) for role in stats.CPU_ROLES]
    total = None if any(p is None for p in parts) else sum(p or 0.0 for p in parts)
    out["cpu_us_per_req_total"] = stats.per_request_us(total, requests)
    out["machine_cpu_pct"] = window.machine_pct
    out["path_cpu_pct"] = stats.share_of_cores_pct(total, window.wall_s, os.cpu_count() or 1)
    return out


# --------------------------------------------------------------------------- (c), (d)


def _ok(results: list[StreamResult]) -> list[StreamResult]:
    return [r for r in results if r.ok and r.first_ns is not None and r.ended_ns is not None]


async def unpaced_streams(endpoint: Endpoint, plan: Plan) -> Metrics:
    results = await client.streams(endpoint, plan.stream_count, 1, plan.stream_chunks, 0.0)
    good = _ok(results)
    rates = [r.chunks / ((r.ended_ns or 0) - r.started_ns) * 1e9 for r in good]
    ttfts = [((r.first_ns or 0) - r.started_ns) / 1e6 for r in good]
    return {
        "chunks_per_s": median(rates),
        "ttft_ms": median(ttfts),
        "errors": len(results) - len(good),
    }


async def paced_streams(endpoint: Endpoint, plan: Plan, stack: Stack) -> Metrics:
    """``paced_concurrency`` streams at a time (the figure the target reads), the CPU each
    process spends per relayed chunk meanwhile, then one stream alone: the same chunks without
    others arriving at the same instant (what a single assistant's answer sees)."""
    count = plan.paced_concurrency * plan.paced_rounds
    window = CpuWindow(cpu_roles(stack, endpoint.name))
    window.start()
    results = await client.streams(
        endpoint, count, plan.paced_concurrency, plan.paced_chunks, plan.pace_ms
    )
    window.stop()
    good = _ok(results)
    delays = stats.chunk_delays_ms(pair for r in good for pair in r.pairs)
    gaps = [g for r in good for g in stats.inter_arrival_ms([recv for _, recv in r.pairs])]
    summary = stats.summarize_ms(delays)
    alone = await client.streams(endpoint, 1, 1, plan.paced_chunks, plan.pace_ms)
    alone_ok = _ok(alone)
    single = stats.summarize_ms(stats.chunk_delays_ms(p for r in alone_ok for p in r.pairs))
    out: Metrics = {
        "delay_p50_ms": summary.p50_ms,
        "delay_p99_ms": summary.p99_ms,
        "gap_p99_ms": stats.percentile(gaps, 99),
        "single_delay_p50_ms": single.p50_ms,
        "single_delay_p99_ms": single.p99_ms,
        "errors": len(results) - len(good) + len(alone) - len(alone_ok),
    }
    for role in ("front", "connector"):
        out[f"cpu_us_per_chunk_{role}"] = stats.per_request_us(window.cpu_s.get(role), len(delays))
    return out


# --------------------------------------------------------------------------- (e)


async def held_streams(endpoint: Endpoint, plan: Plan, stack: Stack) -> Metrics:
    chunks = max(1, round(plan.held_s * 1000 / plan.pace_ms))
    watches = _watches(stack, endpoint.name)
    async with client.session_for(endpoint, plan.held_streams) as session:
        await client.stream_once(session, endpoint, 5, 0.0)
        tasks = [
            asyncio.create_task(client.stream_once(session, endpoint, chunks, plan.pace_ms))
            for _ in range(plan.held_streams)
        ]
        await asyncio.sleep(min(1.0, plan.held_s / 4))  # let every stream open first
        for watch in watches.values():
            watch.start()
        results = await asyncio.gather(*tasks)
        for watch in watches.values():
            await watch.stop()
    out: Metrics = {"errors": len(results) - len(_ok(list(results)))}
    for role in ("front", "connector"):
        role_watch = watches.get(role)
        out[f"{role}_rss_mb"] = role_watch.peak_rss_mb if role_watch else None
        out[f"{role}_cpu_pct"] = role_watch.cpu_pct if role_watch else None
    return out


# --------------------------------------------------------------------------- (f)


async def bulk_http(endpoint: Endpoint, plan: Plan) -> Metrics:
    up_s, up_error = await client.upload(endpoint, plan.bulk_bytes)
    down_s, down_error = await client.download(endpoint, plan.bulk_bytes)
    return {
        "up_mb_s": None if up_error else stats.mb_per_s(plan.bulk_bytes, up_s),
        "down_mb_s": None if down_error else stats.mb_per_s(plan.bulk_bytes, down_s),
        "errors": int(bool(up_error)) + int(bool(down_error)),
    }


# --------------------------------------------------------------------------- (g)


async def soak(endpoint: Endpoint, plan: Plan, stack: Stack) -> Metrics:
    """Steady closed-loop load (small chats and short streams, alternating) on one path."""
    failed = 0
    done = 0
    stop_at = time.monotonic() + plan.soak_warmup_s + plan.soak_s
    body = endpoint.chat_body()
    async with client.session_for(endpoint, plan.soak_concurrency) as session:

        async def worker(index: int) -> None:
            nonlocal failed, done
            turn = index
            while time.monotonic() < stop_at:
                turn += 1
                if turn % 2:
                    error = await client.chat_once(session, endpoint, body)
                    failed += bool(error)
                else:
                    result = await client.stream_once(session, endpoint, 20, 0.0)
                    failed += not result.ok
                done += 1

        workers = [asyncio.create_task(worker(i)) for i in range(plan.soak_concurrency)]
        await asyncio.sleep(plan.soak_warmup_s)
        start = _rss_pair(stack, endpoint.name)
        await asyncio.sleep(plan.soak_s / 2)
        middle = _rss_pair(stack, endpoint.name)  # a leak grows on; a warm-up levels off
        await asyncio.gather(*workers)
        end = _rss_pair(stack, endpoint.name)
    return {
        "requests": done,
        "failed": failed,
        "front_rss_start_mb": start[0],
        "front_rss_mid_mb": middle[0],
        "front_rss_end_mb": end[0],
        "front_rss_growth_pct": stats.growth_pct(start[0], end[0]),
        "connector_rss_start_mb": start[1],
        "connector_rss_mid_mb": middle[1],
        "connector_rss_end_mb": end[1],
        "connector_rss_growth_pct": stats.growth_pct(start[1], end[1]),
    }


def _rss_pair(stack: Stack, path: str) -> tuple[float | None, float | None]:
    front, conn = stack.front_pid(path), stack.connector_pid(path)
    return (
        rss_mb(front) if front is not None else None,
        rss_mb(conn) if conn is not None else None,
    )


# --------------------------------------------------------------------------- helpers


def add_relative(
    figures: PathFigures, pairs: tuple[tuple[str, str], ...], reference: str = DIRECT
) -> None:
    """For each ``(metric, new_metric)``: ``new = figures[path][metric] - reference's``."""
    base = figures.get(reference, {})
    for metrics in figures.values():
        for metric, new in pairs:
            metrics[new] = stats.difference(metrics.get(metric), base.get(metric))


def add_extra_delay(figures: PathFigures, reference: str = DIRECT) -> None:
    """(d): ``extra_pXX = delay_pXX - reference's delay_p50`` (the baseline cost of a read), for
    the concurrent streams and for the stream alone (``extra_single_pXX``)."""
    ref = figures.get(reference, {})
    for prefix, out in (("", ""), ("single_", "single_")):
        base = ref.get(f"{prefix}delay_p50_ms")
        for metrics in figures.values():
            for q in ("p50", "p99"):
                metrics[f"extra_{out}{q}_ms"] = stats.difference(
                    metrics.get(f"{prefix}delay_{q}_ms"), base
                )


async def each_path(
    stack: Stack, paths: tuple[str, ...], run: Callable[[Endpoint], Awaitable[Metrics]]
) -> PathFigures:
    out: PathFigures = {}
    for path in paths:
        endpoint = stack.endpoints.get(path)
        if endpoint is not None:
            out[path] = await run(endpoint)
    return out


def profile_hook(
    stack: Stack, profiler: Profiler | None, path: str, seconds: float
) -> Callable[[], None] | None:
    """During (b) at concurrency 64 on ``gateway``: start py-spy on gateway and connector."""
    if profiler is None or path != GATEWAY:
        return None

    def start() -> None:
        for name, pid in (
            ("gateway", stack.front_pid(path)),
            ("connector", stack.connector_pid(path)),
        ):
            if pid is not None:
                profiler.start(name, pid, seconds)

    return start
