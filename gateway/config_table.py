"""A TOML table read key by key: each value checked as it is read, the key named in every
error (``server.listen: ...``), and the keys never read refused as unknown."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from gateway.client_address import Network
from gateway.errors import ConfigError


class _Required:
    pass


REQUIRED: Final = _Required()


class TableReader:
    """Reads keys of ``table`` (named ``prefix`` in messages); the rest are refused by
    :meth:`reject_unknown_keys`."""

    def __init__(self, table: object, prefix: str, base_dir: Path) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"{prefix}: expected a table")
        self.table: Mapping[str, Any] = table
        self.prefix = prefix
        self.base_dir = base_dir
        self._seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.name(key)}: {message}")

    def raw(self, key: str, default: object = REQUIRED) -> object:
        self._seen.add(key)
        if key in self.table:
            return self.table[key]
        if default is REQUIRED:
            raise self.fail(key, "missing (required)")
        return default

    def string(self, key: str, default: object = REQUIRED) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        value = self.raw(key, None)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, default: object = REQUIRED, minimum: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: object = REQUIRED, minimum: float = 0.0) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return float(value)

    def boolean(self, key: str, default: object = REQUIRED) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def string_list(self, key: str, default: object = REQUIRED) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, f"expected a list of strings, got {value!r}")
        return tuple(value)

    def path(self, key: str, default: object = REQUIRED) -> Path:
        """A file path; relative paths are relative to the config file's folder."""
        value = self.string(key, default)
        if not value:
            raise self.fail(key, "expected a file path, got an empty string")
        return self.resolved(key, value)

    def optional_path(self, key: str) -> Path | None:
        value = self.optional_string(key)
        return None if value is None else self.resolved(key, value)

    def resolved(self, key: str, value: str) -> Path:
        try:
            return resolve_path(value, self.base_dir)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def listen(self, key: str, default: object = REQUIRED) -> tuple[str, int]:
        value = self.string(key, default)
        try:
            return parse_listen(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def networks(self, key: str) -> tuple[Network, ...]:
        out: list[Network] = []
        for item in self.string_list(key, []):
            try:
                out.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise self.fail(key, f"{item!r} is not an IP address or CIDR block") from None
        return tuple(out)

    def sub_table(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "expected a table")
        return value

    def reject_unknown_keys(self) -> None:
        unknown = sorted(k for k in self.table if k not in self._seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def resolve_path(value: str, base_dir: Path) -> Path:
    """``value`` with ``~`` expanded, relative to ``base_dir``; ValueError for ``~unknown``."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~name" of a user this system does not know
        raise ValueError(f"{value!r} names the home of an unknown user") from None
    return path if path.is_absolute() else base_dir / path


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); port 0 picks a free one."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f'expected "host:port", got {value!r}')
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port
