"""Property tests (hypothesis) for the tunnel's sans-IO rules: the path allow-list, the header
filter and the reconnect schedule. Few examples each, derandomized, so `make test` stays quick
and a failure comes back the same on every run."""

from __future__ import annotations

import re
from urllib.parse import unquote

from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from tests.support.fuzz import fuzz_settings
from tunnel.allowlist import ALLOWED_PREFIX, FORBIDDEN_CHARACTER, path_refusal, refusal
from tunnel.backoff import Backoff
from tunnel.headers import HOP_BY_HOP, filter_headers, upstream_request_headers

FUZZ = fuzz_settings(150, [HealthCheck.too_slow])

# ----------------------------------------------------------------------------- the allow-list

PATH_CHARS = st.sampled_from([*"abcv1/.%;\\?#=&-_~ 2eE5fFcC0", "%2e", "%2f", "%25", "%00"])
SEGMENT = st.text(alphabet=st.characters(codec="ascii", exclude_characters="/?#"), max_size=8)


def fully_decoded(path: str) -> str:
    """The path as a server that percent-decodes until nothing changes would see it."""
    for _ in range(16):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    return path


def dot_segments(path: str, *, strip_params: bool) -> list[str]:
    """Segments (``/`` and ``\\`` both separators) that a server may take as ``.`` or ``..``.

    ``strip_params``: also cut a segment at ``;`` (RFC 3986 3.3 path parameters, which Tomcat,
    Jetty and Spring drop before resolving) and at NUL (which C-string code truncates at).
    """
    out = []
    for segment in re.split(r"[/\\]", path):
        name = re.split(r"[;\x00]", segment, maxsplit=1)[0] if strip_params else segment
        if name in (".", ".."):
            out.append(segment)
    return out


def encode_dots(segment: str, levels: int) -> str:
    """``segment`` with its dots percent-encoded ``levels`` times (``.`` -> %2e -> %252e ...)."""
    for _ in range(levels):
        segment = segment.replace("%", "%25").replace(".", "%2e")
    return segment


@FUZZ
@given(st.text(max_size=40))
def test_path_refusal_never_raises_on_any_text(path: str) -> None:
    reason = path_refusal(path)
    assert reason is None or (isinstance(reason, str) and reason)


@FUZZ
@given(st.lists(PATH_CHARS, max_size=24).map("".join))
def test_an_accepted_path_is_under_v1_with_no_forbidden_character(tail: str) -> None:
    path = ALLOWED_PREFIX + tail
    if path_refusal(path) is None:
        assert path.startswith(ALLOWED_PREFIX)
        assert not FORBIDDEN_CHARACTER.search(path)
        assert not dot_segments(fully_decoded(path.split("?", 1)[0]), strip_params=True)


@FUZZ
@given(
    before=st.lists(SEGMENT.filter(lambda s: s not in (".", "..")), max_size=3),
    dots=st.sampled_from([".", ".."]),
    levels=st.integers(0, 2),
    upper=st.booleans(),
    after=st.lists(SEGMENT, min_size=1, max_size=3),
)
def test_a_dot_segment_encoded_up_to_twice_is_refused(
    before: list[str], dots: str, levels: int, upper: bool, after: list[str]
) -> None:
    segment = encode_dots(dots, levels)
    segment = segment.upper() if upper else segment
    path = ALLOWED_PREFIX + "/".join([*before, segment, *after])
    assert path_refusal(path) is not None


@FUZZ
@given(dots=st.sampled_from([".", ".."]), levels=st.integers(3, 5))
@example(dots="..", levels=3)  # /v1/%25252e%25252e/x
def test_a_dot_segment_encoded_any_number_of_times_is_refused(dots: str, levels: int) -> None:
    path = f"{ALLOWED_PREFIX}{encode_dots(dots, levels)}/x"
    assert dot_segments(fully_decoded(path), strip_params=False)
    assert path_refusal(path) is not None


@FUZZ
@given(dots=st.sampled_from(["..", ".", "%2e%2e"]), params=st.sampled_from([";", ";a=b", ";x"]))
@example(dots="..", params=";")  # /v1/..;/x
def test_a_dot_segment_with_a_path_parameter_is_refused(dots: str, params: str) -> None:
    path = f"{ALLOWED_PREFIX}{dots}{params}/x"
    assert path_refusal(path) is not None


