"""What the tunnel alone costs: a micro-benchmark for the tunnel's own speed work.

``.venv/bin/python -m bench.tunnel_micro [--quick] [--keep]``

A fresh PKI (``tests.support.pki_fixtures.make_pki``), the bench's fast upstream as a process, a
:class:`tunnel.listener.Listener` in this process (uvloop) as the HTTP/2 client, and a real
``connector run`` process. Then, direct (aiohttp straight to the upstream) beside the tunnel
(``TunnelPool.request``): serial small requests p50/p99, closed-loop rps at concurrency 64, one
unpaced 200-chunk SSE stream (chunks/s), 50 MB up and down (MB/s). Prints a small table and, with
``--json FILE``, writes the figures. ``--hold S`` keeps the load running for S seconds per
workload (for ``py-spy record --pid``: the connector's pid is printed at start). ``--soak S``
adds a soak through the tunnel (after ``--soak-warmup`` seconds): the RSS of the connector and of
this process at its start, middle and end; ``--paths tunnel --only soak --soak 120`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.stack import connector_toml
from tests.support.pki_fixtures import make_pki
from tests.support.procs import ManagedProcess, base_env, file_ready, our_command, read_port_file
from tunnel.config import ListenerConfig
from tunnel.listener import Listener

UPSTREAM = "office-llm"
CHAT = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
JSON_HEADERS = [("content-type", "application/json")]
BLOCK = bytes(1 << 20)

Call = Callable[[], Awaitable[int]]
OnChunk = Callable[[bytes], None]
STAMP = re.compile(rb"w\d+@t=(\d+)")  # fast_upstream's send time (CLOCK_MONOTONIC ns)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# ------------------------------------------------------------------ the two clients


class Direct:
    """aiohttp straight to the upstream (HTTP/1.1, kept-alive connections)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        )

    async def post(self, path: str, body: bytes, seen: OnChunk | None = None) -> int:
        async with self.http.post(self.url + path, data=body, headers=dict(JSON_HEADERS)) as r:
            total = 0
            async for chunk in r.content.iter_any():
                total += len(chunk)
                if seen is not None:
                    seen(chunk)
            return total


class Tunnel:
    """``TunnelPool.request`` on the in-process listener."""

    def __init__(self, listener: Listener) -> None:
        self.pool = listener.pool

    async def post(self, path: str, body: bytes, seen: OnChunk | None = None) -> int:
        resp = await self.pool.request(UPSTREAM, "POST", path, JSON_HEADERS, body)
        total = 0
        async for chunk in resp.body():
            total += len(chunk)
            if seen is not None:
                seen(chunk)
        await resp.aclose()
        return total


# ------------------------------------------------------------------ workloads


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def serial(call: Call, count: int, connector_pid: int) -> dict[str, float]:
    for _ in range(min(50, count)):
        await call()
    times = []
    here, there = cpu_s(os.getpid()), cpu_s(connector_pid)
    for _ in range(count):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    here, there = cpu_s(os.getpid()) - here, cpu_s(connector_pid) - there
    return {
        "p50_ms": percentile(times, 50) * 1e3,
        "p99_ms": percentile(times, 99) * 1e3,
        "cpu_us_here": here / count * 1e6,  # client (+ listener) per request
        "cpu_us_connector": there / count * 1e6,
    }


async def closed_loop(call: Call, concurrency: int, duration_s: float) -> dict[str, float]:
    done = 0
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal done, errors
        while time.perf_counter() < deadline:
            try:
                await call()
                done += 1
            except Exception:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"rps": done / (time.perf_counter() - start), "errors": errors}


def stream_body(chunks: int, pace_ms: float = 0.0) -> bytes:
    standin = {"chunks": chunks, "pace_ms": pace_ms}
    body = {"model": "m", "stream": True, "messages": [], "standin": standin}
    return json.dumps(body).encode()


async def paced_delays(client: Direct | Tunnel, chunks: int, pace_ms: float) -> list[float]:
    """Each paced chunk's delay from the upstream's write to our read, in ms."""
    delays: list[float] = []

    def seen(chunk: bytes) -> None:
        now = time.monotonic_ns()
        delays.extend((now - int(sent)) / 1e6 for sent in STAMP.findall(chunk))

    await client.post("/v1/chat/completions", stream_body(chunks, pace_ms), seen)
    return delays


async def paced(client: Direct | Tunnel, chunks: int) -> dict[str, float]:
    delays = await paced_delays(client, chunks, 20.0)
    return {
        "chunk_delay_p50_ms": percentile(delays, 50),
        "chunk_delay_p99_ms": percentile(delays, 99),
    }


async def stream_rate(client: Direct | Tunnel, chunks: int, repeats: int) -> dict[str, float]:
    body = stream_body(chunks)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        await client.post("/v1/chat/completions", body)
        rates.append(chunks / (time.perf_counter() - start))
    return {"chunks_s": statistics.median(rates)}


async def _upload_body(size: int) -> AsyncIterator[bytes]:
    remaining = size
    while remaining > 0:
        piece = BLOCK if remaining >= len(BLOCK) else BLOCK[:remaining]
        remaining -= len(piece)
        yield piece


