"""What the status page shows at one moment: a frozen :class:`Snapshot`, built from plain
values (the pool's status, the certificate facts, the ledger's rows) with no I/O, so the page,
its JSON and ``gateway status`` all read the same thing."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from gateway.certificates import CertificateFact
from gateway.ledger import UsageRow
from gateway.status.queries import LoggedRequest, Range, Series, aggregate
from tunnel.api import Disconnect, PoolStatus, TunnelInfo


@dataclass(frozen=True, slots=True)
class CertificateView:
    """A certificate fact at the snapshot's time; its JSON is ``CertificateFact.as_json``'s
    shape (the admin ``/readyz`` shows the same)."""

    role: str
    subject: str
    not_after: float
    days_left: float
    expiring: bool  # fewer days left than its ``warn_days`` (30; the CRL its own), or past


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float
    day: date  # the UTC day of ``today``
    tunnels: tuple[TunnelInfo, ...]
    disconnects: tuple[Disconnect, ...]
    today: tuple[UsageRow, ...]  # the ``usage`` table's rows of ``day``: ``gateway usage``
    series: Series
    certificates: tuple[CertificateView, ...]

    @property
    def ready(self) -> bool:
        return PoolStatus(self.tunnels).ready

    def today_total(self) -> UsageRow:
        return UsageRow(
            identity="all",
            day=self.day,
            model="all",
            requests=sum(r.requests for r in self.today),
            prompt_tokens=sum(r.prompt_tokens for r in self.today),
            completion_tokens=sum(r.completion_tokens for r in self.today),
        )


def build_snapshot(
    *,
    now: float,
    status: PoolStatus,
    facts: Sequence[CertificateFact],
    today: Sequence[UsageRow],
    requests: Sequence[LoggedRequest],
    rng: Range,
) -> Snapshot:
    return Snapshot(
        now=now,
        day=utc_day(now),
        tunnels=tuple(sorted(status.tunnels, key=lambda t: (t.connector, t.connected_at))),
        disconnects=status.recent_disconnects,
        today=tuple(today),
        series=aggregate(requests, rng, now),
        certificates=tuple(certificate_view(f, now) for f in facts),
    )


def utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def certificate_view(fact: CertificateFact, now: float) -> CertificateView:
    days = round(fact.days_left(now), 2)
    return CertificateView(fact.role, fact.subject, fact.not_after, days, fact.expiring(now))


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """The JSON of ``/status.json`` (``gateway status`` reads it)."""
    s = snap.series
    total = snap.today_total()
    return {
        "now": snap.now,
        "ready": snap.ready,
        "tunnels": [dataclasses.asdict(t) for t in snap.tunnels],
        "disconnects": [dataclasses.asdict(d) for d in snap.disconnects],
        "today": {
            "day": snap.day.isoformat(),
            "rows": [r.as_json() for r in snap.today],
            "total": {k: v for k, v in total.as_json().items() if k not in ("identity", "model")},
        },
        "range": dataclasses.asdict(s.range),
        "series": {
            "start": s.start,
            "by_identity": _per_name(s.by_identity, s),
            "by_model": _per_name(s.by_model, s),
            "latency": {m: [dataclasses.asdict(p) for p in pts] for m, pts in s.latency.items()},
            "statuses": {str(code): counts for code, counts in sorted(s.statuses.items())},
        },
        "certificates": [dataclasses.asdict(c) for c in snap.certificates],
    }


def _per_name(per: dict[str, list[Any]], s: Series) -> dict[str, Any]:
    return {
        name: {
            "total": dataclasses.asdict(s.total(per, name)),
            "buckets": [dataclasses.asdict(t) for t in buckets],
        }
        for name, buckets in sorted(per.items())
    }
