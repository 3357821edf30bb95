"""A warning in the log for each certificate (or the CRL) about to run out: at start, for a
connector as soon as its tunnel shows an expiring certificate, then once a day while it lasts.

:class:`ExpiryWarnings` decides what to say when (no clock, no I/O: tests step its time);
:func:`warn_expiring` is the task ``gateway serve`` runs, looking at the facts every few seconds
(a ``stat`` per file and a walk over the live tunnels; the files are read only when they change).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

from gateway.certificates import DAY_S, CertificateFact

log = logging.getLogger("gateway.certificates")

CHECK_EVERY_S: Final = 5.0
REPEAT_S: Final = DAY_S

_ROLES: Final = {
    "ca": "the CA certificate",
    "server": "the gateway's server certificate",
    "tunnel": "the tunnel listener's certificate",
}


class ExpiryWarnings:
    """Which flagged facts (``CertificateFact.expiring``) to warn about now: each one the
    first time it is seen flagged, then again once ``repeat_s`` has passed."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        self._repeat_s = repeat_s
        self._warned: dict[tuple[str, str], float] = {}

    def due(self, facts: Iterable[CertificateFact], now: float) -> list[CertificateFact]:
        out = []
        for fact in facts:
            key = (fact.role, fact.subject)
            if not fact.expiring(now):
                self._warned.pop(key, None)  # renewed: a new lapse is news again
                continue
            last = self._warned.get(key)
            if last is None or now - last >= self._repeat_s:
                self._warned[key] = now
                out.append(fact)
        return out


def warning_text(fact: CertificateFact, now: float) -> str:
    """One line, in plain words, with what to do."""
    days = fact.days_left(now)
    when = f"{dt.datetime.fromtimestamp(fact.not_after, dt.UTC):%Y-%m-%d %H:%M} UTC"
    if fact.role == "crl":
        what = f"the CRL (signed by {fact.subject})"
        todo = "run `pki crl` (is pki-crl.timer running?)"
        if days < 0:
            return f"{what} is past its nextUpdate since {when}: {todo}"
        return f"{what} must be re-signed within {days:.1f} days (nextUpdate {when}): {todo}"
    kind, _, name = fact.role.partition(":")
    what = f"connector {name}'s client certificate" if kind == "connector" else _ROLES[kind]
    todo = "renew it (docs/operations.md, Certificates: rotation)"
    if days < 0:
        return f"{what} ({fact.subject}) expired {-days:.1f} days ago ({when}): {todo}"
    return f"{what} ({fact.subject}) expires in {days:.1f} days ({when}): {todo}"


async def warn_expiring(
    facts: Callable[[], Iterable[CertificateFact]],
    *,
    check_every_s: float = CHECK_EVERY_S,
    clock: Callable[[], float] = time.time,
    schedule: ExpiryWarnings | None = None,
) -> None:
    """Log a warning for each fact :class:`ExpiryWarnings` says is due; runs until cancelled."""
    schedule = schedule or ExpiryWarnings()
    while True:
        now = clock()
        try:
            due = schedule.due(facts(), now)
        except Exception:  # a surprise in a file must not end the watch
            log.exception("checking the certificates' expiry failed")
            due = []
        for fact in due:
            log.warning("certificate expiry: %s", warning_text(fact, now))
        await asyncio.sleep(check_every_s)
