#!/bin/sh
# Install the browser the real-browser UI tests (tests/ui) drive: Debian's chromium, used by
# Playwright through executable_path="/usr/bin/chromium" (Playwright's own browser download
# is not reachable from the test machines). The Python side (jupyterlab, playwright,
# ipywidgets) comes with the project's `test` extra.
# Idempotent: installs only if /usr/bin/chromium is missing, runs `apt-get update` only if
# the package lists do not offer chromium yet. Must run as root on Debian 12. Quiet on
# success; on failure prints apt's log and exits non-zero.
set -eu

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "tests/ui/install.sh: must run as root (apt-get install chromium)" >&2
    exit 1
fi

log=$(mktemp /tmp/hpckernel-ui-install.XXXXXX.log)

fail() {
    echo "tests/ui/install.sh: $1 failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
}

echo "tests/ui/install.sh: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
# An empty candidate means the package lists are missing or stale: update them once.
candidate=$(apt-cache policy chromium 2>/dev/null | sed -n 's/^ *Candidate: *//p')
if [ -z "$candidate" ] || [ "$candidate" = "(none)" ]; then
    apt-get update -q >"$log" 2>&1 || fail "apt-get update"
fi
apt-get install -y -q --no-install-recommends chromium >>"$log" 2>&1 \
    || fail "apt-get install chromium"
[ -x /usr/bin/chromium ] || fail "apt-get install chromium (no /usr/bin/chromium)"
rm -f "$log"
