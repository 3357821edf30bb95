"""Server-rendered inline SVG line charts: no script, no library, nothing fetched.

A chart is a ``viewBox`` scaled to the width of its box (so it fits a phone), one polyline per
series; a missing value (``None``: nothing was measured in that bucket, as for latency) breaks
the line. Counts (requests, tokens, errors, status codes) are 0 in a quiet bucket, never None.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

WIDTH: Final = 600
HEIGHT: Final = 150
PAD_LEFT: Final = 46
PAD_BOTTOM: Final = 18
PAD_TOP: Final = 8
# colours that stay apart for the colour-blind (Okabe-Ito)
PALETTE: Final = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000")

Values = Sequence[float | None]


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def short_number(value: float) -> str:
    """1234 -> 1.2k; 0.5 -> 0.5; for axis labels."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    if value == int(value):
        return str(int(value))
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _clock(at: float, bucket_s: int) -> str:
    fmt = "%H:%M" if bucket_s < 3600 else "%a %H:%M"
    return time.strftime(fmt, time.gmtime(at))


def line_chart(
    title: str,
    lines: Mapping[str, Values],
    *,
    start: float,
    bucket_s: int,
    unit: str = "",
    chart_id: str = "",
) -> str:
    """A titled SVG chart with a legend; an empty ``lines`` says "no data"."""
    head = f'<figure class="chart"{f" id={_q(chart_id)}" if chart_id else ""}>'
    head += f"<figcaption>{escape(title)}{f' ({escape(unit)})' if unit else ''}</figcaption>"
    if not any(v is not None for values in lines.values() for v in values):
        return head + '<p class="empty">no data in this range</p></figure>'
    top = max(v for values in lines.values() for v in values if v is not None) or 1.0
    n = max(len(v) for v in lines.values())
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label={_q(title)}'
        ' preserveAspectRatio="none">',
        _axes(top, n, start, bucket_s),
    ]
    for i, values in enumerate(lines.values()):
        parts.extend(_polylines(values, top, n, colour(i)))
    parts.append("</svg>")
    return head + "".join(parts) + _legend(lines) + "</figure>"


def _x(i: int, n: int) -> float:
    span = WIDTH - PAD_LEFT - 4
    return PAD_LEFT + (span * (i + 0.5) / n)


def _y(value: float, top: float) -> float:
    span = HEIGHT - PAD_TOP - PAD_BOTTOM
    return HEIGHT - PAD_BOTTOM - span * (value / top)


def _axes(top: float, n: int, start: float, bucket_s: int) -> str:
    base = HEIGHT - PAD_BOTTOM
    end = start + n * bucket_s
    return (
        f'<g class="axes"><line x1="{PAD_LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}"/>'
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{base}"/>'
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">{short_number(top)}</text>'
        f'<text x="{PAD_LEFT - 4}" y="{base}" text-anchor="end">0</text>'
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 3}">{_clock(start, bucket_s)}</text>'
        f'<text x="{WIDTH}" y="{HEIGHT - 3}" text-anchor="end">{_clock(end, bucket_s)} UTC</text>'
        "</g>"
    )


def _polylines(values: Values, top: float, n: int, stroke: str) -> list[str]:
    """One polyline per run of present values; a lone point is a dot."""
    out: list[str] = []
    run: list[tuple[float, float]] = []
    for i, v in enumerate([*values, None]):
        if v is not None:
            run.append((_x(i, n), _y(v, top)))
            continue
        if len(run) == 1:
            ((cx, cy),) = run
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" fill="{stroke}"/>')
        elif run:
            points = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
            out.append(f'<polyline fill="none" stroke="{stroke}" points="{points}"/>')
        run = []
    return out


def _legend(lines: Mapping[str, Values]) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colour(i)}"></span>{escape(name)}</li>'
        for i, name in enumerate(lines)
    )
    return f'<ul class="legend">{items}</ul>'


def _q(text: str) -> str:
    return '"' + escape(text, quote=True) + '"'
