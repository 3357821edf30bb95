"""One sentence per workload on what limits it, written from the measured figures (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.stack import DIRECT, FLOOR, GATEWAY
from bench.stats import CpuCeiling, cpu_ceiling, ratio

Results = Mapping[str, Any]
SATURATED_PCT = 85.0
PACED_TARGET_MS = 1.0  # issue 5's bound on a paced chunk's extra delay (p99)


def _get(results: Results, workload: str, path: str, metric: str) -> float | None:
    value = results["figures"].get(workload, {}).get(path, {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f} ms"


def latency_sentence(results: Results) -> str:
    added = _get(results, "a", GATEWAY, "added_p50_ms")
    floor_added = _get(results, "a", FLOOR, "added_p50_ms")
    if added is None:
        return "The gateway rows were not measured in this run."
    return (
        f"The full path adds {_ms(added)} p50 over direct: two more processes (gateway, "
        f"connector), TLS to the gateway, one HTTP/2 stream in the tunnel and an HTTP/1.1 request "
        f"to the upstream, each woken in turn on one event loop; the floor shows that Hypercorn "
        f"with TLS alone accounts for {_ms(floor_added)} of it."
    )


def cpu_budget(results: Results, target: float = 0.5) -> CpuCeiling | None:
    """What CPU allows gateway/floor at concurrency 64 (:func:`bench.stats.cpu_ceiling`)."""
    b64 = results["figures"].get("b64", {})
    cores = results.get("machine", {}).get("cores") or 0
    return cpu_ceiling(b64.get(FLOOR, {}), b64.get(GATEWAY, {}), int(cores), target)


def _us(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f} us"


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}%"


def limit_name(role: str) -> str:
    """What :func:`bench.stats.rps_bound` says caps a path, in words."""
    if role == "all cores":
        return "all cores busy"
    name = {"front": "its server", "client": "the load client", "proxy": "squid"}.get(role, role)
    return f"{name} at one core"


def cpu_clause(results: Results) -> str | None:
    """Where the CPU goes per request at concurrency 64, and the ratio it allows; ``None``
    when this run has no CPU budget figures."""
    budget = cpu_budget(results)
    if budget is None:
        return None

    def gw(role: str) -> str:
        return _us(_get(results, "b64", GATEWAY, f"cpu_us_per_req_{role}"))

    measured = ratio(_get(results, "b64", GATEWAY, "rps"), _get(results, "b64", FLOOR, "rps"))
    shown = "?" if measured is None else f"{measured:.2f}"
    return (
        f"the gateway path spends {_us(budget.gateway_total_us)} of CPU per request over all "
        f"its processes (gateway {gw('front')}, connector {gw('connector')}, load client "
        f"{gw('client')}, upstream {gw('upstream')}) against the floor path's "
        f"{_us(budget.floor_total_us)} (floor server "
        f"{_us(_get(results, 'b64', FLOOR, 'cpu_us_per_req_front'))}), all on the same cores "
        f"(busy {_pct(_get(results, 'b64', GATEWAY, 'machine_cpu_pct'))} and "
        f"{_pct(_get(results, 'b64', FLOOR, 'machine_cpu_pct'))}); CPU allows gateway/floor "
        f"about {budget.model_ratio:.2f} (floor capped by {limit_name(budget.floor_limit)}, "
        f"gateway by {limit_name(budget.gateway_limit)}; measured {shown}); "
        f"{budget.target:.2f} would need the gateway and connector together at "
        f"{_us(budget.needed_budget_us)} per request or less (now {_us(budget.spent_us)}) "
        f"and the gateway process at {_us(budget.process_cap_us)} or less "
        f"(now {_us(budget.gateway_process_us)})"
    )


def load_sentence(results: Results) -> str:
    gw_cpu = _get(results, "b64", GATEWAY, "front_cpu_pct")
    conn_cpu = _get(results, "b64", GATEWAY, "connector_cpu_pct")
    floor_cpu = _get(results, "b64", FLOOR, "front_cpu_pct")
    if gw_cpu is None:
        return (
            f"The floor ran at {floor_cpu or 0:.0f}% CPU: one Hypercorn process uses one core, "
            "so its request rate is the Python stack's per-request cost."
        )
    busiest = "the gateway" if gw_cpu >= (conn_cpu or 0) else "the connector"
    top = max(gw_cpu, conn_cpu or 0)
    if top >= SATURATED_PCT:
        why = (
            f"{busiest}'s single event loop ran at {top:.0f}% of one core (the py-spy profiles "
            "of `make bench PROFILE=1` show where)"
        )
    else:
        why = (
            f"no single process saturated a core (gateway {gw_cpu:.0f}%, connector "
            f"{conn_cpu or 0:.0f}%); each request waits on the wake-ups of client, gateway, "
            "connector and upstream in turn"
        )
    budget = cpu_clause(results)
    if budget is None:
        return f"At concurrency 64, {why}."
    return f"At concurrency 64, {budget}. {why[0].upper()}{why[1:]}."


def stream_sentence(results: Results) -> str:
    rate = _get(results, "c", GATEWAY, "chunks_per_s")
    direct = _get(results, "c", DIRECT, "chunks_per_s")
    if rate is None:
        return "Not measured through the gateway in this run."
    return (
        f"{rate:,.0f} chunks/s against {direct or 0:,.0f} direct: every SSE chunk is one read in "
        "the connector, one HTTP/2 DATA frame, one read and a usage/model scan in the gateway, "
        "and one write to the client; the per-chunk Python work in the gateway bounds the rate."
    )


def paced_sentence(results: Results) -> str:
    extra = _get(results, "d", GATEWAY, "extra_p99_ms")
    if extra is None:
        return "Not measured through the gateway in this run."
    alone = _get(results, "d", GATEWAY, "extra_single_p99_ms")
    gw_us = _get(results, "d", GATEWAY, "cpu_us_per_chunk_front")
    conn_us = _get(results, "d", GATEWAY, "cpu_us_per_chunk_connector")
    floor_us = _get(results, "d", FLOOR, "cpu_us_per_chunk_front")
    together = int(results.get("plan", {}).get("paced_concurrency", 0) or 0)
    text = (
        f"Paced chunks pick up {_ms(extra)} p99 with {together or 'several'} streams at once, "
        f"{_ms(alone)} p99 for one stream alone. Nothing is held back (a buffering, Nagle or "
        "flush stall would show as tens of ms): each chunk leaves every process in the read that "
        "brought it."
    )
    if gw_us is not None and conn_us is not None and together > 1:
        queue_ms = (together - 1) * gw_us / 1000
        text += (
            f" The rest is CPU: the gateway spends {gw_us:.0f} us and the connector "
            f"{conn_us:.0f} us on each relayed chunk (Hypercorn alone, on the floor, "
            f"{floor_us or 0:.0f} us), and the streams' chunks arrive at the same instants, so "
            f"the last of {together} waits for the {together - 1} before it: about "
            f"{queue_ms:.2f} ms in the gateway alone."
        )
        text += _paced_budget(results, together, floor_us)
    return text


def _paced_budget(results: Results, together: int, floor_us: float | None) -> str:
    """What the gateway could spend per chunk for the last of ``together`` to stay in 1 ms."""
    alone_p50 = _get(results, "d", GATEWAY, "extra_single_p50_ms")
    if alone_p50 is None or floor_us is None:
        return ""
    allowed_us = (PACED_TARGET_MS - alone_p50) * 1000 / (together - 1)
    if allowed_us <= floor_us:
        return (
            f" To stay within {PACED_TARGET_MS:g} ms the gateway could spend about "
            f"{max(allowed_us, 0):.0f} us per chunk (1 ms less the {alone_p50:.2f} ms one chunk "
            f"takes alone, over the {together - 1} ahead of it): less than Hypercorn alone "
            "spends, so not with these parts on this machine."
        )
    return (
        f" To stay within {PACED_TARGET_MS:g} ms the gateway could spend about "
        f"{allowed_us:.0f} us per chunk."
    )


def memory_sentence(results: Results) -> str:
    gw = _get(results, "e", GATEWAY, "front_rss_mb")
    conn = _get(results, "e", GATEWAY, "connector_rss_mb")
    if gw is None:
        return "Not measured through the gateway in this run."
    return (
        f"With 100 open streams the gateway holds {gw:.0f} MiB and the connector "
        f"{conn or 0:.0f} MiB: mostly the interpreter and imported libraries (Quart, Hypercorn, "
        "h2, cryptography); each open stream adds its buffers and flow-control window."
    )


def bulk_sentence(results: Results) -> str:
    up = _get(results, "f", GATEWAY, "up_mb_s")
    down = _get(results, "f", GATEWAY, "down_mb_s")
    if up is None and down is None:
        return "Not measured through the tunnel in this run."
    return (
        f"{up or 0:.0f} MB/s up, {down or 0:.0f} MB/s down on the tunnel API: bounded by "
        "HTTP/2 flow control (window size and how often WINDOW_UPDATE is sent), TLS record "
        "encryption in Python's ssl, and the h2 library's per-frame work (frames up to 1 MiB)."
    )


def soak_sentence(results: Results) -> str:
    growth = _get(results, "g", GATEWAY, "front_rss_growth_pct")
    failed = _get(results, "g", GATEWAY, "failed")
    if growth is None:
        return "Not measured through the gateway in this run."
    return (
        f"Gateway RSS grew {growth:.1f}% after warm-up with {failed or 0:.0f} failed requests; "
        "growth here would point at per-request state (limits, ledger, metrics labels) not freed."
    )


def limit_sentences(results: Results) -> dict[str, str]:
    return {
        "(a) latency": latency_sentence(results),
        "(b) load": load_sentence(results),
        "(c) unpaced stream": stream_sentence(results),
        "(d) paced stream": paced_sentence(results),
        "(e) 100 open streams": memory_sentence(results),
        "(f) bulk": bulk_sentence(results),
        "(g) soak": soak_sentence(results),
    }
