"""The benchmark's output: a table on stdout, the raw figures as JSON, and docs/performance.md.

Rendering is pure (results dict in, text out); only :func:`write_outputs` touches files.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.limits import cpu_budget, limit_name
from bench.stack import DIRECT, FLOOR, GATEWAY, PATHS
from bench.stats import CpuCeiling, ratio

Results = Mapping[str, Any]
LABEL_WIDTH = 30


@dataclass(frozen=True)
class Row:
    workload: str
    metric: str
    label: str
    digits: int = 2
    show_ratio: bool = True


ROWS: tuple[Row, ...] = (
    Row("a", "p50_ms", "(a) latency p50 ms"),
    Row("a", "p99_ms", "(a) latency p99 ms"),
    Row("a", "added_p50_ms", "(a) added p50 ms", show_ratio=False),
    Row("a", "added_p99_ms", "(a) added p99 ms", show_ratio=False),
    Row("b16", "rps", "(b) c=16 req/s", 0),
    Row("b16", "p99_ms", "(b) c=16 p99 ms", 1),
    Row("b16", "errors", "(b) c=16 errors", 0, False),
    Row("b64", "rps", "(b) c=64 req/s", 0),
    Row("b64", "p99_ms", "(b) c=64 p99 ms", 1),
    Row("b64", "errors", "(b) c=64 errors", 0, False),
    Row("b64", "front_cpu_pct", "(b) c=64 server CPU %", 0),
    Row("b64", "connector_cpu_pct", "(b) c=64 connector CPU %", 0, False),
    Row("b64", "cpu_us_per_req_client", "(b) c=64 CPU us/req client", 0, False),
    Row("b64", "cpu_us_per_req_upstream", "(b) c=64 CPU us/req upstream", 0, False),
    Row("b64", "cpu_us_per_req_front", "(b) c=64 CPU us/req server", 0, False),
    Row("b64", "cpu_us_per_req_connector", "(b) c=64 CPU us/req connector", 0, False),
    Row("b64", "cpu_us_per_req_proxy", "(b) c=64 CPU us/req squid", 0, False),
    Row("b64", "cpu_us_per_req_total", "(b) c=64 CPU us/req total", 0),
    Row("b64", "machine_cpu_pct", "(b) c=64 machine CPU %", 0, False),
    Row("b64", "path_cpu_pct", "(b) c=64 path CPU % of cores", 0, False),
    Row("c", "chunks_per_s", "(c) chunks/s, 1 stream", 0),
    Row("c", "ttft_ms", "(c) TTFT ms"),
    Row("c", "ttft_added_ms", "(c) TTFT added ms", show_ratio=False),
    Row("d", "delay_p50_ms", "(d) chunk delay p50 ms"),
    Row("d", "delay_p99_ms", "(d) chunk delay p99 ms"),
    Row("d", "extra_p50_ms", "(d) extra delay p50 ms", show_ratio=False),
    Row("d", "extra_p99_ms", "(d) extra delay p99 ms", show_ratio=False),
    Row("d", "extra_single_p50_ms", "(d) one stream alone: extra p50 ms", show_ratio=False),
    Row("d", "extra_single_p99_ms", "(d) one stream alone: extra p99 ms", show_ratio=False),
    Row("d", "cpu_us_per_chunk_front", "(d) server CPU us per chunk", 0, False),
    Row("d", "cpu_us_per_chunk_connector", "(d) connector CPU us per chunk", 0, False),
    Row("e", "front_rss_mb", "(e) server RSS MiB", 1),
    Row("e", "front_cpu_pct", "(e) server CPU %", 0),
    Row("e", "connector_rss_mb", "(e) connector RSS MiB", 1, False),
    Row("e", "connector_cpu_pct", "(e) connector CPU %", 0, False),
    Row("e", "errors", "(e) failed streams", 0, False),
    Row("f", "up_mb_s", "(f) up MB/s", 1),
    Row("f", "down_mb_s", "(f) down MB/s", 1),
    Row("g", "requests", "(g) soak requests", 0, False),
    Row("g", "failed", "(g) soak failed", 0, False),
    Row("g", "front_rss_start_mb", "(g) server RSS start MiB", 1, False),
    Row("g", "front_rss_mid_mb", "(g) server RSS middle MiB", 1, False),
    Row("g", "front_rss_end_mb", "(g) server RSS end MiB", 1, False),
    Row("g", "front_rss_growth_pct", "(g) server RSS growth %", 1, False),
    Row("g", "connector_rss_start_mb", "(g) connector RSS start MiB", 1, False),
    Row("g", "connector_rss_mid_mb", "(g) connector RSS middle MiB", 1, False),
    Row("g", "connector_rss_end_mb", "(g) connector RSS end MiB", 1, False),
    Row("g", "connector_rss_growth_pct", "(g) connector RSS growth %", 1, False),
    Row("h", "requests", "(h) cancel soak requests", 0, False),
    Row("h", "cancelled", "(h) cancelled requests", 0, False),
    Row("h", "failed", "(h) failed (not cancelled)", 0, False),
    Row("h", "stalls", "(h) tunnel stalls", 0, False),
    Row("h", "gateway_window_in", "(h) gateway recv window B", 0, False),
    Row("h", "gateway_held_bytes", "(h) gateway held B", 0, False),
    Row("h", "connector_window_in", "(h) connector recv window B", 0, False),
    Row("h", "windows_full", "(h) windows full (1 = yes)", 0, False),
    Row("h", "front_rss_start_mb", "(h) server RSS start MiB", 1, False),
    Row("h", "front_rss_warm_mb", "(h) server RSS peak, middle 1/3 MiB", 1, False),
    Row("h", "front_rss_end_mb", "(h) server RSS peak, last 1/3 MiB", 1, False),
    Row("h", "front_rss_growth_pct", "(h) server RSS peak growth %", 1, False),
    Row("h", "connector_rss_start_mb", "(h) connector RSS start MiB", 1, False),
    Row("h", "connector_rss_end_mb", "(h) connector RSS peak, last 1/3 MiB", 1, False),
    Row("h", "connector_rss_growth_pct", "(h) connector RSS peak growth %", 1, False),
)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {
        "cores": os.cpu_count(),
        "cpu_model": model or "unknown",
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def _load(m: Mapping[str, Any]) -> str:
    load = m.get("load_before")
    return ", ".join(f"{x:.2f}" for x in load) if load else "unknown"


def _value(results: Results, workload: str, path: str, metric: str) -> float | None:
    value = results["figures"].get(workload, {}).get(path, {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def _fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def cell(results: Results, row: Row, path: str) -> str:
    value = _value(results, row.workload, path, row.metric)
    text = _fmt(value, row.digits)
    if not row.show_ratio or path in (DIRECT, FLOOR) or value is None:
        return text
    parts = []
    for reference in (DIRECT, FLOOR):
        r = ratio(value, _value(results, row.workload, reference, row.metric))
        if r is not None:
            parts.append(f"{r:.2f}x{reference[0]}")
    return f"{text} ({' '.join(parts)})" if parts else text


def render_table(results: Results) -> str:
    """The stdout table: one row per figure, one column per path; ratios to direct (d)/floor (f)."""
    paths = list(PATHS)
    widths = [LABEL_WIDTH] + [12 if p in (DIRECT, FLOOR) else 26 for p in paths]
    lines = [_line(["figure", *paths], widths), _line(["-" * w for w in widths], widths)]
    for row in ROWS:
        if row.workload not in results["figures"]:
            continue
        lines.append(_line([row.label, *(cell(results, row, p) for p in paths)], widths))
    for path, reason in results.get("unavailable", {}).items():
        lines.append(f"{path}: {reason}")
    lines.append("")
    lines.append("targets:")
    for check in results.get("checks", []):
        lines.append(
            f"  {check['verdict']:<4} {check['path']:<18} {check['text']}: "
            f"{_fmt(check['value'], 2)} {check['op']} {_fmt(check['bound'], 2)}"
        )
    return "\n".join(lines)


def _line(cells: list[str], widths: list[int]) -> str:
    return " ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _markdown_table(results: Results) -> str:
    paths = list(PATHS)
    out = ["| figure | " + " | ".join(paths) + " |", "|---" * (len(paths) + 1) + "|"]
    for row in ROWS:
        if row.workload in results["figures"]:
            cells = [cell(results, row, p) for p in paths]
            out.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _checks_table(results: Results) -> str:
    out = ["| target | path | value | bound | verdict |", "|---|---|---|---|---|"]
    for check in results.get("checks", []):
        out.append(
            f"| {check['text']} | {check['path']} | {_fmt(check['value'], 2)} | "
            f"{check['op']} {_fmt(check['bound'], 2)} | **{check['verdict']}** |"
        )
    return "\n".join(out)


CPU_BUDGET_ROWS = (
    ("load client (the bench process)", "cpu_us_per_req_client"),
    ("bench upstream", "cpu_us_per_req_upstream"),
    ("server (floor app / gateway)", "cpu_us_per_req_front"),
    ("connector", "cpu_us_per_req_connector"),
    ("all processes on the path", "cpu_us_per_req_total"),
)


def cpu_budget_section(results: Results) -> list[str]:
    """Markdown lines: CPU per request of each process on floor and gateway at concurrency 64,
    the ratio CPU alone allows, and the h2 library's own cost when measured; nothing when this
    run has no CPU figures."""
    budget = cpu_budget(results)
    if budget is None:
        return []
    paths = (FLOOR, GATEWAY)
    out = [
        "## CPU budget at concurrency 64",
        "",
        "CPU time (user + system, psutil) of each process on the path over the measured window "
        "of workload (b) at concurrency 64 (warm-up excluded), divided by the requests "
        "completed in it. The load client is the bench process itself, its sampler threads "
        "included; on `floor` the upstream is idle and there is no connector (0).",
        "",
        "| us of CPU per request | " + " | ".join(paths) + " |",
        "|---" * (len(paths) + 1) + "|",
    ]
    for label, metric in CPU_BUDGET_ROWS:
        cells = [_fmt(_value(results, "b64", p, metric), 0) for p in paths]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for label, metric in (
        ("requests/s", "rps"),
        ("machine CPU % (100 = all cores busy)", "machine_cpu_pct"),
        ("these processes, % of all cores", "path_cpu_pct"),
    ):
        cells = [_fmt(_value(results, "b64", p, metric), 0) for p in paths]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", *_budget_paragraph(results, budget), ""]
    out += _h2_lines(results, budget.spent_us)
    split = gateway_split(results)
    if split is not None:
        out += _gateway_parts_lines(split)
        out += _design_parts_lines(split, budget)
    return out


@dataclass(frozen=True)
class GatewaySplit:
    """The gateway process's CPU per request at concurrency 64, by part: Hypercorn with TLS
    (what the floor's server spends), h2 on each side (``bench/h2_cost.py``), the gateway's own
    handling (``bench/app_cost.py``, when measured) and what is left."""

    gateway_us: float
    floor_us: float
    h2_client_us: float
    h2_server_us: float
    own_us: float | None

    @property
    def rest_us(self) -> float:
        """The tunnel session with its TLS and the event loop: what no in-process figure covers."""
        return self.gateway_us - self.floor_us - self.h2_client_us - (self.own_us or 0.0)


def gateway_split(results: Results) -> GatewaySplit | None:
    h2 = results["figures"].get("h2")
    app = results["figures"].get("app")
    gateway = _value(results, "b64", GATEWAY, "cpu_us_per_req_front")
    floor = _value(results, "b64", FLOOR, "cpu_us_per_req_front")
    if not isinstance(h2, Mapping) or gateway is None or floor is None:
        return None
    return GatewaySplit(
        gateway_us=gateway,
        floor_us=floor,
        h2_client_us=float(h2["client_us"]),
        h2_server_us=float(h2["server_us"]),
        own_us=float(app["us_per_request"]) if isinstance(app, Mapping) else None,
    )


#: How many times cheaper the gateway's own code would have to become before we call a target
#: out of reach with the design's parts (it already makes one pass per request).
OUT_OF_REACH_FACTOR = 2.0


def _design_parts_lines(split: GatewaySplit, budget: CpuCeiling) -> list[str]:
    """The verdict: what the design's fixed parts alone take of the budgets for the target (the
    gateway process's own cap, and gateway + connector together), and what is left."""
    floor, client_us = split.floor_us, split.h2_client_us
    fixed_gw, fixed_pair = floor + client_us, floor + client_us + split.h2_server_us
    left_gw = budget.process_cap_us - fixed_gw
    left_pair = budget.needed_budget_us - fixed_pair
    lines = [
        "With the design's parts, two costs are fixed: Hypercorn serving the client (at best "
        f"what the floor's server spends, {floor:.0f} us) and h2 ({client_us:.0f} us in the "
        f"gateway, {split.h2_server_us:.0f} us in the connector). Of the "
        f"{budget.process_cap_us:.0f} us the gateway process may spend per request for "
        f"{budget.target:.2f} of the floor, they take {fixed_gw:.0f} us; of the "
        f"{budget.needed_budget_us:.0f} us gateway and connector may spend together, "
        f"{fixed_pair:.0f} us."
    ]
    if left_gw <= 0 or left_pair <= 0:
        lines.append(
            "So the target cannot be reached with these parts on this machine, whatever the "
            "rest costs."
        )
    elif split.own_us is not None:
        own, rest = split.own_us, split.rest_us
        factor = (own + rest) / left_gw
        verdict = (
            "We judge the target out of reach with these parts on this machine; the figures "
            "above say where each microsecond goes."
            if factor >= OUT_OF_REACH_FACTOR
            else "That is work on the gateway's own code, not a limit of its parts."
        )
        lines.append(
            f"That leaves {left_gw:.0f} us in the gateway process for its own handling, which "
            f"costs {own:.0f} us measured in-process, and for the tunnel session with its TLS "
            f"and the event loop ({rest:.0f} us now): {own + rest:.0f} us would have to become "
            f"{left_gw:.0f} us, {factor:.1f} times less. {verdict}"
        )
    return [" ".join(lines), ""]


def _budget_paragraph(results: Results, b: CpuCeiling) -> list[str]:
    measured = ratio(_value(results, "b64", GATEWAY, "rps"), _value(results, "b64", FLOOR, "rps"))
    lines = [
        "Each process runs one event loop, so it serves at most 10^6 / (its us per request) "
        "requests/s, and all of them together at most cores x 10^6 / (total us per request). "
        f"By that, the floor path could reach {b.floor_rps_model:,.0f} req/s (capped by "
        f"{limit_name(b.floor_limit)}) and the gateway path {b.gateway_rps_model:,.0f} req/s "
        f"(capped by {limit_name(b.gateway_limit)}): gateway/floor **{b.model_ratio:.2f}** "
        f"(measured {_fmt(measured, 2)}). Were both to keep every core busy, it would be "
        f"{b.floor_total_us:.0f} / {b.gateway_total_us:.0f} = {b.ratio_ceiling:.2f}.",
        "",
        f"For {b.target:.2f} of the floor ({b.needed_rps:,.0f} req/s), the gateway path's "
        f"processes may spend {b.needed_total_us:.0f} us per request together; after the load "
        "client and the upstream, that leaves "
        f"**{b.needed_budget_us:.0f} us** for the gateway and the connector together (they spend "
        f"{b.spent_us:.0f} us now), and no one process may spend more than "
        f"**{b.process_cap_us:.0f} us** (the gateway spends {b.gateway_process_us:.0f} us now).",
    ]
    if b.needed_budget_us <= 0:
        lines.append(
            "The load client and the upstream alone already spend more than that: "
            "on this machine the target is out of reach whatever the gateway costs."
        )
    return lines


def _h2_lines(results: Results, spent_us: float) -> list[str]:
    h2 = results["figures"].get("h2")
    if not isinstance(h2, Mapping) or not isinstance(h2.get("total_us"), int | float):
        return []
    share = ratio(float(h2["total_us"]), spent_us)
    of_spent = "" if share is None else f", {share * 100:.0f}% of what gateway + connector spend"
    return [
        "The `h2` library alone (`bench/h2_cost.py`: in-process, no sockets, the tunnel's "
        "HTTP/2 settings, one small request and answer per exchange) costs "
        f"{_fmt(h2.get('client_us'), 0)} us on the client side (the gateway) and "
        f"{_fmt(h2.get('server_us'), 0)} us on the server side (the connector): "
        f"{float(h2['total_us']):.0f} us per exchange{of_spent}.",
        "",
    ]


def _gateway_parts_lines(split: GatewaySplit) -> list[str]:
    """Where the gateway process's CPU per request goes (only with the in-process figure)."""
    if split.own_us is None:
        return []
    return [
        "Where the gateway process's "
        f"{split.gateway_us:.0f} us per request go: Hypercorn's HTTP/1.1 with TLS as the floor's "
        f"server spends it, {split.floor_us:.0f} us; the gateway's own handling "
        "(`bench/app_cost.py`: the real app through ASGI in-process, with its key store, "
        "limiter, ledger, metrics and access log, the tunnel answered at once) "
        f"{split.own_us:.0f} us; h2's client side {split.h2_client_us:.0f} us; the rest, "
        f"{split.rest_us:.0f} us, is the tunnel session and its TLS, and the event loop "
        "switching between the client's and the tunnel's connections.",
        "",
    ]


def ledger_section(results: Results) -> list[str]:
    """What committing each request's usage row before its answer ends costs (issue 11, 9)."""
    ledger = results["figures"].get("ledger")
    if not ledger:
        return []
    lines = [
        "## The durable usage ledger",
        "",
        "`UsageLedger.record` commits the request's row (SQLite WAL, `synchronous=NORMAL`) "
        "before the answer's last bytes leave; one writer thread group-commits whatever waits. "
        "Measured in-process (`bench/ledger_cost.py`), wall clock and process CPU (the writer "
        "thread included) per record:",
        "",
        "| records waiting together | wall us / record | CPU us / record | commits |",
        "| --- | --- | --- | --- |",
    ]
    for together, f in sorted(ledger.items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {together} | {f['wall_us']:.1f} | {f['cpu_us']:.1f} | {f['commits']:.0f} |"
        )
    return [*lines, ""]


def render_markdown(results: Results, limits: Mapping[str, str]) -> str:
    m = results["machine"]
    notes = results.get("notes", {})
    text = [
        "# Performance",
        "",
        "_This page is rewritten by `make bench` from its last run "
        "(`bench/results/latest.json`); edit `bench/report.py`, not this file, and re-render "
        "with `.venv/bin/python -m bench.run --render bench/results/latest.json`._",
        "",
        f"- Date: {results['date']}",
        f"- Machine: {m['cores']} cores, {m['cpu_model']}, {m['platform']}",
        f"- Python: {m['implementation']} {m['python']}",
        f"- Load average before the run (1, 5, 15 min): {_load(m)}",
        f"- Run: {'quick (BENCH_QUICK=1)' if results.get('quick') else 'full'}, "
        f"{results.get('duration_s', 0):.0f} s; soak {results['plan']['soak_s']:.0f} s",
        "",
        "Everything runs on this one machine over loopback: the load client (aiohttp, one "
        "process), the bench upstream (`bench/fast_upstream.py`), the floor, the gateway and the "
        "connectors share its cores. The paths:",
        "",
        "- `direct`: the client straight to the bench upstream (plain HTTP, as in the office);",
        "- `floor`: a bare Hypercorn app over the same TLS answering by itself (what the Python "
        "stack costs);",
        "- `gateway`: HTTPS gateway -> tunnel (HTTP/2 in mutual TLS) -> connector -> upstream;",
        "- `gateway+squid`: the same, the connector dialling through a private squid (`CONNECT`);",
        "- `gateway+websocket`: the same over the WebSocket carrier (TLS inside the WebSocket).",
        "",
        "Ratios: `1.20xd` is 1.20 times `direct`, `0.50xf` half of `floor`.",
        "",
        "## Figures",
        "",
        _markdown_table(results),
        "",
    ]
    for path, reason in results.get("unavailable", {}).items():
        text.append(f"- `{path}`: {reason}")
    text += ["", "## Targets", "", _checks_table(results), ""]
    text += cpu_budget_section(results)
    text += ledger_section(results)
    text += ["## What limits each figure", ""]
    for key, sentence in limits.items():
        text.append(f"- **{key}**: {sentence}")
    if notes:
        text += ["", "## Notes", ""]
        text += [f"- {key}: {note}" for key, note in notes.items()]
    profiles = results.get("profiles") or {}
    if profiles:
        text += ["", "## Profiles (workload b, concurrency 64)", ""]
        text += [f"- {name}: {where}" for name, where in profiles.items()]
        for name, frames in (results.get("profile_hot_frames") or {}).items():
            text += ["", f"Hottest frames of our code in the {name} (inclusive % of samples):", ""]
            text += [f"- {pct:.1f}% `{label}`" for label, pct in frames]
    return "\n".join(text).rstrip() + "\n"


def write_outputs(
    results: Results, results_dir: Path, docs_path: Path | None, limits: Mapping[str, str]
) -> Path:
    """``results_dir/<stamp>.json`` and ``latest.json``; ``docs_path`` rewritten when given."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = str(results["date"]).replace(":", "").replace("-", "").split(".")[0]
    payload = json.dumps(results, indent=2, sort_keys=True, default=str)
    out = results_dir / f"{stamp}.json"
    out.write_text(payload + "\n")
    (results_dir / "latest.json").write_text(payload + "\n")
    if docs_path is not None:
        write_docs(results, docs_path, limits)
    return out


def write_docs(results: Results, docs_path: Path, limits: Mapping[str, str]) -> None:
    """``docs/performance.md`` (or ``docs_path``) rendered from ``results``."""
    docs_path.parent.mkdir(parents=True, exist_ok=True)
    docs_path.write_text(render_markdown(results, limits))