async def bulk(listener: Listener, size: int) -> dict[str, float]:
    pool = listener.pool
    head = [("content-type", "application/octet-stream"), ("content-length", str(size))]
    start = time.perf_counter()
    resp = await pool.request(UPSTREAM, "POST", "/v1/bulk/upload", head, _upload_body(size))
    answer = b"".join([c async for c in resp.body()])
    up_s = time.perf_counter() - start
    assert json.loads(answer)["bytes"] == size, answer
    start = time.perf_counter()
    resp = await pool.request(UPSTREAM, "GET", f"/v1/bulk/download?bytes={size}", [], b"")
    received = 0
    async for chunk in resp.body():
        received += len(chunk)
    down_s = time.perf_counter() - start
    assert received == size, received
    return {"up_mb_s": size / up_s / 1e6, "down_mb_s": size / down_s / 1e6}


def rss_mib(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def soak(tunnel: Tunnel, seconds: float, warmup_s: float, pid: int) -> dict[str, float]:
    """Closed loop at concurrency 16 for ``seconds`` after ``warmup_s``, small chats and 20-chunk
    streams alternating (as ``make bench``'s soak); RSS of the connector and of this process
    (client + listener) at the start, middle and end of the measured part."""
    path, streamed = "/v1/chat/completions", stream_body(20)
    bodies = (CHAT, streamed)
    counts = {"requests": 0, "failed": 0}
    marks: dict[str, float] = {}
    start = time.perf_counter()
    deadline = start + warmup_s + seconds

    async def worker(index: int) -> None:
        turn = index
        while time.perf_counter() < deadline:
            turn += 1
            try:
                await tunnel.post(path, bodies[turn % 2])
                counts["requests"] += 1
            except Exception:
                counts["failed"] += 1

    async def sampler() -> None:
        for label, at in (("start", warmup_s), ("middle", warmup_s + seconds / 2)):
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            if label == "start":
                counts["requests"] = counts["failed"] = 0  # the warm-up is not counted
            marks[f"connector_rss_{label}_mib"] = rss_mib(pid)
            marks[f"bench_rss_{label}_mib"] = rss_mib(os.getpid())

    sampling = asyncio.create_task(sampler())
    await asyncio.gather(*(worker(i) for i in range(16)))
    await sampling
    marks["connector_rss_end_mib"] = rss_mib(pid)
    marks["bench_rss_end_mib"] = rss_mib(os.getpid())
    for who in ("connector", "bench"):
        first, last = marks[f"{who}_rss_start_mib"], marks[f"{who}_rss_end_mib"]
        marks[f"{who}_rss_growth_pct"] = (last - first) / first * 100
    return {"soak_s": seconds, **counts, **marks}


def print_soak(row: dict[str, float]) -> None:
    print(
        f"soak {row['soak_s']:.0f} s after warm-up: {row['requests']:.0f} requests, "
        f"{row['failed']:.0f} failed"
    )
    for who in ("connector", "bench"):
        start, middle, end = (row[f"{who}_rss_{m}_mib"] for m in ("start", "middle", "end"))
        growth = row[f"{who}_rss_growth_pct"]
        print(f"  {who} RSS MiB: {start:.1f} -> {middle:.1f} -> {end:.1f} ({growth:+.1f}%)")


# ------------------------------------------------------------------ the rig


UPSTREAMS = {"fast": "bench.fast_upstream", "standin": "tests.support.standin_llm"}


async def start_upstream(work: Path, kind: str) -> tuple[ManagedProcess, str]:
    port_file = work / "upstream.port"
    argv = [sys.executable, "-m", UPSTREAMS[kind], "--port", "0", "--port-file", str(port_file)]
    proc = ManagedProcess(
        argv, log_path=work / "upstream.log", env=base_env(), ready=file_ready(port_file)
    )
    await proc.astart()
    return proc, f"http://127.0.0.1:{read_port_file(port_file)}"


async def start_listener(pki: Path) -> Listener:
    table = {
        "listen": "127.0.0.1:0",
        "cert": "gateway.crt",
        "key": "gateway.key",
        "ca": "ca.crt",
        "crl": "crl.pem",
        "allowed_connectors": ["office-1"],
    }
    listener = Listener(ListenerConfig.from_table(table, pki))
    await listener.start()
    return listener


async def wait_tunnel(listener: Listener, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not listener.pool.status().tunnels:
        if time.monotonic() > deadline:
            raise TimeoutError("the connector did not come up")
        await asyncio.sleep(0.05)


async def measure(
    args: argparse.Namespace, direct: Direct, tunnel: Tunnel, listener: Listener, pid: int
) -> dict[str, Any]:
    path = "/v1/chat/completions"
    results: dict[str, Any] = {}
    only = set(args.only.split(","))
    clients: dict[str, Direct | Tunnel] = {"direct": direct, "tunnel": tunnel}
    for name in args.paths.split(","):
        client = clients[name]

        async def call(client: Direct | Tunnel = client) -> int:
            return await client.post(path, CHAT)

        row: dict[str, Any] = {}
        if "serial" in only:
            row.update(await serial(call, args.serial, pid))
        if "load" in only:
            row.update(await closed_loop(call, 64, args.duration))
        if "stream" in only:
            row.update(await stream_rate(client, 200, args.streams))
        if "paced" in only:
            row.update(await paced(client, args.paced_chunks))
        if "bulk" in only and name == "tunnel":
            row.update(await bulk(listener, args.bulk_mb * 1_000_000))
        if "soak" in only and name == "tunnel":
            row.update(await soak(tunnel, args.soak, args.soak_warmup, pid))
        results[name] = row
    return results


def _delay(d: dict[str, float], t: dict[str, float], key: str) -> tuple[float, float, float]:
    return d[key], t[key], t[key] - d[key]


def print_table(results: dict[str, Any]) -> None:
    if "soak_s" in results.get("tunnel", {}):
        print_soak(results["tunnel"])
    if set(results) != {"direct", "tunnel"} or len(results["tunnel"]) < 11:
        print(json.dumps(results, indent=2))
        return
    d, t = results["direct"], results["tunnel"]
    rows = [
        ("serial p50 (ms)", d["p50_ms"], t["p50_ms"], t["p50_ms"] - d["p50_ms"]),
        ("serial p99 (ms)", d["p99_ms"], t["p99_ms"], t["p99_ms"] - d["p99_ms"]),
        ("c64 req/s", d["rps"], t["rps"], t["rps"] / d["rps"]),
        ("200-chunk stream chunks/s", d["chunks_s"], t["chunks_s"], t["chunks_s"] / d["chunks_s"]),
        ("paced chunk delay p50 (ms)", *_delay(d, t, "chunk_delay_p50_ms")),
        ("paced chunk delay p99 (ms)", *_delay(d, t, "chunk_delay_p99_ms")),
        ("50 MB up MB/s", None, t["up_mb_s"], None),
        ("50 MB down MB/s", None, t["down_mb_s"], None),
    ]
    print(f"{'figure':<28}{'direct':>10}{'tunnel':>10}{'added/ratio':>13}")
    for name, a, b, c in rows:
        cells = [f"{v:10.2f}" if v is not None else f"{'-':>10}" for v in (a, b)]
        extra = f"{c:13.2f}" if c is not None else f"{'-':>13}"
        print(f"{name:<28}{''.join(cells)}{extra}")
    print(
        f"cpu per serial request (us): direct client {d['cpu_us_here']:.0f}; tunnel: bench "
        f"process (client + listener) {t['cpu_us_here']:.0f}, connector {t['cpu_us_connector']:.0f}"
    )
    print(f"errors: direct {d['errors']}, tunnel {t['errors']}")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tunnel-micro-") as tmp:
        work = Path(tmp)
        make_pki(work / "pki")
        upstream, url = await start_upstream(work, args.upstream)
        listener = await start_listener(work / "pki")
        (work / "connector.toml").write_text(
            connector_toml(listener.port, "office-1", UPSTREAM, url, "tls")
        )
        connector = our_command("connector", "run", "-c", "connector.toml", work_dir=work)
        if os.environ.get("TUNNEL_MICRO_CONNECTOR"):  # e.g. a profiling wrapper script
            connector.argv = [sys.executable, os.environ["TUNNEL_MICRO_CONNECTOR"], "run", "-c"]
            connector.argv.append("connector.toml")
        direct = Direct(url)
        try:
            await connector.astart()
            print(f"connector pid {connector.pid}", flush=True)
            await wait_tunnel(listener)
            if args.hold:
                await asyncio.sleep(args.hold)
            return await measure(args, direct, Tunnel(listener), listener, connector.pid)
        finally:
            await direct.http.close()
            await connector.astop(timeout=5.0)
            with contextlib.suppress(Exception):
                await listener.aclose(drain_timeout_s=1.0)
            await upstream.astop(timeout=5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunnel_micro", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny workload (a smoke run)")
    parser.add_argument("--serial", type=int, default=1000, help="serial requests per path")
    parser.add_argument("--duration", type=float, default=4.0, help="closed-loop seconds")
    parser.add_argument("--streams", type=int, default=5, help="200-chunk streams per path")
    parser.add_argument("--bulk-mb", type=int, default=50)
    parser.add_argument("--paced-chunks", type=int, default=100, help="chunks 20 ms apart")
    parser.add_argument("--hold", type=float, default=0.0, help="idle seconds before measuring")
    parser.add_argument("--upstream", choices=sorted(UPSTREAMS), default="fast")
    parser.add_argument("--paths", default="direct,tunnel", help="which paths to measure")
    parser.add_argument("--only", default="serial,load,stream,paced,bulk", help="which workloads")
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (tunnel only)")
    parser.add_argument("--soak-warmup", type=float, default=20.0, help="not counted in the soak")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    if args.soak:
        args.only += ",soak"
    if args.quick:
        args.serial, args.duration, args.streams, args.bulk_mb = 60, 0.5, 1, 2
        args.paced_chunks = 5
    import uvloop  # noqa: PLC0415 - Linux bench only

    results = uvloop.run(run(args))
    print_table(results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
