"""Property tests (hypothesis) for the TOML readers: whatever the document, ``gateway.toml`` gives
a config or ``gateway.errors.ConfigError`` and ``connector.toml`` / ``[tunnel]`` give a config or
``tunnel.errors.ConfigError``; never another exception (the CLIs turn only these into exit 2)."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from gateway import config as gateway_config
from gateway.errors import ConfigError as GatewayConfigError
from tests.support.fuzz import fuzz_settings
from tunnel.config import ConnectorConfig, ListenerConfig
from tunnel.errors import ConfigError as TunnelConfigError

FUZZ = fuzz_settings(150)
BASE = Path("/etc/llm")

TUNNEL = {
    "listen": "0.0.0.0:9443",
    "cert": "pki/gateway.crt",
    "key": "pki/gateway.key",
    "ca": "pki/ca.crt",
    "crl": "pki/crl.pem",
    "allowed_connectors": ["office-1"],
    "ping_interval_s": 15,
    "websocket_path": "/.well-known/llm-tunnel",
    "websocket_http_listen": "",
}
GATEWAY: dict[str, Any] = {
    "server": {
        "listen": "0.0.0.0:8443",
        "cert": "pki/gateway.crt",
        "key": "pki/gateway.key",
        "max_body_bytes": 10485760,
        "trusted_proxies": ["10.0.0.0/8"],
        "sse_keepalive_s": 5.0,
    },
    "admin": {"listen": "127.0.0.1:9100"},
    "tunnel": TUNNEL,
    "auth": {
        "keys_db": "gateway.db",
        "jwt": [
            {
                "issuer": "https://idp",
                "audience": "llm",
                "jwks_url": "https://idp/certs",
                "algorithms": ["RS256"],
                "models_claim": "llm_models",
            }
        ],
    },
    "limits": {"storage": "memory://", "rpm": 60, "tpm": 100000, "concurrency": 4},
    "models": {"qwen3-coder": {"upstream": "office-llm", "model": "Qwen/Qwen3-Coder"}},
    "log": {"access_log": "access.log", "level": "info", "log_prompts": False},
}
CONNECTOR: dict[str, Any] = {
    "gateway": {
        "address": "minipc.example.org:443",
        "server_name": "minipc.example.org",
        "ca": "ca.crt",
        "cert": "office-1.crt",
        "key": "office-1.key",
        "proxy": "http://proxy.corp:8080",
        "connections": 1,
        "transport": "auto",
        "websocket_url": "https://minipc.example.org/.well-known/llm-tunnel",
        "ping_interval_s": 15,
    },
    "upstreams": {"office-llm": {"url": "http://172.21.113.31:4000", "api_key_env": "K"}},
}

TOML_SCALARS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "/", "x:1", "[::1]:80", "host:99999", "a:²", "~", "redis://r", "-"]),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.datetimes(max_value=dt.datetime(9999, 1, 1)),
    st.dates(),
    st.times(),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def leaf_paths(table: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in ``table`` (tables, lists of tables and their members)."""
    out = [prefix] if prefix else []
    if isinstance(table, dict):
        for key, value in table.items():
            out += leaf_paths(value, (*prefix, key))
    elif isinstance(table, list):
        for i, value in enumerate(table):
            if isinstance(value, dict):
                out += leaf_paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with a few keys set to any TOML value, removed, or unknown ones added."""
    doc: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy
    for _ in range(draw(st.integers(1, 4))):
        paths = leaf_paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["set", "set", "delete", "unknown"]))
        if action == "set":
            parent[path[-1]] = draw(TOML_VALUES)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=6))] = draw(TOML_VALUES)
    return doc


def gateway_outcome(data: dict[str, Any]) -> gateway_config.GatewayConfig | None:
    """The config, or None after a ConfigError with a message (any other exception escapes)."""
    try:
        return gateway_config.config_from_table(data, BASE / "gateway.toml")
    except GatewayConfigError as error:
        message = str(error)
    assert message
    return None


def connector_outcome(data: dict[str, Any]) -> ConnectorConfig | None:
    try:
        return ConnectorConfig.from_dict(data, BASE)
    except TunnelConfigError as error:
        message = str(error)
    assert message
    return None


# ----------------------------------------------------------------------------- tables


@FUZZ
@given(mutated(GATEWAY))
def test_any_gateway_table_gives_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    gateway_outcome(data)


@FUZZ
@given(mutated(CONNECTOR))
def test_any_connector_table_gives_a_config_or_a_config_error(data: dict[str, Any]) -> None:
    connector_outcome(data)


@FUZZ
@given(mutated(TUNNEL))
def test_any_tunnel_table_gives_a_config_or_a_config_error(table: dict[str, Any]) -> None:
    message = "tunnel."
    try:
        ListenerConfig.from_table(table, BASE)
    except TunnelConfigError as error:
        message = str(error)
    assert message.startswith("tunnel.")


def test_the_base_documents_are_valid() -> None:
    assert gateway_outcome(json.loads(json.dumps(GATEWAY))) is not None
    assert connector_outcome(json.loads(json.dumps(CONNECTOR))) is not None


@FUZZ
@given(
    which=st.sampled_from(["gateway", "connector"]),
    value=st.sampled_from(["~no-such-user-fuzz/x.crt", "~no-such-user-fuzz"]),
)
@example(which="gateway", value="~no-such-user-fuzz/x.crt")
def test_a_tilde_user_path_is_a_config_error(which: str, value: str) -> None:
    if which == "gateway":
        gateway_outcome({**GATEWAY, "server": {**GATEWAY["server"], "cert": value}})
    else:
        connector_outcome({**CONNECTOR, "gateway": {**CONNECTOR["gateway"], "ca": value}})


@FUZZ
@given(
    where=st.sampled_from(["server.sse_keepalive_s", "tunnel.ping_interval_s", "connector"]),
    value=st.sampled_from([math.nan, -math.nan]),
)
@example(where="server.sse_keepalive_s", value=math.nan)
def test_nan_is_refused_wherever_a_number_is_read(where: str, value: float) -> None:
    if where == "connector":
        data = {**CONNECTOR, "gateway": {**CONNECTOR["gateway"], "ping_interval_s": value}}
        assert connector_outcome(data) is None
        return
    section, key = where.split(".")
    assert gateway_outcome({**GATEWAY, section: {**GATEWAY[section], key: value}}) is None


# ----------------------------------------------------------------------------- documents


def toml_text(value: Any) -> str:
    """One-line TOML for a value (inline tables), keys quoted."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if value == math.inf else "-inf" if value == -math.inf else repr(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def document(data: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(k)} = {toml_text(v)}\n" for k, v in data.items())


