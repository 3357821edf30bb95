"""CA behaviour: refusals, state, list statuses, validation, all-or-nothing writes."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from pki import CA, PKIError, _build


def _snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file's content hash and mode, by name."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(directory.iterdir())
    }


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA.init(tmp_path / "pki")


def test_second_init_refuses_and_changes_nothing(ca: CA) -> None:
    ca.issue_client("office-1")
    before = _snapshot(ca.directory)
    with pytest.raises(PKIError, match="already holds a CA"):
        CA.init(ca.directory)
    assert _snapshot(ca.directory) == before


def test_init_refuses_when_only_the_key_is_there(tmp_path: Path) -> None:
    (tmp_path / "ca.key").write_bytes(b"precious")
    with pytest.raises(PKIError, match=r"ca\.key"):
        CA.init(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key"]
    assert (tmp_path / "ca.key").read_bytes() == b"precious"


def test_load_roundtrip(ca: CA) -> None:
    loaded = CA.load(ca.directory)
    assert loaded.cert == ca.cert
    assert loaded.name == "Home LLM CA"


def test_load_without_ca_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(PKIError, match=r"no CA in .*ca\.crt not found"):
        CA.load(tmp_path)


def test_load_with_damaged_index(ca: CA) -> None:
    (ca.directory / "index.json").write_text("{not json")
    with pytest.raises(PKIError, match=r"index\.json is damaged"):
        CA.load(ca.directory)


def test_reissue_live_name_refused_unless_force(ca: CA) -> None:
    first = ca.issue_client("office-1")
    old_cert = first.cert_path.read_bytes()
    with pytest.raises(PKIError, match="already has a live certificate"):
        ca.issue_client("office-1")
    with pytest.raises(PKIError, match="already has a live certificate"):
        ca.issue_server("office-1", dns=["x.example"])  # same files: same rule
    assert first.cert_path.read_bytes() == old_cert
    second = ca.issue_client("office-1", force=True)
    assert second.serial != first.serial
    assert first.cert_path.read_bytes() != old_cert


def test_reissue_after_revoke_allowed(ca: CA) -> None:
    ca.issue_client("office-1")
    ca.revoke("office-1")
    again = ca.issue_client("office-1")
    statuses = {r.serial: r.status for r in ca.list()}
    assert statuses[again.serial] == "valid"
    assert sorted(statuses.values()) == ["revoked", "valid"]


def test_reissue_after_expiry_allowed(ca: CA) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    ca.issue_client("old", days=1, not_before=past)
    ca.issue_client("old")


def test_naive_not_before_is_utc(ca: CA) -> None:
    start = dt.datetime(2026, 1, 1, 12, 0, 0)  # naive on purpose
    issued = ca.issue_client("naive", days=1, not_before=start)
    assert issued.not_after == dt.datetime(2026, 1, 2, 12, 0, 0, tzinfo=dt.UTC)


def test_unknown_file_not_overwritten_without_force(ca: CA) -> None:
    stray = ca.directory / "stray.crt"
    stray.write_bytes(b"someone else's")
    with pytest.raises(PKIError, match="not issued here"):
        ca.issue_client("stray")
    assert stray.read_bytes() == b"someone else's"


def test_revoke_unknown_and_twice(ca: CA) -> None:
    with pytest.raises(PKIError, match="unknown name 'nobody'"):
        ca.revoke("nobody")
    ca.issue_client("office-1")
    ca.revoke("office-1")
    with pytest.raises(PKIError, match="already revoked"):
        ca.revoke("office-1")


def test_list_statuses(ca: CA) -> None:
    now = dt.datetime.now(dt.UTC)
    ca.issue_client("a-valid")
    ca.issue_client("b-expiring", days=10)
    ca.issue_client("c-expired", days=1, not_before=now - dt.timedelta(days=3))
    ca.issue_server("d-revoked", ips=["10.0.0.1"])
    ca.revoke("d-revoked")
    records = ca.list()
    assert [(r.name, r.kind, r.status) for r in records] == [
        ("a-valid", "client", "valid"),
        ("b-expiring", "client", "expiring"),
        ("c-expired", "client", "expired"),
        ("d-revoked", "server", "revoked"),
    ]
    assert records[3].revoked_at is not None
    assert ca.list(now=now + dt.timedelta(days=400))[0].status == "expired"


def test_index_records_what_list_needs(ca: CA) -> None:
    issued = ca.issue_client("office-1")
    doc = json.loads((ca.directory / "index.json").read_text())
    assert doc["certs"] == [
        {
            "name": "office-1",
            "kind": "client",
            "serial": format(issued.serial, "X"),
            "not_after": issued.not_after.isoformat(),
            "revoked_at": None,
        }
    ]


@pytest.mark.parametrize(
    "name", ["", "../x", "a/b", ".hidden", "ca", "CA", "index", "x" * 65, "a b", "é"]
)
def test_bad_names_refused(ca: CA, name: str) -> None:
    with pytest.raises(PKIError, match="bad name"):
        ca.issue_client(name)


@pytest.mark.parametrize(
    "host", ["-bad.example", "bad-.example", "a..b", "x_y.example", "", "ex ample", "bü.de"]
)
def test_bad_dns_refused(ca: CA, host: str) -> None:
    with pytest.raises(PKIError, match="bad DNS name"):
        ca.issue_server("gateway", dns=[host])


def test_good_dns_accepted() -> None:
    assert _build.check_dns("*.Example.org.") == "*.example.org"
    assert _build.check_dns("localhost") == "localhost"


@pytest.mark.parametrize("ip", ["300.1.1.1", "localhost", "1.2.3", ""])
def test_bad_ip_refused(ca: CA, ip: str) -> None:
    with pytest.raises(PKIError, match="bad IP address"):
        ca.issue_server("gateway", ips=[ip])


def test_server_needs_a_san(ca: CA) -> None:
    with pytest.raises(PKIError, match="at least one --dns or --ip"):
        ca.issue_server("gateway")


@pytest.mark.parametrize("days", [0, -1])
def test_bad_days_refused(ca: CA, days: int) -> None:
    with pytest.raises(PKIError, match="bad --days"):
        ca.issue_client("office-1", days=days)
    with pytest.raises(PKIError, match="bad --days"):
        ca.crl(days=days)


@pytest.mark.parametrize("days", [36501, 99999999, 10**30])
def test_huge_days_refused(ca: CA, tmp_path: Path, days: int) -> None:
    with pytest.raises(PKIError, match="bad --days"):
        ca.issue_client("office-1", days=days)
    with pytest.raises(PKIError, match="bad --days"):
        ca.crl(days=days)
    with pytest.raises(PKIError, match="bad --days"):
        CA.init(tmp_path / "other", days=days)
    assert not (tmp_path / "other").exists()


def test_end_past_year_9999_refused(ca: CA) -> None:
    late = dt.datetime(9999, 6, 1, tzinfo=dt.UTC)
    with pytest.raises(PKIError, match="year 9999"):
        ca.issue_client("office-1", days=36500, not_before=late)
    with pytest.raises(PKIError, match="year 9999"):
        ca.crl(days=36500, now=late)
    with pytest.raises(PKIError, match="year 9999"):
        ca.crl(days=1, now=dt.datetime(9999, 12, 31, 12, tzinfo=dt.UTC))


def test_leaf_may_not_outlive_ca(ca: CA) -> None:
    with pytest.raises(PKIError, match="outlive the CA"):
        ca.issue_client("office-1", days=4000)


def test_failed_issue_leaves_nothing_behind(ca: CA, monkeypatch: pytest.MonkeyPatch) -> None:
    before = _snapshot(ca.directory)
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the certificate, after the key was written
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(PKIError, match="No space left on device"):
        ca.issue_client("office-1")
    monkeypatch.undo()
    after = _snapshot(ca.directory)
    after.pop(".lock", None)
    assert after == before
    assert not list(ca.directory.glob(".*.tmp-*"))


def test_init_into_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(PKIError, match="cannot write"):
        CA.init(blocker / "pki")
    assert blocker.read_text() == "not a directory"


def test_failed_init_leaves_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(PKIError, match="Input/output error"):
        CA.init(tmp_path / "pki")
    assert not (tmp_path / "pki").exists()
