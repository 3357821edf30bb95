"""Anthropic's rate-limit headers, from the same windows as OpenAI's (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.limits.headers import (
    WindowState,
    anthropic_from_openai,
    anthropic_ratelimit_headers,
    parse_reset,
    ratelimit_headers,
    rfc3339_after,
)

NOW = datetime(2026, 12, 4, 18, 20, 5, tzinfo=UTC)


def test_anthropic_headers_name_both_windows() -> None:
    headers = anthropic_ratelimit_headers(
        WindowState(limit=60, remaining=59, reset_s=1.2),
        WindowState(limit=100_000, remaining=-5, reset_s=0.0),
        NOW,
    )
    assert headers == {
        "anthropic-ratelimit-requests-limit": "60",
        "anthropic-ratelimit-requests-remaining": "59",
        "anthropic-ratelimit-requests-reset": "2026-12-04T18:20:07Z",
        "anthropic-ratelimit-tokens-limit": "100000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2026-12-04T18:20:05Z",
    }


def test_reset_is_never_earlier_than_the_window() -> None:
    almost = NOW.replace(microsecond=999_000)
    assert rfc3339_after(almost, 0.0) == "2026-12-04T18:20:06Z"
    assert rfc3339_after(NOW, float("inf")) == "2026-12-04T18:20:05Z"
    assert rfc3339_after(NOW, 3600) == "2026-12-04T19:20:05Z"


def test_anthropic_headers_from_the_openai_set() -> None:
    """The Messages routes rewrite the limiter's x-ratelimit-* headers as Anthropic's."""
    now = datetime(2026, 12, 4, 18, 20, 0, tzinfo=UTC)
    requests, tokens = WindowState(60, 0, 59.5), WindowState(1000, 400, 0.012)
    openai = {**ratelimit_headers(requests, tokens), "retry-after": "60"}
    assert anthropic_from_openai(openai, now) == {
        "retry-after": "60",
        **anthropic_ratelimit_headers(requests, tokens, now),
    }
    assert anthropic_from_openai({"retry-after": "1"}, now) == {"retry-after": "1"}
    assert [parse_reset(t) for t in ("0s", "12ms", "1.574s", "6m0s", "1h2m3s")] == [
        0.0, 0.012, 1.574, 360.0, 3723.0,
    ]  # fmt: skip


def test_a_partial_or_odd_set_is_dropped_not_raised() -> None:
    partial = {"x-ratelimit-limit-requests": "60", "retry-after": "2"}
    assert anthropic_from_openai(partial, NOW) == {"retry-after": "2"}
    odd = {
        **{
            f"x-ratelimit-{k}-{n}": "x"
            for k in ("limit", "remaining")
            for n in ("requests", "tokens")
        },
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-reset-tokens": "1s",
    }
    assert anthropic_from_openai(odd, NOW) == {}
