"""The figures to reach (issue 5, and issue 6 for the WebSocket carrier), checked without I/O.

``figures`` is ``{workload: {path: {metric: value}}}``; a missing path or metric (``None``) makes
the check "n/a" rather than a failure, so a run without the gateway still prints a table.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

Figures = Mapping[str, Mapping[str, Mapping[str, float | None]]]
Verdict = Literal["PASS", "FAIL", "n/a"]

GATEWAY_PATHS = ("gateway", "gateway+squid", "gateway+websocket")
TUNNEL_PATHS = ("gateway", "gateway+squid")  # (f) runs on the tunnel API, not the WebSocket
SOAK_PATHS = ("gateway",)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Target:
    """``figures[workload][path][metric] <op> bound`` where the bound is ``limit``, or
    ``limit * reference`` (``scale``), or ``reference + limit`` (``offset``)."""

    key: str
    text: str
    workload: str
    metric: str
    op: str
    limit: float
    paths: tuple[str, ...] = GATEWAY_PATHS
    reference_path: str | None = None
    reference_mode: Literal["scale", "offset"] = "scale"

    def bound(self, figures: Figures) -> float | None:
        if self.reference_path is None:
            return self.limit
        reference = _value(figures, self.workload, self.reference_path, self.metric)
        if reference is None:
            return None
        if self.reference_mode == "scale":
            return self.limit * reference
        return reference + self.limit


@dataclass(frozen=True)
class Check:
    target: Target
    path: str
    value: float | None
    bound: float | None
    verdict: Verdict

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.target.key,
            "text": self.target.text,
            "path": self.path,
            "value": self.value,
            "op": self.target.op,
            "bound": self.bound,
            "verdict": self.verdict,
        }


TARGETS: tuple[Target, ...] = (
    Target("a.p50", "adds at most 2 ms p50 over direct", "a", "added_p50_ms", "<=", 2.0),
    Target("a.p99", "adds at most 5 ms p99 over direct", "a", "added_p99_ms", "<=", 5.0),
    Target(
        "b.rps",
        "at least 50% of floor's requests/s at concurrency 64",
        "b64",
        "rps",
        ">=",
        0.5,
        reference_path="floor",
    ),
    Target("b.errors", "no error at concurrency 64", "b64", "errors", "<=", 0.0),
    Target("c.rate", "at least 5,000 chunks/s on one stream", "c", "chunks_per_s", ">=", 5000.0),
    Target("c.ttft", "TTFT adds at most 3 ms", "c", "ttft_added_ms", "<=", 3.0),
    Target("d.p99", "a paced chunk picks up at most 1 ms p99", "d", "extra_p99_ms", "<=", 1.0),
    Target("e.gw", "gateway RSS at most 150 MB", "e", "front_rss_mb", "<=", 150.0),
    Target("e.conn", "connector RSS at most 80 MB", "e", "connector_rss_mb", "<=", 80.0),
    Target("f.up", "at least 100 MB/s up", "f", "up_mb_s", ">=", 100.0, paths=TUNNEL_PATHS),
    Target("f.down", "at least 100 MB/s down", "f", "down_mb_s", ">=", 100.0, paths=TUNNEL_PATHS),
    Target(
        "g.gw",
        "gateway RSS grows < 5% in the soak",
        "g",
        "front_rss_growth_pct",
        "<",
        5.0,
        paths=SOAK_PATHS,
    ),
    Target(
        "g.conn",
        "connector RSS grows < 5% in the soak",
        "g",
        "connector_rss_growth_pct",
        "<",
        5.0,
        paths=SOAK_PATHS,
    ),
    Target(
        "g.failed", "zero failed requests in the soak", "g", "failed", "<=", 0.0, paths=SOAK_PATHS
    ),
    Target(
        "h.windows",
        "both connection windows full after the cancel soak",
        "h",
        "windows_full",
        ">=",
        1.0,
        paths=SOAK_PATHS,
    ),
    Target("h.stalls", "no tunnel stall in the cancel soak", "h", "stalls", "<=", 0.0, SOAK_PATHS),
    Target(
        "h.rss",
        "gateway RSS peak grows < 10% from the cancel soak's middle third to its last",
        "h",
        "front_rss_growth_pct",
        "<",
        10.0,
        paths=SOAK_PATHS,
    ),
    Target(
        "h.conn",
        "connector RSS peak grows < 10% from the cancel soak's middle third to its last",
        "h",
        "connector_rss_growth_pct",
        "<",
        10.0,
        paths=SOAK_PATHS,
    ),
    Target(
        "ws.rps",
        "websocket keeps at least 70% of gateway's requests/s",
        "b64",
        "rps",
        ">=",
        0.7,
        paths=("gateway+websocket",),
        reference_path="gateway",
    ),
    Target(
        "ws.p50",
        "websocket adds at most 1 ms p50 over gateway",
        "a",
        "p50_ms",
        "<=",
        1.0,
        paths=("gateway+websocket",),
        reference_path="gateway",
        reference_mode="offset",
    ),
)


def _value(figures: Figures, workload: str, path: str, metric: str) -> float | None:
    return figures.get(workload, {}).get(path, {}).get(metric)


def check(target: Target, figures: Figures, path: str) -> Check:
    value = _value(figures, target.workload, path, target.metric)
    bound = target.bound(figures)
    if value is None or bound is None:
        return Check(target, path, value, bound, "n/a")
    verdict: Verdict = "PASS" if _OPS[target.op](value, bound) else "FAIL"
    return Check(target, path, value, bound, verdict)


def check_all(figures: Figures, targets: tuple[Target, ...] = TARGETS) -> list[Check]:
    """Every target against every path it applies to."""
    return [check(target, figures, path) for target in targets for path in target.paths]
