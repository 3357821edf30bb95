"""Anthropic's rate-limit headers, from the same windows as OpenAI's (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.limits.headers import WindowState, anthropic_ratelimit_headers, rfc3339_after

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
