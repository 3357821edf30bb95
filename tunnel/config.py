"""Configuration of both tunnel roles: frozen dataclasses, checked at load, errors naming the key.

``ConnectorConfig.load(path)`` reads connector.toml; ``ListenerConfig.from_table(table, base_dir)``
reads the ``[tunnel]`` table of gateway.toml. Unknown keys are refused; relative paths are taken
relative to the config file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunnel.config_table import TUNNEL_WORDS, TableReader
from tunnel.errors import ConfigError

TRANSPORTS = ("tls", "websocket", "auto")
#: What Windows editors (Notepad) put before the first byte of a UTF-8 file; ``tomllib`` refuses it.
UTF8_BOM = b"\xef\xbb\xbf"


def _reader(table: object, prefix: str, where: str, base_dir: Path) -> TableReader:
    """The project's one table reader, in the tunnel's words."""
    return TableReader(table, prefix, base_dir, where=where, words=TUNNEL_WORDS, error=ConfigError)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One named upstream the connector may forward to."""

    name: str
    url: str  # base URL, e.g. http://172.21.113.31:4000 (no trailing slash)
    api_key_env: str = ""
    api_key: str = ""
    timeout_s: float = 600.0  # longest silence while reading the upstream's answer
    connect_timeout_s: float = 10.0

    def credential(self, environ: Mapping[str, str]) -> str:
        """The upstream's own key: the config's ``api_key``, else the named env variable."""
        if self.api_key:
            return self.api_key
        if self.api_key_env:
            return environ.get(self.api_key_env, "")
        return ""


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """connector.toml."""

    host: str
    port: int
    server_name: str
    ca: Path
    cert: Path
    key: Path
    upstreams: Mapping[str, UpstreamConfig]
    proxy: str = ""
    connections: int = 1
    transport: str = "auto"
    websocket_url: str = ""
    websocket_http_url: str = (
        ""  # the plain-HTTP rung of "auto" when it is not websocket_url's twin
    )
    proxy_ca: Path | None = None
    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    drain_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    max_concurrent_streams: int = 1000
    healthy_reset_s: float = 60.0
    reconnect_base_s: float = 0.5
    reconnect_max_s: float = 30.0
    auto_retry_s: float = 300.0  # "auto": how often a better carrier gets another chance
    source: Path = field(default=Path("connector.toml"), compare=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def load(cls, path: Path) -> ConnectorConfig:
        where = f"{path.name}: "
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}cannot read: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(raw.removeprefix(UTF8_BOM).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}not valid UTF-8: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{where}not valid TOML: nested too deeply") from None
        return cls.from_dict(data, path.resolve().parent, where=where, source=path)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], base_dir: Path, *, where: str = "", source: Path | None = None
    ) -> ConnectorConfig:
        top = _reader(data, "", where, base_dir)
        gateway = top.sub_table("gateway")
        upstream_tables = top.sub_table("upstreams")
        if not top.has("gateway"):
            raise top.fail("gateway", "is required")
        top.reject_unknown_keys()
        upstreams = {
            n: _upstream(n, top.sub_reader(f"upstreams.{n}", t)) for n, t in upstream_tables.items()
        }
        if not upstreams:
            raise top.fail("upstreams", "at least one [upstreams.NAME] is required")
        return _connector_from(top.sub_reader("gateway", gateway), upstreams, source)


def _upstream(name: str, r: TableReader) -> UpstreamConfig:
    url = r.string("url").rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise r.fail("url", f"must start with http:// or https:// (got {url!r})")
    up = UpstreamConfig(
        name=name,
        url=url,
        api_key_env=r.string("api_key_env", ""),
        api_key=r.string("api_key", ""),
        timeout_s=r.positive("timeout_s", 600.0),
        connect_timeout_s=r.positive("connect_timeout_s", 10.0),
    )
    r.reject_unknown_keys()
    return up


def _connector_from(
    r: TableReader, upstreams: dict[str, UpstreamConfig], source: Path | None
) -> ConnectorConfig:
    host, port = r.listen("address")
    transport = r.string("transport", "auto")
    if transport not in TRANSPORTS:
        raise r.fail("transport", f"must be one of {', '.join(TRANSPORTS)} (got {transport!r})")
    cfg = ConnectorConfig(
        host=host,
        port=port,
        server_name=r.string("server_name", host) or host,
        ca=r.path("ca"),
        cert=r.path("cert"),
        key=r.path("key"),
        upstreams=upstreams,
        proxy=r.string("proxy", ""),
        connections=r.count("connections", 1),
        transport=transport,
        websocket_url=r.url("websocket_url", ("https", "http", "wss", "ws")),
        websocket_http_url=r.url("websocket_http_url", ("http", "ws")),
        proxy_ca=r.path_or_empty("proxy_ca"),
        ping_interval_s=r.positive("ping_interval_s", 15.0),
        ping_timeout_s=r.positive("ping_timeout_s", 10.0),
        drain_timeout_s=r.positive("drain_timeout_s", 10.0),
        connect_timeout_s=r.positive("connect_timeout_s", 10.0),
        max_concurrent_streams=r.count("max_concurrent_streams", 1000),
        healthy_reset_s=r.positive("healthy_reset_s", 60.0),
        reconnect_base_s=r.positive("reconnect_base_s", 0.5),
        reconnect_max_s=r.positive("reconnect_max_s", 30.0),
        auto_retry_s=r.positive("auto_retry_s", 300.0),
        source=source or Path("connector.toml"),
    )
    r.reject_unknown_keys()
    return cfg


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """gateway.toml's ``[tunnel]`` table."""

    host: str
    port: int
    cert: Path
    key: Path
    ca: Path
    crl: Path | None  # None: ``crl = false``, revocation turned off on purpose
    allowed_connectors: tuple[str, ...]
    ping_interval_s: float = 15.0
    ping_timeout_s: float = 10.0
    websocket_path: str = "/.well-known/llm-tunnel"
    #: the optional plain-HTTP listener of the WebSocket carrier, or None
    websocket_http_listen: tuple[str, int] | None = None
    drain_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    crl_poll_s: float = 1.0

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_table(cls, table: Mapping[str, Any], base_dir: Path) -> ListenerConfig:
        r = _reader(table, "tunnel", "", base_dir)
        host, port = r.listen("listen", "0.0.0.0:9443")
        ws_path = r.string("websocket_path", "/.well-known/llm-tunnel")
        if not ws_path.startswith("/"):
            raise r.fail("websocket_path", "must start with /")
        ws_listen = (
            r.listen("websocket_http_listen") if r.string("websocket_http_listen", "") else None
        )
        cfg = cls(
            host=host,
            port=port,
            cert=r.path("cert"),
            key=r.path("key"),
            ca=r.path("ca"),
            crl=r.path_or_false("crl", "pki/crl.pem"),
            allowed_connectors=r.names("allowed_connectors"),
            ping_interval_s=r.positive("ping_interval_s", 15.0),
            ping_timeout_s=r.positive("ping_timeout_s", 10.0),
            websocket_path=ws_path,
            websocket_http_listen=ws_listen,
            drain_timeout_s=r.positive("drain_timeout_s", 10.0),
            handshake_timeout_s=r.positive("handshake_timeout_s", 10.0),
            crl_poll_s=r.positive("crl_poll_s", 1.0),
        )
        r.reject_unknown_keys()
        return cfg
