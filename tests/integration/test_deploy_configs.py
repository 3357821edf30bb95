"""The example configs in deploy/ load: `gateway check -c` and the connector's config loader.

They are copied to a tmp dir with their /etc/... and /var/lib/... paths moved under it and the
certificates they name made there by `pki`, so each example is checked exactly as written.
The Windows service definition is parsed as XML (it cannot run here).
"""

from __future__ import annotations

import re
import shutil
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pki import CA
from tests.support.procs import REPO_ROOT, run_command
from tunnel.config import ConnectorConfig
from tunnel.errors import ConfigError

DEPLOY = REPO_ROOT / "deploy"
GATEWAY_PREFIXES = ("/etc/llm-gateway", "/var/lib/llm-gateway")
CONNECTOR_PREFIX = "/etc/llm-connector"


def moved(text: str, prefixes: tuple[str, ...], root: Path) -> str:
    """TEXT with every absolute install path under PREFIXES moved below ROOT."""
    for prefix in prefixes:
        text = text.replace(prefix, str(root) + prefix)
    return text


def uncomment_jwt(text: str) -> str:
    """The example's commented-out [[auth.jwt]] block, switched on."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("# [[auth.jwt]]"):
            inside = True
        if inside and not line.startswith("# "):
            inside = False
        out.append(line[2:] if inside else line)
    return "\n".join(out) + "\n"


def make_gateway_pki(root: Path) -> Path:
    pki_dir = root / "etc/llm-gateway/pki"
    ca = CA.init(pki_dir, name="Home LLM CA")
    ca.issue_server("gateway", dns=["minipc.example.org"])
    ca.issue_client("office-1")
    (root / "var/lib/llm-gateway").mkdir(parents=True)
    return pki_dir


def keys_of(path: Path) -> set[str]:
    """Every dotted key set in the TOML file at PATH (tables flattened)."""

    def walk(table: dict[str, object], prefix: str) -> set[str]:
        found: set[str] = set()
        for key, value in table.items():
            if isinstance(value, dict):
                found |= walk(value, f"{prefix}{key}.")
            else:
                found.add(prefix + key)
        return found

    return walk(tomllib.loads(path.read_text()), "")


# --------------------------------------------------------------------------- gateway.toml


def test_gateway_example_passes_gateway_check(tmp_path: Path) -> None:
    make_gateway_pki(tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(moved((DEPLOY / "gateway.toml").read_text(), GATEWAY_PREFIXES, tmp_path))
    done = run_command("gateway", "check", "-c", str(config))
    assert done.returncode == 0, done.stderr


def test_gateway_example_with_its_jwt_block_switched_on_passes(tmp_path: Path) -> None:
    pki_dir = make_gateway_pki(tmp_path)
    shutil.copyfile(pki_dir / "ca.crt", tmp_path / "etc/llm-gateway/idp-ca.pem")
    text = uncomment_jwt((DEPLOY / "gateway.toml").read_text())
    assert "\n[[auth.jwt]]\n" in text
    config = tmp_path / "gateway.toml"
    config.write_text(moved(text, GATEWAY_PREFIXES, tmp_path))
    done = run_command("gateway", "check", "-c", str(config))
    assert done.returncode == 0, done.stderr


def test_gateway_check_names_a_misspelt_key_in_the_example(tmp_path: Path) -> None:
    """The failure twin: the same example with one key misspelt is refused, naming it."""
    make_gateway_pki(tmp_path)
    text = moved((DEPLOY / "gateway.toml").read_text(), GATEWAY_PREFIXES, tmp_path)
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace("ping_interval_s =", "ping_intervall_s =", 1))
    done = run_command("gateway", "check", "-c", str(config))
    assert done.returncode == 2
    assert "ping_intervall_s" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- connector.toml


def connector_example(root: Path) -> Path:
    pki_dir = root / "home-pki"
    ca = CA.init(pki_dir, name="Home LLM CA")
    ca.issue_client("office-1")
    etc = root / "etc/llm-connector"
    etc.mkdir(parents=True)
    for name in ("ca.crt", "office-1.crt", "office-1.key"):
        shutil.copyfile(pki_dir / name, etc / name)
    config = etc / "connector.toml"
    config.write_text(moved((DEPLOY / "connector.toml").read_text(), (CONNECTOR_PREFIX,), root))
    return config


def test_connector_example_loads(tmp_path: Path) -> None:
    config = ConnectorConfig.load(connector_example(tmp_path))
    assert config.address == "minipc.example.org:443"
    assert config.server_name == "minipc.example.org"
    assert config.transport == "auto"
    assert config.proxy == "http://proxy.corp:8080"
    assert config.cert == tmp_path / "etc/llm-connector/office-1.crt"
    assert config.upstreams["office-llm"].url == "http://172.21.113.31:4000"
    assert config.upstreams["office-llm"].api_key_env == "OFFICE_LLM_KEY"


def test_connector_example_with_windows_plain_names_loads(tmp_path: Path) -> None:
    """What deploy/windows/install.ps1 writes: the example with bare file names."""
    config_path = connector_example(tmp_path)
    text = (DEPLOY / "connector.toml").read_text().replace(CONNECTOR_PREFIX + "/", "")
    config_path.write_text(text)
    config = ConnectorConfig.load(config_path)
    assert config.ca == config_path.parent / "ca.crt"


def test_connector_loader_names_a_misspelt_key_in_the_example(tmp_path: Path) -> None:
    config_path = connector_example(tmp_path)
    config_path.write_text(config_path.read_text().replace("server_name =", "servername =", 1))
    with pytest.raises(ConfigError, match="servername"):
        ConnectorConfig.load(config_path)


# --------------------------------------------------------------------------- every key explained


@pytest.mark.parametrize("name", ["gateway.toml", "connector.toml"])
def test_every_key_of_the_examples_has_a_comment(name: str) -> None:
    """Each key has an inline comment, or a comment right above the group of keys it is in."""
    lines = (DEPLOY / name).read_text().splitlines()
    is_key = re.compile(r"^[a-z_]+ = ").match
    for number, line in enumerate(lines):
        if not is_key(line) or "#" in line:
            continue
        above = number - 1
        while above >= 0 and is_key(lines[above]):
            above -= 1
        assert lines[max(above, 0)].startswith("#"), f"{name}:{number + 1}: {line!r}"


def test_examples_use_the_design_key_names() -> None:
    """The keys DESIGN.md fixes are all shown (the docs and deploy files are written to them)."""
    gateway_keys = keys_of(DEPLOY / "gateway.toml")
    for key in (
        "server.listen", "server.cert", "server.key", "server.max_body_bytes", "admin.listen",
        "tunnel.listen", "tunnel.ca", "tunnel.crl", "tunnel.allowed_connectors",
        "tunnel.ping_interval_s", "tunnel.websocket_path", "tunnel.websocket_http_listen",
        "auth.keys_db", "limits.storage", "limits.rpm", "limits.tpm", "limits.concurrency",
        "models.qwen3-coder.upstream", "models.qwen3-coder.model",
    ):  # fmt: skip
        assert key in gateway_keys, key
    connector_keys = keys_of(DEPLOY / "connector.toml")
    for key in (
        "gateway.address", "gateway.server_name", "gateway.ca", "gateway.cert", "gateway.key",
        "gateway.proxy", "gateway.connections", "gateway.transport", "gateway.websocket_url",
        "gateway.ping_interval_s", "gateway.ping_timeout_s", "upstreams.office-llm.url",
        "upstreams.office-llm.api_key_env",
    ):  # fmt: skip
        assert key in connector_keys, key


# --------------------------------------------------------------------------- Windows service


def test_windows_service_definition_runs_the_connector_with_the_programdata_config() -> None:
    root = ET.parse(DEPLOY / "windows/llm-connector.xml").getroot()
    assert root.tag == "service"
    assert root.findtext("id") == "llm-connector"
    executable = root.findtext("executable") or ""
    assert executable.endswith("\\venv\\Scripts\\connector.exe")
    arguments = root.findtext("arguments") or ""
    assert arguments == 'run -c "C:\\ProgramData\\llm-connector\\connector.toml"'
    assert root.findtext("startmode") == "Automatic"
    assert [e.get("action") for e in root.findall("onfailure")] == ["restart", "restart"]
    assert root.findtext("stoptimeout") == "15 sec"
    account = root.find("serviceaccount")
    assert account is not None
    assert account.findtext("user") == "LocalService"
    log = root.find("log")
    assert log is not None
    assert log.get("mode") == "roll-by-size"


def test_windows_scripts_name_the_same_paths_as_the_service_definition() -> None:
    install = (DEPLOY / "windows/install.ps1").read_text()
    uninstall = (DEPLOY / "windows/uninstall.ps1").read_text()
    for script in (install, uninstall):
        assert '$ServiceId = "llm-connector"' in script
        assert '$InstallDir = Join-Path $env:ProgramFiles "llm-connector"' in script
        assert '$DataDir = Join-Path $env:ProgramData "llm-connector"' in script
    assert '"Scripts\\connector.exe"' in install
    assert "#Requires -RunAsAdministrator" in install
