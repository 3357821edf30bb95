"""connector.toml and gateway.toml's [tunnel]: values checked, errors naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunnel.config import ConnectorConfig, ListenerConfig
from tunnel.dialers.auto import TLS, WS_HTTP, WS_HTTPS, ladder
from tunnel.errors import ConfigError

CONNECTOR_TOML = """
[gateway]
address = "minipc.example.org:443"
server_name = "minipc.example.org"
ca = "ca.crt"
cert = "office-1.crt"
key = "/etc/llm/office-1.key"
proxy = "http://proxy.corp:8080"
connections = 2
transport = "auto"
websocket_url = "https://minipc.example.org/.well-known/llm-tunnel"
proxy_ca = "corp-proxy-ca.crt"
ping_interval_s = 15
ping_timeout_s = 10

[upstreams.office-llm]
url = "http://172.21.113.31:4000/"
api_key_env = "OFFICE_LLM_KEY"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connector.toml"
    path.write_text(text)
    return path


def test_the_documented_connector_toml_loads(tmp_path: Path) -> None:
    cfg = ConnectorConfig.load(write(tmp_path, CONNECTOR_TOML))
    assert (cfg.host, cfg.port, cfg.server_name) == (
        "minipc.example.org",
        443,
        "minipc.example.org",
    )
    assert cfg.ca == tmp_path.resolve() / "ca.crt"  # relative to the file
    assert cfg.key == Path("/etc/llm/office-1.key")
    assert cfg.proxy_ca == tmp_path.resolve() / "corp-proxy-ca.crt"
    assert (cfg.connections, cfg.transport, cfg.ping_interval_s) == (2, "auto", 15.0)
    up = cfg.upstreams["office-llm"]
    assert up.url == "http://172.21.113.31:4000"
    assert up.credential({"OFFICE_LLM_KEY": "sk-1"}) == "sk-1"
    assert up.credential({}) == ""
    assert cfg.drain_timeout_s == 10.0


BAD_CONNECTOR_VALUES = [
    ("ping_interval_s = 15", "ping_interval_s = 0", "gateway.ping_interval_s", "positive number"),
    ("ping_timeout_s = 10", 'ping_timeout_s = "10"', "gateway.ping_timeout_s", "positive number"),
    ("connections = 2", "connections = 0", "gateway.connections", "whole number >= 1"),
    ('transport = "auto"', 'transport = "udp"', "gateway.transport", "one of tls, websocket, auto"),
    ('address = "minipc.example.org:443"', 'address = "x"', "gateway.address", "HOST:PORT"),
    ("connections = 2", "conections = 2", "gateway.conections", "unknown key"),
    ('url = "http://172.21.113.31:4000/"', 'url = "ftp://x"', "upstreams.office-llm.url", "http"),
    (
        'api_key_env = "OFFICE_LLM_KEY"',
        "api_key_env = 1",
        "upstreams.office-llm.api_key_env",
        "str",
    ),
    ('ca = "ca.crt"', "", "gateway.ca", "is required"),
]


@pytest.mark.parametrize(("old", "new", "key", "words"), BAD_CONNECTOR_VALUES)
def test_bad_connector_values_name_their_key(
    tmp_path: Path, old: str, new: str, key: str, words: str
) -> None:
    text = CONNECTOR_TOML.replace(old, new)
    with pytest.raises(ConfigError) as caught:
        ConnectorConfig.load(write(tmp_path, text))
    assert str(caught.value).startswith(f"connector.toml: {key}: ")
    assert words in str(caught.value)


def test_unknown_sections_and_missing_upstreams(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"connector\.toml: extra: unknown key"):
        ConnectorConfig.load(write(tmp_path, CONNECTOR_TOML + "\n[extra]\na = 1\n"))
    no_upstreams = CONNECTOR_TOML.split("[upstreams", maxsplit=1)[0]
    with pytest.raises(ConfigError, match="upstreams: at least one"):
        ConnectorConfig.load(write(tmp_path, no_upstreams))


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        ConnectorConfig.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ConnectorConfig.load(write(tmp_path, "[gateway\n"))


LISTENER: dict[str, Any] = {
    "listen": "0.0.0.0:9443",
    "cert": "pki/gateway.crt",
    "key": "pki/gateway.key",
    "ca": "pki/ca.crt",
    "crl": "pki/crl.pem",
    "allowed_connectors": ["office-1"],
    "ping_interval_s": 15,
    "ping_timeout_s": 10,
    "websocket_path": "/.well-known/llm-tunnel",
    "websocket_http_listen": "",
}


