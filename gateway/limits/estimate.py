"""Token estimates made before the upstream answers (pure): what admission checks against the
tokens-per-minute window, and what a client that left before ``usage`` came is charged."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

_SKIP_KEYS: Final = frozenset({"image_url", "input_audio", "file_data", "file", "image"})


def estimate_tokens(body: Mapping[str, object]) -> int:
    """A rough estimate before the upstream answers: every string in the prompt fields
    (roles and part types too, like the per-message overhead) / 4, plus the
    requested completion budget (times ``n``)."""
    budget = 0
    for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            budget = value
            break
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    return estimate_prompt_tokens(body) + budget * choices


def estimate_prompt_tokens(body: Mapping[str, object]) -> int:
    """The prompt's share of :func:`estimate_tokens`: what a request whose upstream never
    reported ``usage`` (the client left first) is charged for its prompt."""
    chars = sum(
        _text_chars(body.get(field)) for field in ("messages", "prompt", "input", "instructions")
    )
    return math.ceil(chars / 4)


def _text_chars(value: object, depth: int = 0) -> int:
    if depth > 8:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return sum(
            _text_chars(item, depth + 1) for key, item in value.items() if key not in _SKIP_KEYS
        )
    return 0
