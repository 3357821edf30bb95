"""The expiry warning: at once, then once a day per certificate, in words that say what to do."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway.certificates import CertificateFact
from gateway.expiry_warnings import ExpiryWarnings, warn_expiring, warning_text

DAY = 86_400.0
NOW = 1_800_000_000.0  # 2027-01-15 08:00 UTC

CONNECTOR = CertificateFact("connector:office-1", "office-1", NOW + 10 * DAY)
SERVER = CertificateFact("server", "gateway", NOW + 40 * DAY)  # fine for 10 more days
CRL = CertificateFact("crl", "Home LLM CA", NOW + 6 * DAY)  # re-signed daily: fine


def test_each_flagged_certificate_once_a_day_and_at_once_when_it_first_shows() -> None:
    schedule = ExpiryWarnings()
    facts = [CONNECTOR, SERVER, CRL]
    assert schedule.due(facts, NOW) == [CONNECTOR]
    assert schedule.due(facts, NOW + 60) == []
    assert schedule.due(facts, NOW + DAY - 1) == []
    assert schedule.due(facts, NOW + DAY) == [CONNECTOR]
    assert schedule.due(facts, NOW + 1.5 * DAY) == []
    # the CRL timer has stopped: under 3 days left
    assert schedule.due(facts, NOW + 3.2 * DAY) == [CONNECTOR, CRL]
    assert schedule.due(facts, NOW + 3.3 * DAY) == []
    # the server certificate is under 30 days too
    later = NOW + 10.5 * DAY
    assert schedule.due(facts, later) == [CONNECTOR, SERVER, CRL]
    # a connector that shows up with a short certificate is news at once, whatever the hour
    other = CertificateFact("connector:office-2", "office-2", later + 3 * DAY)
    assert schedule.due([*facts, other], later + 5) == [other]


def test_a_renewed_certificate_that_lapses_again_is_news_again() -> None:
    schedule = ExpiryWarnings()
    assert schedule.due([CONNECTOR], NOW) == [CONNECTOR]
    renewed = CertificateFact("connector:office-1", "office-1", NOW + 400 * DAY)
    assert schedule.due([renewed], NOW + 3600) == []
    short = CertificateFact("connector:office-1", "office-1", NOW + 20 * DAY)
    assert schedule.due([short], NOW + 7200) == [short]


def test_the_words() -> None:
    assert warning_text(CONNECTOR, NOW) == (
        "connector office-1's client certificate (office-1) expires in 10.0 days "
        "(2027-01-25 08:00 UTC): renew it (docs/operations.md, Certificates: rotation)"
    )
    assert warning_text(SERVER, NOW + 41 * DAY).startswith(
        "the gateway's server certificate (gateway) expired 1.0 days ago (2027-02-24 08:00 UTC)"
    )
    assert warning_text(CRL, NOW + 4 * DAY) == (
        "the CRL (signed by Home LLM CA) must be re-signed within 2.0 days "
        "(nextUpdate 2027-01-21 08:00 UTC): run `pki crl` (is pki-crl.timer running?)"
    )
    assert "past its nextUpdate" in warning_text(CRL, NOW + 7 * DAY)


async def test_the_task_warns_at_start_and_when_the_day_has_passed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [NOW]
    caplog.set_level(logging.WARNING, "gateway.certificates")
    task = asyncio.create_task(
        warn_expiring(lambda: [CONNECTOR, SERVER], check_every_s=0.01, clock=lambda: clock[0])
    )
    try:
        await asyncio.sleep(0.1)
        assert [r.getMessage() for r in caplog.records] == [
            "certificate expiry: " + warning_text(CONNECTOR, NOW)
        ]
        clock[0] = NOW + DAY
        await asyncio.sleep(0.1)
        assert len(caplog.records) == 2
        assert caplog.records[-1].getMessage().endswith(warning_text(CONNECTOR, NOW + DAY))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
