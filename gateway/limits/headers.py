"""Sans-IO text of rate limiting: OpenAI's reset durations, headers and 429 messages.

OpenAI writes reset times like Go's ``time.Duration.String`` rounded to milliseconds:
``12ms``, ``1s``, ``1.574s``, ``6m0s``, ``1h2m3s``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_MS_PER_S = 1000
_MS_PER_MIN = 60 * _MS_PER_S
_MS_PER_H = 60 * _MS_PER_MIN


@dataclass(frozen=True, slots=True)
class WindowState:
    """One limit's state as the client sees it: limit, what is left, seconds until it refills."""

    limit: int
    remaining: int
    reset_s: float


def format_reset(seconds: float) -> str:
    """Format a duration the way OpenAI's ``x-ratelimit-reset-*`` headers do."""
    total_ms = round(seconds * _MS_PER_S) if math.isfinite(seconds) else 0
    if total_ms <= 0:
        return "0s"
    if total_ms < _MS_PER_S:
        return f"{total_ms}ms"
    hours, rest = divmod(total_ms, _MS_PER_H)
    minutes, rest = divmod(rest, _MS_PER_MIN)
    secs = _format_seconds(rest)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _format_seconds(ms: int) -> str:
    whole, frac = divmod(ms, _MS_PER_S)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:03d}".rstrip("0")


def retry_after_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` in whole seconds (rounded up, at least 1), and ``retry-after-ms``."""
    seconds = max(seconds, 0.0) if math.isfinite(seconds) else 1.0
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * _MS_PER_S))),
    }


def ratelimit_headers(requests: WindowState, tokens: WindowState) -> dict[str, str]:
    """The six ``x-ratelimit-*`` headers OpenAI puts on every response."""
    return {
        "x-ratelimit-limit-requests": str(requests.limit),
        "x-ratelimit-remaining-requests": str(max(requests.remaining, 0)),
        "x-ratelimit-reset-requests": format_reset(requests.reset_s),
        "x-ratelimit-limit-tokens": str(tokens.limit),
        "x-ratelimit-remaining-tokens": str(max(tokens.remaining, 0)),
        "x-ratelimit-reset-tokens": format_reset(tokens.reset_s),
    }


def anthropic_ratelimit_headers(
    requests: WindowState, tokens: WindowState, now: datetime
) -> dict[str, str]:
    """Anthropic's ``anthropic-ratelimit-*`` headers: the same windows, resets as RFC 3339 times
    (second precision, UTC, rounded up so a client that waits until then is admitted). One token
    window serves prompt and completion together, so the ``input-tokens`` and ``output-tokens``
    headers Anthropic also sends are not invented."""
    out: dict[str, str] = {}
    for name, state in (("requests", requests), ("tokens", tokens)):
        prefix = f"anthropic-ratelimit-{name}"
        out[f"{prefix}-limit"] = str(state.limit)
        out[f"{prefix}-remaining"] = str(max(state.remaining, 0))
        out[f"{prefix}-reset"] = rfc3339_after(now, state.reset_s)
    return out


def rfc3339_after(now: datetime, seconds: float) -> str:
    """``now`` plus ``seconds`` (rounded up to a whole second) as ``2026-12-04T18:20:05Z``."""
    seconds = max(seconds, 0.0) if math.isfinite(seconds) else 0.0
    moment = now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=math.ceil(seconds))
    if now.microsecond:
        moment += timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_RESET_UNITS = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_reset(text: str) -> float:
    """Seconds in a duration :func:`format_reset` wrote (``1m2.5s`` -> 62.5)."""
    return sum(float(n) * _UNIT_S[unit] for n, unit in _RESET_UNITS.findall(text))


def anthropic_from_openai(headers: Mapping[str, str], now: datetime) -> dict[str, str]:
    """``headers`` with the six ``x-ratelimit-*`` turned into :func:`anthropic_ratelimit_headers`
    (the Messages routes): the limiter computes one set from its windows, and this reads it back
    rather than giving every limiter call a second format. Other headers are kept."""
    out = {k: v for k, v in headers.items() if not k.startswith("x-ratelimit-")}
    requests, tokens = _window_of(headers, "requests"), _window_of(headers, "tokens")
    if requests is None or tokens is None:  # not the limiter's full set: nothing to translate
        return out
    return {**out, **anthropic_ratelimit_headers(requests, tokens, now)}


def _window_of(headers: Mapping[str, str], name: str) -> WindowState | None:
    try:
        return WindowState(
            int(headers[f"x-ratelimit-limit-{name}"]),
            int(headers[f"x-ratelimit-remaining-{name}"]),
            parse_reset(headers[f"x-ratelimit-reset-{name}"]),
        )
    except (KeyError, ValueError):
        return None


def requests_message(name: str, limit: int, used: int, requested: int, retry_s: float) -> str:
    return _window_message(name, "requests per min (RPM)", limit, used, requested, retry_s=retry_s)


def tokens_message(name: str, limit: int, used: int, requested: int, retry_s: float) -> str:
    return _window_message(name, "tokens per min (TPM)", limit, used, requested, retry_s=retry_s)


def concurrency_message(name: str, limit: int) -> str:
    return f"Too many concurrent requests for {name}: Limit {limit}. Please try again shortly."


def _window_message(
    name: str, what: str, limit: int, used: int, requested: int, *, retry_s: float
) -> str:
    return (
        f"Rate limit reached for {name} on {what}: Limit {limit}, Used {used}, "
        f"Requested {requested}. Please try again in {format_reset(retry_s)}."
    )
