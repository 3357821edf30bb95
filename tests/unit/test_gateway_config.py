"""gateway.toml: defaults, relative paths, and every mistake named by its key."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    DEFAULT_WEBSOCKET_PATH,
    ModelRoute,
    check_files,
    config_from_table,
    load_config,
)
from gateway.config_table import parse_listen
from gateway.errors import ConfigError

BASE = Path("/etc/gw")


def minimal(**sections: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "server": {"cert": "pki/gateway.crt", "key": "pki/gateway.key"},
        "tunnel": {
            "cert": "pki/gateway.crt",
            "key": "pki/gateway.key",
            "ca": "pki/ca.crt",
            "crl": "pki/crl.pem",
            "allowed_connectors": ["office-1"],
        },
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(table.get(name), dict):
            table[name] = {**table[name], **value}
        else:
            table[name] = value
    return table


def load(table: dict[str, Any]) -> Any:
    return config_from_table(table, BASE / "gateway.toml")


def test_defaults_and_relative_paths() -> None:
    cfg = load(minimal())
    assert cfg.server.listen == ("0.0.0.0", 8443)
    assert cfg.server.cert == BASE / "pki/gateway.crt"
    assert cfg.server.max_body_bytes == 4 * 1024 * 1024  # a 256k-token context is ~1 MB
    assert cfg.server.sse_keepalive_s == 5.0
    assert cfg.server.trusted_proxies == ()
    assert (cfg.server.header_timeout_s, cfg.server.max_connections_per_ip) == (15.0, 64)
    assert cfg.admin.listen == ("127.0.0.1", 9100)
    assert cfg.auth.keys_db == BASE / "gateway.db"
    assert cfg.auth.jwt == ()
    assert (cfg.limits.storage, cfg.limits.rpm, cfg.limits.tpm, cfg.limits.concurrency) == (
        "memory://", 60, 100_000, 4,
    )  # fmt: skip
    assert cfg.log.access_log is None
    assert cfg.log.log_prompts is False
    assert cfg.websocket_path == DEFAULT_WEBSOCKET_PATH
    assert cfg.websocket_http_listen is None
    assert cfg.tunnel.port == 9443


def test_full_config() -> None:
    cfg = load(
        minimal(
            server={"listen": "[::1]:443", "trusted_proxies": ["10.0.0.0/8", "127.0.0.1"]},
            admin={"listen": ""},
            auth={
                "jwt": [
                    {"issuer": "https://idp", "audience": "llm", "jwks_file": "jwks.json",
                     "models_claim": "llm_models", "leeway_s": 5},
                ]
            },
            limits={"storage": "redis://127.0.0.1:6379/0", "rpm": 0},
            models={
                "qwen3-coder": {"upstream": "office-llm", "model": "Qwen/Q"},
                "m": {"upstream": "u", "messages_api": "translate"},
            },
            log={"access_log": "/var/log/gw.jsonl", "level": "DEBUG", "log_prompts": True},
            tunnel={"websocket_http_listen": "0.0.0.0:8080", "websocket_path": "/ws"},
        )
    )  # fmt: skip
    assert cfg.server.listen == ("::1", 443)
    assert cfg.server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"),
    )  # fmt: skip
    assert cfg.admin.listen is None
    issuer = cfg.auth.jwt[0]
    assert issuer.jwks_file == BASE / "jwks.json"
    assert issuer.algorithms == ("RS256", "ES256")
    assert (issuer.identity_claim, issuer.models_claim, issuer.leeway_s) == (
        "sub",
        "llm_models",
        5.0,
    )
    assert cfg.models == {
        "qwen3-coder": ModelRoute("office-llm", "Qwen/Q"),
        "m": ModelRoute("u", "m", messages_api="translate"),
    }
    assert cfg.models["qwen3-coder"].messages_api == "native"  # the default
    assert cfg.log.access_log == Path("/var/log/gw.jsonl")
    assert cfg.log.level == "debug"
    assert cfg.websocket_http_listen == ("0.0.0.0", 8080)
    assert cfg.websocket_path == "/ws"


JWT = {"issuer": "https://idp", "audience": "llm", "jwks_url": "https://idp/certs"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (minimal(serverr={}), "serverr: unknown key"),
        (minimal(server={"lisen": "x"}), "server.lisen: unknown key"),
        (minimal(server={"listen": "8443"}), 'server.listen: expected "host:port"'),
        (minimal(server={"listen": "h:99999"}), "server.listen: port 99999 is out of range"),
        (minimal(server={"cert": 3}), "server.cert: expected a string"),
        (
            {"server": {"key": "k"}, "tunnel": minimal()["tunnel"]},
            "server.cert: missing (required)",
        ),
        (minimal(server={"max_body_bytes": True}), "server.max_body_bytes: expected an integer"),
        (minimal(server={"max_body_bytes": 10}), "server.max_body_bytes: must be at least 1024"),
        (minimal(server={"trusted_proxies": ["nope"]}), "server.trusted_proxies: 'nope' is not"),
        (minimal(server={"sse_keepalive_s": "5"}), "server.sse_keepalive_s: expected a number"),
        (minimal(server={"header_timeout_s": 0}), "server.header_timeout_s: must be at least 0.5"),
        (
            minimal(server={"max_connections_per_ip": -1}),
            "server.max_connections_per_ip: must be at least 0",
        ),
        (minimal(admin={"listen": "x"}), "admin.listen:"),
        (minimal(auth={"keys_db": ""}), "auth.keys_db: expected a file path"),
        (minimal(auth={"jwt": {"issuer": "x"}}), "auth.jwt: expected [[auth.jwt]] tables"),
        (minimal(auth={"jwt": [{**JWT, "alg": 1}]}), "auth.jwt[0].alg: unknown key"),
        (
            minimal(auth={"jwt": [{**JWT, "audience": ""}]}),
            "auth.jwt[0].audience: must not be empty",
        ),
        (
            minimal(auth={"jwt": [{"issuer": "i", "audience": "a"}]}),
            "auth.jwt[0].jwks_url: set exactly one",
        ),
        (
            minimal(auth={"jwt": [{**JWT, "jwks_url": "http://idp"}]}),
            "auth.jwt[0].jwks_url: must be an https",
        ),
        (
            minimal(auth={"jwt": [{**JWT, "algorithms": ["none"]}]}),
            "auth.jwt[0].algorithms: unsupported algorithm 'none'",
        ),
        (
            minimal(auth={"jwt": [{**JWT, "algorithms": ["RS256", "HS256"]}]}),
            "auth.jwt[0].algorithms: unsupported algorithm 'HS256'",
        ),
        (minimal(limits={"storage": "mongodb://x"}), "limits.storage: expected"),
        (minimal(limits={"rpm": -1}), "limits.rpm: must be at least 0"),
        (minimal(limits={"burst": 1}), "limits.burst: unknown key"),
        (minimal(models={"a": {"model": "x"}}), "models.a.upstream: missing (required)"),
        (minimal(models={"a": {"upstream": "u", "extra": 1}}), "models.a.extra: unknown key"),
        (minimal(models={"a": "u"}), "models.a: expected a table"),
        (
            minimal(models={"a": {"upstream": "u", "messages_api": "openai"}}),
            'models.a.messages_api: expected "native" or "translate"',
        ),
        (minimal(log={"level": "loud"}), "log.level: expected one of"),
        (minimal(log={"log_prompts": "yes"}), "log.log_prompts: expected true or false"),
        (minimal(tunnel={"websocket_path": "ws"}), "tunnel.websocket_path:"),
        (minimal(tunnel={"websocket_http_listen": "nope"}), "tunnel.websocket_http_listen:"),
        (minimal(tunnel={"allowed_connector": []}), "tunnel.allowed_connector"),
    ],
)
def test_mistakes_name_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(table)
    assert str(info.value).startswith(message), str(info.value)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match=r"bin\.toml: not UTF-8 text \(byte 0\)"):
        load_config(binary)


def test_check_files(tmp_path: Path) -> None:
    cfg = config_from_table(minimal(), tmp_path / "gateway.toml")
    with pytest.raises(ConfigError, match=r"^server.cert: file not found"):
        check_files(cfg)
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki/gateway.crt").write_text("x")
    (tmp_path / "pki/gateway.key").write_text("x")
    check_files(cfg)


def test_keys_db_folder_is_created_on_first_use_so_check_accepts_it(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki/gateway.crt").write_text("x")
    (tmp_path / "pki/gateway.key").write_text("x")
    table = minimal(auth={"keys_db": "state/deep/gateway.db"})
    check_files(config_from_table(table, tmp_path / "gateway.toml"))  # folder missing: fine
    (tmp_path / "state").write_text("a file, not a folder")
    with pytest.raises(ConfigError, match=r"^auth.keys_db: not a folder: .*state$"):
        check_files(config_from_table(table, tmp_path / "gateway.toml"))
    dir_table = minimal(auth={"keys_db": "pki"})
    with pytest.raises(ConfigError, match=r"^auth.keys_db: is a folder"):
        check_files(config_from_table(dir_table, tmp_path / "gateway.toml"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:8443", ("0.0.0.0", 8443)), ("[::]:0", ("::", 0)), ("localhost:1", ("localhost", 1))],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected
