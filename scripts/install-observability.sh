#!/usr/bin/env bash
# Install Prometheus, promtool, Alertmanager and amtool from Debian when any is missing.
# Idempotent: does nothing when all four are on PATH. Runs as root (CI) or through sudo.
# The observability tests (tests/observability) need these binaries and fail without them.
set -euo pipefail

need=()
for tool in prometheus promtool prometheus-alertmanager amtool; do
    if command -v "$tool" >/dev/null 2>&1; then
        echo "install-observability: $tool found at $(command -v "$tool")"
    else
        echo "install-observability: $tool missing"
        need+=("$tool")
    fi
done

if [ "${#need[@]}" -eq 0 ]; then
    echo "install-observability: nothing to install"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-observability: must run as root (or with sudo available) to apt-get install" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-observability: apt-get update"
"${sudo[@]}" apt-get update
echo "install-observability: apt-get install -y --no-install-recommends prometheus prometheus-alertmanager"
"${sudo[@]}" apt-get install -y --no-install-recommends prometheus prometheus-alertmanager

# The Debian packages start no service in a container without systemd; the tests start their own.
for tool in prometheus promtool prometheus-alertmanager amtool; do
    command -v "$tool" >/dev/null 2>&1 || { echo "install-observability: $tool still missing" >&2; exit 1; }
done
echo "install-observability: installed $(prometheus --version 2>&1 | head -n1)"
echo "install-observability: installed $(prometheus-alertmanager --version 2>&1 | head -n1)"