@example(path="/v1/..%00/x")
@FUZZ
@given(st.sampled_from(["/v1/..%00/x", "/v1/.%00/x", "/v1/..%2500/x"]))
def test_a_dot_segment_hidden_by_an_encoded_control_character_is_refused(path: str) -> None:
    assert path_refusal(path) is not None


@FUZZ
@given(
    upstreams=st.frozensets(st.text(max_size=6), max_size=3),
    upstream=st.text(max_size=6),
    path=st.text(max_size=20),
)
def test_refusal_names_an_unknown_upstream_before_looking_at_the_path(
    upstreams: frozenset[str], upstream: str, path: str
) -> None:
    found = refusal(upstreams, upstream, "POST", path)
    if upstream not in upstreams:
        assert found is not None
        assert found.status == 403
        assert "not configured" in found.reason
    else:
        reason = path_refusal(path)
        assert (found and found.reason) == reason


# ----------------------------------------------------------------------------- headers

HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            *HOP_BY_HOP,
            "Connection",
            "Authorization",
            "authorization",
            "X-Custom",
            "x-custom",
            ":path",
            ":authority",
            "Proxy-Foo",
            "content-type",
            "Keep-Alive",
        ]
    ),
    st.text(alphabet=st.characters(codec="ascii"), min_size=1, max_size=10),
)
HEADER_VALUES = st.one_of(
    st.text(max_size=20),
    st.lists(st.sampled_from(["x-custom", "X-Other", "content-type", " ", ""]), max_size=3).map(
        ",".join
    ),
)
HEADERS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8)


def connection_tokens(headers: list[tuple[str, str]]) -> set[str]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
        if token.strip()
    }


@FUZZ
@given(HEADERS)
def test_filter_headers_drops_exactly_the_hop_by_hop_ones(headers: list[tuple[str, str]]) -> None:
    named = connection_tokens(headers)
    expected = [
        (name.lower(), value)
        for name, value in headers
        if not name.lower().startswith((":", "proxy-"))
        and name.lower() not in HOP_BY_HOP
        and name.lower() not in named
    ]
    out = filter_headers(headers)
    assert out == expected
    assert filter_headers(out) == out  # idempotent


@FUZZ
@given(headers=HEADERS, credential=st.text(max_size=10))
def test_the_clients_authorization_never_reaches_the_upstream(
    headers: list[tuple[str, str]], credential: str
) -> None:
    out = upstream_request_headers(headers, credential)
    auth = [value for name, value in out if name.lower() == "authorization"]
    assert auth == ([f"Bearer {credential}"] if credential else [])
    assert all(name == name.lower() and not name.startswith(":") for name, _ in out)


# ----------------------------------------------------------------------------- backoff

POSITIVE = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False, allow_infinity=False)


@FUZZ
@given(
    base=POSITIVE,
    cap=POSITIVE,
    jitter=st.floats(0.0, 1.0),
    draws=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=80),
)
def test_backoff_delays_stay_within_the_jittered_exponential_and_the_cap(
    base: float, cap: float, jitter: float, draws: list[float]
) -> None:
    it = iter(draws)
    backoff = Backoff(base_s=base, max_s=cap, jitter=jitter, rand=lambda: next(it))
    for n in range(len(draws)):
        raw = min(cap, base * 2.0 ** min(n, 64))
        delay = backoff.next_delay()
        assert 0.0 <= delay <= cap
        assert raw * (1 - jitter) * (1 - 1e-9) <= delay <= raw * (1 + jitter) * (1 + 1e-9)
    assert backoff.failures == min(len(draws), 64)


@FUZZ
@given(
    fails=st.integers(0, 100),
    up_at=st.floats(0, 1e6),
    stay=st.floats(0, 1e3),
    reset_s=st.floats(1e-3, 1e3),
)
def test_backoff_resets_only_after_a_healthy_period(
    fails: int, up_at: float, stay: float, reset_s: float
) -> None:
    backoff = Backoff(healthy_reset_s=reset_s, rand=lambda: 0.5)
    for _ in range(fails):
        backoff.next_delay()
    before = backoff.failures
    backoff.up(up_at)
    backoff.down(up_at + stay)
    assert backoff.failures == (0 if (up_at + stay) - up_at >= reset_s else before)