DOCUMENT_BYTES = st.one_of(
    mutated(GATEWAY).map(lambda d: document(d).encode()),
    mutated(CONNECTOR).map(lambda d: document(d).encode()),
    st.binary(max_size=80),
    st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"\xef\xbb\xbf[gateway]\n",
            b"[server]\nlisten = 1\n[server]\n",
            b"a = \x00",
            b'[[models]]\nx = "y"\n',
        ]
    ),
)


def load_both(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "conf.toml")
        path.write_bytes(raw)
        messages = ["-", "-"]
        try:
            gateway_config.load_config(path)
        except GatewayConfigError as error:
            messages[0] = str(error)
        try:
            ConnectorConfig.load(path)
        except TunnelConfigError as error:
            messages[1] = str(error)
        assert all(messages)


@FUZZ
@given(DOCUMENT_BYTES)
def test_any_file_gives_a_config_or_a_config_error(raw: bytes) -> None:
    load_both(raw)


@FUZZ
@given(depth=st.integers(1000, 3000), kind=st.sampled_from(["array", "table"]))
@example(depth=1000, kind="array")  # a = [[[[...]]]]
def test_a_deeply_nested_document_is_a_config_error(depth: int, kind: str) -> None:
    open_, close = ("[", "]") if kind == "array" else ("{a = ", "}")
    load_both(f"a = {open_ * depth}1{close * depth}\n".encode())
