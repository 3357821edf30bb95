"""deploy/systemd units pass `systemd-analyze verify` with no warning, keep their hardening, and
deploy/healthcheck.sh tells ready / not ready / down apart against a real HTTP server."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "deploy" / "systemd"
HEALTHCHECK = REPO / "deploy" / "healthcheck.sh"
VENV_BIN = Path(sys.executable).parent
SERVICES = ["llm-gateway", "llm-connector", "pki-crl", "llm-gateway-health"]
TIMERS = ["pki-crl", "llm-gateway-health"]
LONG_RUNNING = ["llm-gateway", "llm-connector"]
# Where the units expect the installed programs -> where this checkout has them.
INSTALLED = {
    "/opt/llm-gateway/bin/gateway": VENV_BIN / "gateway",
    "/opt/llm-gateway/bin/pki": VENV_BIN / "pki",
    "/opt/llm-connector/bin/connector": VENV_BIN / "connector",
    "/usr/local/bin/llm-gateway-healthcheck": HEALTHCHECK,
}
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def unit_settings(path: Path) -> dict[str, list[str]]:
    """KEY -> values (a key may repeat), ignoring comments and section headers."""
    settings: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def unit_files() -> list[Path]:
    return [UNITS / f"{n}.service" for n in SERVICES] + [UNITS / f"{n}.timer" for n in TIMERS]


@pytest.fixture
def installed_units(tmp_path: Path) -> list[Path]:
    """The units copied to TMP with ExecStart= pointing at this checkout's programs."""
    copies = []
    for unit in unit_files():
        text = unit.read_text()
        for installed, local in INSTALLED.items():
            assert local.exists(), local
            text = text.replace(f"ExecStart={installed} ", f"ExecStart={local} ")
        copy = tmp_path / unit.name
        copy.write_text(text)
        copies.append(copy)
    for copy in copies:
        for start in unit_settings(copy).get("ExecStart", []):
            program = Path(start.split()[0])
            assert program.exists(), f"{copy.name}: ExecStart program {program} not mapped"
    return copies


def analyze(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *map(str, args)], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


@needs_analyze
def test_units_verify_without_warnings(installed_units: list[Path], tmp_path: Path) -> None:
    result = analyze("verify", "--man=no", *installed_units, cwd=tmp_path)
    output = result.stdout + result.stderr
    ours = [line for line in output.splitlines() if any(u.name in line for u in installed_units)]
    assert ours == [], output
    assert result.returncode == 0, output


@needs_analyze
def test_verify_catches_a_broken_unit(installed_units: list[Path], tmp_path: Path) -> None:
    """The twin: the same check reports a misspelt key, so the test above can fail."""
    broken = installed_units[0]
    broken.write_text(broken.read_text().replace("PrivateTmp=yes", "PrivateTemp=yes"))
    result = analyze("verify", "--man=no", broken, cwd=tmp_path)
    assert "Unknown key 'PrivateTemp'" in result.stdout + result.stderr


@needs_analyze
@pytest.mark.parametrize("service", SERVICES)
def test_units_security_exposure_ok(
    installed_units: list[Path], tmp_path: Path, service: str
) -> None:
    result = analyze(
        "security", "--offline=yes", "--threshold=30", f"{service}.service", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert " OK " in last, last


@pytest.mark.parametrize("service", SERVICES)
def test_services_are_hardened(service: str) -> None:
    settings = unit_settings(UNITS / f"{service}.service")
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert settings.get(key) == [value], f"{service}: {key}"
    assert "User" in settings or settings.get("DynamicUser") == ["yes"], service
    assert settings.get("User") != ["root"]
    if service in LONG_RUNNING:
        assert settings.get("Restart") == ["always"]
        assert "RestartSec" in settings
        assert "ReadWritePaths" in settings


def test_commands_match_the_design() -> None:
    def start(name: str) -> str:
        return unit_settings(UNITS / f"{name}.service")["ExecStart"][0]

    assert start("llm-gateway").endswith("gateway serve -c /etc/llm-gateway/gateway.toml")
    assert start("llm-connector").endswith("connector run -c /etc/llm-connector/connector.toml")
    assert start("pki-crl").endswith("pki crl --dir /etc/llm-gateway/pki")
    assert unit_settings(UNITS / "pki-crl.service")["ReadWritePaths"] == ["/etc/llm-gateway/pki"]


SYSUSERS = shutil.which("systemd-sysusers")


@pytest.mark.skipif(SYSUSERS is None, reason="systemd-sysusers is not installed")
def test_sysusers_files_parse(tmp_path: Path) -> None:
    assert SYSUSERS is not None
    (tmp_path / "etc").mkdir()
    confs = sorted((UNITS / "sysusers.d").glob("*.conf"))
    result = subprocess.run(
        [SYSUSERS, f"--root={tmp_path}", "--dry-run", *map(str, confs)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for user in ("llm-gateway", "llm-connector"):
        assert f"Creating user '{user}'" in result.stdout + result.stderr
    users = {u for s in SERVICES for u in unit_settings(UNITS / f"{s}.service").get("User", [])}
    assert users == {"llm-gateway", "llm-connector"}


# -- deploy/healthcheck.sh against a real HTTP server on loopback ------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    statuses: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        status = self.statuses.get(self.path, 404)
        body = b'{"status": "ok"}' if status == 200 else b'{"tunnels": []}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def admin_server() -> Iterator[tuple[str, dict[str, int]]]:
    statuses: dict[str, int] = {}

    class Handler(_Handler):
        pass

    Handler.statuses = statuses
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", statuses
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def healthcheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HEALTHCHECK), *args], capture_output=True, text=True, timeout=60, check=False
    )


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
@pytest.mark.parametrize(
    ("healthz", "readyz", "code", "word"),
    [(200, 200, 0, "ready:"), (200, 503, 1, "not ready:"), (500, 200, 3, "down:")],
)
def test_healthcheck_states(
    admin_server: tuple[str, dict[str, int]], healthz: int, readyz: int, code: int, word: str
) -> None:
    url, statuses = admin_server
    statuses.update({"/healthz": healthz, "/readyz": readyz})
    result = healthcheck("--url", url + "/", "--timeout", "5")
    assert result.returncode == code, result
    assert (result.stdout + result.stderr).startswith(word)


@needs_curl
def test_healthcheck_nothing_listening() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = healthcheck("--url", f"http://127.0.0.1:{port}", "--timeout", "5")
    assert result.returncode == 3, result
    assert result.stderr.startswith("down:")


@pytest.mark.parametrize(
    "args", [("--timeout", "0"), ("--timeout", "x"), ("--url", "ftp://x"), ("--what",), ("--url",)]
)
def test_healthcheck_usage_errors(args: tuple[str, ...]) -> None:
    result = healthcheck(*args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("healthcheck: error: ")
    assert len(result.stderr.splitlines()) == 1
