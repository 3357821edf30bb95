"""`openssl verify` agrees with pki: it accepts what pki issues and rejects the wrong uses."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest

from pki import CA
from tests.support.pki_fixtures import PkiPaths, make_pki

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def verify(paths: PkiPaths, cert: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    cmd = [OPENSSL, "verify", "-CAfile", str(paths.ca_cert), *extra, str(cert)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def paths(tmp_path: Path) -> PkiPaths:
    return make_pki(tmp_path / "pki")


def test_openssl_accepts_server_and_client(paths: PkiPaths) -> None:
    for cert, purpose in ((paths.server_cert, "sslserver"), (paths.client_cert, "sslclient")):
        for extra in ((), ("-purpose", purpose), ("-crl_check", "-CRLfile", str(paths.crl))):
            result = verify(paths, cert, *extra)
            assert result.returncode == 0, result.stderr + result.stdout
            assert result.stdout.strip() == f"{cert}: OK"


def test_openssl_rejects_wrong_purpose(paths: PkiPaths) -> None:
    result = verify(paths, paths.server_cert, "-purpose", "sslclient")
    assert result.returncode != 0
    assert "unsuitable certificate purpose" in result.stdout + result.stderr
    result = verify(paths, paths.client_cert, "-purpose", "sslserver")
    assert result.returncode != 0
    assert "unsuitable certificate purpose" in result.stdout + result.stderr


def test_openssl_rejects_revoked_with_crl_check(paths: PkiPaths) -> None:
    CA.load(paths.dir).revoke("office-1")
    result = verify(paths, paths.client_cert, "-crl_check", "-CRLfile", str(paths.crl))
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr
    result = verify(paths, paths.server_cert, "-crl_check", "-CRLfile", str(paths.crl))
    assert result.returncode == 0, result.stdout + result.stderr


def test_openssl_rejects_expired(paths: PkiPaths) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    CA.load(paths.dir).issue_client("old", days=2, not_before=past)
    result = verify(paths, paths.cert("old"))
    assert result.returncode != 0
    assert "certificate has expired" in result.stdout + result.stderr


def test_openssl_rejects_stale_crl(paths: PkiPaths) -> None:
    """A CRL past its nextUpdate fails -crl_check: why `pki crl` must run from a timer."""
    long_ago = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=30)
    CA.load(paths.dir).crl(days=7, now=long_ago)
    result = verify(paths, paths.client_cert, "-crl_check", "-CRLfile", str(paths.crl))
    assert result.returncode != 0
    assert "CRL has expired" in result.stdout + result.stderr
    CA.load(paths.dir).crl()
    result = verify(paths, paths.client_cert, "-crl_check", "-CRLfile", str(paths.crl))
    assert result.returncode == 0, result.stdout + result.stderr
