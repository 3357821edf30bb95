"""The real `pki` console script, run as a process: outputs, files, and one-line errors (exit 2)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

_SCRIPT = Path(sys.executable).parent / "pki"
PKI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "pki"]
REPO = Path(__file__).resolve().parents[2]


def pki(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "PKI_DIR"}
    full_env["PYTHONPATH"] = str(REPO)
    full_env.update(env or {})
    return subprocess.run(
        [*PKI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env=full_env,
    )


def assert_usage_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pki: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    result = pki("init", "--dir", directory)
    assert result.returncode == 0, result.stderr
    return directory


def test_init_writes_ca_files(ca_dir: Path) -> None:
    assert {"ca.crt", "ca.key", "crl.pem", "index.json"} <= {p.name for p in ca_dir.iterdir()}
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600


def test_second_init_exit_2_and_no_byte_changed(ca_dir: Path) -> None:
    assert pki("issue", "client", "office-1", "--dir", ca_dir).returncode == 0
    before = snapshot(ca_dir)
    assert_usage_error(pki("init", "--dir", ca_dir, "--name", "Other"), "already holds a CA")
    assert snapshot(ca_dir) == before


def test_issue_list_revoke_crl_roundtrip(ca_dir: Path) -> None:
    server = pki("issue", "server", "gateway", "--dns", "localhost", "--ip", "127.0.0.1",
                 "--ip", "::1", "--dir", ca_dir)  # fmt: skip
    assert server.returncode == 0, server.stderr
    assert "gateway.crt" in server.stdout
    client = pki("issue", "client", "office-1", "--days", "20", "--dir", ca_dir)
    assert client.returncode == 0, client.stderr
    for name in ("gateway", "office-1"):
        assert stat.S_IMODE((ca_dir / f"{name}.key").stat().st_mode) == 0o600
    assert_usage_error(pki("issue", "client", "office-1", "--dir", ca_dir), "live certificate")
    assert (
        pki("issue", "client", "office-1", "--force", "--days", "20", "--dir", ca_dir).returncode
        == 0
    )

    table = pki("list", "--dir", ca_dir)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == [
        "NAME",
        "KIND",
        "SERIAL",
        "NOT",
        "AFTER",
        "STATUS",
    ]
    assert "expiring" in table.stdout

    revoked = pki("revoke", "office-1", "--dir", ca_dir)
    assert revoked.returncode == 0, revoked.stderr
    listed = json.loads(pki("list", "--json", "--dir", ca_dir).stdout)
    assert sorted((r["name"], r["kind"], r["status"]) for r in listed) == [
        ("gateway", "server", "valid"),
        ("office-1", "client", "revoked"),
        ("office-1", "client", "revoked"),
    ]
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert len(crl) == 2
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    resigned = pki("crl", "--days", "3", "--dir", ca_dir)
    assert resigned.returncode == 0, resigned.stderr
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1


def test_dir_defaults_to_env_then_cwd(tmp_path: Path) -> None:
    env_dir = tmp_path / "from-env"
    assert pki("init", env={"PKI_DIR": str(env_dir)}, cwd=tmp_path).returncode == 0
    assert (env_dir / "ca.crt").exists()
    assert pki("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "pki" / "ca.crt").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("issue", "server", "gw", "--ip", "999.1.1.1"), ("bad IP address", "999.1.1.1")),
        (("issue", "server", "gw", "--dns", "bad_host!"), ("bad DNS name",)),
        (("issue", "server", "gw"), ("--dns or --ip",)),
        (("issue", "client", "../evil"), ("bad name",)),
        (("issue", "client", "x", "--days", "0"), ("--days",)),
        (("issue", "client", "x", "--days", "soon"), ("--days",)),
        (("crl", "--days", "-1"), ("--days",)),
        (("issue", "client", "y", "--days", "99999999"), ("--days", "36500")),
        (("issue", "server", "gw", "--ip", "127.0.0.1", "--days", "36501"), ("--days", "36500")),
        (("crl", "--days", "99999999"), ("--days", "36500")),
        (("init", "--days", "99999999"), ("--days", "36500")),
        (("revoke", "nobody"), ("unknown name", "nobody")),
        (("issue", "client", "x", "--bogus"), ("unrecognized arguments", "--bogus")),
        (("issue", "robot", "x"), ("invalid choice",)),
        (("frobnicate",), ("invalid choice",)),
        ((), ("required",)),
        (("issue",), ("required", "KIND")),
        (("issue", "client"), ("required", "NAME")),
    ],
)
def test_mistakes_are_one_line_exit_2(
    ca_dir: Path, args: tuple[str, ...], words: tuple[str, ...]
) -> None:
    before = snapshot(ca_dir)
    with_dir = ("issue", "crl", "revoke", "init")
    full = (*args, "--dir", str(ca_dir)) if args and args[0] in with_dir else args
    assert_usage_error(pki(*full), *words)
    after = snapshot(ca_dir)
    after.pop(".lock", None)
    before.pop(".lock", None)
    assert after == before


def test_init_huge_days_creates_nothing(tmp_path: Path) -> None:
    assert_usage_error(pki("init", "--dir", tmp_path / "q", "--days", "99999999"), "--days")
    assert not (tmp_path / "q").exists()


def test_days_bounds_end_to_end(tmp_path: Path) -> None:
    longest, short = tmp_path / "longest", tmp_path / "short"
    assert pki("init", "--dir", longest, "--days", "36500").returncode == 0
    assert pki("issue", "client", "c", "--days", "36400", "--dir", longest).returncode == 0
    assert pki("crl", "--days", "36500", "--dir", longest).returncode == 0
    assert pki("init", "--dir", short, "--days", "10").returncode == 0
    assert_usage_error(pki("issue", "client", "d", "--days", "11", "--dir", short), "outlive")


@pytest.mark.parametrize(
    "command", [("list",), ("issue", "client", "x"), ("revoke", "x"), ("crl",)]
)
def test_no_ca_in_dir(tmp_path: Path, command: tuple[str, ...]) -> None:
    assert_usage_error(pki(*command, "--dir", tmp_path / "empty"), "no CA in")
    assert not (tmp_path / "empty").exists()


def test_unwritable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert_usage_error(pki("init", "--dir", blocker / "pki"), "cannot write")


def test_dir_before_the_subcommand(ca_dir: Path) -> None:
    assert pki("--dir", ca_dir, "issue", "client", "office-1").returncode == 0
    assert pki("issue", "--dir", ca_dir, "server", "gw", "--ip", "127.0.0.1").returncode == 0
    listed = json.loads(pki("--dir", ca_dir, "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["gw", "office-1"]


def test_python_dash_m_pki(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pki", "init", "--dir", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "m" / "ca.crt").exists()
