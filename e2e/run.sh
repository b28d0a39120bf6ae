#!/usr/bin/env bash
# Browser end-to-end tests of the web page: Debian Chromium (playwright-core) on a desktop and a
# phone-sized screen, and Debian Firefox ESR (puppeteer-core, WebDriver BiDi), against real
# `keyhole serve` processes on 127.0.0.1. Browsers come from Debian's packages; nothing downloads
# a browser build.
#
#   bash e2e/run.sh                        # uses target/debug/keyhole
#   KEYHOLE=target/release/keyhole bash e2e/run.sh
#
# The last line is "N passed, M failed"; the exit status is non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"

KEYHOLE=${KEYHOLE:-target/debug/keyhole}
case $KEYHOLE in /*) ;; *) KEYHOLE="$ROOT/$KEYHOLE" ;; esac
export KEYHOLE
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
FIREFOX=${FIREFOX:-/usr/bin/firefox-esr}
export CHROMIUM FIREFOX

fail() {
  printf 'e2e: %s\n' "$*" >&2
  echo "0 passed, 1 failed"
  exit 1
}

[[ -x $KEYHOLE ]] || fail "no keyhole binary at $KEYHOLE (build it with: cargo build -p keyhole --bin keyhole, or set KEYHOLE)"

# Browsers from Debian's packages, installed when missing.
need=()
[[ -x $CHROMIUM ]] || need+=(chromium)
[[ -x $FIREFOX ]] || need+=(firefox-esr)
if ((${#need[@]})); then
  echo "e2e: installing ${need[*]} from Debian's packages"
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || fail "${need[*]} missing, and not root and no sudo to install them"
    SUDO=sudo
  else
    SUDO=
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
    $SUDO apt-get update -qq || fail "apt-get update failed; cannot install ${need[*]}"
    $SUDO apt-get install -y -qq "${need[@]}" || fail "apt-get install ${need[*]} failed"
  }
fi
[[ -x $CHROMIUM ]] || fail "Chromium is not at $CHROMIUM after installing Debian's chromium package"
[[ -x $FIREFOX ]] || fail "Firefox ESR is not at $FIREFOX after installing Debian's firefox-esr package"
"$CHROMIUM" --version 2>/dev/null | grep -m1 Chromium || fail "$CHROMIUM does not start"
"$FIREFOX" --version 2>/dev/null | grep -m1 Firefox || fail "$FIREFOX does not start"

command -v node >/dev/null && command -v npm >/dev/null || fail "node and npm are needed (Debian: nodejs npm)"

# The drivers, exactly as locked (playwright-core and puppeteer-core download no browser).
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci in e2e/ failed"

cd "$HERE"
exec node run.mjs
