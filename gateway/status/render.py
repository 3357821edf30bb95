"""The status page as HTML: the page (inline CSS and a few lines of script) and the fragment the
script fetches every few seconds and swaps in. Pure: a :class:`Snapshot` in, text out; every
name that came from outside (connector, identity, model, subject) is escaped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from html import escape
from typing import Final

from gateway.ledger import UsageRow
from gateway.status.charts import Values, line_chart
from gateway.status.model import Snapshot
from gateway.status.queries import RANGES, LatencyPoint, Totals
from gateway.status.style import PAGE_CSS, page_script

REFRESH_S: Final = 5.0


def render_page(snap: Snapshot, *, refresh_s: float = REFRESH_S) -> str:
    rng = snap.series.range.name
    links = " ".join(
        f'<a href="?range={name}"{" aria-current=page" if name == rng else ""}>last {name}</a>'
        for name in RANGES
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>LLM gateway status</title><style>{PAGE_CSS}</style></head><body>"
        f'<header><h1>LLM gateway</h1><nav>{links}</nav><span id="updated"></span></header>'
        f'<main id="live">{render_fragment(snap)}</main>'
        f"<script>{page_script(rng, refresh_s)}</script></body></html>"
    )


def render_fragment(snap: Snapshot) -> str:
    return "".join(
        [
            _overview(snap),
            _tunnels(snap),
            _disconnects(snap),
            _today(snap),
            _usage(snap),
            _latency(snap),
            _certificates(snap),
        ]
    )


def _section(title: str, section_id: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>{body}</section>'


def _table(headers: Sequence[str], rows: Iterable[str], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">none</td></tr>'
    return f'<div class="scroll"><table id="{table_id}"><tr>{head}</tr>{body}</table></div>'


def _cell(value: object, key: str = "", *, num: bool = False) -> str:
    attrs = (f' data-k="{key}"' if key else "") + (' class="num"' if num else "")
    return f"<td{attrs}>{escape(str(value))}</td>"


def when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def ago(seconds: float) -> str:
    """``3d 4h``, ``2h 5m``, ``4m 10s``, ``9s``."""
    s = max(int(seconds), 0)
    for size, small, names in ((86400, 3600, "dh"), (3600, 60, "hm"), (60, 1, "ms")):
        if s >= size:
            return f"{s // size}{names[0]} {s % size // small}{names[1]}"
    return f"{s}s"


def _overview(snap: Snapshot) -> str:
    state = "up" if snap.ready else "down"
    words = "ready: a tunnel is up" if snap.ready else "NOT ready: no usable tunnel"
    warn = sum(1 for c in snap.certificates if c.expiring)
    certs = f", {warn} expiry date(s) close: see Certificates" if warn else ""
    return (
        f'<p id="overview" class="state-{state}" data-ready="{str(snap.ready).lower()}">'
        f"{words}{certs} · {escape(when(snap.now))}</p>"
    )


def _tunnels(snap: Snapshot) -> str:
    rows = [
        f'<tr data-connector="{escape(t.connector)}" data-tunnel="{escape(t.tunnel_id)}">'
        + _cell(t.connector)
        + _cell(t.carrier, "carrier")
        + _cell(t.remote, "remote")
        + _cell(f"{when(t.connected_at)} ({ago(snap.now - t.connected_at)} ago)", "since")
        + _cell("-" if t.rtt_s is None else f"{t.rtt_s * 1000:.1f} ms", "rtt", num=True)
        + _cell(t.active_streams, "streams", num=True)
        + _cell(", ".join(t.upstreams), "upstreams")
        + _cell("draining" if t.draining else (f"stalled: {t.stalled}" if t.stalled else "up"))
        + "</tr>"
        for t in snap.tunnels
    ]
    headers = ["connector", "carrier", "remote", "connected since", "PING RTT", "streams",
               "upstreams", "state"]  # fmt: skip
    return _section("Tunnels", "tunnels", _table(headers, rows, "tunnel-table"))


def _disconnects(snap: Snapshot) -> str:
    rows = [
        f'<tr data-connector="{escape(d.connector)}" data-reason="{escape(d.reason)}">'
        + _cell(when(d.at))
        + _cell(d.connector)
        + _cell(d.carrier)
        + _cell(d.remote)
        + _cell(d.reason, "reason")
        + _cell(d.detail)
        + "</tr>"
        for d in snap.disconnects[:20]
    ]
    headers = ["ended", "connector", "carrier", "remote", "reason", "detail"]
    return _section("Recent disconnects", "disconnects", _table(headers, rows, "disconnect-table"))


def _usage_row(r: UsageRow, attrs: str) -> str:
    return (
        f"<tr {attrs}>"
        + _cell(r.identity)
        + _cell(r.model)
        + _cell(r.requests, "requests", num=True)
        + _cell(r.prompt_tokens, "prompt", num=True)
        + _cell(r.completion_tokens, "completion", num=True)
        + _cell(r.total_tokens, "total", num=True)
        + "</tr>"
    )


def _today(snap: Snapshot) -> str:
    rows = [
        _usage_row(r, f'data-identity="{escape(r.identity)}" data-model="{escape(r.model)}"')
        for r in snap.today
    ]
    if snap.today:
        rows.append(_usage_row(snap.today_total(), 'class="total" data-total="1"'))
    headers = ["identity", "model", "requests", "input tokens", "output tokens", "total"]
    title = f"Usage today ({snap.day.isoformat()} UTC, as gateway usage)"
    return _section(title, "today", _table(headers, rows, "today-table"))


def _totals_table(per: dict[str, list[Totals]], kind: str, snap: Snapshot) -> str:
    rows = []
    for name in sorted(per):
        t = snap.series.total(per, name)
        rows.append(
            f'<tr data-{kind}="{escape(name)}">'
            + _cell(name)
            + _cell(t.requests, "requests", num=True)
            + _cell(t.prompt_tokens, "prompt", num=True)
            + _cell(t.completion_tokens, "completion", num=True)
            + _cell(t.errors, "errors", num=True)
            + "</tr>"
        )
    headers = [kind, "requests", "input tokens", "output tokens", "errors"]
    return _table(headers, rows, f"range-{kind}")


def _chart(snap: Snapshot, title: str, lines: Mapping[str, Values], unit: str = "") -> str:
    s = snap.series
    return line_chart(title, lines, start=s.start, bucket_s=s.range.bucket_s, unit=unit)


def _field(per: dict[str, list[Totals]], pick: Callable[[Totals], int]) -> dict[str, Values]:
    return {name: [float(pick(t)) for t in buckets] for name, buckets in per.items()}


def _usage(snap: Snapshot) -> str:
    s = snap.series
    ident, model = s.by_identity, s.by_model
    charts = [
        _chart(snap, "Requests per identity", _field(ident, lambda t: t.requests)),
        _chart(snap, "Input tokens per identity", _field(ident, lambda t: t.prompt_tokens)),
        _chart(snap, "Output tokens per identity", _field(ident, lambda t: t.completion_tokens)),
        _chart(snap, "Errors per identity", _field(ident, lambda t: t.errors)),
        _chart(snap, "Requests per model", _field(model, lambda t: t.requests)),
        _chart(snap, "Output tokens per model", _field(model, lambda t: t.completion_tokens)),
    ]
    bucket = s.range.bucket_s // 60
    body = (
        f'<p class="note">per {bucket}-minute bucket; requests and tokens as gateway usage counts'
        " them, errors are answers of status 400 or more</p>"
        + _totals_table(ident, "identity", snap)
        + _totals_table(model, "model", snap)
        + '<div class="charts">' + "".join(charts) + "</div>"
    )  # fmt: skip
    return _section(f"Usage, last {s.range.name}", "usage", body)


def _latency_lines(
    snap: Snapshot, pick: Callable[[LatencyPoint], float | None], suffix: str = ""
) -> dict[str, Values]:
    return {
        f"{m}{suffix}": [pick(p) for p in pts] for m, pts in sorted(snap.series.latency.items())
    }


def _latency(snap: Snapshot) -> str:
    def both(p50: Callable[[LatencyPoint], float | None],
             p95: Callable[[LatencyPoint], float | None]) -> dict[str, Values]:  # fmt: skip
        return {**_latency_lines(snap, p50, " p50"), **_latency_lines(snap, p95, " p95")}

    statuses = {
        str(code): [float(c) for c in counts]
        for code, counts in sorted(snap.series.statuses.items())
    }
    charts = [
        _chart(snap, "Time to first token", both(lambda p: p.ttft_p50_ms, lambda p: p.ttft_p95_ms),
               "ms"),
        _chart(snap, "Total time", both(lambda p: p.total_p50_ms, lambda p: p.total_p95_ms), "ms"),
        _chart(snap, "Output tokens per second, streams (median)",
               _latency_lines(snap, lambda p: p.tokens_per_s), "tokens/s"),
        _chart(snap, "Status codes", statuses, "answers"),
    ]  # fmt: skip
    body = '<div class="charts">' + "".join(charts) + "</div>"
    return _section(f"Latency, last {snap.series.range.name}", "latency", body)


def _certificates(snap: Snapshot) -> str:
    rows = [
        f'<tr data-role="{escape(c.role)}" data-subject="{escape(c.subject)}"'
        f"{' class=warn data-warn=1' if c.expiring else ''}>"
        + _cell(c.role)
        + _cell(c.subject)
        + _cell(when(c.not_after))
        + _cell(f"{c.days_left:.0f}", "days", num=True)
        + "</tr>"
        for c in sorted(snap.certificates, key=lambda c: c.days_left)
    ]
    headers = ["role", "subject", "expires (or next update)", "days left"]
    return _section("Certificates", "certificates", _table(headers, rows, "cert-table"))
