"""``make bench``: start everything, run every workload on every path, report, stop everything.

Environment: ``BENCH_QUICK=1`` (a tiny workload, for ``make test``), ``BENCH_SOAK_S`` (soak
length, default 120), ``BENCH_CANCEL_SOAK_S`` (the cancel-heavy soak (h), default 120; 600 for
the 10-minute version), ``PROFILE=1`` (py-spy profiles of gateway and connector under (b)).
Flags: ``--results-dir`` (default bench/results), ``--docs`` (default docs/performance.md on a
full run, nothing on a quick one), ``--no-docs``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench import (
    app_cost,
    cancel_soak,
    h2_cost,
    ledger_cost,
    limits,
    report,
    targets,
    tunnel_bulk,
    workloads,
)
from bench.profiling import Profiler
from bench.stack import DIRECT, FLOOR, GATEWAY, PATHS, SQUID, WEBSOCKET, Stack
from bench.workloads import Plan

REPO = Path(__file__).resolve().parents[1]
GATEWAY_PATHS = (GATEWAY, SQUID, WEBSOCKET)


def plan_from_env(environ: dict[str, str]) -> tuple[Plan, bool]:
    quick = environ.get("BENCH_QUICK", "") not in ("", "0")
    plan = workloads.QUICK if quick else Plan()
    soak = environ.get("BENCH_SOAK_S", "")
    if soak:
        plan = replace(plan, soak_s=float(soak))
    cancel = environ.get("BENCH_CANCEL_SOAK_S", "")
    if cancel:
        plan = replace(plan, cancel_soak_s=float(cancel))
    return plan, quick


def _say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


async def _measure(stack: Stack, plan: Plan, profiler: Profiler | None) -> dict[str, Any]:
    paths = tuple(p for p in PATHS if p in stack.endpoints)
    figures: dict[str, Any] = {}

    _say("(a) sequential small chat completions")
    figures["a"] = await workloads.each_path(stack, paths, lambda e: workloads.latency(e, plan))
    workloads.add_relative(figures["a"], (("p50_ms", "added_p50_ms"), ("p99_ms", "added_p99_ms")))
    for concurrency in (16, 64):
        _say(f"(b) closed loop, concurrency {concurrency}, {plan.load_s:g} s per path")
        figures[f"b{concurrency}"] = await workloads.each_path(
            stack,
            paths,
            lambda e, c=concurrency: workloads.load(  # type: ignore[misc]
                e, c, plan, stack,
                workloads.profile_hook(stack, profiler if c == 64 else None, e.name,
                                       plan.load_s + plan.load_warmup_s),
            ),
        )  # fmt: skip
    _say("(c) unpaced streams")
    figures["c"] = await workloads.each_path(
        stack, paths, lambda e: workloads.unpaced_streams(e, plan)
    )
    workloads.add_relative(figures["c"], (("ttft_ms", "ttft_added_ms"),))
    _say("(d) paced streams")
    figures["d"] = await workloads.each_path(
        stack, paths, lambda e: workloads.paced_streams(e, plan, stack)
    )
    workloads.add_extra_delay(figures["d"])
    _say(f"(e) {plan.held_streams} open paced streams")
    figures["e"] = await workloads.each_path(
        stack, paths, lambda e: workloads.held_streams(e, plan, stack)
    )
    _say("(f) bulk transfer")
    figures["f"] = await _bulk(stack, plan)
    _say(f"(g) soak {plan.soak_s:g} s on the gateway path")
    soak_path = GATEWAY if GATEWAY in stack.endpoints else FLOOR
    figures["g"] = {soak_path: await workloads.soak(stack.endpoints[soak_path], plan, stack)}
    if GATEWAY in stack.endpoints:
        _say(f"(h) cancel-heavy soak {plan.cancel_soak_s:g} s on the gateway path")
        figures["h"] = {
            GATEWAY: await cancel_soak.cancel_soak(
                stack.endpoints[GATEWAY], stack, plan.cancel_soak_s, plan.cancel_concurrency
            )
        }
    _say("h2 library cost per exchange (in-process, no sockets)")
    figures["h2"] = h2_cost.measure(3000)
    _say("the gateway's own request handling (in-process ASGI, stand-in tunnel)")
    figures["app"] = await app_cost.measure_async(3000)
    _say("the durable usage ledger: one commit per request, and group commits")
    figures["ledger"] = {
        str(c): await ledger_cost.measure(1000 if plan is workloads.QUICK else 5000, c)
        for c in (1, 64)
    }
    return figures


async def _bulk(stack: Stack, plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in (DIRECT, FLOOR):
        out[path] = await workloads.bulk_http(stack.endpoints[path], plan)
    if WEBSOCKET in stack.endpoints:  # its listener side lives in the gateway: see NOTES["f"]
        out[WEBSOCKET] = {"up_mb_s": None, "down_mb_s": None, "errors": None}
    for path in (GATEWAY, SQUID):
        if path not in stack.endpoints:
            continue
        try:
            out[path] = await tunnel_bulk.tunnel_bulk(stack, path, plan.bulk_bytes)
        except Exception as exc:  # report it, keep the other figures
            out[path] = {"up_mb_s": None, "down_mb_s": None, "errors": 1}
            _say(f"(f) {path} failed: {type(exc).__name__}: {exc}")
    return out


NOTES = {
    "a": "one kept-alive connection, requests one after another; 'added' = path - direct.",
    "b": "closed loop: N workers each send the next request when the last one ends, 1 s warm-up "
    "not counted; CPU is the mean over the run for the server process (all its threads) and "
    "the connector, 100% = one core. CPU us/request (c=64 rows): user+system CPU of each process "
    "on the path (the bench process as load client, its sampler threads included; the upstream; "
    "the server; the connector; squid on gateway+squid) over the measured window only, divided "
    "by the requests completed in it; 0 = no such process on that path. Machine CPU % from "
    "psutil.cpu_times deltas, 100% = all cores busy.",
    "c": "chunks/s = 200 chunks / (request sent -> last chunk received), median of the streams; "
    "TTFT = request sent -> first content chunk.",
    "d": "each chunk carries the upstream's CLOCK_MONOTONIC send time; delay = receive - send; "
    "'extra' pXX = the path's delay pXX - direct's p50 (direct's typical delay is the client's "
    "own read cost; direct's tail is machine noise, which would make a tail-minus-tail "
    "difference meaningless).",
    "f": "measured on the tunnel API (an in-process `tunnel.listener.Listener` and a real "
    "`connector` process, through squid for `gateway+squid`), because the gateway forwards "
    "only the OpenAI JSON routes; direct and floor are HTTP POST/GET of the same bytes. "
    "Not measured over the WebSocket carrier.",
    "g": "soak load: small chats and 20-chunk streams alternating, closed loop, measured after a "
    "65 s warm-up (one 60 s rate-limit window: the limiter keeps an entry per request for 60 s).",
    "h": "IDE-like load (80% streamed, 10% ~1 MB prompts, 10% long answers), closed loop; half "
    "the requests abandoned at a random point (before the head, mid-body, after the end "
    "unread). At the end, nothing in flight: the gateway's connection windows from /metrics "
    "(the connector's receive window read as the gateway's outbound window) and both RSS; "
    "'windows full' = 1 when both are back at 16 MiB with nothing held.",
    "e": "server = the gateway on gateway paths, the bench upstream on direct, the floor app "
    "on floor; peak RSS and mean CPU (100% = one core) while the streams are open.",
}


async def run_all(plan: Plan, quick: bool, profile: bool) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()  # anything else running skews the figures: say so
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    stack = Stack(work)
    profiler = Profiler() if profile else None
    keep_work = True
    try:
        _say(f"starting the stack in {work}")
        await stack.start()
        for path, reason in stack.unavailable.items():
            _say(f"{path}: {reason}")
        figures = await _measure(stack, plan, profiler)
        profiles = await profiler.finish() if profiler is not None else {}
        hot = profiler.hot if profiler is not None else {}
        keep_work = False
    finally:
        if profiler is not None:
            profiler.kill_all()
        await stack.stop()
        stack.stop_now()
        if keep_work:
            _say(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {**report.machine(), "load_before": [round(x, 2) for x in load_before]},
        "quick": quick,
        "plan": asdict(plan),
        "paths": list(PATHS),
        "unavailable": dict(stack.unavailable),
        "figures": figures,
        "notes": NOTES,
        "profiles": profiles,
        "profile_hot_frames": hot,
        "duration_s": time.monotonic() - started,
    }
    results["checks"] = [c.as_dict() for c in targets.check_all(figures)]
    return results


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--docs", type=Path, default=None)
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: print the table and rewrite the docs from an earlier run's JSON",
    )
    return parser.parse_args(argv)


def render_only(path: Path, docs: Path | None) -> int:
    """The table and docs/performance.md from a results file (after editing bench/report.py)."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        results = f"{exc}"
    if not isinstance(results, dict) or not isinstance(results.get("figures"), dict):
        why = results if isinstance(results, str) else "it has no figures"
        print(f"bench: error: {path} is not a bench results file: {why}", file=sys.stderr)
        return 2
    print(report.render_table(results))
    if docs is not None:
        report.write_docs(results, docs, limits.limit_sentences(results))
        _say(f"rewrote {docs} from {path}")
    return 0


def _raise_interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    plan, quick = plan_from_env(dict(os.environ))
    profile = os.environ.get("PROFILE", "") not in ("", "0")
    docs = args.docs or (None if quick else REPO / "docs" / "performance.md")
    if args.no_docs:
        docs = None
    if args.render is not None:
        return render_only(args.render, args.docs or REPO / "docs" / "performance.md")
    # Ctrl-C and SIGTERM both end in the same clean-up (even if SIGINT came in ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional, absent on Windows

        uvloop.install()
    try:
        results = asyncio.run(run_all(plan, quick, profile))
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # the trace, then one line
        traceback.print_exc()
        print(f"bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(report.render_table(results))
    out = report.write_outputs(results, args.results_dir, docs, limits.limit_sentences(results))
    _say(f"results: {out}" + (f"; rewrote {docs}" if docs else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
