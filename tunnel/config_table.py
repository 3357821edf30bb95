"""The one TOML table reader of the project (the connector's file, the gateway's file and its
``[tunnel]`` table): each value checked as it is read, the key named in every error
(``server.listen: ...``), and the keys never read refused as unknown.

Each file keeps the words its users and docs know (:data:`GATEWAY_WORDS`, :data:`TUNNEL_WORDS`)
and raises its own part's ``ConfigError``; the checks are written once, here. The gateway imports
this module (``tunnel`` never imports ``gateway``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit


class _Required:
    pass


REQUIRED: Final = _Required()


@dataclass(frozen=True, slots=True)
class Words:
    """How one config file words the mistakes both files can make."""

    required: str
    not_string: Callable[[object], str]
    empty_path: str
    not_table: str
    #: (the text, the port when it is out of range, else None) -> the message
    bad_address: Callable[[str, int | None], str]


GATEWAY_WORDS: Final = Words(
    required="missing (required)",
    not_string=lambda value: f"expected a string, got {value!r}",
    empty_path="expected a file path, got an empty string",
    not_table="expected a table",
    bad_address=lambda text, port: (
        f"port {port} is out of range"
        if port is not None
        else f'expected "host:port", got {text!r}'
    ),
)
TUNNEL_WORDS: Final = Words(
    required="is required",
    not_string=lambda value: "must be a string",
    empty_path="must not be empty",
    not_table="must be a table",
    bad_address=lambda text, port: (
        f"{'port must be 0..65535' if port is not None else 'must be HOST:PORT'} (got {text!r})"
    ),
)


class AddressError(ValueError):
    """Not ``host:port``; ``port`` is set when only the port is out of range."""

    def __init__(self, text: str, port: int | None = None) -> None:
        super().__init__(GATEWAY_WORDS.bad_address(text, port))
        self.text = text
        self.port = port


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); port 0 picks a free one.
    Raises :class:`AddressError`."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise AddressError(value)
    port = int(port_text)
    if port > 65535:
        raise AddressError(value, port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def resolve_path(value: str, base_dir: Path) -> Path:
    """``value`` with ``~`` expanded, relative to ``base_dir``; ValueError for ``~unknown``."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~name" of a user this system does not know
        raise ValueError(f"{value!r} names the home of an unknown user") from None
    return path if path.is_absolute() else base_dir / path


class TableReader:
    """Reads keys of ``table`` (named ``prefix`` in messages, after ``where``, e.g. the file's
    name), worded in ``words``, failing with ``error`` (the part's ``ConfigError``); the keys
    never read are refused by :meth:`reject_unknown_keys`."""

    def __init__(
        self,
        table: object,
        prefix: str,
        base_dir: Path,
        *,
        words: Words,
        error: Callable[[str], Exception],
        where: str = "",
    ) -> None:
        self.prefix = prefix
        self.base_dir = base_dir
        self._where = where
        self._words = words
        self._error = error
        if not isinstance(table, Mapping):
            raise error(f"{where}{prefix}: {words.not_table}")
        self.table: Mapping[str, Any] = table
        self._seen: set[str] = set()

    def sub_reader(self, key: str, table: object) -> TableReader:
        """A reader of the table ``table`` found at ``key``, with the same words and file."""
        return TableReader(
            table,
            self.name(key),
            self.base_dir,
            where=self._where,
            words=self._words,
            error=self._error,
        )

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, key: str, message: str) -> Exception:
        return self._error(f"{self._where}{self.name(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.table

    def raw(self, key: str, default: object = REQUIRED) -> object:
        self._seen.add(key)
        if key in self.table:
            return self.table[key]
        if default is REQUIRED:
            raise self.fail(key, self._words.required)
        return default

    def string(self, key: str, default: object = REQUIRED) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.fail(key, self._words.not_string(value))
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

    def count(self, key: str, default: int, minimum: int = 1) -> int:
        """A whole number of things (connections, streams), at least ``minimum``."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"must be a whole number >= {minimum}")
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

    def positive(self, key: str, default: float) -> float:
        """A duration or interval: a finite number above 0."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(key, "must be a positive number")
        if not math.isfinite(value):
            raise self.fail(key, "must be a finite number")
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

    def names(self, key: str) -> tuple[str, ...]:
        """A list of non-empty names (empty when absent)."""
        value = self.raw(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(key, "must be a list of names")
        return tuple(value)

    def path(self, key: str, default: object = REQUIRED) -> Path:
        """A file path; relative paths are relative to the config file's folder."""
        value = self.string(key, default)
        if not value:
            raise self.fail(key, self._words.empty_path)
        return self.resolved(key, value)

    def optional_path(self, key: str) -> Path | None:
        value = self.optional_string(key)
        return None if value is None else self.resolved(key, value)

    def path_or_empty(self, key: str) -> Path | None:
        """A path, or None when the key is absent or ``""``."""
        value = self.string(key, "")
        return self.resolved(key, value) if value else None

    def path_or_false(self, key: str, example: str) -> Path | None:
        """A required path, or ``false`` to turn the feature off on purpose (``None``)."""
        if not self.has(key):
            off = f"{key} = false turns it off"
            raise self.fail(key, f'{self._words.required} (e.g. {key} = "{example}"; {off})')
        value = self.raw(key, None)
        if value is False:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "must be a path, or false")
        return self.path(key)

    def resolved(self, key: str, value: str) -> Path:
        try:
            return resolve_path(value, self.base_dir)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def listen(self, key: str, default: object = REQUIRED) -> tuple[str, int]:
        """``host:port`` (``[v6]:port``), as a pair."""
        value = self.string(key, default)
        try:
            return parse_listen(value)
        except AddressError as exc:
            raise self.fail(key, self._words.bad_address(exc.text, exc.port)) from None

    def url(self, key: str, schemes: tuple[str, ...]) -> str:
        """An optional URL (``""`` when absent) whose scheme is one of ``schemes``, with a host."""
        text = self.string(key, "")
        if not text:
            return ""
        parts = urlsplit(text)
        if parts.scheme not in schemes:
            allowed = " or ".join(f"{scheme}://" for scheme in schemes)
            raise self.fail(key, f"must start with {allowed} (got {text!r})")
        if not parts.hostname:
            raise self.fail(key, f"has no host (got {text!r})")
        return text

    def sub_table(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, self._words.not_table)
        return value

    def reject_unknown_keys(self) -> None:
        unknown = sorted(k for k in self.table if k not in self._seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")
