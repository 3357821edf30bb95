#!/usr/bin/env bash
# Installs the Debian packages the tests, the demo and the benchmark use, when missing.
# squid-openssl is squid built with OpenSSL (needed for ssl-bump, the TLS-inspecting proxy);
# it replaces plain squid. Runs apt only when something is missing.
set -euo pipefail
need=()
command -v squid >/dev/null 2>&1 && squid -v 2>/dev/null | grep -q -- '--with-openssl' || need+=(squid-openssl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # deploy units are verified
command -v node >/dev/null 2>&1 || need+=(nodejs)               # the Node SDK line in docs/clients.md
[ -x /usr/bin/chromium ] || need+=(chromium)                     # the status page's browser test
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)          # (Selenium drives the system browser)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)       # promtool: deploy/prometheus rules (Debian ships it only in prometheus)
command -v npm >/dev/null 2>&1 || need+=(npm)                   # make clients: npm ci
command -v ip >/dev/null 2>&1 || need+=(iproute2)               # make clients: loopback up in its namespace
command -v unshare >/dev/null 2>&1 || need+=(util-linux)        # make clients: its own network namespace
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
echo "bootstrap: installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The packages start system-wide services; the tests run private instances instead (and
# need no Prometheus server at all: only its promtool).
for svc in squid redis-server nginx prometheus; do
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