def test_the_documented_tunnel_table_loads(tmp_path: Path) -> None:
    cfg = ListenerConfig.from_table(LISTENER, tmp_path)
    assert (cfg.host, cfg.port) == ("0.0.0.0", 9443)
    assert cfg.crl == tmp_path / "pki/crl.pem"
    assert cfg.allowed_connectors == ("office-1",)
    assert cfg.listen == "0.0.0.0:9443"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("ping_timeout_s", -1, "tunnel.ping_timeout_s: must be a positive number"),
        ("allowed_connectors", "office-1", "tunnel.allowed_connectors: must be a list of names"),
        ("listen", "9443", "tunnel.listen: must be HOST:PORT"),
        ("websocket_path", "x", "tunnel.websocket_path: must start with /"),
        ("websocket_http_listen", "nope", "tunnel.websocket_http_listen: must be HOST:PORT"),
        ("alowed_connectors", [], "tunnel.alowed_connectors: unknown key"),
    ],
)
def test_bad_tunnel_values_name_their_key(
    tmp_path: Path, key: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ListenerConfig.from_table({**LISTENER, key: value}, tmp_path)


def test_tunnel_table_requires_its_certificates(tmp_path: Path) -> None:
    table = {k: v for k, v in LISTENER.items() if k != "cert"}
    with pytest.raises(ConfigError, match=r"tunnel\.cert: is required"):
        ListenerConfig.from_table(table, tmp_path)


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Notepad writes one at the start of a UTF-8 file; tomllib alone refuses it."""
    path = tmp_path / "connector.toml"
    path.write_bytes(b"\xef\xbb\xbf" + CONNECTOR_TOML.encode())
    assert ConnectorConfig.load(path).server_name == "minipc.example.org"
    path.write_bytes(CONNECTOR_TOML.encode("utf-16"))
    with pytest.raises(ConfigError, match=r"^connector\.toml: not valid UTF-8"):
        ConnectorConfig.load(path)


def test_websocket_http_url_and_auto_retry(tmp_path: Path) -> None:
    text = CONNECTOR_TOML.replace(
        "ping_interval_s = 15",
        'ping_interval_s = 15\nwebsocket_http_url = "http://minipc.example.org:8080/t"\n'
        "auto_retry_s = 1.5",
    )
    cfg = ConnectorConfig.load(write(tmp_path, text))
    assert cfg.websocket_http_url == "http://minipc.example.org:8080/t"
    assert cfg.auto_retry_s == 1.5
    assert [(r.name, r.url) for r in ladder(cfg)] == [
        (TLS, ""),
        (WS_HTTPS, "https://minipc.example.org/.well-known/llm-tunnel"),
        (WS_HTTP, "http://minipc.example.org:8080/t"),  # not the https URL's port-80 twin
    ]
    defaults = ConnectorConfig.load(write(tmp_path, CONNECTOR_TOML))
    assert (defaults.websocket_http_url, defaults.auto_retry_s) == ("", 300.0)


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('websocket_http_url = "https://h/t"', "gateway.websocket_http_url", "http:// or ws://"),
        ('websocket_http_url = "http:///t"', "gateway.websocket_http_url", "has no host"),
        ("websocket_http_url = 8080", "gateway.websocket_http_url", "must be a string"),
        ('websocket_url = "ftp://h/t"', "gateway.websocket_url", "https:// or http://"),
        ("auto_retry_s = 0", "gateway.auto_retry_s", "positive number"),
    ],
)
def test_bad_websocket_urls_name_their_key(tmp_path: Path, line: str, key: str, words: str) -> None:
    text = CONNECTOR_TOML.replace("ping_interval_s = 15", f"ping_interval_s = 15\n{line}")
    if line.startswith("websocket_url"):
        text = text.replace('websocket_url = "https://minipc', '# websocket_url = "https://')
    with pytest.raises(ConfigError) as caught:
        ConnectorConfig.load(write(tmp_path, text))
    assert str(caught.value).startswith(f"connector.toml: {key}: ")
    assert words in str(caught.value)


def test_the_tunnel_table_requires_a_crl(tmp_path: Path) -> None:
    """Without one, revocation would be silently off."""
    table = {k: v for k, v in LISTENER.items() if k != "crl"}
    with pytest.raises(ConfigError, match=r"^tunnel\.crl: is required .*crl = false") as info:
        ListenerConfig.from_table(table, tmp_path)
    assert "\n" not in str(info.value)


def test_crl_false_turns_revocation_off_on_purpose(tmp_path: Path) -> None:
    assert ListenerConfig.from_table({**LISTENER, "crl": False}, tmp_path).crl is None


@pytest.mark.parametrize(("value", "words"), [(True, "must be a path"), ("", "must not be empty"),
                                              (3, "must be a path")])  # fmt: skip
def test_other_crl_values_are_refused(tmp_path: Path, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=rf"^tunnel\.crl: {words}"):
        ListenerConfig.from_table({**LISTENER, "crl": value}, tmp_path)
