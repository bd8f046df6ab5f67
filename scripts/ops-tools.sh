#!/bin/sh
# Make sure promtool (Debian `prometheus`) and `prometheus-pushgateway` are installed: the
# alert-rule and Pushgateway tests run them; and headless Chromium (Debian `chromium`,
# `chromium-driver`), which opens the `rank evaluate --html` report in its test. Installs with apt-get only what is missing,
# quietly, and never starts their services (tests start the binaries themselves).
# Without apt-get or root this prints what to do and succeeds: the tests then fail in CI
# (CI=true) with a clear message, and are skipped elsewhere.
set -eu

missing=""
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v prometheus-pushgateway >/dev/null 2>&1 || missing="$missing prometheus-pushgateway"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "note: install$missing yourself (no apt-get here); the tests that need them fail in CI, skip here" >&2
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "note: run \`sudo make tools\` to install$missing with apt-get; the tests that need them skip until then" >&2
    exit 0
fi

echo "installing$missing with apt-get (services are not started)" >&2
# Debian's way to keep maintainer scripts from starting services during an install.
policy=/usr/sbin/policy-rc.d
placed=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    placed=yes
fi
cleanup() { if [ -n "$placed" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
# shellcheck disable=SC2086
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "error: apt-get could not install$missing" >&2
    exit 1
fi
rm -f "$log"
