"""Who is calling: the result of authentication, and the limits that apply to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller.

    ``models`` is ``None`` when the caller may use every model. A limit of 0 or less means
    "no limit" for that dimension.
    """

    name: str
    kind: Literal["key", "jwt"]
    models: frozenset[str] | None
    rpm: int
    tpm: int
    concurrency: int
    admin: bool = False  # a JWT whose issuer's ``admin_claim`` is true (the status page)

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class LimitDefaults:
    """The ``[limits]`` defaults for identities that carry no limits of their own."""

    rpm: int = 60
    tpm: int = 100_000
    concurrency: int = 4


class LimitsSettings(Protocol):
    """What the gateway config's ``[limits]`` table provides (read-only view)."""

    @property
    def storage(self) -> str: ...
    @property
    def rpm(self) -> int: ...
    @property
    def tpm(self) -> int: ...
    @property
    def concurrency(self) -> int: ...


def defaults_from(limits: LimitsSettings) -> LimitDefaults:
    return LimitDefaults(rpm=limits.rpm, tpm=limits.tpm, concurrency=limits.concurrency)
