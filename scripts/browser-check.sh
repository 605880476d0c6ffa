#!/usr/bin/env bash
# Signs a user in through a real headless Chromium (scripts/browser-check.py): the sign-in
# and consent pages with their stable field names, cookies and CSP, the redirect with a
# code, and the code redeemed with PKCE. Installs Debian's chromium and chromium-driver
# when missing (as root) and Selenium into a cached virtualenv.
#
#   cargo build -p authserver && scripts/browser-check.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${GATEHOUSE_CACHE:-$HOME/.cache/gatehouse}"
export AUTHSERVER_BIN="${AUTHSERVER_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/authserver}"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver
fi
venv="$cache/selenium-4"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'selenium>=4.20,<5'
fi
exec "$venv/bin/python" "$root/scripts/browser-check.py"
