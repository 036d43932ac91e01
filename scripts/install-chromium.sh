#!/usr/bin/env bash
# Install Debian's Chromium when it is missing, for the browser tests (tests/browser.py drives it
# headless over the DevTools protocol). Idempotent: does nothing when /usr/bin/chromium exists.
# Runs as root (CI) or through sudo. Debian's package, never a browser downloaded by a tool
# (`playwright install` and the like fetch builds from hosts these machines cannot reach).
set -euo pipefail

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
    echo "install-chromium: found $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi
echo "install-chromium: $CHROMIUM missing"

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
else
    echo "install-chromium: must run as root (or with sudo available) to apt-get install" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-chromium: apt-get update"
"${sudo[@]}" apt-get update
# --no-install-recommends keeps out chromium-sandbox, desktop integration and the like; the fonts
# are needed so the page's text renders in screenshots (without any font, glyphs are blank boxes).
echo "install-chromium: apt-get install -y --no-install-recommends chromium fonts-dejavu-core"
"${sudo[@]}" apt-get install -y --no-install-recommends chromium fonts-dejavu-core

[ -x "$CHROMIUM" ] || { echo "install-chromium: $CHROMIUM still missing" >&2; exit 1; }
echo "install-chromium: installed $("$CHROMIUM" --version 2>/dev/null)"
