#!/bin/sh
# Health probe of the LLM gateway, for a systemd timer (llm-gateway-health.timer), cron or a
# monitoring agent. Asks /healthz (is the process alive?) then /readyz (is at least one connector
# up?) on the gateway's admin listener and prints one line saying which.
#
#   healthcheck.sh [--url http://127.0.0.1:9100] [--timeout 5] [--cacert FILE]
#   (or GATEWAY_HEALTH_URL=... healthcheck.sh)
#
# Exit codes: 0 ready; 1 alive but not ready (no connector); 2 wrong usage; 3 down (no answer, or
# /healthz not 200). Needs curl.
set -u

url="${GATEWAY_HEALTH_URL:-http://127.0.0.1:9100}"
timeout=5
cacert=""

usage_error() {
    echo "healthcheck: error: $1" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --url) [ $# -ge 2 ] || usage_error "--url needs a value"; url="$2"; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage_error "--timeout needs a value"; timeout="$2"; shift 2 ;;
        --cacert) [ $# -ge 2 ] || usage_error "--cacert needs a value"; cacert="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) usage_error "unknown argument: $1" ;;
    esac
done

case "$timeout" in
    ''|*[!0-9]*|0) usage_error "--timeout must be a whole number of seconds above 0" ;;
esac
case "$url" in
    http://*|https://*) ;;
    *) usage_error "--url must start with http:// or https://" ;;
esac
command -v curl >/dev/null 2>&1 || usage_error "curl is not installed"
url="${url%/}"

# probe PATH: sets $status to the HTTP status (000: no answer) and $detail to the start of the
# body or curl's complaint, on one line.
status=""
detail=""
probe() {
    if [ -n "$cacert" ]; then
        out=$(curl -sS --max-time "$timeout" --cacert "$cacert" -w '\n%{http_code}' "$url$1" 2>&1)
    else
        out=$(curl -sS --max-time "$timeout" -w '\n%{http_code}' "$url$1" 2>&1)
    fi
    status=$(printf '%s\n' "$out" | tail -n 1)
    detail=$(printf '%s\n' "$out" | sed '$d' | tr '\n' ' ' | cut -c 1-300 | sed 's/ *$//')
}

probe /healthz
if [ "$status" != "200" ]; then
    echo "down: $url/healthz answered $status: $detail" >&2
    exit 3
fi
probe /readyz
if [ "$status" != "200" ]; then
    echo "not ready: $url/readyz answered $status: $detail" >&2
    exit 1
fi
echo "ready: $url/healthz and $url/readyz answered 200"
exit 0
